#!/usr/bin/env python3
"""tier1's load harness: every case in loadtest/cases/, against the mock upstream called directly
and through nginx (the limit: proxy_pass with upstream keepalive), then through tier1, in one run.

Pinning: nginx and tier1 run alone on CPU 0; the load tools, the upstream and redis-server share
CPU 1. The upstream of the saturation cases (`upstream = "static"`) is the lightest there is: a
static nginx answering `return 200` with the mock's 335-byte JSON (loadtest/baseline/upstream.conf),
so that the load core keeps headroom; the other cases use `tier1 mock-upstream` (faults, streams).
Per system and case it records throughput, latency (and what the proxy adds over the direct call),
CPU seconds per 10,000 requests from /proc/PID/stat, RSS, and errors, and each system's share of
its core: the proxy's own CPU over the load's wall time (`proxy_core_share`), the busy share of the
proxy's core and of the load core from /proc/stat (`proxy_core_busy`, `load_core_busy`: every
process and interrupt there, other users of the machine too), and wrk's and the upstream's CPU. A
measurement where the proxy is below 90% of its core while the load core is above 90% is flagged
`load_bound`: the load, not the proxy, set its throughput, and a load-bound proxy costs more per
request. Each case's bounds are checked and the report says which were met.
Results: loadtest/results/load-<UTC>.{json,md}.

Usage: loadtest/run.sh [--quick] [--only CASE[,CASE...]]  (run.sh builds the release binaries first)
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "loadtest" / "cases"
TIER1 = ROOT / "target" / "release" / "tier1"
STREAM_LOAD = ROOT / "target" / "release" / "examples" / "stream_load"
OHA = shutil.which("oha") or str(ROOT / ".tools" / "oha" / "bin" / "oha")
CLK_TCK = os.sysconf("SC_CLK_TCK")
FRONT_KEY = "bench-front-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"not up: {url}")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def core_ticks() -> dict:
    """Per CPU: (busy, total) clock ticks since boot, from /proc/stat (idle and iowait are not busy)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            ticks = [int(x) for x in f[1:9]]
            out[int(f[0][3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


def busy_share(before: dict, after: dict, cpus: str):
    """The busy share of the CPUs in `cpus` (taskset's list: "0", "1", "0-1") between two reads."""
    ids = range(int(cpus.split("-")[0]), int(cpus.split("-")[-1]) + 1)
    busy = sum(after[i][0] - before[i][0] for i in ids if i in after)
    total = sum(after[i][1] - before[i][1] for i in ids if i in after)
    return round(busy / total, 3) if total else None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Procs:
    """Processes started by the run; all are stopped at the end, whatever happens."""

    def __init__(self, work: Path):
        self.work, self.procs = work, []

    def start(self, name: str, cpu: int, argv: list, env=None) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen(["taskset", "-c", str(cpu), *argv], stdout=log, stderr=log,
                             env={**os.environ, **(env or {})}, cwd=self.work)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


class RssPeak(threading.Thread):
    """Samples a process's RSS every 200 ms while a load runs."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self):
        while self.running:
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except OSError:
                return
            time.sleep(0.2)

    def stop(self) -> float:
        self.running = False
        self.join()
        return self.peak


def us(v: str) -> float:
    n = v.rstrip("mus")
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[v[len(n):]]


def wrk(url: str, body: str, conns: int, secs: int, record: bool = True, cpus: str = "1") -> dict:
    """`record=False`: a warm-up (pools and connections), whose output is dropped. `cpus`: where
    wrk runs (taskset's list)."""
    lua = Path(tempfile.mkstemp(suffix=".lua")[1])
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
        f'wrk.headers["authorization"] = "Bearer {FRONT_KEY}"\nwrk.headers["x-relay-token-id"] = "bench-user"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    def run(secs: int, *extra: str) -> str:
        argv = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{conns}", f"-d{secs}s", *extra, "-s", str(lua), url]
        return subprocess.run(argv, capture_output=True, text=True).stdout

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = run(secs, "--latency") if record else run(secs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lua.unlink()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    r = {"non_2xx": 0, "wrk_cpu_share": round(cpu / secs, 3)}
    for line in out.splitlines():
        f = line.split()
        if "requests in" in line:
            r["requests"] = int(f[0])
        elif line.startswith("Requests/sec"):
            r["rps"] = float(f[1])
        elif f and f[0] in ("50%", "90%", "99%"):
            r[f"p{f[0][:-1]}_us"] = us(f[1])
        elif "Non-2xx" in line:
            r["non_2xx"] = int(f[-1])
        elif "Socket errors" in line:
            r["socket_errors"] = line.split(":", 1)[1].strip()
    return r


def oha(url: str, body: str, rate: int, secs: int) -> dict:
    """Latency at a fixed request rate (open loop, with oha's latency correction)."""
    argv = ["taskset", "-c", "1", OHA, "--no-tui", "--output-format", "json", "-z", f"{secs}s", "-q", str(rate),
            "-c", "64", "--latency-correction", "-m", "POST", "-H", "content-type: application/json",
            "-H", f"authorization: Bearer {FRONT_KEY}", "-H", "x-relay-token-id: bench-user", "-d", body, url]
    out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    lat = out["latencyPercentiles"]
    codes = out.get("statusCodeDistribution", {})
    return {
        "rate": rate, "rps": out["summary"]["requestsPerSec"],
        **{f"{k}_us": (lat[k] or 0) * 1e6 for k in ("p50", "p90", "p99", "p99.9")},
        "non_2xx": sum(v for k, v in codes.items() if not k.startswith("2")),
        "errors": sum(out.get("errorDistribution", {}).values()),
    }


def stream_load(url: str, streams: int, secs: int, model: str) -> dict:
    argv = ["taskset", "-c", "1", str(STREAM_LOAD), url, str(streams), str(secs), model, FRONT_KEY]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def sample(port: int, case: dict, body: str) -> str:
    """One request's answer, to show what the errors were."""
    data = body or json.dumps({"model": case.get("model", "bench"), "messages": [{"role": "user", "content": "hi"}]})
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=data.encode(), method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {FRONT_KEY}"})
    try:
        return urllib.request.urlopen(req, timeout=10).read().decode()[:300]
    except urllib.error.HTTPError as e:
        return f"{e.code}: {e.read().decode()[:300]}"
    except Exception as e:
        return repr(e)


def metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def histogram_quantile(text: str, name: str, q: float):
    """A Prometheus histogram's q-quantile (summed over labels); in the first bucket, its bound."""
    buckets: dict = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            le = float("inf") if le == "+Inf" else float(le)
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    items = sorted(buckets.items())
    if not items or items[-1][1] == 0:
        return None
    rank, prev_le, prev_n = q * items[-1][1], 0.0, 0.0
    for i, (le, n) in enumerate(items):
        if n >= rank:
            if i == 0 or le == float("inf"):
                return le if i == 0 else prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9)
        prev_le, prev_n = le, n
    return None


def series_sum(text: str, name: str) -> float:
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + " ") or l.startswith(name + "{"))


def cpus(case: dict, own: str) -> str:
    """Where a case's process runs: `own` (tier1 and nginx on CPU 0, the rest on CPU 1), or both
    CPUs for every process with `unpinned = true` (a black-box run, as on a shared host)."""
    return "0-1" if case.get("unpinned") else own


WAIT_KINDS = ("body", "limit", "queue", "upstream", "hedge", "backoff", "cooldown", "scheduler", "other")


def time_to_head(text: str) -> dict:
    """Means per request (µs) of tier1's overhead and of each wait kind, over every request the
    histograms counted (a kind a request did not meet counts as 0 for it)."""
    n = series_sum(text, "tier1_overhead_seconds_count")
    if not n:
        return {}
    mean = lambda series: round(series_sum(text, series) / n * 1e6, 2)
    out = {"overhead_mean_us": mean("tier1_overhead_seconds_sum")}
    waits = {}
    for kind in WAIT_KINDS:
        total = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                    if l.startswith(f'tier1_wait_seconds_sum{{kind="{kind}"}}'))
        if total:
            waits[kind] = round(total / n * 1e6, 2)
    out["wait_mean_us"] = waits
    return out


def core_shares(r: dict, pid, t0: int, secs: float, c0: dict, c1: dict, case: dict) -> dict:
    """Each system's share of its core over a load: the proxy's own CPU over the wall time, the
    busy share of the proxy's core and of the load core, and the flag `load_bound` (the proxy
    below 90% of its core while the load core is above 90%)."""
    out = {"load_core_busy": busy_share(c0, c1, cpus(case, "1"))}
    if pid:
        out["proxy_core_share"] = round((cpu_ticks(pid) - t0) / CLK_TCK / secs, 3)
        out["proxy_core_busy"] = busy_share(c0, c1, cpus(case, "0"))
        if not case.get("unpinned") and out["load_core_busy"] is not None:
            out["load_bound"] = out["proxy_core_share"] < 0.9 and out["load_core_busy"] > 0.9
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Bench:
    def __init__(self, work: Path, quick: bool):
        self.work, self.quick, self.procs = work, quick, Procs(work)
        self.secs = 5 if quick else 10

    def upstream(self, case: dict) -> int:
        """The case's upstream, on the load core: the static nginx (`upstream = "static"`) or the mock."""
        if case.get("upstream", "mock") == "mock":
            return self.mock(case)
        port = free_port()
        d = self.work / "upstream"
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        conf = (ROOT / "loadtest" / "baseline" / "upstream.conf").read_text()
        (d / "upstream.conf").write_text(conf.replace("LISTEN_PORT", str(port)))
        self.mock_proc = self.procs.start("upstream", cpus(case, "1"), ["nginx", "-p", d, "-c", d / "upstream.conf"])
        wait_up(f"http://127.0.0.1:{port}/_mock/stats")
        return port

    def mock(self, case: dict) -> int:
        port = free_port()
        cfg = self.work / "mock.toml"
        cfg.write_text(case.get("mock", ""))
        self.mock_proc = self.procs.start("mock", cpus(case, "1"), [TIER1, "mock-upstream", "--listen", f"127.0.0.1:{port}", "--config", cfg])
        wait_up(f"http://127.0.0.1:{port}/_mock/stats")
        return port

    def nginx(self, upstream: int) -> tuple:
        port = free_port()
        d = self.work / "nginx"
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        conf = (ROOT / "loadtest" / "baseline" / "nginx.conf").read_text()
        (d / "nginx.conf").write_text(conf.replace("UPSTREAM_PORT", str(upstream)).replace("LISTEN_PORT", str(port)))
        p = self.procs.start("nginx", 0, ["nginx", "-p", d, "-c", d / "nginx.conf"])
        wait_up(f"http://127.0.0.1:{port}/_mock/stats")
        return port, p

    def tier1(self, case: dict, upstream: int, logged: bool = False) -> tuple:
        port = free_port()
        cfg = self.work / "tier1.toml"
        # The cases' common part (auth, a per-user limit, metrics), then the case's own routes
        # (default: the route `bench` to the mock), then the mock as provider `up`. `logged`
        # (the system `tier1-log`): the `[log]` settings left at their defaults, as a user runs
        # it: an access line per request, on stdout (to a file here, as a container runtime's).
        routes = case.get("tier1", '[[routes]]\nname = "bench"\ntargets = [{ provider = "up", model = "m" }]\n')
        common = (CASES / "common.toml").read_text()
        if logged:
            common = common.replace('\nlevel = "warn"\n', "\n").replace("\nsample = 0.0\n", "\n")
        text = common + "\n" + routes
        text += f'\n[providers.up]\nkind = "openai"\nbase_url = "http://127.0.0.1:{upstream}/v1"\n'
        cfg.write_text(text.replace("MOCK_PORT", str(upstream)))
        p = self.procs.start("tier1", cpus(case, "0"), [TIER1, "--config", cfg, "--listen", f"127.0.0.1:{port}"],
                             env={"BENCH_FRONT_KEY": FRONT_KEY})
        wait_up(f"http://127.0.0.1:{port}/readyz")
        self.tier1_config = cfg
        return port, p

    def measure(self, name: str, port: int, pid, case: dict, load, warm=None) -> dict:
        """Runs `warm(url)`, then `load(url)`, and adds the process's CPU per 10k requests of the
        load (the warm-up's CPU is not counted) and RSS (idle: before the warm-up)."""
        url = f"http://127.0.0.1:{port}{case.get('path', '/v1/chat/completions')}"
        idle = rss_mib(pid) if pid else None
        load_before = loadavg()
        if warm:
            warm(url)
        t0 = cpu_ticks(pid) if pid else 0
        m0 = cpu_ticks(self.mock_proc.pid)
        c0 = core_ticks()
        peak = RssPeak(pid) if pid else None
        if peak:
            peak.start()
        r = load(url)
        c1 = core_ticks()
        if pid:
            r["rss_peak_mib"] = round(peak.stop(), 1)
            r["rss_idle_mib"] = round(idle, 1)
            r["rss_after_mib"] = round(rss_mib(pid), 1)
            n = r.get("requests") or r.get("streams_completed") or 0
            if n:
                r["cpu_s_per_10k"] = round((cpu_ticks(pid) - t0) / CLK_TCK / n * 10_000, 4)
        r["loadavg_before_after"] = f"{load_before} / {loadavg()}"
        secs = max(r.get("seconds", self.secs), 1)
        r["upstream"] = case.get("upstream", "mock")
        r["upstream_cpu_share"] = round((cpu_ticks(self.mock_proc.pid) - m0) / CLK_TCK / secs, 3)
        r.update(core_shares(r, pid, t0, secs, c0, c1, case))
        print(f"  {name}: {json.dumps(r)}", flush=True)
        return r

    def run_case(self, name: str, case: dict) -> dict:
        body = case.get("body", "")
        if "body_prompt_kib" in case:
            prompt = ("lorem ipsum dolor sit amet " * 40)[: 1024] * case["body_prompt_kib"]
            body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": prompt}], "max_tokens": 16})
        systems = case.get("systems", ["direct", "nginx", "tier1", "tier1-log"])
        load = case["load"]
        secs = self.secs if load != "streams" else case.get("seconds", 15)

        def do_load(url):
            if load == "wrk":
                r = wrk(url, body, case.get("connections", 32), secs, cpus=cpus(case, "1"))
                r["seconds"] = secs
                return r
            if load == "oha":
                return {"rates": [oha(url, body, rate, secs) for rate in case["rates"]], "seconds": secs * len(case["rates"]),
                        "requests": None}
            if load == "streams":
                r = stream_load(url, case["streams"], secs, case.get("model", "bench"))
                r["seconds"] = secs
                return r
            raise ValueError(load)

        def do_warm(url):
            if load == "wrk":
                wrk(url, body, case.get("connections", 32), 2, record=False, cpus=cpus(case, "1"))

        mport = self.upstream(case)
        out = {}
        try:
            for system in systems:
                if system == "direct":
                    out["direct"] = self.measure("direct", mport, None, case, do_load, do_warm)
                elif system == "nginx":
                    port, p = self.nginx(mport)
                    out["nginx"] = self.measure("nginx", port, p.pid, case, do_load, do_warm)
                    self.procs.stop(p)
                elif system in ("tier1", "tier1-log"):
                    port, p = self.tier1(case, mport, logged=system == "tier1-log")
                    reloader = None
                    if case.get("reload_every"):
                        reloader = Reloader(self.tier1_config, port, case["reload_every"])
                        reloader.start()
                    r = out[system] = self.measure(system, port, p.pid, case, do_load, do_warm)
                    if reloader:
                        r["reloads"] = reloader.stop()
                    if r.get("non_2xx") or r.get("errors"):
                        r["sample_error"] = sample(port, case, body)
                    text = metrics(port)
                    r["overhead_p50_us"] = (histogram_quantile(text, "tier1_overhead_seconds", 0.5) or 0) * 1e6
                    r["overhead_p99_us"] = (histogram_quantile(text, "tier1_overhead_seconds", 0.99) or 0) * 1e6
                    r.update(time_to_head(text))
                    r["fallbacks"] = series_sum(text, "tier1_fallbacks_total")
                    r["inflight_after"] = series_sum(text, "tier1_inflight_requests")
                    r["log_lines_dropped"] = series_sum(text, "tier1_log_lines_dropped_total")
                    self.procs.stop(p)
        finally:
            self.procs.stop(self.mock_proc)
        return out


class Reloader(threading.Thread):
    """Rewrites the config (a changing comment, so it is never 'unchanged') and reloads it."""

    def __init__(self, path: Path, port: int, every: float):
        super().__init__(daemon=True)
        self.path, self.port, self.every, self.running, self.ok, self.failed = path, port, every, True, 0, 0

    def run(self):
        base, n = self.path.read_text(), 0
        while self.running:
            n += 1
            self.path.write_text(base + f"\n# reload {n}\n")
            try:
                # Without admin_keys, admin routes answer a loopback client that says so.
                req = urllib.request.Request(f"http://127.0.0.1:{self.port}/admin/reload", method="POST",
                                             headers={"x-tier1-admin": "1"})
                body = json.loads(urllib.request.urlopen(req, timeout=5).read())
                if body.get("result") in ("ok", "unchanged"):
                    self.ok += 1
                else:
                    self.failed += 1
            except Exception:
                self.failed += 1
            time.sleep(self.every)

    def stop(self) -> dict:
        self.running = False
        self.join()
        return {"ok": self.ok, "failed": self.failed}


def check(op: str, value, limit) -> bool:
    return {"le": value <= limit, "lt": value < limit, "ge": value >= limit, "eq": value == limit}[op]


def resolve(results: dict, case_results: dict, expr: str):
    """A figure named in a case's bounds: 'tier1.cpu_s_per_10k', 'tier1.rates[2000].added_p99_us',
    a ratio 'tier1.rps / nginx.rps', or another case's figure '01-small-saturation:tier1.rps'."""
    if " / " in expr:
        a, b = expr.split(" / ")
        return resolve(results, case_results, a) / resolve(results, case_results, b)
    cur = case_results
    if ":" in expr:
        other, expr = expr.split(":", 1)
        cur = results[other]
    for part in expr.split("."):
        if part.endswith("]"):
            key, rate = part[:-1].split("[")
            cur = next(r for r in cur[key] if r["rate"] == int(rate))
        else:
            cur = cur[part]
    return cur


def added(case_results: dict) -> None:
    """Fills in what each proxy adds over the direct call."""
    d = case_results.get("direct")
    if not d:
        return
    for system in ("nginx", "tier1", "tier1-log"):
        r = case_results.get(system)
        if not r:
            continue
        for key in ("p50_us", "p90_us", "p99_us"):
            if key in r and key in d:
                r["added_" + key] = round(r[key] - d[key], 1)
        if "rates" in r:
            for rr, dr in zip(r["rates"], d["rates"]):
                for key in ("p50_us", "p90_us", "p99_us", "p99.9_us"):
                    rr["added_" + key] = round(rr[key] - dr[key], 1)
        for group in ("ttft_us", "gap_us"):
            if group in r and group in d:
                r["added_" + group] = {q: r[group][q] - d[group][q] for q in r[group] if q in d[group]}


def environment() -> dict:
    def version(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0]
        except OSError:
            return "not installed"

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
        "tools": {"wrk": version(["wrk", "--version"]), "oha": version([OHA, "--version"]),
                  "nginx": version(["nginx", "-v"]), "rustc": version(["rustc", "--version"]),
                  "redis": version(["redis-server", "--version"])},
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        "pinning": "nginx and tier1 alone on CPU 0; load tools, the upstream (static nginx or the mock) and redis-server on CPU 1",
    }


def markdown(env: dict, results: dict, bounds: list) -> str:
    md = [f"# tier1 load report ({env['commit']})", "",
          f"{env['cpu']}, {env['cores']} cores, kernel {env['kernel']}; "
          + "; ".join(f"{k} {v}" for k, v in env["tools"].items()), f"Pinning: {env['pinning']}.", ""]
    for name, res in results.items():
        md += [f"## {name}", ""]
        desc = res.pop("_description", "")
        if desc:
            md += [desc, ""]
        for system, r in res.items():
            if "rates" in r:
                md += [f"**{system}**: fixed rates (oha, latency-corrected)", "",
                       "| rate | achieved | p50 | p90 | p99 | p99.9 | added p50 | added p99 | added p99.9 | errors |",
                       "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
                for rr in r["rates"]:
                    a = lambda k: f"{rr['added_' + k]:.0f} µs" if "added_" + k in rr else "–"
                    md.append(f"| {rr['rate']} | {rr['rps']:.0f} | {rr['p50_us']:.0f} µs | {rr['p90_us']:.0f} µs | "
                              f"{rr['p99_us']:.0f} µs | {rr['p99.9_us']:.0f} µs | {a('p50_us')} | {a('p99_us')} | "
                              f"{a('p99.9_us')} | {rr['non_2xx'] + rr['errors']} |")
                md.append("")
            else:
                flat = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
                nested = {k: v for k, v in r.items() if isinstance(v, dict)}
                if r.get("load_bound"):
                    md.append(f"- **{system} is load-bound** (below 90% of its core while the load core is above 90%): "
                              "its throughput and CPU per request are the load's limit, not its own.")
                md.append(f"- **{system}**: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                        for k, v in flat.items()))
                for k, v in nested.items():
                    md.append(f"  - {k}: " + ", ".join(f"{q} {x}" for q, x in v.items()))
        md.append("")
    md += ["## Bounds", "", "| case | bound | measured | limit | met |", "| --- | --- | ---: | ---: | :---: |"]
    for b in bounds:
        m = b["measured"]
        m = f"{m:.3f}" if isinstance(m, float) else str(m)
        md.append(f"| {b['case']} | {b['bound']} | {m} | {b['limit']} | {'yes' if b['met'] else '**NO**'} |")
    return "\n".join(md) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 s per load instead of 10 s")
    ap.add_argument("--only", default="", help="comma-separated case names")
    args = ap.parse_args()
    only = [c for c in args.only.split(",") if c]
    cases = sorted(p for p in CASES.iterdir() if (p / "case.toml").exists())
    chosen = [tomllib.loads((p / "case.toml").read_text()) for p in cases if not only or p.name in only]
    nginx = any("nginx" in c.get("systems", ["nginx"]) for c in chosen)
    for tool in ("wrk", "taskset") + (("nginx",) if nginx else ()):
        if not shutil.which(tool):
            print(f"missing {tool}: apt-get install wrk nginx util-linux", file=sys.stderr)
            return 2
    results, bounds = {}, []
    with tempfile.TemporaryDirectory(prefix="tier1-load-") as tmp:
        bench = Bench(Path(tmp), args.quick)
        try:
            for path in cases:
                if only and path.name not in only:
                    continue
                case = tomllib.loads((path / "case.toml").read_text())
                if case["load"] == "oha" and not Path(OHA).exists():
                    print(f"skipping {path.name}: oha not installed (loadtest/run.sh installs it)")
                    continue
                if case.get("redis"):
                    rport = free_port()
                    bench.procs.start("redis", 1, ["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no"])
                    time.sleep(0.3)
                    case["tier1"] = case.get("tier1", "").replace("REDIS_PORT", str(rport))
                print(f"== {path.name}: {case.get('description', '')}", flush=True)
                res = bench.run_case(path.name, case)
                added(res)
                results[path.name] = res
                for b in case.get("bounds", []):
                    try:
                        value = resolve(results, res, b["value"])
                        bounds.append({"case": path.name, "bound": b["name"], "measured": value,
                                       "limit": b["limit"], "met": check(b["op"], value, b["limit"])})
                    except (KeyError, StopIteration, TypeError, ZeroDivisionError) as e:
                        bounds.append({"case": path.name, "bound": b["name"], "measured": f"n/a ({e!r})",
                                       "limit": b["limit"], "met": False})
                res["_description"] = case.get("description", "")
        finally:
            bench.procs.stop_all()
    env = environment()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "loadtest" / "results" / f"load-{stamp}"
    md = markdown(env, json.loads(json.dumps(results)), bounds)
    for r in results.values():
        r.pop("_description", None)
    out.with_suffix(".json").write_text(json.dumps({"environment": env, "results": results, "bounds": bounds}, indent=2))
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"written: {out}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
