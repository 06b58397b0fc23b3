//! Bifrost's command-line flags, so that a front which installs and starts its "bifrost" sidecar
//! itself (OmniRoute's supervised mode: `-port N -host H -app-dir DIR -log-level L`) can start
//! tier1 in its place. Go's `flag` package reads `-name` and `--name`, with the value after a
//! space or an `=`; so does this.
//!
//! What each flag decides, and against what:
//! - `-port`, `-host`: the listen address. They win over `TIER1_LISTEN` and the config, because
//!   the front health-checks the port it passed; `--listen` with either is a usage error.
//! - `-app-dir`: where `tier1.toml` is looked for. `--config` and `TIER1_CONFIG` win over it: the
//!   front passes the flag whatever the operator wants, and the environment it spawns the sidecar
//!   with is the operator's. Only `tier1.toml` is read: Bifrost keeps its own `config.json` there
//!   (another schema), and a `config.toml` could be anyone's.
//! - `-log-level`, `-log-style`: the log filter and format over `[log]`; `TIER1_LOG` still wins,
//!   for the same reason as `TIER1_CONFIG`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::config::Env;
use crate::reload::Overrides;

/// The file looked for in `-app-dir`.
pub const APP_DIR_CONFIG: &str = "tier1.toml";

/// Bifrost's flags, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// `-port N`.
    pub port: Option<u16>,
    /// `-host H`: an IP address, or `localhost` (Bifrost's default) for 127.0.0.1.
    pub host: Option<IpAddr>,
    /// `-app-dir DIR`.
    pub app_dir: Option<PathBuf>,
    /// `-log-level L`: Bifrost's `debug`, `info`, `warn` or `error`.
    pub log_level: Option<LogLevel>,
    /// `-log-style S`: `json` (true) or `pretty` (false).
    pub log_json: Option<bool>,
    /// `-migrate-only` or `-matview-refresh-only`: Bifrost's one-shot database jobs. tier1 has no
    /// database: it says so and exits 0 instead of serving (a job that never ends would hang).
    pub one_shot: bool,
}

/// Bifrost's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

impl LogLevel {
    /// tier1's log filter for the level. Bifrost's `debug` is Bifrost's own debug logs, so it is
    /// tier1's, not its libraries' (hyper's and h2's would be one line per frame).
    pub fn filter(self) -> &'static str {
        match self {
            Self::Debug => "info,tier1=debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// What `flag` is, when it is one of Bifrost's.
enum Flag {
    /// Takes a value.
    Value(fn(&mut Launch, &str) -> Result<(), String>),
    /// Harmless here, taken and ignored: `-no-migrate` (tier1 has no database to migrate).
    Ignored,
    /// A one-shot job with nothing to do here (see [`Launch::one_shot`]).
    OneShot,
}

fn flag(name: &str) -> Option<Flag> {
    let name = name.strip_prefix("--").or_else(|| name.strip_prefix('-'))?;
    Some(match name {
        "port" => Flag::Value(|l, v| {
            l.port = Some(v.parse().map_err(|_| format!("-port {v:?}: want a port number, 0 to 65535"))?);
            Ok(())
        }),
        "host" => Flag::Value(|l, v| {
            l.host = Some(host(v)?);
            Ok(())
        }),
        "app-dir" => Flag::Value(|l, v| {
            l.app_dir = Some(PathBuf::from(v));
            Ok(())
        }),
        "log-level" => Flag::Value(|l, v| {
            l.log_level = Some(match v.to_ascii_lowercase().as_str() {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" => LogLevel::Warn,
                "error" => LogLevel::Error,
                _ => return Err(format!("-log-level {v:?}: want debug, info, warn or error")),
            });
            Ok(())
        }),
        "log-style" => Flag::Value(|l, v| {
            l.log_json = Some(match v.to_ascii_lowercase().as_str() {
                "json" => true,
                "pretty" => false,
                _ => return Err(format!("-log-style {v:?}: want json or pretty")),
            });
            Ok(())
        }),
        "no-migrate" => Flag::Ignored,
        "migrate-only" | "matview-refresh-only" => Flag::OneShot,
        _ => return None,
    })
}

/// `-host`'s value: an IP address (IPv6 with or without brackets), or `localhost`.
fn host(v: &str) -> Result<IpAddr, String> {
    if v.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = v.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(v);
    bare.parse()
        .map_err(|_| format!("-host {v:?}: want an IP address (e.g. 127.0.0.1 or 0.0.0.0) or localhost"))
}

impl Launch {
    /// Takes `name` when it is one of Bifrost's flags (`value` reads its value): `Ok(false)` when
    /// it is not, for the caller's own flags.
    pub fn take(
        &mut self,
        name: &str,
        value: impl FnOnce() -> Result<String, String>,
    ) -> Result<bool, String> {
        match flag(name) {
            None => Ok(false),
            Some(Flag::Ignored) => Ok(true),
            Some(Flag::OneShot) => {
                self.one_shot = true;
                Ok(true)
            }
            Some(Flag::Value(set)) => set(self, &value()?).map(|()| true),
        }
    }

    /// Whether any of Bifrost's flags was given: tier1 was started as a front starts Bifrost.
    pub fn given(&self) -> bool {
        *self != Self::default()
    }

    /// Sets `-host` and `-port` over the listen address tier1 would use otherwise (`--listen`'s,
    /// `TIER1_LISTEN`'s, else `config_listen`), for the config and every reload of it.
    pub fn patch(&self, overrides: &mut Overrides, config_listen: SocketAddr) {
        if self.host.is_none() && self.port.is_none() {
            return;
        }
        let mut addr = overrides.listen.unwrap_or(config_listen);
        if let Some(ip) = self.host {
            addr.set_ip(ip);
        }
        if let Some(port) = self.port {
            addr.set_port(port);
        }
        overrides.listen = Some(addr);
    }
}

/// Which config to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChoice {
    /// A file.
    File(PathBuf),
    /// The built-in demo; with the warning to print when a file was looked for and not found.
    Demo(Option<String>),
}

/// `--config`, else `TIER1_CONFIG`, else `-app-dir`'s `tier1.toml` when it exists, else the demo
/// (with a warning when `-app-dir` was given: a supervised sidecar answering from mock providers
/// must not go unnoticed).
pub fn choose_config(config: Option<PathBuf>, app_dir: Option<&Path>, env: &dyn Env) -> ConfigChoice {
    if let Some(path) = config.or_else(|| env.var("TIER1_CONFIG").map(PathBuf::from)) {
        return ConfigChoice::File(path);
    }
    let Some(dir) = app_dir else { return ConfigChoice::Demo(None) };
    let path = dir.join(APP_DIR_CONFIG);
    if path.is_file() {
        return ConfigChoice::File(path);
    }
    let bifrost = dir.join("config.json");
    let note = if bifrost.is_file() {
        format!(" ({} is Bifrost's config, which tier1 does not read)", bifrost.display())
    } else {
        String::new()
    };
    ConfigChoice::Demo(Some(format!(
        "WARNING: no tier1 config: looked for {} (-app-dir){note}; serving the built-in demo config, \
         whose mock providers answer every request with canned text: no real provider is called \
         (write that file, or set TIER1_CONFIG)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn launch(args: &[(&str, &str)]) -> Result<Launch, String> {
        let mut l = Launch::default();
        for (name, value) in args {
            assert!(l.take(name, || Ok((*value).to_owned()))?, "{name} not taken");
        }
        Ok(l)
    }

    #[test]
    fn takes_bifrosts_flags_with_one_dash_or_two() {
        let l = launch(&[("-port", "9"), ("--host", "0.0.0.0"), ("-app-dir", "/d"), ("--log-level", "WARN")]);
        assert_eq!(
            l,
            Ok(Launch {
                port: Some(9),
                host: Some("0.0.0.0".parse().unwrap()),
                app_dir: Some("/d".into()),
                log_level: Some(LogLevel::Warn),
                log_json: None,
                one_shot: false,
            })
        );
        let l = launch(&[("-host", "localhost"), ("-log-style", "json")]).unwrap();
        assert_eq!(l.host, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(l.log_json, Some(true));
        assert_eq!(launch(&[("-host", "[::1]")]).unwrap().host, Some("::1".parse().unwrap()));
        let mut l = Launch::default();
        assert_eq!(l.take("-no-migrate", || Err("no value read".into())), Ok(true));
        assert!(!l.one_shot);
        assert_eq!(l.take("--listen", || Err("no value read".into())), Ok(false));
        assert_eq!(l.take("-c", || Err("no value read".into())), Ok(false));
        assert!(!l.given());
        assert_eq!(l.take("-migrate-only", || Err("no value read".into())), Ok(true));
        assert!(l.one_shot, "a one-shot database job");
    }

    #[test]
    fn names_a_bad_value() {
        assert_eq!(launch(&[("-port", "80x")]).unwrap_err(), "-port \"80x\": want a port number, 0 to 65535");
        assert!(launch(&[("-host", "pod.local")]).unwrap_err().contains("want an IP address"));
        assert!(launch(&[("-log-level", "trace")]).unwrap_err().contains("debug, info, warn or error"));
        assert!(launch(&[("-log-style", "xml")]).unwrap_err().contains("json or pretty"));
    }

    #[test]
    fn maps_bifrosts_levels_onto_filters_that_parse() {
        for level in [LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error] {
            assert!(level.filter().parse::<tracing_subscriber::filter::Targets>().is_ok());
        }
        assert_eq!(LogLevel::Debug.filter(), "info,tier1=debug");
    }

    #[test]
    fn host_and_port_patch_the_address_otherwise_used() {
        let config: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut o = Overrides::default();
        launch(&[("-port", "9000")]).unwrap().patch(&mut o, config);
        assert_eq!(o.listen, Some("127.0.0.1:9000".parse().unwrap()));
        let mut o = Overrides { listen: Some("10.0.0.1:7000".parse().unwrap()), probe_listen: None };
        launch(&[("-host", "0.0.0.0")]).unwrap().patch(&mut o, config);
        assert_eq!(o.listen, Some("0.0.0.0:7000".parse().unwrap()));
        let mut o = Overrides::default();
        launch(&[("-app-dir", "/d")]).unwrap().patch(&mut o, config);
        assert_eq!(o, Overrides::default());
    }

    #[test]
    fn config_is_the_flag_then_the_environment_then_the_app_dir_then_the_demo() {
        let dir = std::env::temp_dir().join(format!("tier1-launch-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let none = HashMap::<String, String>::new();
        let env: HashMap<String, String> = [("TIER1_CONFIG".to_owned(), "/env.toml".to_owned())].into();
        assert_eq!(
            choose_config(Some("/a.toml".into()), Some(&dir), &env),
            ConfigChoice::File("/a.toml".into())
        );
        assert_eq!(choose_config(None, Some(&dir), &env), ConfigChoice::File("/env.toml".into()));
        assert_eq!(choose_config(None, None, &none), ConfigChoice::Demo(None));
        let ConfigChoice::Demo(Some(warning)) = choose_config(None, Some(&dir), &none) else { panic!() };
        assert!(warning.starts_with("WARNING: "), "{warning}");
        assert!(warning.contains(&dir.join("tier1.toml").display().to_string()), "{warning}");
        assert!(warning.contains("mock providers") && !warning.contains('\n'), "{warning}");
        assert!(!warning.contains("config.json"), "{warning}");
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let ConfigChoice::Demo(Some(warning)) = choose_config(None, Some(&dir), &none) else { panic!() };
        assert!(warning.contains("config.json is Bifrost's config"), "{warning}");
        std::fs::write(dir.join("tier1.toml"), "").unwrap();
        assert_eq!(choose_config(None, Some(&dir), &none), ConfigChoice::File(dir.join("tier1.toml")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
