#!/usr/bin/env python3
"""Writes tier1.json, the Grafana dashboard for tier1, next to this file, and its copy in the Helm
chart (helm/tier1/files/tier1.json: Helm reads no file outside the chart; a test keeps them equal).

Run it after changing a panel: python3 deploy/grafana/generate.py
Every expression uses only metric names that tier1 exports (a test checks this).
"""
import json
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, exprs, unit="short", x=0, y=0, w=12, h=8, kind="timeseries", legend=None):
    targets = []
    for i, (expr, fmt) in enumerate(exprs):
        targets.append({"datasource": DS, "expr": expr, "legendFormat": fmt, "refId": chr(65 + i)})
    p = {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}
    if legend:
        p["description"] = legend
    return p


# Every query is narrowed to the variables' choice (all by default). A label a target lacks
# (namespace outside Kubernetes) matches the default `.*`.
SEL = 'job=~"$job", namespace=~"$namespace", instance=~"$instance"'


def m(name, match=""):
    """`name{the variables' selection, match}`."""
    return f"{name}{{{SEL}{', ' + match if match else ''}}}"


def rate(name, match=""):
    return f"rate({m(name, match)}[$__rate_interval])"


def q(quantile, metric, by="le"):
    return f"histogram_quantile({quantile}, sum by ({by}) ({rate(metric + '_bucket')}))"


NOT_OK = 'code!="ok"'
NOT_CLOSED = 'state!="closed"'
panels = []
row = 0


def add(title, exprs, unit="short", w=12, h=8, kind="timeseries", legend=None):
    global row
    x = sum(p["gridPos"]["w"] for p in panels if p["gridPos"]["y"] == row)
    if x + w > 24:
        row += h
        x = 0
    panels.append(panel(len(panels) + 1, title, exprs, unit, x, row, w, h, kind, legend))


add("Request rate by route", [(f"sum by (route) ({rate('tier1_requests_total')})", "{{route}}")], "reqps")
add(
    "Errors by code (share of answers)",
    [
        (
            f"sum by (code) ({rate('tier1_requests_total', NOT_OK)})"
            f" / ignoring(code) group_left sum({rate('tier1_requests_total')})",
            "{{code}}",
        )
    ],
    "percentunit",
    legend="What clients got, one status per code: rate_limited 429, overloaded and no_target 503, "
    "timeout 504, upstream_error 502, unauthorized 401/403, invalid 400/405/408/409/422, not_found 404, "
    "too_large 413.",
)
add(
    "Request latency",
    [(q(0.5, "tier1_request_duration_seconds"), "p50"), (q(0.95, "tier1_request_duration_seconds"), "p95"),
     (q(0.99, "tier1_request_duration_seconds"), "p99")],
    "s",
)
add(
    "Router overhead (tier1's own work to the head, no waits)",
    [(q(0.5, "tier1_overhead_seconds"), "p50"), (q(0.99, "tier1_overhead_seconds"), "p99")],
    "s",
)
# The time to the head splits exactly into tier1's own work and its waits: seconds per second of
# each, stacked, show where a slow head came from.
add(
    "Time to the head: tier1's work and what it waited on",
    [(f"sum({rate('tier1_overhead_seconds_sum')})", "tier1 work"),
     (f"sum by (kind) ({rate('tier1_wait_seconds_sum')})", "wait {{kind}}")],
    "s",
    legend="Seconds per second, summed over requests; upstream is the provider's own time to the head.",
)
add(
    "Wait p99 by kind",
    [(q(0.99, "tier1_wait_seconds", "le, kind"), "{{kind}}")],
    "s",
)
add(
    "Time to first token by provider",
    [(q(0.5, "tier1_time_to_first_token_seconds", "le, provider"), "p50 {{provider}}"),
     (q(0.95, "tier1_time_to_first_token_seconds", "le, provider"), "p95 {{provider}}")],
    "s",
)
add(
    "Inter-token gap p95 by provider",
    [(q(0.95, "tier1_inter_token_seconds", "le, provider"), "{{provider}}")],
    "s",
)
add(
    "Fallbacks by reason",
    [(f"sum by (reason) ({rate('tier1_fallbacks_total')})", "{{reason}}")],
    "reqps",
)
add(
    "Fallbacks by provider pair",
    [(f"sum by (from_provider, to_provider) ({rate('tier1_fallbacks_total')})",
      "{{from_provider}} → {{to_provider}}")],
    "reqps",
)
add(
    "Upstream outcomes by provider",
    [(f"sum by (provider, outcome) ({rate('tier1_upstream_requests_total')})", "{{provider}} {{outcome}}")],
    "reqps",
)
add(
    "Retries and hedges",
    [(f"sum by (provider, reason) ({rate('tier1_retries_total')})", "retry {{provider}} {{reason}}"),
     (f"sum by (route, winner) ({rate('tier1_hedges_total')})", "hedge {{route}} won by {{winner}}")],
    "reqps",
)
add(
    "Circuit breakers by state, and those not closed",
    [(f"sum by (state) ({m('tier1_breaker_status')})", "{{state}} (breakers)"),
     (f"max by (provider, model, state) ({m('tier1_breaker_status', NOT_CLOSED)}) == 1",
      "{{state}}: {{provider}} {{model}}")],
    "short",
    legend="model * is the provider-wide breaker.",
)
add(
    "Key cooldowns and available keys",
    [(f"sum by (provider, key, reason) (increase({m('tier1_key_cooldowns_total')}[$__rate_interval]))",
      "cooldown {{provider}}/{{key}} {{reason}}"),
     (f"min by (provider) ({m('tier1_keys_available')})", "available {{provider}}")],
    "short",
)
add(
    "Tokens by provider",
    [(f"sum by (provider, direction) ({rate('tier1_tokens_total')})", "{{provider}} {{direction}}")],
    "short",
)
add(
    "Cost (USD per hour) by model",
    [(f"sum by (provider, model) ({rate('tier1_cost_usd_total')}) * 3600", "{{provider}}/{{model}}")],
    "currencyUSD",
)
add(
    "In flight and queue wait",
    [(f"sum({m('tier1_inflight_requests')})", "in flight"),
     (q(0.99, "tier1_queue_wait_seconds"), "queue wait p99 (s)")],
    "short",
)
add(
    "Rate-limit rejections by limit",
    [(f"sum by (limit) ({rate('tier1_ratelimit_rejections_total')})", "{{limit}}")],
    "reqps",
)
add(
    "Redis: up, sync time, errors",
    [(f"min({m('tier1_redis_up')})", "up (min over replicas)"),
     (q(0.99, "tier1_redis_sync_seconds"), "sync p99 (s)"),
     (f"sum by (op) ({rate('tier1_redis_errors_total')})", "errors {{op}}")],
    "short",
)
add(
    "Config reloads",
    [(f"sum by (result) (increase({m('tier1_config_reloads_total')}[$__rate_interval]))", "{{result}}"),
     (f"min({m('tier1_config_last_reload_successful')})", "last reload succeeded (min over replicas)"),
     (f"time() - max({m('tier1_config_last_reload_timestamp_seconds')})", "seconds since last reload")],
    "short",
)
add(
    "Versions running",
    [(f"count by (version, revision) ({m('tier1_build_info')})", "{{version}} {{revision}}")],
    "short",
    legend="Replicas by version and git revision.",
)
# One series per replica: a sum over the fleet hides the one that leaks or spins.
add("Resident memory by instance", [(f"sum by (instance) ({m('process_resident_memory_bytes')})", "{{instance}}")],
    "bytes", w=8)
add("CPU (cores) by instance", [(f"sum by (instance) ({rate('process_cpu_seconds_total')})", "{{instance}}")],
    "short", w=8)
add(
    "Open file descriptors by instance",
    [(f"sum by (instance) ({m('process_open_fds')})", "{{instance}}"),
     (f"sum by (instance) ({m('process_max_fds')})", "limit {{instance}}")],
    "short",
    w=8,
)


def variable(name, label, query):
    """A multi-value query variable with an All option matching anything (a missing label too)."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }


dashboard = {
    "title": "tier1",
    "uid": "tier1-overview",
    "tags": ["tier1", "llm", "router"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            },
            variable("job", "Job", "label_values(tier1_build_info, job)"),
            variable("namespace", "Namespace", 'label_values(tier1_build_info{job=~"$job"}, namespace)'),
            variable(
                "instance", "Instance", 'label_values(tier1_build_info{job=~"$job", namespace=~"$namespace"}, instance)'
            ),
        ]
    },
    "annotations": {"list": []},
    "panels": panels,
}

text = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
here = pathlib.Path(__file__).resolve().parent
for out in [here / "tier1.json", here.parent.parent / "helm" / "tier1" / "files" / "tier1.json"]:
    out.write_text(text)
    print(f"wrote {out} ({len(panels)} panels)")
