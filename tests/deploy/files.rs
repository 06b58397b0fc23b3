//! The Caddyfile, the Dockerfile and every shipped config.

use std::path::Path;

use crate::{ROOT, ok, tool};

#[test]
fn caddyfile_validates_with_a_current_caddy() {
    let out = ok(tool(Some(".tools/py/bin/caddy"), "caddy").args(["version"]));
    assert!(out.starts_with("v2.") && !out.starts_with("v2.6."), "Caddy too old for POST retries: {out}");
    // As compose runs it (service names) and as the loopback test runs it (addresses).
    ok(tool(Some(".tools/py/bin/caddy"), "caddy").args([
        "validate",
        "--config",
        "compose/Caddyfile",
        "--adapter",
        "caddyfile",
    ]));
    ok(tool(Some(".tools/py/bin/caddy"), "caddy")
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
    let c = tier1::testing::config::parse(&text, tier1::testing::config::Format::Toml, &env).unwrap();
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
    tier1::testing::config::parse(&text, tier1::testing::config::Format::Toml, &env).unwrap();
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
    // Its URL rewrites still find the compose service names they replace.
    let compose = read("config/compose.toml");
    let urls: Vec<&str> = run_local
        .split("s#")
        .skip(1)
        .filter_map(|e| e.split('#').next())
        .filter(|u| u.starts_with("http://"))
        .collect();
    assert!(!urls.is_empty(), "run-local.sh points compose.toml at its loopback mock");
    for url in urls {
        assert!(compose.contains(url), "run-local.sh rewrites {url}, which config/compose.toml lacks");
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
        ("config/compose-demo.toml", read("config/compose-demo.toml"), None),
        ("compose/run-local.sh", local, Some("127.0.0.1:18081")),
        ("helm central", helm.clone(), Some("0.0.0.0:8080")),
        ("helm sidecar", helm, Some("127.0.0.1:8080")),
        ("config/demo.toml", read("config/demo.toml"), None),
        ("config/tier1.example.toml", read("config/tier1.example.toml"), None),
    ];
    for (name, text, listen) in configs {
        let c = tier1::testing::config::parse(&text, tier1::testing::config::Format::Toml, &env)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let listen = listen.map_or(c.server.listen, |l| l.parse().unwrap());
        let open = tier1::testing::config::open_surfaces(&c.server, listen, c.server.admin_listen);
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
