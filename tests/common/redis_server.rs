//! A real `redis-server` per test (and a three-node cluster), on ports picked by
//! [`start_server`] since redis-server cannot bind `:0` and report the port. Fails loudly when the
//! binary is missing (scripts/test.sh installs it): a Redis test never skips silently.

use std::process::Command;
use std::time::Duration;

use super::process::{Server, restart_server, start_server};
use super::{TempDir, wait_until};

/// What redis-server logs once its listeners are up.
const READY: &str = "Ready to accept connections";

/// A running `redis-server` on loopback, stopped on drop.
pub struct RedisServer {
    /// Its plain (`--port`) port.
    pub port: u16,
    /// Every port it was given (`--port` first, then the extra ones of [`Self::start_with`]).
    pub ports: Vec<u16>,
    server: Option<Server>,
}

fn command(port: u16, extra: &[String]) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--logfile", ""])
        .args(extra);
    cmd
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(0, |_| Vec::new()).await
    }

    /// Starts with extra arguments; `extra_ports` more ports are picked with the main one and
    /// handed to `args` (for `--tls-port`, say).
    pub async fn start_with(extra_ports: usize, args: impl Fn(&[u16]) -> Vec<String>) -> Self {
        let server = start_server("redis-server", 1 + extra_ports, READY, |ports| {
            command(ports[0], &args(&ports[1..]))
        })
        .await;
        Self { port: server.ports[0], ports: server.ports.clone(), server: Some(server) }
    }

    /// Starts again on `port` (Redis back where it was, after [`Self::kill`]).
    pub async fn start_on(port: u16) -> Self {
        let server = restart_server("redis-server", &[port], READY, command(port, &[])).await;
        Self { port, ports: vec![port], server: Some(server) }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }
}

/// A three-node Redis Cluster on loopback (no replicas), for `redis.cluster = true`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: TempDir,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = TempDir::new("redis-cluster");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let conf = dir.path(&format!("nodes-{i}.conf")).to_str().unwrap().to_owned();
            let d = dir.0.to_str().unwrap().to_owned();
            let args = move |_: &[u16]| {
                ["--cluster-enabled", "yes", "--cluster-config-file", &conf, "--dir", &d]
                    .map(str::to_owned)
                    .to_vec()
            };
            nodes.push(RedisServer::start_with(0, args).await);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is not installed: run scripts/test.sh");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        // Wait (bounded) until every node agrees the cluster is up.
        for n in &nodes {
            let ok = wait_until(Duration::from_secs(10), || async {
                let info =
                    Command::new("redis-cli").args(["-p", &n.port.to_string(), "cluster", "info"]).output();
                info.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            })
            .await;
            assert!(ok, "cluster never became ready");
        }
        Self { nodes, _dir: dir }
    }
}
