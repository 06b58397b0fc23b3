//! The Helm chart, rendered as users deploy it (central, sidecar with and without an app, native
//! sidecar, from a parent chart) and validated against the Kubernetes schemas of 1.29, the oldest
//! the chart supports, and of the newest version kubernetes-validate ships.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{ROOT, ok, ok_in, tool};

const OLDEST: &str = "1.29.0";

pub(crate) fn helm() -> Command {
    tool(Some(".tools/bin/helm"), "helm")
}

fn python() -> Command {
    tool(Some(".tools/py/bin/python"), "python3")
}

/// The args that make a render succeed: every value of `secrets` is required.
pub(crate) fn ci_values() -> Vec<&'static str> {
    vec!["--set", "secrets.BIFROST_API_KEY=ci-front-key", "--set", "secrets.OPENAI_API_KEY=ci-openai-key"]
}

fn tmp(tag: &str, args: &[&str]) -> PathBuf {
    let mut h = DefaultHasher::new();
    args.hash(&mut h);
    std::env::temp_dir().join(format!("tier1-helm-{}-{tag}-{:016x}.yaml", std::process::id(), h.finish()))
}

/// `helm template t1 helm/tier1 ARGS`, written to a file; panics when the render fails.
pub(crate) fn render(args: &[&str]) -> PathBuf {
    let out = ok(helm().args(["template", "t1", "helm/tier1"]).args(args));
    let path = tmp("render", args);
    std::fs::write(&path, out).unwrap();
    path
}

/// A render that must fail: its error text.
fn render_err(args: &[&str]) -> String {
    let out = helm().args(["template", "t1", "helm/tier1"]).args(args).current_dir(ROOT).output().unwrap();
    assert!(!out.status.success(), "helm template {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The newest Kubernetes version kubernetes-validate has schemas for.
fn newest() -> String {
    let out = ok(python().args(["-c", "import kubernetes_validate.utils as u; print(u.latest_version())"]));
    let v = out.trim().to_owned();
    // Newer than 1.30, so the newest render also carries the preStop sleep through validation.
    assert!(v.split('.').nth(1).unwrap().parse::<u32>().unwrap() >= 30, "kubernetes-validate {v} is old");
    v
}

/// The objects of a render, through PyYAML (kubernetes-validate's own parser) as JSON.
pub(crate) fn docs(path: &Path) -> Vec<Value> {
    let script = "import sys, json, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    serde_json::from_str(&ok(python().args(["-c", script]).arg(path))).unwrap()
}

/// `render` at 1.29 and at the newest version, both validated (strict) against their version's
/// schemas in one kubernetes-validate run per version. Returns the newest render's objects.
fn render_validated(batch: &[&[&str]]) -> Vec<Vec<Value>> {
    let newest = newest();
    let mut out = vec![];
    for version in [OLDEST, newest.as_str()] {
        let files: Vec<PathBuf> =
            batch.iter().map(|args| render(&[*args, &["--kube-version", version]].concat())).collect();
        validate(&files, version);
        out = files.iter().map(|f| docs(f)).collect();
    }
    out
}

/// Strict schema validation; the Prometheus Operator's CRDs have no schema there (their structure
/// is asserted by the tests instead), every other object must pass.
fn validate(files: &[PathBuf], version: &str) {
    let mut cmd = tool(Some(".tools/py/bin/kubernetes-validate"), "kubernetes-validate");
    let out = ok(cmd.args(["--strict", "-k", version]).args(files));
    for line in out.lines() {
        let crd = ["ServiceMonitor", "PodMonitor", "PrometheusRule"]
            .iter()
            .any(|k| line.contains(&format!("kind {k} with api version monitoring.coreos.com/v1")));
        assert!(line.starts_with("INFO") || (line.starts_with("WARN") && crd), "{line}");
    }
    let minor = version.rsplit_once('.').unwrap().0;
    for f in files {
        let passed = format!("{} passed", f.display());
        assert!(
            out.lines().any(|l| l.contains(&passed) && l.ends_with(&format!("against version {minor}"))),
            "nothing in {} was validated against {version}:\n{out}",
            f.display()
        );
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {}", serde_json::to_string_pretty(docs).unwrap()))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs.iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect();
    k.sort();
    k
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} {name}"))
}

fn args(c: &Value) -> Vec<&str> {
    c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect()
}

/// The tier1 container's probe contract: `--listen` as the mode wants it, the probe listener on
/// the pod IP, probes and scrape annotations on it.
fn assert_probes(pod_template: &Value, tier1: &Value, listen: &str, port: u16) {
    let a = args(tier1);
    let after = |flag: &str| a[a.iter().position(|x| *x == flag).unwrap() + 1];
    assert_eq!(after("--listen"), listen, "{a:?}");
    assert_eq!(after("--probe-listen"), format!("0.0.0.0:{port}"), "{a:?}");
    let ports = tier1["ports"].as_array().unwrap();
    assert!(ports.iter().any(|p| p["name"] == "probes" && p["containerPort"] == port), "{ports:?}");
    // A loopback API is no container port: nothing outside the pod can reach it.
    assert_eq!(ports.iter().any(|p| p["name"] == "http"), !listen.starts_with("127."), "{ports:?}");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(tier1[probe]["httpGet"]["port"], "probes", "{probe}");
        assert_eq!(tier1[probe]["httpGet"]["path"], path, "{probe}");
    }
    let ann = &pod_template["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/port"], port.to_string());
    assert_eq!(ann["prometheus.io/path"], "/metrics");
}

fn pod(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]
}

#[test]
fn helm_chart_lints_renders_every_mode_and_matches_kubernetes_schemas() {
    for ci in std::fs::read_dir(Path::new(ROOT).join("helm/tier1/ci")).unwrap() {
        let ci = ci.unwrap().path();
        ok(helm().args(["lint", "--strict", "helm/tier1", "-f"]).arg(&ci));
    }
    let ci = ci_values();
    let volumes = [
        "--set-json",
        r#"extraVolumes=[{"name":"redis-tls","secret":{"secretName":"redis-client-tls"}}]"#,
        "--set-json",
        r#"extraVolumeMounts=[{"name":"redis-tls","mountPath":"/etc/tier1-tls/redis","readOnly":true}]"#,
    ];
    let app_args = ["--set", "mode=sidecar", "--set", "app.image=registry.example/front:1.0.0"];
    let monitored =
        ["--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true"];
    let batch: Vec<Vec<&str>> = vec![
        ci.clone(),
        [&ci[..], &["--set", "mode=sidecar"]].concat(),
        [&ci[..], &app_args].concat(),
        [&ci[..], &app_args, &["--set", "sidecar.native=true,podMonitor.enabled=true"]].concat(),
        [&ci[..], &["--set", "autoscaling.enabled=true"]].concat(),
        [&ci[..], &volumes].concat(),
        [&ci[..], &volumes, &app_args].concat(),
        [&ci[..], &monitored].concat(),
        [&ci[..], &["-f", "helm/tier1/examples/omniroute.yaml"]].concat(),
    ];
    let refs: Vec<&[&str]> = batch.iter().map(Vec::as_slice).collect();
    let r = render_validated(&refs);
    let [central, bare, app, native, scaled, mounted, mounted_app, monitored, omni] = &r[..] else {
        panic!()
    };

    assert_eq!(
        kinds(central),
        ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    );
    let d = find(central, "Deployment", "t1-tier1");
    let tier1 = container(pod(d), "containers", "tier1");
    assert_probes(&d["spec"]["template"], tier1, "0.0.0.0:8080", 9901);
    let sc = &tier1["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod(d)["terminationGracePeriodSeconds"], 45);
    // No config checksum on the pods: a ConfigMap edit reloads in place instead of restarting them.
    assert!(!serde_json::to_string(central).unwrap().contains("checksum/config"));
    let svc = find(central, "Service", "t1-tier1");
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics" && p["targetPort"] == "probes")
    );

    // Sidecar mode without an app: only what a parent chart's pods need; no stray example.
    assert_eq!(kinds(bare), ["ConfigMap", "Secret"]);
    for (docs, name, list) in [
        (app, "t1-tier1-app", "containers"),
        (native, "t1-tier1-app", "initContainers"),
        (omni, "t1-tier1-omniroute", "containers"),
    ] {
        assert!(!kinds(docs).contains(&"Service".to_owned()), "sidecar mode renders no Service");
        let d = find(docs, "Deployment", name);
        assert_probes(&d["spec"]["template"], container(pod(d), list, "tier1"), "127.0.0.1:8080", 9901);
    }
    let sidecar_text = std::fs::read_to_string(render(&[&ci[..], &app_args].concat())).unwrap();
    assert!(sidecar_text.contains("\"--listen\", \"127.0.0.1:8080\""), "{sidecar_text}");
    assert!(sidecar_text.contains("BIFROST_BASE_URL"));

    let n = pod(find(native, "Deployment", "t1-tier1-app"));
    let t = container(n, "initContainers", "tier1");
    assert_eq!(t["restartPolicy"], "Always");
    assert_eq!(t["startupProbe"]["httpGet"]["port"], "probes");
    assert!(n["containers"].as_array().unwrap().iter().all(|c| c["name"] != "tier1"));
    let pm = find(native, "PodMonitor", "t1-tier1");
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "probes");
    assert_eq!(pm["spec"]["selector"]["matchLabels"], pod_labels(find(native, "Deployment", "t1-tier1-app")));

    assert!(kinds(scaled).contains(&"HorizontalPodAutoscaler".to_owned()));
    // Extra volumes (certificates for rediss://, server TLS, provider CAs) reach the pod and the
    // tier1 container, in both modes.
    for (docs, name) in [(mounted, "t1-tier1"), (mounted_app, "t1-tier1-app")] {
        let p = pod(find(docs, "Deployment", name));
        assert!(
            p["volumes"].as_array().unwrap().iter().any(|v| v["secret"]["secretName"] == "redis-client-tls")
        );
        let mounts = &container(p, "containers", "tier1")["volumeMounts"];
        assert!(mounts.as_array().unwrap().iter().any(|m| m["mountPath"] == "/etc/tier1-tls/redis"));
    }

    let sm = find(monitored, "ServiceMonitor", "t1-tier1");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    let rule = find(monitored, "PrometheusRule", "t1-tier1");
    assert_eq!(rule["spec"]["groups"], yaml_file("deploy/prometheus/alerts.yml")["groups"]);
    let dash = find(monitored, "ConfigMap", "t1-tier1-dashboard");
    assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dash["data"]["tier1.json"], read("deploy/grafana/tier1.json"));
}

fn pod_labels(d: &Value) -> Value {
    d["spec"]["template"]["metadata"]["labels"].clone()
}

fn read(p: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(p)).unwrap()
}

fn yaml_file(p: &str) -> Value {
    docs(&Path::new(ROOT).join(p)).remove(0)
}

/// Helm reads no file outside the chart: its copies of the alerts and the dashboard must not drift.
#[test]
fn helm_chart_copies_of_the_alerts_and_the_dashboard_match_deploy() {
    let groups = yaml_file("helm/tier1/files/alerts.yml")["groups"].clone();
    assert!(groups.as_array().is_some_and(|g| !g.is_empty()));
    assert_eq!(
        groups,
        yaml_file("deploy/prometheus/alerts.yml")["groups"],
        "copy deploy/prometheus/alerts.yml"
    );
    assert!(
        read("helm/tier1/files/tier1.json") == read("deploy/grafana/tier1.json"),
        "run python3 deploy/grafana/generate.py, which writes both"
    );
}

#[test]
fn helm_chart_conventions_hold_when_rendered() {
    let ci = ci_values();
    let with = |extra: &[&str]| docs(&render(&[&ci[..], extra].concat()));

    // The schema types the values.
    for bad in ["mode=sidcar", "probes.port=abc", "replicaCount=many", "service.port=70000"] {
        let err = render_err(&[&ci[..], &["--set", bad]].concat());
        assert!(err.contains("schema"), "{bad}: {err}");
    }
    assert!(read("helm/tier1/Chart.yaml").contains("kubeVersion: \">=1.29.0-0\""));
    let err = render_err(&["--kube-version", "1.28.0"]);
    assert!(err.contains("kubeVersion"), "{err}");

    // Every secret is required, the error names the key; existingSecret lifts it.
    let err = render_err(&["--set", "secrets.BIFROST_API_KEY=x"]);
    assert!(err.contains("secrets.OPENAI_API_KEY is empty"), "{err}");
    let existing = docs(&render(&["--set", "existingSecret=vault-tier1"]));
    assert!(!kinds(&existing).contains(&"Secret".to_owned()));
    let d = find(&existing, "Deployment", "t1-tier1");
    assert_eq!(container(pod(d), "containers", "tier1")["envFrom"][0]["secretRef"]["name"], "vault-tier1");
    assert!(d["spec"]["template"]["metadata"]["annotations"].get("checksum/secret").is_none());

    // A rotated key changes the pod template (a restart on upgrade); a config edit does not.
    let checksum = |extra: &[&str]| {
        let docs = with(extra);
        find(&docs, "Deployment", "t1-tier1")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let base = checksum(&[]);
    assert_eq!(base.len(), 64);
    assert_ne!(base, checksum(&["--set", "secrets.OPENAI_API_KEY=rotated"]));
    assert_eq!(base, checksum(&["--set", "config=[server]\nlisten = \"0.0.0.0:8080\"\n"]));

    // The pod settings reach the pods and the objects.
    let set = [
        "--set",
        "fullnameOverride=gw,podLabels.team=ai,podAnnotations.note=hi,priorityClassName=critical",
        "--set",
        "serviceAccount.annotations.role=r,serviceMonitor.enabled=true,serviceMonitor.labels.release=kps",
        "--set-json",
        r#"extraEnv=[{"name":"RUST_LOG","value":"debug"}]"#,
        "--set-json",
        r#"imagePullSecrets=[{"name":"regcred"}]"#,
        "--set-json",
        r#"topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"ScheduleAnyway"}]"#,
        "--set",
        "redis.url=redis://redis:6379",
    ];
    let docs = with(&set);
    for kind in ["ConfigMap", "Secret", "Service", "ServiceAccount", "ServiceMonitor", "PodDisruptionBudget"]
    {
        find(&docs, kind, "gw");
    }
    let d = find(&docs, "Deployment", "gw");
    let (meta, p) = (&d["spec"]["template"]["metadata"], pod(d));
    assert_eq!(meta["labels"]["team"], "ai");
    assert_eq!(meta["annotations"]["note"], "hi");
    assert_eq!(p["priorityClassName"], "critical");
    assert_eq!(p["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(p["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(p["serviceAccountName"], "gw");
    assert_eq!(p["automountServiceAccountToken"], false);
    let sa = find(&docs, "ServiceAccount", "gw");
    assert_eq!(sa["automountServiceAccountToken"], false);
    assert_eq!(sa["metadata"]["annotations"]["role"], "r");
    let env = &container(p, "containers", "tier1")["env"];
    assert_eq!(env[0]["name"], "TIER1_REDIS_URL");
    assert_eq!(env[1], serde_json::json!({"name": "RUST_LOG", "value": "debug"}));
    assert_eq!(find(&docs, "ServiceMonitor", "gw")["metadata"]["labels"]["release"], "kps");
    let renamed = with(&["--set", "nameOverride=router"]);
    find(&renamed, "Deployment", "t1-router");
    let byo = with(&["--set", "serviceAccount.create=false,serviceAccount.name=mine"]);
    assert!(!kinds(&byo).contains(&"ServiceAccount".to_owned()));
    assert_eq!(pod(find(&byo, "Deployment", "t1-tier1"))["serviceAccountName"], "mine");

    // The flags, not the user's config, place the listeners: a config that moves them changes no probe.
    let own =
        with(&["--set", "config=[server]\nlisten = \"0.0.0.0:9000\"\nprobe_listen = \"127.0.0.1:1\"\n"]);
    let own = find(&own, "Deployment", "t1-tier1");
    assert_probes(&own["spec"]["template"], container(pod(own), "containers", "tier1"), "0.0.0.0:8080", 9901);
    let moved = with(&["--set", "probes.port=9555"]);
    let moved = find(&moved, "Deployment", "t1-tier1");
    assert_probes(
        &moved["spec"]["template"],
        container(pod(moved), "containers", "tier1"),
        "0.0.0.0:8080",
        9555,
    );

    // preStop sleep only where the kubelet has the sleep action on by default (1.30).
    for (version, has) in [("1.29.0", false), ("1.30.0", true)] {
        let docs = with(&["--kube-version", version]);
        let t = container(pod(find(&docs, "Deployment", "t1-tier1")), "containers", "tier1").clone();
        assert_eq!(t.get("lifecycle").is_some(), has, "{version}");
        if has {
            assert_eq!(t["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
        }
    }

    // A PodMonitor for a parent chart's pods needs their labels.
    let err = render_err(&[&ci[..], &["--set", "mode=sidecar,podMonitor.enabled=true"]].concat());
    assert!(err.contains("podMonitor.selector"), "{err}");
    let pm =
        with(&["--set", "mode=sidecar,podMonitor.enabled=true,podMonitor.selector.matchLabels.app=shop"]);
    assert_eq!(kinds(&pm), ["ConfigMap", "PodMonitor", "Secret"]);
    assert_eq!(find(&pm, "PodMonitor", "t1-tier1")["spec"]["selector"]["matchLabels"]["app"], "shop");
}

/// The OmniRoute example: its key comes from tier1's Secret, whichever Secret that is, and the
/// chart README shows the file in full.
#[test]
fn helm_omniroute_example_takes_the_key_from_tier1s_secret() {
    let example = read("helm/tier1/examples/omniroute.yaml");
    for readme in ["helm/tier1/README.md", "README.md"] {
        assert!(read(readme).contains(&example), "{readme} shows examples/omniroute.yaml in full");
    }
    let ci = ci_values();
    for (extra, secret) in [(&ci[..], "t1-tier1"), (&["--set", "existingSecret=omni-keys"][..], "omni-keys")]
    {
        let docs = docs(&render(&[&["-f", "helm/tier1/examples/omniroute.yaml"], extra].concat()));
        let p = pod(find(&docs, "Deployment", "t1-tier1-omniroute"));
        let omni = container(p, "containers", "omniroute");
        assert!(omni["image"].as_str().unwrap().starts_with("diegosouzapw/omniroute:"));
        assert!(!omni["image"].as_str().unwrap().ends_with(":latest"));
        assert_eq!(omni["ports"][0]["containerPort"], 20128);
        let env = omni["env"].as_array().unwrap();
        let var = |n: &str| env.iter().find(|e| e["name"] == n).unwrap_or_else(|| panic!("no {n}")).clone();
        assert_eq!(var("BIFROST_BASE_URL")["value"], "http://127.0.0.1:8080");
        assert_eq!(var("OMNIROUTE_RELAY_BACKEND")["value"], "auto");
        let key = &var("BIFROST_API_KEY")["valueFrom"]["secretKeyRef"];
        assert_eq!(key["name"], secret);
        assert_eq!(key["key"], "BIFROST_API_KEY");
        assert_eq!(container(p, "containers", "tier1")["envFrom"][0]["secretRef"]["name"], secret);
    }
}

/// A parent chart with tier1 as a dependency, whose own Deployment includes `tier1.sidecar` and
/// `tier1.volumes` as the chart README shows: tier1's image, Secret and ConfigMap, not the parent's.
#[test]
fn helm_parent_chart_runs_tier1_as_its_sidecar() {
    let dir = std::env::temp_dir().join(format!("tier1-helm-parent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    let chart = format!(
        "apiVersion: v2\nname: shop\nversion: 0.1.0\n\
         dependencies:\n  - name: tier1\n    version: \"*\"\n    repository: file://{ROOT}/helm/tier1\n"
    );
    std::fs::write(dir.join("Chart.yaml"), chart).unwrap();
    // The parent's own values look like tier1's, so taking the wrong context would show.
    std::fs::write(dir.join("values.yaml"), "image:\n  repository: registry.example/shop\n  tag: \"9\"\n")
        .unwrap();
    let deploy = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-front
spec:
  selector:
    matchLabels: { app: front }
  template:
    metadata:
      labels: { app: front }
      annotations:
        {{- include "tier1.podAnnotations" .Subcharts.tier1 | nindent 8 }}
    spec:
      {{- if .Values.tier1.sidecar.native }}
      initContainers:
        {{- include "tier1.sidecar" .Subcharts.tier1 | nindent 8 }}
      {{- end }}
      containers:
        - name: front
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
          env:
            - name: BIFROST_BASE_URL
              value: http://127.0.0.1:8080
        {{- if not .Values.tier1.sidecar.native }}
        {{- include "tier1.sidecar" .Subcharts.tier1 | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "tier1.volumes" .Subcharts.tier1 | nindent 8 }}
"#;
    std::fs::write(dir.join("templates/front.yaml"), deploy).unwrap();
    ok_in(helm().args(["dependency", "update", "."]), &dir);

    let base = [
        "--set",
        "tier1.mode=sidecar,tier1.image.repository=registry.example/tier1",
        "--set",
        "tier1.secrets.BIFROST_API_KEY=k,tier1.secrets.OPENAI_API_KEY=o",
    ];
    let template = |extra: &[&str], version: &str| {
        let mut cmd = helm();
        cmd.args(["template", "shop", "."]).args(base).args(extra).args(["--kube-version", version]);
        cmd.current_dir(&dir).output().unwrap()
    };
    let newest = newest();
    for native in [false, true] {
        let flag = format!("tier1.sidecar.native={native}");
        let mut objects = vec![];
        for version in [OLDEST, newest.as_str()] {
            let out = template(&["--set", &flag], version);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let file = tmp(&format!("parent-{native}"), &[version]);
            std::fs::write(&file, &out.stdout).unwrap();
            validate(std::slice::from_ref(&file), version);
            objects = docs(&file);
        }
        assert_eq!(kinds(&objects), ["ConfigMap", "Deployment", "Secret"], "native={native}");
        let secret = find(&objects, "Secret", "shop-tier1");
        find(&objects, "ConfigMap", "shop-tier1");
        assert_eq!(secret["stringData"]["BIFROST_API_KEY"], "k");
        let d = find(&objects, "Deployment", "shop-front");
        let p = pod(d);
        let list = if native { "initContainers" } else { "containers" };
        let t = container(p, list, "tier1");
        assert_eq!(t["image"], "registry.example/tier1:0.1.0");
        assert_eq!(t["envFrom"][0]["secretRef"]["name"], "shop-tier1");
        assert_eq!(p["volumes"][0]["configMap"]["name"], "shop-tier1");
        assert_eq!(container(p, "containers", "front")["image"], "registry.example/shop:9");
        assert_probes(&d["spec"]["template"], t, "127.0.0.1:8080", 9901);
        assert_eq!(t.get("restartPolicy").is_some(), native);
    }

    // Native sidecars need 1.29 (the parent chart's kubeVersion is its own business).
    let out = template(&["--set", "tier1.sidecar.native=true"], "1.28.0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("sidecar.native needs Kubernetes >= 1.29"), "{err}");
    // The parent's context, or the old dict form, fails with the way to call it.
    for wrong in ["$", r#"(dict "root" $ "listen" "127.0.0.1:8080")"#] {
        let front = dir.join("templates/front.yaml");
        std::fs::write(
            &front,
            deploy.replace(r#""tier1.volumes" .Subcharts.tier1"#, &format!("\"tier1.volumes\" {wrong}")),
        )
        .unwrap();
        let out = template(&[], newest.as_str());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(".Subcharts.tier1"), "{wrong}: {err}");
    }
    // Without mode=sidecar tier1 would listen on the pod IP: refused.
    std::fs::write(dir.join("templates/front.yaml"), deploy).unwrap();
    let mut cmd = helm();
    let out = cmd
        .args([
            "template",
            "shop",
            ".",
            "--set",
            "tier1.secrets.BIFROST_API_KEY=k,tier1.secrets.OPENAI_API_KEY=o",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode to sidecar"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// NOTES.txt as `helm install` prints it (`helm template` skips it, and a dry-run install needs a
/// cluster): a copy of the chart renders it through `tpl` into a ConfigMap.
fn notes(args: &[&str]) -> String {
    let dir = crate::TempDir::new(&format!("notes-{:x}", {
        let mut h = DefaultHasher::new();
        args.hash(&mut h);
        h.finish()
    }));
    let chart = dir.0.join("tier1");
    ok(Command::new("cp").args(["-r", "helm/tier1"]).arg(&chart));
    std::fs::copy(chart.join("templates/NOTES.txt"), chart.join("notes.tpl")).unwrap();
    std::fs::write(
        chart.join("templates/zz-notes.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ tpl (.Files.Get \"notes.tpl\") . | quote }}\n",
    )
    .unwrap();
    let out = ok(helm()
        .args(["template", "t1"])
        .arg(&chart)
        .args(["--show-only", "templates/zz-notes.yaml"])
        .args(ci_values())
        .args(args));
    let path = dir.0.join("notes.yaml");
    std::fs::write(&path, out).unwrap();
    docs(&path)[0]["data"]["notes"].as_str().unwrap().to_owned()
}

#[test]
fn helm_notes_say_where_tier1_is_in_every_mode() {
    let central = notes(&[]);
    assert!(central.contains("BIFROST_BASE_URL=http://t1-tier1.default:8080"), "{central}");
    let omni = notes(&["-f", "helm/tier1/examples/omniroute.yaml"]);
    assert!(omni.contains("tier1 runs beside omniroute in each pod of t1-tier1-omniroute"), "{omni}");
    let native = notes(&["-f", "helm/tier1/examples/omniroute.yaml", "--set", "sidecar.native=true"]);
    assert!(native.contains("(a native sidecar)"), "{native}");
    let parent = notes(&["--set", "mode=sidecar"]);
    assert!(parent.contains("{{- include \"tier1.sidecar\" .Subcharts.tier1 | nindent 4 }}"), "{parent}");
    for n in [&central, &omni, &native, &parent] {
        assert!(n.contains("on port 9901 of the pod IP"), "{n}");
    }
}
