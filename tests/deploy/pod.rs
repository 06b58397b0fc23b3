//! The Helm sidecar as a kubelet sees it: a network namespace stands in for the pod (its own
//! loopback, and a veth pair to the host side, torn down at the end), tier1 runs inside it with
//! the rendered container's args, environment and ConfigMap, and the test plays the kubelet and
//! the scraper from outside, at the pod IP, with the probes and the scrape annotations exactly as
//! rendered. The API must answer on the pod's loopback (where the front reaches it) and nowhere
//! else. This is the test that would have caught the sidecar whose probes could not reach it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::TempDir;
use crate::helm::{ci_values, docs, render};

/// A network namespace with a veth pair to the host side; deleted (with the pair) on drop.
struct Pod {
    name: String,
    host_ip: String,
    pod_ip: String,
    dir: TempDir,
    child: Option<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2 is installed (scripts/test.sh)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pod {
    fn new(tag: &str) -> Self {
        // A /30 of 10.254.0.0/16 per process and pod, so parallel runs never share an address.
        let n = (std::process::id() % 8000) * 2 + u32::from(tag == "native");
        let (a, b) = (n / 64, (n % 64) * 4);
        let name = format!("t1pod-{tag}-{}", std::process::id());
        let host_if = format!("t1h{n}");
        let pod_if = format!("t1p{n}");
        let pod = Self {
            host_ip: format!("10.254.{a}.{}", b + 1),
            pod_ip: format!("10.254.{a}.{}", b + 2),
            dir: TempDir::new(&name),
            name,
            child: None,
        };
        ip(&["netns", "add", &pod.name]);
        ip(&["-n", &pod.name, "link", "set", "lo", "up"]);
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &pod_if]);
        ip(&["link", "set", &pod_if, "netns", &pod.name]);
        ip(&["addr", "add", &format!("{}/30", pod.host_ip), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &pod.name, "addr", "add", &format!("{}/30", pod.pod_ip), "dev", &pod_if]);
        ip(&["-n", &pod.name, "link", "set", &pod_if, "up"]);
        pod
    }

    /// Runs `program args` inside the pod with `env` only (as a container starts).
    fn start(&mut self, program: &str, args: &[String], env: &[(String, String)]) {
        let log = std::fs::File::create(self.dir.0.join("tier1.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .env_clear()
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("tier1.log")).unwrap_or_default()
    }

    /// An HTTP GET from inside the pod (the front's view), through `curl`-free raw HTTP/1.1.
    fn get_inside(&self, addr: &str, path: &str) -> Option<(u16, String)> {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{} && printf 'GET {path} HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3",
            addr.rsplit_once(':').unwrap().0,
            addr.rsplit_once(':').unwrap().1
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "timeout", "5", "bash", "-c", &script])
            .output()
            .unwrap();
        parse(&String::from_utf8_lossy(&out.stdout))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespace deletes the pod end of the pair, and with it the host end.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn parse(raw: &str) -> Option<(u16, String)> {
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// A GET from the host side (the kubelet's and the scraper's view); `None`: no connection.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    parse(&raw)
}

/// The rendered tier1 container of `list` (`containers` or `initContainers`) and the whole pod.
fn tier1_container<'a>(pod: &'a Value, list: &str) -> &'a Value {
    pod[list].as_array().unwrap().iter().find(|c| c["name"] == "tier1").expect("a tier1 container")
}

/// What the kubelet would start: the container's args with its mounts mapped into `dir` (the
/// ConfigMap's keys written there, as the kubelet projects them), and its environment from the
/// rendered Secret and `env`.
fn container_process(
    objects: &[Value],
    pod: &Value,
    tier1: &Value,
    dir: &Path,
) -> (Vec<String>, Vec<(String, String)>) {
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the render has no {kind} {name}"))
    };
    let mut mounts = vec![];
    for m in tier1["volumeMounts"].as_array().unwrap() {
        let vol = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == m["name"]).unwrap();
        let Some(cm) = vol["configMap"]["name"].as_str() else { continue };
        let local = dir.join(m["name"].as_str().unwrap());
        std::fs::create_dir_all(&local).unwrap();
        for (key, text) in find("ConfigMap", cm)["data"].as_object().unwrap() {
            std::fs::write(local.join(key), text.as_str().unwrap()).unwrap();
        }
        mounts.push((m["mountPath"].as_str().unwrap().to_owned(), local));
    }
    let args = tier1["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            mounts
                .iter()
                .find_map(|(at, local)| {
                    a.strip_prefix(at.as_str()).map(|rest| format!("{}{rest}", local.display()))
                })
                .unwrap_or_else(|| a.to_owned())
        })
        .collect();
    let mut env = vec![];
    for from in tier1["envFrom"].as_array().into_iter().flatten() {
        let secret = find("Secret", from["secretRef"]["name"].as_str().unwrap());
        for (k, v) in secret["stringData"].as_object().unwrap() {
            env.push((k.clone(), v.as_str().unwrap().to_owned()));
        }
    }
    for e in tier1["env"].as_array().into_iter().flatten() {
        if let Some(v) = e["value"].as_str() {
            env.push((e["name"].as_str().unwrap().to_owned(), v.to_owned()));
        }
    }
    (args, env)
}

/// The probe's `port` resolved through the container's named ports.
fn probe_port(tier1: &Value, probe: &Value) -> u16 {
    match &probe["httpGet"]["port"] {
        Value::String(name) => tier1["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *name)
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64()
            .unwrap() as u16,
        n => n.as_u64().unwrap() as u16,
    }
}

/// Until `f` gives `Some` (every 50 ms, at most `limit`): the kubelet's retries.
fn within<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let step = Duration::from_millis(50);
    for _ in 0..=limit.as_millis() / step.as_millis() {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(step);
    }
    None
}

fn probe_the_pod(tag: &str, values: &[&str], list: &str) {
    let mut args = ci_values();
    args.extend_from_slice(values);
    let objects = docs(&render(&args));
    let deploy = objects.iter().find(|o| o["kind"] == "Deployment").expect("the app's Deployment");
    let template = &deploy["spec"]["template"];
    let pod_spec = &template["spec"];
    let tier1 = tier1_container(pod_spec, list);
    let mut pod = Pod::new(tag);
    let (argv, env) = container_process(&objects, pod_spec, tier1, &pod.dir.0);
    pod.start(env!("CARGO_BIN_EXE_tier1"), &argv, &env);
    let at = |port: u16| SocketAddr::new(pod.pod_ip.parse().unwrap(), port);

    // The kubelet: every probe as rendered, at the pod IP, from outside the pod.
    let probes = ["startupProbe", "livenessProbe", "readinessProbe"];
    let mut checked = 0;
    for name in probes.iter().filter(|p| tier1[**p].is_object()) {
        let probe = &tier1[*name];
        let (port, path) = (probe_port(tier1, probe), probe["httpGet"]["path"].as_str().unwrap());
        let status = within(Duration::from_secs(15), || get(at(port), path).filter(|(s, _)| *s == 200));
        assert!(
            status.is_some(),
            "{tag}: {name} GET {}{path} failed from outside the pod\n{}",
            at(port),
            pod.log()
        );
        checked += 1;
    }
    assert!(checked >= 2, "{tag}: liveness and readiness are rendered");
    // The scraper: the pod's prometheus.io annotations.
    let ann = &template["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    let port: u16 = ann["prometheus.io/port"].as_str().unwrap().parse().unwrap();
    let (status, body) = get(at(port), ann["prometheus.io/path"].as_str().unwrap()).expect("scrape");
    assert_eq!(status, 200);
    assert!(body.contains("tier1_build_info"), "{body}");
    // The API: on the pod's loopback for the front, unreachable at the pod IP.
    let listen = argv[argv.iter().position(|a| a == "--listen").unwrap() + 1].clone();
    let api_port: u16 = listen.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(listen.starts_with("127.0.0.1:"), "{tag}: sidecar mode keeps the API on loopback: {listen}");
    let (status, _) = pod.get_inside(&listen, "/v1/models").expect("the front reaches the API on loopback");
    assert_eq!(status, 200);
    assert!(
        TcpStream::connect_timeout(&at(api_port), Duration::from_secs(1)).is_err(),
        "{tag}: the API answers at the pod IP"
    );
    // The probe port serves no API, even at the pod IP.
    assert_eq!(get(at(port), "/v1/models").map(|(s, _)| s), Some(404));
    // Shutdown as the kubelet does it: SIGTERM, then readiness fails at once while tier1 drains.
    let child = pod.child.as_ref().unwrap();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let ready = &tier1["readinessProbe"];
    let (rport, rpath) = (probe_port(tier1, ready), ready["httpGet"]["path"].as_str().unwrap());
    let draining = within(Duration::from_secs(5), || get(at(rport), rpath).filter(|(s, _)| *s == 503));
    assert!(draining.is_some(), "{tag}: readiness still passes after SIGTERM\n{}", pod.log());
}

#[test]
fn a_kubelet_probes_and_scrapes_the_sidecar_at_the_pod_ip() {
    probe_the_pod("sidecar", &["-f", "helm/tier1/examples/omniroute.yaml"], "containers");
}

#[test]
fn a_kubelet_probes_the_native_sidecar_at_the_pod_ip() {
    probe_the_pod(
        "native",
        &[
            "-f",
            "helm/tier1/examples/omniroute.yaml",
            "--set",
            "sidecar.native=true",
            "--kube-version",
            "1.31.0",
        ],
        "initContainers",
    );
}
