//! Command-line parsing (no dependency: four subcommands and a handful of flags, and Bifrost's
//! flags for a front that starts its sidecar itself), and the listener addresses that flags and
//! the environment override.

mod launch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Env;
use crate::reload::Overrides;

pub use launch::{APP_DIR_CONFIG, ConfigChoice, Launch, LogLevel, choose_config};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve (the default). Without a config, the embedded demo config is used.
    Run {
        /// `--config FILE`.
        config: Option<PathBuf>,
        /// `--listen ADDR`, overriding the config.
        listen: Option<String>,
        /// `--probe-listen ADDR`, overriding `server.probe_listen`.
        probe_listen: Option<String>,
        /// Bifrost's flags (`-port`, `-host`, `-app-dir`, `-log-level`, `-log-style`).
        launch: Launch,
    },
    /// Validate a config file and exit non-zero listing every problem; with `--against URL`,
    /// also print what differs from the config a running instance has.
    Check {
        /// `--config FILE`.
        config: PathBuf,
        /// `--against URL` of a running tier1 (its admin address).
        against: Option<String>,
        /// `--admin-key REF`: the admin bearer, as a secret reference (`env:NAME`).
        admin_key: Option<String>,
    },
    /// Run the standalone mock provider.
    MockUpstream {
        /// `--listen ADDR`.
        listen: String,
        /// `--config FILE` with fault settings.
        config: Option<PathBuf>,
    },
    /// GET a health URL; exit 0 on a 2xx answer.
    Health {
        /// `--url URL`.
        url: String,
        /// `--timeout DURATION`.
        timeout: Duration,
    },
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// Usage text.
pub const USAGE: &str = "\
tier1: a lean Tier-1 LLM router

Usage:
  tier1 [run] [--config FILE] [--listen ADDR] [--probe-listen ADDR]
                                                 serve (no config: built-in demo on 127.0.0.1:8080);
                                                 --probe-listen adds a listener for /healthz,
                                                 /readyz and /metrics only (a sidecar's probes)
  tier1 check --config FILE [--against URL [--admin-key env:NAME]]
                                                 validate a config file, list every problem;
                                                 with --against, diff it with a running instance
  tier1 mock-upstream [--listen ADDR] [--config FILE]
                                                 run the fault-injecting mock provider
  tier1 health [--url URL] [--timeout 2s]        exit 0 if URL answers 2xx (container healthcheck)
  tier1 -port N [-host IP] [-app-dir DIR] [-log-level L] [-log-style S]
                                                 serve, started as a front starts its Bifrost
                                                 sidecar: -host and -port set the listen address,
                                                 DIR/tier1.toml is the config (none: the demo, with
                                                 a warning), L is debug|info|warn|error, S is
                                                 json|pretty; --port etc. work too
  tier1 --help | --version

Environment:
  TIER1_CONFIG   config file when --config is not given
  TIER1_LISTEN   listen address when --listen is not given (overrides the config file)
  TIER1_PROBE_LISTEN  probe address when --probe-listen is not given (overrides the config file)
  TIER1_LOG      log filter, e.g. info or info,tier1=debug (overrides [log] level)
";

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    let sub = match args.peek().map(String::as_str) {
        Some("run" | "check" | "mock-upstream" | "health") => args.next(),
        _ => None,
    };
    let mut config = None;
    let mut listen = None;
    let mut probe_listen = None;
    let mut url = None;
    let mut timeout = None;
    let mut against = None;
    let mut admin_key = None;
    let mut launch = Launch::default();
    while let Some(arg) = args.next() {
        // `--flag=value`, and Go's `-flag=value` for Bifrost's flags.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        if launch.take(&flag, || value(&flag))? {
            continue;
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => config = Some(PathBuf::from(value("--config")?)),
            "-l" | "--listen" => listen = Some(value("--listen")?),
            "--probe-listen" => probe_listen = Some(value("--probe-listen")?),
            "--url" => url = Some(value("--url")?),
            "--against" => against = Some(value("--against")?),
            "--admin-key" => admin_key = Some(value("--admin-key")?),
            "--timeout" => {
                let v = value("--timeout")?;
                timeout = Some(humantime::parse_duration(&v).map_err(|e| format!("--timeout {v:?}: {e}"))?);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let misplaced =
        |flag: &str, present: bool| if present { Err(format!("{flag} does not apply here")) } else { Ok(()) };
    if !matches!(sub.as_deref(), None | Some("run")) {
        misplaced("--probe-listen", probe_listen.is_some())?;
        misplaced("Bifrost's -port, -host, -app-dir and -log-level", launch.given())?;
    }
    match sub.as_deref() {
        None | Some("run") => {
            misplaced("--against", against.is_some())?;
            misplaced("--url", url.is_some())?;
            misplaced("--timeout", timeout.is_some())?;
            if listen.is_some() && (launch.host.is_some() || launch.port.is_some()) {
                return Err("--listen and -host/-port both set the listen address: give one".into());
            }
            Ok(Command::Run { config, listen, probe_listen, launch })
        }
        Some("check") => {
            misplaced("--listen", listen.is_some())?;
            misplaced("--admin-key without --against", admin_key.is_some() && against.is_none())?;
            Ok(Command::Check { config: config.ok_or("check needs --config FILE")?, against, admin_key })
        }
        Some("mock-upstream") => Ok(Command::MockUpstream {
            listen: listen.unwrap_or_else(|| "127.0.0.1:9090".to_owned()),
            config,
        }),
        Some(_) => Ok(Command::Health {
            url: url.unwrap_or_else(|| "http://127.0.0.1:8080/healthz".to_owned()),
            timeout: timeout.unwrap_or(Duration::from_secs(2)),
        }),
    }
}

/// The listener addresses a deployment decides (a chart's sidecar mode, a container's port):
/// `--listen` and `--probe-listen`, else `TIER1_LISTEN` and `TIER1_PROBE_LISTEN`. They override
/// the config file, whatever file is mounted. Every invalid one is named, a line each.
pub fn overrides(
    listen: Option<String>,
    probe_listen: Option<String>,
    env: &dyn Env,
) -> Result<Overrides, String> {
    let address = |flag: Option<String>, var: &str, what: &str| match flag.or_else(|| env.var(var)) {
        None => Ok(None),
        Some(addr) => addr.parse::<SocketAddr>().map(Some).map_err(|_| {
            format!("error: invalid {what} address {addr:?} (want IP:PORT, e.g. 127.0.0.1:8080)")
        }),
    };
    match (
        address(listen, "TIER1_LISTEN", "listen"),
        address(probe_listen, "TIER1_PROBE_LISTEN", "probe listen"),
    ) {
        (Ok(listen), Ok(probe_listen)) => Ok(Overrides { listen, probe_listen }),
        (Err(a), Err(b)) => Err(format!("{a}\n{b}")),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_subcommands() {
        assert_eq!(
            p(&[]),
            Ok(Command::Run { config: None, listen: None, probe_listen: None, launch: Launch::default() })
        );
        assert_eq!(
            p(&["--config", "a.toml", "--listen=127.0.0.1:0"]),
            Ok(Command::Run {
                config: Some("a.toml".into()),
                listen: Some("127.0.0.1:0".into()),
                probe_listen: None,
                launch: Launch::default(),
            })
        );
        assert_eq!(
            p(&["run", "--listen", "127.0.0.1:8080", "--probe-listen", "0.0.0.0:9901"]),
            Ok(Command::Run {
                config: None,
                listen: Some("127.0.0.1:8080".into()),
                probe_listen: Some("0.0.0.0:9901".into()),
                launch: Launch::default(),
            })
        );
        assert!(p(&["mock-upstream", "--probe-listen", "0.0.0.0:9901"]).is_err());
        assert!(p(&["check", "-c", "x.toml", "--probe-listen", "0.0.0.0:9901"]).is_err());
        assert_eq!(
            p(&["check", "-c", "x.toml"]),
            Ok(Command::Check { config: "x.toml".into(), against: None, admin_key: None })
        );
        assert_eq!(
            p(&["check", "-c", "x.toml", "--against", "http://h:1", "--admin-key", "env:K"]),
            Ok(Command::Check {
                config: "x.toml".into(),
                against: Some("http://h:1".into()),
                admin_key: Some("env:K".into())
            })
        );
        assert!(p(&["check", "-c", "x.toml", "--admin-key", "env:K"]).is_err());
        assert!(p(&["check"]).is_err());
        assert_eq!(
            p(&["mock-upstream", "--listen", "127.0.0.1:1"]),
            Ok(Command::MockUpstream { listen: "127.0.0.1:1".into(), config: None })
        );
        assert_eq!(
            p(&["health", "--url", "http://x/healthz", "--timeout", "1s"]),
            Ok(Command::Health { url: "http://x/healthz".into(), timeout: Duration::from_secs(1) })
        );
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["--config"]).is_err());
        assert_eq!(p(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn parses_the_flags_a_front_starts_bifrost_with() {
        let want = Launch {
            port: Some(20128),
            host: Some("127.0.0.1".parse().unwrap()),
            app_dir: Some("/data/services/bifrost".into()),
            log_level: Some(LogLevel::Warn),
            log_json: None,
            one_shot: false,
        };
        let run = |launch| Command::Run { config: None, listen: None, probe_listen: None, launch };
        // OmniRoute's installer: `-port N -host 127.0.0.1 -app-dir DIR -log-level warn`.
        let front = [
            "-port",
            "20128",
            "-host",
            "127.0.0.1",
            "-app-dir",
            "/data/services/bifrost",
            "-log-level",
            "warn",
        ];
        assert_eq!(p(&front), Ok(run(want.clone())));
        assert_eq!(
            p(&[
                "run",
                "--port=20128",
                "-host=127.0.0.1",
                "--app-dir",
                "/data/services/bifrost",
                "-log-level=warn"
            ]),
            Ok(run(want.clone()))
        );
        assert_eq!(p(&[&front[..], &["-no-migrate"]].concat()), Ok(run(want)));
        assert_eq!(
            p(&["-port", "1", "--listen", "127.0.0.1:2"]),
            Err("--listen and -host/-port both set the listen address: give one".into())
        );
        assert!(p(&["check", "-c", "x.toml", "-port", "1"]).is_err());
        assert_eq!(p(&["-port"]), Err("-port needs a value".into()));
        assert!(p(&["-port", "x"]).unwrap_err().contains("want a port number"));
        assert!(p(&["-bogus"]).is_err());
    }

    #[test]
    fn overrides_take_the_flag_then_the_environment_and_name_every_bad_address() {
        let env: std::collections::HashMap<String, String> = [
            ("TIER1_LISTEN".to_owned(), "127.0.0.1:2".to_owned()),
            ("TIER1_PROBE_LISTEN".to_owned(), "0.0.0.0:3".to_owned()),
        ]
        .into();
        let o = overrides(Some("127.0.0.1:1".into()), None, &env).unwrap();
        assert_eq!(o.listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(o.probe_listen, Some("0.0.0.0:3".parse().unwrap()));
        let none = std::collections::HashMap::<String, String>::new();
        assert_eq!(overrides(None, None, &none), Ok(Overrides::default()));
        let e = overrides(Some("x".into()), Some("pod:9901".into()), &env).unwrap_err();
        assert_eq!(
            e,
            "error: invalid listen address \"x\" (want IP:PORT, e.g. 127.0.0.1:8080)\n\
             error: invalid probe listen address \"pod:9901\" (want IP:PORT, e.g. 127.0.0.1:8080)"
        );
    }
}
