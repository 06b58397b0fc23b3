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


def q(quantile, metric, by="le"):
    return f"histogram_quantile({quantile}, sum by ({by}) (rate({metric}_bucket[$__rate_interval])))"


panels = []
row = 0


def add(title, exprs, unit="short", w=12, h=8, kind="timeseries", legend=None):
    global row
    x = sum(p["gridPos"]["w"] for p in panels if p["gridPos"]["y"] == row)
    if x + w > 24:
        row += h
        x = 0
    panels.append(panel(len(panels) + 1, title, exprs, unit, x, row, w, h, kind, legend))


add("Request rate by route", [("sum by (route) (rate(tier1_requests_total[$__rate_interval]))", "{{route}}")], "reqps")
add(
    "Error rate (4xx, 5xx)",
    [
        (
            'sum by (status_class) (rate(tier1_requests_total{status_class=~"4xx|5xx"}[$__rate_interval]))'
            " / ignoring(status_class) group_left sum(rate(tier1_requests_total[$__rate_interval]))",
            "{{status_class}}",
        )
    ],
    "percentunit",
)
add(
    "Request latency",
    [(q(0.5, "tier1_request_duration_seconds"), "p50"), (q(0.95, "tier1_request_duration_seconds"), "p95"),
     (q(0.99, "tier1_request_duration_seconds"), "p99")],
    "s",
)
add(
    "Router overhead (time not spent waiting on upstreams)",
    [(q(0.5, "tier1_overhead_seconds"), "p50"), (q(0.99, "tier1_overhead_seconds"), "p99")],
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
    [("sum by (reason) (rate(tier1_fallbacks_total[$__rate_interval]))", "{{reason}}")],
    "reqps",
)
add(
    "Fallbacks by provider pair",
    [("sum by (from_provider, to_provider) (rate(tier1_fallbacks_total[$__rate_interval]))",
      "{{from_provider}} → {{to_provider}}")],
    "reqps",
)
add(
    "Upstream outcomes by provider",
    [("sum by (provider, outcome) (rate(tier1_upstream_requests_total[$__rate_interval]))", "{{provider}} {{outcome}}")],
    "reqps",
)
add(
    "Retries and hedges",
    [("sum by (provider, reason) (rate(tier1_retries_total[$__rate_interval]))", "retry {{provider}} {{reason}}"),
     ("sum by (route, winner) (rate(tier1_hedges_total[$__rate_interval]))", "hedge {{route}} won by {{winner}}")],
    "reqps",
)
add(
    "Circuit breakers (0 closed, 1 half-open, 2 open)",
    [("max by (provider, target) (tier1_breaker_state)", "{{provider}} {{target}}")],
    "short",
)
add(
    "Key cooldowns and available keys",
    [("sum by (provider, key, reason) (increase(tier1_key_cooldowns_total[$__rate_interval]))",
      "cooldown {{provider}}/{{key}} {{reason}}"),
     ("min by (provider) (tier1_keys_available)", "available {{provider}}")],
    "short",
)
add(
    "Tokens by provider",
    [("sum by (provider, direction) (rate(tier1_tokens_total[$__rate_interval]))", "{{provider}} {{direction}}")],
    "short",
)
add(
    "Cost (USD per hour) by model",
    [("sum by (provider, model) (rate(tier1_cost_usd_total[$__rate_interval])) * 3600", "{{provider}}/{{model}}")],
    "currencyUSD",
)
add(
    "In flight and queue wait",
    [("sum(tier1_inflight_requests)", "in flight"),
     (q(0.99, "tier1_queue_wait_seconds"), "queue wait p99 (s)")],
    "short",
)
add(
    "Rate-limit rejections by limit",
    [("sum by (limit) (rate(tier1_ratelimit_rejections_total[$__rate_interval]))", "{{limit}}")],
    "reqps",
)
add(
    "Redis: up, sync time, errors",
    [("min(tier1_redis_up)", "up (min over replicas)"),
     (q(0.99, "tier1_redis_sync_seconds"), "sync p99 (s)"),
     ("sum by (op) (rate(tier1_redis_errors_total[$__rate_interval]))", "errors {{op}}")],
    "short",
)
add(
    "Config reloads",
    [("sum by (result) (increase(tier1_config_reloads_total[$__rate_interval]))", "{{result}}"),
     ("time() - max(tier1_config_last_reload_timestamp_seconds)", "seconds since last reload")],
    "short",
)
add(
    "Process",
    [("sum(process_resident_memory_bytes)", "RSS bytes"), ("sum(rate(process_cpu_seconds_total[$__rate_interval]))", "CPU cores"),
     ("sum(process_open_fds)", "open fds")],
    "short",
    w=24,
)

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
            }
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
