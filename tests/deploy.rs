//! Deployment files, validated with the real tools (no Docker engine needed): every compose
//! profile combination with the Compose v2 CLI, the Helm chart linted, rendered in both modes and
//! checked against Kubernetes schemas, the Caddyfile with a current Caddy, and the Dockerfile's
//! inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A tool installed by scripts/test.sh under .tools/, or on PATH.
fn tool(local: &str, name: &str) -> Command {
    let p = Path::new(ROOT).join(local);
    if p.exists() {
        return Command::new(p);
    }
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed: run scripts/test.sh, which installs it under .tools/"
    );
    Command::new(name)
}

fn ok(cmd: &mut Command) -> String {
    ok_in(cmd, Path::new(ROOT))
}

fn ok_in(cmd: &mut Command, dir: &Path) -> String {
    let out = cmd.current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn compose_config_is_valid_for_every_profile_combination() {
    let combos: [&[&str]; 8] = [
        &["bifrost", "front"],
        &["bifrost"],
        &["cluster"],
        &["cluster", "demo"],
        &["monitoring"],
        &["demo"],
        &["bifrost", "monitoring", "demo"],
        &["bifrost", "cluster", "monitoring", "demo"],
    ];
    for profiles in combos {
        let mut cmd = tool(".tools/compose/bin/docker-compose", "docker-compose");
        cmd.args(["-f", "compose/docker-compose.yml"]);
        for p in profiles {
            cmd.args(["--profile", p]);
        }
        cmd.args(["config", "--format", "json"]);
        let out = ok(&mut cmd);
        let json = &out[out.find('{').unwrap()..];
        let v: serde_json::Value =
            serde_json::from_str(json.trim_end()).unwrap_or_else(|e| panic!("{profiles:?}: {e}"));
        let services = v["services"].as_object().unwrap();
        if profiles.contains(&"bifrost") {
            let b = &services["bifrost"];
            assert_eq!(b["ports"][0]["published"], "8080");
            assert!(b["healthcheck"]["test"].to_string().contains("health"));
            assert_eq!(b["restart"], "unless-stopped");
            assert!(services.contains_key("redis"));
        }
        if profiles.contains(&"cluster") {
            for s in ["caddy", "tier1-1", "tier1-2", "tier1-3", "redis"] {
                assert!(services.contains_key(s), "{profiles:?} lacks {s}");
            }
        }
        if profiles.contains(&"front") {
            let f = &services["omniroute"];
            assert_eq!(f["environment"]["BIFROST_BASE_URL"], "http://bifrost:8080");
            assert_eq!(f["environment"]["OMNIROUTE_RELAY_BACKEND"], "auto");
        }
        if profiles.contains(&"demo") {
            assert!(services["mock-upstream"]["command"].to_string().contains("mock-upstream"));
        }
    }
}

#[test]
fn compose_merges_into_another_projects_file() {
    // docker compose -f their.yml -f <tier1>/compose/docker-compose.yml --profile bifrost up
    let dir = std::env::temp_dir().join(format!("tier1-their-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let theirs = "services:\n  front:\n    image: example/front\n    environment:\n      BIFROST_BASE_URL: http://bifrost:8080\n";
    std::fs::write(dir.join("their.yml"), theirs).unwrap();
    let ours = Path::new(ROOT).join("compose/docker-compose.yml");
    let out = ok_in(
        tool(".tools/compose/bin/docker-compose", "docker-compose").env("TIER1_DIR", ROOT).args([
            "-f",
            "their.yml",
            "-f",
            ours.to_str().unwrap(),
            "--profile",
            "bifrost",
            "config",
            "--format",
            "json",
        ]),
        &dir,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let v: serde_json::Value = serde_json::from_str(out[out.find('{').unwrap()..].trim_end()).unwrap();
    assert!(v["services"]["front"].is_object() && v["services"]["bifrost"].is_object());
    let b = &v["services"]["bifrost"];
    assert_eq!(b["volumes"][0]["source"], format!("{ROOT}/config/compose.toml"));
    assert_eq!(b["build"]["context"], ROOT);
}

fn helm() -> Command {
    tool(".tools/bin/helm", "helm")
}

fn render(args: &[&str]) -> PathBuf {
    let mut cmd = helm();
    cmd.args(["template", "t1", "helm/tier1"]).args(args);
    let out = ok(&mut cmd);
    let path = std::env::temp_dir().join(format!(
        "tier1-helm-{}-{}.yaml",
        std::process::id(),
        args.join("_").replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn helm_chart_lints_renders_both_modes_and_matches_kubernetes_schemas() {
    ok(helm().args(["lint", "--strict", "helm/tier1"]));
    let central = render(&[]);
    let sidecar = render(&["--set", "mode=sidecar"]);
    let scaled = render(&["--set", "autoscaling.enabled=true"]);
    let volumes = [
        "--set-json",
        r#"extraVolumes=[{"name":"redis-tls","secret":{"secretName":"redis-client-tls"}}]"#,
        "--set-json",
        r#"extraVolumeMounts=[{"name":"redis-tls","mountPath":"/etc/tier1-tls/redis","readOnly":true}]"#,
    ];
    let mounted = render(&volumes);
    let mounted_sidecar = render(&[&volumes[..], &["--set", "mode=sidecar"]].concat());
    for f in [&central, &sidecar, &scaled, &mounted, &mounted_sidecar] {
        let out = ok(tool(".tools/py/bin/kubernetes-validate", "kubernetes-validate").arg("--strict").arg(f));
        assert!(!out.contains("ERROR"), "{out}");
    }
    let central = std::fs::read_to_string(central).unwrap();
    for kind in
        ["kind: Deployment", "kind: Service", "kind: ConfigMap", "kind: Secret", "kind: PodDisruptionBudget"]
    {
        assert!(central.contains(kind), "central mode lacks {kind}");
    }
    for needle in [
        "path: /healthz",
        "path: /readyz",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "drop: [\"ALL\"]",
        "preStop:",
        "terminationGracePeriodSeconds: 45",
    ] {
        assert!(central.contains(needle), "central mode lacks {needle}");
    }
    // No config checksum on the pods: a ConfigMap edit reloads in place instead of restarting them.
    assert!(!central.contains("checksum/config"));
    let sidecar = std::fs::read_to_string(sidecar).unwrap();
    assert!(sidecar.contains("\"--listen\", \"127.0.0.1:8080\""), "{sidecar}");
    assert!(sidecar.contains("BIFROST_BASE_URL"));
    assert!(!sidecar.contains("kind: Service\n"), "sidecar mode renders no Service");
    assert!(std::fs::read_to_string(scaled).unwrap().contains("kind: HorizontalPodAutoscaler"));
    // Extra volumes (certificates for rediss://, server TLS, provider CAs) reach the pod and the
    // tier1 container, in both modes.
    for f in [mounted, mounted_sidecar] {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains("secretName: redis-client-tls"), "{text}");
        assert!(text.contains("mountPath: /etc/tier1-tls/redis"), "{text}");
    }
}

#[test]
fn caddyfile_validates_with_a_current_caddy() {
    let out = ok(tool(".tools/py/bin/caddy", "caddy").args(["version"]));
    assert!(out.starts_with("v2.") && !out.starts_with("v2.6."), "Caddy too old for POST retries: {out}");
    // As compose runs it (service names) and as the loopback test runs it (addresses).
    ok(tool(".tools/py/bin/caddy", "caddy").args([
        "validate",
        "--config",
        "compose/Caddyfile",
        "--adapter",
        "caddyfile",
    ]));
    ok(tool(".tools/py/bin/caddy", "caddy")
        .args(["validate", "--config", "compose/Caddyfile", "--adapter", "caddyfile"])
        .env("TIER1_UPSTREAMS", "127.0.0.1:18001 127.0.0.1:18002")
        .env("TIER1_PORT", "18000"));
}

#[test]
fn dockerfile_inputs_exist_and_the_image_config_is_valid() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("deploy/Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(Path::new(ROOT).join(src).exists(), "Dockerfile copies missing {src}");
        }
    }
    for needle in ["USER nonroot", "EXPOSE 8080", "HEALTHCHECK", "\"health\"", "--locked"] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
    }
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    for needed in ["src", "config", "Cargo.toml", "Cargo.lock", "deploy"] {
        assert!(!ignore.lines().any(|l| l.trim() == needed), ".dockerignore drops {needed}");
    }
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/tier1.container.toml")).unwrap();
    let env = std::collections::HashMap::from([("TIER1_API_KEY".to_owned(), "front-key".to_owned())]);
    let c = tier1::config::parse(&text, tier1::config::Format::Toml, &env).unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    // The compose config is valid with the .env.example values.
    let env: std::collections::HashMap<String, String> =
        std::fs::read_to_string(Path::new(ROOT).join("compose/.env.example"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').filter(|_| !l.starts_with('#')))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let text = std::fs::read_to_string(Path::new(ROOT).join("config/compose.toml")).unwrap();
    tier1::config::parse(&text, tier1::config::Format::Toml, &env).unwrap();
}

/// Every shipped config (the image's, compose's, the run-local variant, Helm's in both modes, the
/// demo and the reference) has keys or listens on loopback only, for the API and the admin
/// routes, with the listen address each deployment really passes (`--listen`); a config that
/// opts out with `allow_unauthenticated = true` must say why on the line above.
#[test]
fn every_shipped_config_has_keys_or_loopback_only() {
    let env: std::collections::HashMap<String, String> = [
        "BIFROST_API_KEY",
        "OPENAI_API_KEY",
        "OPENAI_API_KEY_2",
        "GROQ_API_KEY",
        "OPENROUTER_API_KEY",
        "DEEPSEEK_API_KEY",
        "TIER1_ADMIN_KEY",
        "TIER1_API_KEY",
        "ANTHROPIC_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "GEMINI_API_KEY",
    ]
    .into_iter()
    .map(|k| (k.to_owned(), format!("{k}-value")))
    .chain([("TIER1_REDIS_URL".to_owned(), "redis://127.0.0.1:6379".to_owned())])
    .collect();
    let read = |p: &str| std::fs::read_to_string(Path::new(ROOT).join(p)).unwrap();
    // Helm's config is the `config: |` block of values.yaml.
    let values = read("helm/tier1/values.yaml");
    let helm: String = values
        .split_once("config: |\n")
        .unwrap()
        .1
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("  "))
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    let helpers = read("helm/tier1/templates/_helpers.tpl");
    assert!(helpers.contains("--listen"), "the chart passes --listen");
    // compose/run-local.sh's edits of compose.toml, without a front key (the open variant).
    let run_local = read("compose/run-local.sh");
    for edit in [
        "s#^listen = .*#listen = \"127.0.0.1:8080\"#",
        "api_keys = []",
        "admin_listen = \\\"127.0.0.1:1809$i",
    ] {
        assert!(run_local.contains(edit), "run-local.sh lacks {edit}");
    }
    let local: String = read("config/compose.toml")
        .lines()
        .map(|l| match l {
            l if l.starts_with("listen = ") => "listen = \"127.0.0.1:8080\"".to_owned(),
            l if l.starts_with("api_keys = ") => "api_keys = []".to_owned(),
            l if l.starts_with("admin_listen = ") => "admin_listen = \"127.0.0.1:18091\"".to_owned(),
            l => l.to_owned(),
        })
        .map(|l| l + "\n")
        .collect();
    // (name, text, the --listen the deployment passes, if any)
    let configs = [
        ("deploy/tier1.container.toml", read("deploy/tier1.container.toml"), None),
        ("config/compose.toml", read("config/compose.toml"), None),
        ("compose/run-local.sh", local, Some("127.0.0.1:18081")),
        ("helm central", helm.clone(), Some("0.0.0.0:8080")),
        ("helm sidecar", helm, Some("127.0.0.1:8080")),
        ("config/demo.toml", read("config/demo.toml"), None),
        ("config/tier1.example.toml", read("config/tier1.example.toml"), None),
    ];
    for (name, text, listen) in configs {
        let c = tier1::config::parse(&text, tier1::config::Format::Toml, &env)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let listen = listen.map_or(c.server.listen, |l| l.parse().unwrap());
        let open = tier1::config::open_surfaces(&c.server, listen, c.server.admin_listen);
        assert!(open.is_empty(), "{name} is open: {open:?}");
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.trim_start().starts_with("allow_unauthenticated") && l.contains("true") {
                assert!(
                    i > 0 && lines[i - 1].trim_start().starts_with('#'),
                    "{name}: allow_unauthenticated without a reason"
                );
            }
        }
    }
}
