//! The compose file, with the Compose v2 CLI: every profile combination, the merge into a
//! stand-in of OmniRoute's own compose file (their services unchanged, ours added), and the
//! keyless demo started as processes from the rendered config, answering the README's curls.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{ROOT, TempDir, ok_in, tool};

fn compose() -> Command {
    tool(Some(".tools/compose/bin/docker-compose"), "docker-compose")
}

/// `docker-compose -f FILES.. --profile P.. config --format json` run in `dir`, with `env`.
fn config(dir: &Path, files: &[&str], profiles: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = compose();
    for f in files {
        cmd.args(["-f", f]);
    }
    for p in profiles {
        cmd.args(["--profile", p]);
    }
    cmd.args(["config", "--format", "json"]).envs(env.iter().copied());
    let out = ok_in(&mut cmd, dir);
    serde_json::from_str(out[out.find('{').unwrap()..].trim_end())
        .unwrap_or_else(|e| panic!("{files:?} {profiles:?}: {e}"))
}

fn ours() -> String {
    Path::new(ROOT).join("compose/docker-compose.yml").display().to_string()
}

#[test]
fn compose_config_is_valid_for_every_profile_combination() {
    let combos: [&[&str]; 8] = [
        &["bifrost"],
        &["cluster"],
        &["cluster", "demo"],
        &["monitoring"],
        &["demo"],
        &["bifrost", "monitoring"],
        &["bifrost", "monitoring", "demo"],
        &["bifrost", "cluster", "monitoring", "demo"],
    ];
    for profiles in combos {
        let v = config(Path::new(ROOT), &["compose/docker-compose.yml"], profiles, &[]);
        // No top-level `name`: the project keeps the name it would have had (here the dir's).
        assert_eq!(v["name"], "compose", "{profiles:?}");
        let services = v["services"].as_object().unwrap();
        for (name, s) in services {
            // Names that cannot take over a service of the project we are merged into.
            assert!(name == "bifrost" || name.starts_with("tier1-"), "{profiles:?}: service {name}");
            assert!(s.get("container_name").is_none(), "{name} fixes a container_name");
            for p in s["ports"].as_array().into_iter().flatten() {
                assert_eq!(p["host_ip"], "127.0.0.1", "{profiles:?}: {name} publishes {p} beyond loopback");
            }
        }
        if profiles.contains(&"bifrost") {
            let b = &services["bifrost"];
            assert_eq!(b["ports"][0]["published"], "8080");
            assert!(b["healthcheck"]["test"].to_string().contains("health"));
            assert_eq!(b["restart"], "unless-stopped");
            assert!(services.contains_key("tier1-redis"));
        }
        if profiles.contains(&"cluster") {
            for s in ["tier1-caddy", "tier1-1", "tier1-2", "tier1-3", "tier1-redis"] {
                assert!(services.contains_key(s), "{profiles:?} lacks {s}");
            }
        }
        if profiles.contains(&"demo") {
            assert!(services["tier1-mock"]["command"].to_string().contains("mock-upstream"));
            assert_eq!(services["tier1-demo"]["ports"][0]["published"], "8088");
        }
    }
    // TIER1_BIND exposes the ports on purpose.
    let v =
        config(Path::new(ROOT), &["compose/docker-compose.yml"], &["bifrost"], &[("TIER1_BIND", "0.0.0.0")]);
    assert_eq!(v["services"]["bifrost"]["ports"][0]["host_ip"], "0.0.0.0");
}

/// A stand-in of OmniRoute's own compose file: its project name, its front, its own Redis with
/// persistence, fixed container names and a named volume.
const OMNIROUTE: &str = r#"name: omniroute
services:
  omniroute:
    image: diegosouzapw/omniroute:3.7.9
    container_name: omniroute
    restart: unless-stopped
    ports:
      - "20128:20128"
    environment:
      BIFROST_BASE_URL: http://bifrost:8080
      OMNIROUTE_RELAY_BACKEND: auto
      REDIS_URL: redis://redis:6379
    depends_on:
      - redis
  redis:
    image: redis:7-alpine
    container_name: omniroute-redis
    command: redis-server --appendonly yes
    volumes:
      - redis-data:/data
volumes:
  redis-data: {}
"#;

#[test]
fn compose_merges_into_omniroutes_file_without_changing_it() {
    // TIER1_DIR=<tier1> docker compose -f their.yml -f <tier1>/compose/docker-compose.yml --profile bifrost up
    let dir = TempDir::new("their");
    std::fs::write(dir.0.join("their.yml"), OMNIROUTE).unwrap();
    let env = [("TIER1_DIR", ROOT)];
    let theirs = config(&dir.0, &["their.yml"], &[], &env);
    let ours = ours();
    for profiles in [&["bifrost"][..], &["bifrost", "monitoring", "demo"], &["bifrost", "cluster"]] {
        let merged = config(&dir.0, &["their.yml", &ours], profiles, &env);
        assert_eq!(merged["name"], "omniroute", "{profiles:?}: their project was renamed");
        for (name, service) in theirs["services"].as_object().unwrap() {
            assert_eq!(&merged["services"][name], service, "{profiles:?}: their {name} changed");
        }
        assert_eq!(merged["volumes"], theirs["volumes"], "{profiles:?}: their volumes changed");
        let b = &merged["services"]["bifrost"];
        assert_eq!(b["volumes"][0]["source"], format!("{ROOT}/config/compose.toml"));
        assert_eq!(b["build"]["context"], ROOT);
        assert!(merged["services"]["tier1-redis"].is_object(), "{profiles:?}");
        assert!(b["depends_on"]["tier1-redis"].is_object(), "bifrost waits for our Redis, not theirs");
    }
    // Our OmniRoute example merges the same way and relays to bifrost in auto mode.
    let example = Path::new(ROOT).join("compose/omniroute.example.yml").display().to_string();
    let merged = config(Path::new(ROOT), &[&example, &ours], &["bifrost"], &env);
    let front = &merged["services"]["omniroute"];
    assert_eq!(front["environment"]["BIFROST_BASE_URL"], "http://bifrost:8080");
    assert_eq!(front["environment"]["OMNIROUTE_RELAY_BACKEND"], "auto");
    assert_eq!(front["ports"][0]["host_ip"], "127.0.0.1");
    assert!(front["depends_on"]["bifrost"].is_object());
}

/// A network namespace for a compose stand-in: its loopback only; deleted on drop with every
/// process started in it.
struct Stack {
    ns: String,
    children: Vec<Child>,
    dir: TempDir,
}

impl Stack {
    fn exec(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]);
        cmd
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The README's curls for the compose demo: the fenced block after its marker, continuation
/// lines joined.
fn readme_demo_curls() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let marker = "# The first stack: offline, no .env";
    let block = &readme[readme.find(marker).expect("the README's compose demo block")..];
    let block = &block[..block.find("```").unwrap()];
    let joined = block.replace("\\\n", " ");
    assert!(joined.contains("docker compose -f compose/docker-compose.yml --profile demo up"), "{block}");
    joined.lines().map(str::trim).filter(|l| l.starts_with("curl ")).map(str::to_owned).collect()
}

#[test]
fn the_keyless_demo_answers_the_readmes_curls_with_no_env_file() {
    let v = config(Path::new(ROOT), &["compose/docker-compose.yml"], &["demo"], &[]);
    let services = v["services"].as_object().unwrap();
    let names: Vec<&String> = services.keys().collect();
    assert_eq!(names, ["tier1-demo", "tier1-mock"], "what `--profile demo up` starts");
    // Each service its own loopback address in the stack's namespace; its name resolves to it.
    let addr: BTreeMap<&str, String> =
        names.iter().enumerate().map(|(i, n)| (n.as_str(), format!("127.0.0.{}", i + 2))).collect();
    let rewrite = |text: &str, own: &str| {
        let mut t = text.replace("0.0.0.0:", &format!("{own}:"));
        for (name, a) in &addr {
            t = t.replace(&format!("//{name}:"), &format!("//{a}:"));
        }
        t
    };
    let ns = format!("t1demo-{}", std::process::id());
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success(), "ip netns add");
    let mut stack = Stack { ns, children: vec![], dir: TempDir::new("demo") };
    assert!(stack.exec().args(["ip", "link", "set", "lo", "up"]).status().unwrap().success());
    for (name, s) in services {
        // Both run the tier1 image, whose entrypoint is the binary.
        assert_eq!(s["image"], "tier1:local", "{name}");
        assert!(s.get("env_file").is_none(), "{name} reads an env file: the demo needs none");
        let own = &addr[name.as_str()];
        let mut env: Vec<(String, String)> = vec![];
        for (k, val) in s["environment"].as_object().into_iter().flatten() {
            env.push((k.clone(), val.as_str().unwrap().to_owned()));
        }
        // Mounted files: rewritten copies (service names and 0.0.0.0 to the stack's addresses).
        for vol in s["volumes"].as_array().into_iter().flatten() {
            let text = std::fs::read_to_string(vol["source"].as_str().unwrap()).unwrap();
            assert!(!text.contains("env:"), "{name}: the demo's config reads no secret");
            let copy = stack.dir.0.join(format!("{name}.toml"));
            std::fs::write(&copy, rewrite(&text, own)).unwrap();
            for (_, val) in env.iter_mut().filter(|(_, val)| val == vol["target"].as_str().unwrap()) {
                *val = copy.display().to_string();
            }
        }
        let args: Vec<String> = s["command"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| rewrite(a.as_str().unwrap(), own))
            .collect();
        let log = std::fs::File::create(stack.dir.0.join(format!("{name}.log"))).unwrap();
        let child = stack
            .exec()
            .arg(env!("CARGO_BIN_EXE_tier1"))
            .args(&args)
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        stack.children.push(child);
    }
    // The published port maps to the container's port on the demo's address.
    let port = &services["tier1-demo"]["ports"][0];
    let published = format!("localhost:{}", port["published"].as_str().unwrap());
    let inside = format!("{}:{}", addr["tier1-demo"], port["target"]);
    let curl = |cmd: &str| {
        let out = stack.exec().args(["timeout", "10", "bash", "-c", cmd]).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let logs = || {
        names
            .iter()
            .map(|n| std::fs::read_to_string(stack.dir.0.join(format!("{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ready = (0..200).any(|_| {
        let up = curl(&format!("curl -sf http://{inside}/readyz")).0
            && curl(&format!("curl -sf http://{}:9090/v1/models", addr["tier1-mock"])).0;
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    });
    assert!(ready, "the demo stack did not come up\n{}", logs());
    let curls = readme_demo_curls();
    assert!(curls.len() >= 3, "{curls:?}");
    let mut answered = [false; 3];
    for c in &curls {
        assert!(c.contains(&published), "{c} targets the demo's published port {published}");
        let (ok, out) = curl(&c.replace(&published, &inside));
        assert!(ok, "{c}: {out}\n{}", logs());
        if c.contains("\"stream\":true") {
            assert!(
                out.contains("Hello from tier1's mock provider") || out.contains("\"content\":\""),
                "{out}"
            );
            assert!(out.ends_with("data: [DONE]\n\n"), "{c}: {out}");
            answered[1] = true;
        } else if c.contains("/v1/chat/completions") {
            let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{c}: {e}: {out}"));
            let content = v["choices"][0]["message"]["content"].as_str().unwrap();
            assert!(content.contains("mock provider"), "{out}");
            answered[0] = true;
        } else if c.contains("/v1/models") {
            assert!(out.contains("\"demo\""), "{out}");
            answered[2] = true;
        }
    }
    assert_eq!(answered, [true; 3], "the README shows a completion, a stream and the model list");
}

/// Every host a mounted file names (`scheme://host:`, Prometheus `targets`) is a service of the
/// stack, so a rename cannot leave a dangling name behind (Grafana's data source kept pointing at
/// `prometheus` after the service became `tier1-prometheus`).
#[test]
fn every_host_a_mounted_file_names_is_a_service_of_ours() {
    let all = ["bifrost", "cluster", "monitoring", "demo"];
    let v = config(Path::new(ROOT), &["compose/docker-compose.yml"], &all, &[]);
    let services = v["services"].as_object().unwrap();
    let mut files = vec![];
    for s in services.values() {
        for vol in s["volumes"].as_array().into_iter().flatten() {
            let src = Path::new(vol["source"].as_str().unwrap()).to_owned();
            let mut stack = vec![src];
            while let Some(p) = stack.pop() {
                if p.is_dir() {
                    stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                } else {
                    files.push(p);
                }
            }
        }
    }
    let mut hosts = vec![];
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for (i, _) in text.match_indices("://") {
            let rest = &text[i + 3..];
            let host: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').collect();
            if rest[host.len()..].starts_with(':') {
                hosts.push((f.clone(), host));
            }
        }
        for line in text.lines().filter(|l| l.trim_start().starts_with("- targets:")) {
            for t in line.split('"').skip(1).step_by(2) {
                hosts.push((f.clone(), t.split(':').next().unwrap().to_owned()));
            }
        }
    }
    for (file, host) in &hosts {
        let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok();
        assert!(local || services.contains_key(host), "{} names {host}, which is no service", file.display());
    }
    assert!(
        hosts.iter().any(|(_, h)| h == "tier1-prometheus"),
        "Grafana's data source is checked: {hosts:?}"
    );
}
