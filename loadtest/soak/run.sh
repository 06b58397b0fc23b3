#!/usr/bin/env bash
# Soak under faults: runs tests/soak.rs (the real tier1 binary, two mock upstreams, a Redis it
# kills and restarts, hot reloads) and writes loadtest/results/soak-<UTC stamp>.{json,md} with an
# environment header. Exits non-zero when a check failed (the result files are written anyway).
# Usage: loadtest/soak/run.sh [full|ci|SECONDS] [--debug]
#   full (default): 30 minutes, 5 of warm-up; ci: 3 minutes, 1 of warm-up.
#   --debug: use the debug build (faster to build; RSS and CPU are not release numbers).
set -euo pipefail
cd "$(dirname "$0")/../.."
length=${1:-full}
profile=release
[ "${2:-}" = --debug ] && profile=debug
for bin in redis-server python3; do
  command -v "$bin" >/dev/null || { echo "missing $bin (apt-get install redis-server python3; scripts/test.sh installs redis-server)"; exit 1; }
done
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=loadtest/results/soak-$stamp
mkdir -p loadtest/results
flags=()
[ "$profile" = release ] && flags=(--release)
status=0
if cargo nextest --version >/dev/null 2>&1; then
  TIER1_SOAK=$length TIER1_SOAK_OUT=$PWD/$out.json cargo nextest run "${flags[@]}" --test soak --no-capture || status=$?
else
  TIER1_SOAK=$length TIER1_SOAK_OUT=$PWD/$out.json cargo test "${flags[@]}" --test soak -- --nocapture || status=$?
fi
[ -f "$out.json" ] || { echo "the soak wrote no result (it failed before measuring)"; exit 1; }
python3 - "$out" "$profile" <<'PY'
import json, platform, subprocess, sys
out, profile = sys.argv[1:]
r = json.load(open(out + ".json"))
run = lambda *a: subprocess.run(a, capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
env = {
    "cpu": cpu,
    "cores": len([l for l in open("/proc/cpuinfo") if l.startswith("processor")]),
    "kernel": platform.release(),
    "commit": run("git", "rev-parse", "--short", "HEAD") + (" (dirty)" if run("git", "status", "--porcelain", "--untracked-files=no") else ""),
    "rustc": run("rustc", "--version"),
    "redis": run("redis-server", "--version"),
    "profile": profile,
    "ulimit_nofile": run("sh", "-c", "ulimit -n"),
}
r = {"environment": env, **r}
json.dump(r, open(out + ".json", "w"), indent=2)
p, t, c = r["plan"], r["tier1"], r["clients_saw"]
ok = all(x["pass"] for x in r["checks"])
md = [
    f"# Soak under faults: {p['name']} ({'pass' if ok else 'FAIL'})", "",
    f"{env['cpu']}, {env['cores']} cores, kernel {env['kernel']}; {env['rustc']}; {env['redis']}; commit {env['commit']}; {profile} build",
    f"Load: {p['clients']} clients, one request each per {p['client_interval_ms']} ms at most, for {r['load_s']:.0f} s "
    f"({r['requests_per_s']:.0f} requests/s); warm-up {p['warmup_s']} s; a config change every {p['reload_every_s']} s; "
    f"Redis killed at 40% of the run for {p['redis_outage_s']} s. Config: loadtest/soak/tier1.toml, faults: loadtest/soak/mock.toml.", "",
    "| check | result | detail |", "| --- | --- | --- |",
]
for x in r["checks"]:
    md.append(f"| {x['name']} | {'ok' if x['pass'] else '**FAIL**'} | {x['detail'].replace('|', '/')} |")
md += [
    "", "| measure | value |", "| --- | ---: |",
    f"| requests | {c['requests']} |",
    f"| answered (after a fallback) | {c['ok']} ({c['ok_after_fallback']}) |",
    f"| streams cut by the injected mid-stream abort (expected) | {c['cut_by_injected_abort']} |",
    f"| streams dropped by the client (on purpose) | {c['client_cancelled']} |",
    f"| every target failed | {sum(c['exhausted'].values())} {c['exhausted'] or ''} |",
    f"| unexpected errors | {c['unexpected']} |",
    f"| RSS baseline → max → idle after load | {t['rss_kib']['baseline']/1024:.1f} → {t['rss_kib']['max']/1024:.1f} → {t['rss_kib']['final']/1024:.1f} MiB |",
    f"| RSS slope after warm-up (limit) | {t['rss_kib']['slope_mib_per_min']:.3f} MiB/min ({t['rss_kib']['limit_mib_per_min']}) |",
    f"| open fds baseline → max → idle after load | {t['fds']['baseline']} → {t['fds']['max']} → {t['fds']['final_idle']} |",
    f"| fd slope after warm-up (limit) | {t['fds']['slope_per_min']:.3f} /min ({t['fds']['limit_per_min']}) |",
    f"| threads max, slope | {t['threads']['max']}, {t['threads']['slope_per_min']:.3f} /min |",
    f"| upstream connections max open (bound) | {t['upstream_connections']['max_open']} ({t['upstream_connections']['bound']}) |",
    f"| upstream attempts | {', '.join(f'{k} {v:.0f}' for k, v in t['upstream_attempts'].items())} |",
    f"| fallbacks | {t['fallbacks']:.0f} |",
    f"| config changes, reloads ok, errors | {t['reloads']['changes']}, {t['reloads']['ok']:.0f}, {t['reloads']['error']:.0f} |",
]
open(out + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
exit "$status"
