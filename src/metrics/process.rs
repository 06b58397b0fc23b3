//! The standard `process_*` metrics, read from `/proc/self` at each scrape (Linux; elsewhere
//! they stay 0).
//!
//! Not the `prometheus` crate's `process` feature: its `process_cpu_seconds_total` is an integer
//! counter (whole seconds, tikv/rust-prometheus#451 and #560, both open), so a router at 5% CPU
//! shows as 0% with a 100% spike every 20 s in `rate()`; and it adds procfs and rustix to the
//! build. The two numbers a hand parser tends to hard-code, the page size (4 KiB on x86-64,
//! 16 or 64 KiB on some arm64 kernels) and the clock-tick rate, come from the kernel's auxiliary
//! vector (`/proc/self/auxv`, the values `sysconf` returns), read once.

use std::sync::OnceLock;

use prometheus::{Counter, Gauge, IntGauge};

use super::on;

/// The process gauges and the CPU counter.
#[derive(Debug, Clone)]
pub(super) struct ProcessMetrics {
    cpu: Counter,
    rss: IntGauge,
    vsize: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
}

/// `AT_PAGESZ` and `AT_CLKTCK`, the auxiliary vector's keys for the page size and the tick rate.
const AT_PAGESZ: u64 = 6;
const AT_CLKTCK: u64 = 17;

/// The page size in bytes and the clock ticks per second.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Units {
    page: u64,
    ticks: f64,
}

impl Units {
    /// `ticks` clock ticks in seconds, to the tick (never rounded to whole seconds).
    fn seconds(self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks
    }
}

impl ProcessMetrics {
    /// Registers the six standard metrics in `r`.
    pub(super) fn new(r: &super::Registered) -> prometheus::Result<Self> {
        Ok(Self {
            cpu: on(r, Counter::new("process_cpu_seconds_total", "CPU time used by the process.")?)?,
            rss: on(r, IntGauge::new("process_resident_memory_bytes", "Resident memory.")?)?,
            vsize: on(r, IntGauge::new("process_virtual_memory_bytes", "Virtual memory.")?)?,
            open_fds: on(r, IntGauge::new("process_open_fds", "Open file descriptors.")?)?,
            max_fds: on(r, IntGauge::new("process_max_fds", "File descriptor limit.")?)?,
            start_time: on(r, Gauge::new("process_start_time_seconds", "Unix time the process started.")?)?,
        })
    }

    /// Sets every metric from `/proc/self`.
    pub(super) fn refresh(&self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
        let units = units();
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, f)| f).split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime (ticks), starttime (ticks after boot), vsize (bytes), rss (pages).
        let cpu = units.seconds(field(11) + field(12));
        let delta = cpu - self.cpu.get();
        if delta > 0.0 {
            self.cpu.inc_by(delta);
        }
        self.vsize.set(i64::try_from(field(20)).unwrap_or(i64::MAX));
        self.rss.set(i64::try_from(field(21).saturating_mul(units.page)).unwrap_or(i64::MAX));
        if self.start_time.get() == 0.0 {
            self.start_time.set(boot_time() + units.seconds(field(19)));
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
        self.max_fds.set(max_open_files().unwrap_or(0));
    }
}

/// This machine's units, read once; Linux's usual ones if the auxiliary vector cannot be read.
fn units() -> Units {
    static UNITS: OnceLock<Units> = OnceLock::new();
    *UNITS.get_or_init(|| {
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        from_auxv(&auxv).unwrap_or(Units { page: 4096, ticks: 100.0 })
    })
}

/// The units in an auxiliary vector: pairs of native-endian `u64` (key, value), ended by key 0.
fn from_auxv(auxv: &[u8]) -> Option<Units> {
    let word = |b: &[u8]| b.try_into().ok().map(u64::from_ne_bytes);
    let (mut page, mut ticks) = (None, None);
    for pair in auxv.chunks_exact(16) {
        match (word(&pair[..8])?, word(&pair[8..])?) {
            (0, _) => break,
            (AT_PAGESZ, v) if v > 0 => page = Some(v),
            (AT_CLKTCK, v) if v > 0 => ticks = Some(v as f64),
            _ => {}
        }
    }
    Some(Units { page: page?, ticks: ticks? })
}

/// When the machine booted, in Unix seconds (`btime` in `/proc/stat`).
fn boot_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok()).unwrap_or(0.0)
}

/// The soft limit on open files (`/proc/self/limits`).
fn max_open_files() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auxv(pairs: &[(u64, u64)]) -> Vec<u8> {
        pairs.iter().flat_map(|(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()]).flatten().collect()
    }

    #[test]
    fn the_page_size_and_tick_rate_come_from_the_auxiliary_vector() {
        // A 64 KiB-page arm64 kernel at 250 Hz: a hard-coded 4096 would under-count RSS 16 times.
        let v = auxv(&[(33, 0x7fff), (AT_PAGESZ, 65536), (AT_CLKTCK, 250), (0, 0), (AT_PAGESZ, 1)]);
        assert_eq!(from_auxv(&v), Some(Units { page: 65536, ticks: 250.0 }));
        assert_eq!(from_auxv(&auxv(&[(AT_PAGESZ, 4096), (0, 0)])), None, "no tick rate: no guess");
        assert_eq!(from_auxv(&[1, 2, 3]), None);
        // This machine's own vector holds both.
        let own = from_auxv(&std::fs::read("/proc/self/auxv").unwrap_or_default());
        let own = own.expect("Linux's auxiliary vector holds AT_PAGESZ and AT_CLKTCK");
        assert!(own.page.is_power_of_two() && own.page >= 4096 && own.ticks > 0.0, "{own:?}");
    }

    #[test]
    fn cpu_time_is_counted_in_fractions_of_a_second() {
        // 7 ticks at 100 Hz: an integer counter (the prometheus crate's) would say 0.
        assert_eq!(Units { page: 4096, ticks: 100.0 }.seconds(7), 0.07);
        let r = super::super::Registered::default();
        let p = ProcessMetrics::new(&r).expect("registered");
        p.refresh();
        assert!(p.rss.get() > 0 && p.open_fds.get() > 0 && p.max_fds.get() > 0);
        assert!(p.start_time.get() > 1.6e9, "start time {}", p.start_time.get());
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_owned()).collect();
        for name in
            ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"]
        {
            assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
        }
    }
}
