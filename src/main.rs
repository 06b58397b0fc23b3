//! The `tier1` binary: parse the command line, load config, start the runtime, call the library.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tier1::check::{self, Failure};
use tier1::cli::{self, Command};
use tier1::{Config, DEMO_TOML, Env, Format, Overrides, ProcessEnv, Source, parse_config};

/// The version `tier1 --version` prints: the crate's, and the git commit and its date when built
/// from a checkout (`build.rs`; only the binary is rebuilt when the commit moves, not the library).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), env!("TIER1_VERSION_SUFFIX"));

fn main() -> ExitCode {
    // rustls' process-wide provider: ring (the upstream clients pass it explicitly; the Redis
    // client's rediss:// connections use this default).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => stdout(cli::USAGE),
        Command::Version => stdout(&format!("tier1 {}\n", VERSION)),
        Command::Check { config, against, admin_key } => {
            let checked =
                runtime().map_err(|e| Failure { message: format!("error: {e}"), code: 1 }).and_then(|rt| {
                    rt.block_on(check::run(&config, against.as_deref(), admin_key.as_deref(), &ProcessEnv))
                });
            match checked {
                Ok(out) => stdout(&out),
                Err(Failure { message, code }) => {
                    eprintln!("{message}");
                    ExitCode::from(code)
                }
            }
        }
        Command::Run { config, listen, probe_listen, launch } => serve(config, listen, probe_listen, launch),
        Command::MockUpstream { listen, config } => mock_upstream(&listen, config),
        Command::Health { url, timeout } => {
            let result = runtime().and_then(|rt| rt.block_on(tier1::health_check(&url, timeout)));
            match result {
                Ok(status) if status.is_success() => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("{url}: {status}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn stdout(text: &str) -> ExitCode {
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Logs go to stderr; the access log (one line per request, target `tier1::access`) to stdout.
/// `json`: one JSON object per line, fields at the top level. The level filter is global, not per
/// layer, so callsites below it (hyper's and h2's traces, on every request) are disabled once at
/// registration instead of being checked and dispatched at every call. The ready lines (target
/// `tier1::ready`) pass any level: a supervisor reads them even when told `-log-level error`.
fn init_logging(config_level: &str, json: bool) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = ProcessEnv.var("TIER1_LOG").unwrap_or_else(|| config_level.to_owned());
    let filter: tracing_subscriber::filter::Targets = level
        .parse::<tracing_subscriber::filter::Targets>()
        .unwrap_or_default()
        .with_target(READY, tracing::Level::INFO);
    // The access lines skip `tracing` when the filter lets them through: formatted on the
    // request's task, written by one thread (`tier1::access`).
    if filter.would_enable(ACCESS, &tracing::Level::INFO) {
        tier1::access::install(if json { tier1::access::Format::Json } else { tier1::access::Format::Text });
    }
    type Filtered =
        tracing_subscriber::layer::Layered<tracing_subscriber::filter::Targets, tracing_subscriber::Registry>;
    type Boxed = Box<dyn Layer<Filtered> + Send + Sync>;
    let is_access = |m: &tracing::Metadata<'_>| m.target() == ACCESS;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layers: Vec<Boxed> = if json {
        let layer = || tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(false);
        vec![
            Box::new(layer().with_writer(std::io::stdout).with_filter(filter_fn(is_access))),
            Box::new(layer().with_writer(std::io::stderr).with_filter(filter_fn(move |m| !is_access(m)))),
        ]
    } else {
        let out = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::io::stdout);
        let err = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
        vec![
            Box::new(out.with_filter(filter_fn(is_access))),
            Box::new(err.with_filter(filter_fn(move |m| !is_access(m)))),
        ]
    };
    let _ = tracing_subscriber::registry().with(filter).with(layers).try_init();
}

/// The target of the lines saying tier1 is serving.
const READY: &str = "tier1::ready";

/// The target of the access lines.
const ACCESS: &str = "tier1::access";

/// The config to serve (`--config`, `TIER1_CONFIG`, `-app-dir`'s `tier1.toml`, or the built-in
/// demo, warned about on stderr when `-app-dir` had none). Returns it with its text and, for a
/// file, the reload source.
fn load(
    path: Option<std::path::PathBuf>,
    app_dir: Option<&std::path::Path>,
) -> Result<(Config, String, Option<Source>), String> {
    let path = match cli::choose_config(path, app_dir, &ProcessEnv) {
        cli::ConfigChoice::File(path) => path,
        cli::ConfigChoice::Demo(warning) => {
            if let Some(w) = warning {
                eprintln!("{w}");
            }
            return parse_config(DEMO_TOML, Format::Toml, &ProcessEnv)
                .map(|c| (c, DEMO_TOML.to_owned(), None))
                .map_err(|errors| check::prefixed("built-in demo config", &errors));
        }
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("error: cannot read {}: {e}", path.display()))?;
    let config = parse_config(&text, Format::from_path(&path), &ProcessEnv)
        .map_err(|errors| check::prefixed(&path.display().to_string(), &errors))?;
    Ok((config, text, Some(Source { path, env: Arc::new(ProcessEnv), overrides: Overrides::default() })))
}

fn serve(
    config_path: Option<std::path::PathBuf>,
    listen: Option<String>,
    probe_listen: Option<String>,
    launch: cli::Launch,
) -> ExitCode {
    if launch.one_shot {
        // Bifrost's `-migrate-only` / `-matview-refresh-only`: a job run to its end.
        return stdout("tier1 has no database: nothing to migrate or refresh\n");
    }
    let (mut config, text, mut source) = match load(config_path, launch.app_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let level = launch.log_level.map_or_else(|| config.log.level.clone(), |l| l.filter().to_owned());
    init_logging(&level, launch.log_json.unwrap_or(config.log.json));
    // The command line and the environment override the file's addresses.
    let mut overrides = match cli::overrides(listen, probe_listen, &ProcessEnv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    launch.patch(&mut overrides, config.server.listen);
    overrides.apply(&mut config);
    if let Some(s) = source.as_mut() {
        s.overrides = overrides;
    }
    let listen = config.server.listen;
    let reuse_port = config.server.reuse_port;
    let code = with_listener(listen, reuse_port, move |listener| async move {
        let addr = listener.local_addr().map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
        let origin = source
            .as_ref()
            .map_or_else(|| "built-in demo config".to_owned(), |s| s.path.display().to_string());
        tracing::info!(target: READY, config = %origin, "tier1 {} listening on http://{addr}", VERSION);
        if launch.given() {
            // What scripts that start Bifrost wait for (OmniRoute's supervisor polls the port).
            tracing::info!(target: READY, "successfully started bifrost, serving UI on http://{addr}");
        }
        let options = tier1::Options { config, source, text, admin_listener: None, probe_listener: None };
        match tier1::serve(listener, options, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // Drained: the queued access lines go out before the process ends.
    tier1::access::shutdown();
    code
}

/// Starts the runtime, binds `addr` (a port in use gives a one-line error) and runs `serve`.
fn with_listener<F, Fut>(addr: SocketAddr, reuse_port: bool, serve: F) -> ExitCode
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match bind(addr, reuse_port) {
            Ok(listener) => serve(listener).await,
            Err(msg) => {
                eprintln!("{msg}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Binds `addr`; with `reuse_port`, with SO_REUSEPORT so that a new process can bind the same
/// address and take new connections while this one drains (set `net.ipv4.tcp_migrate_req = 1`
/// so connections still queued on the old socket move to the new one when it closes).
fn bind(addr: SocketAddr, reuse_port: bool) -> Result<tokio::net::TcpListener, String> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
    let bound = socket.and_then(|s| {
        s.set_reuseaddr(true)?;
        if reuse_port {
            s.set_reuseport(true)?;
        }
        s.bind(addr)?;
        s.listen(1024)
    });
    bound.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "error: {addr} is already in use; pick another address with --listen IP:PORT or TIER1_LISTEN=IP:PORT"
        ),
        _ => format!("error: cannot listen on {addr}: {e}"),
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown signal received");
}

fn mock_upstream(listen: &str, config: Option<std::path::PathBuf>) -> ExitCode {
    init_logging("info", false);
    let mock_config = match config {
        None => tier1::mock_server::MockConfig::default(),
        Some(path) => match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| tier1::mock_server::MockConfig::from_toml(&t).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        eprintln!("error: invalid listen address {listen:?}");
        return ExitCode::from(2);
    };
    with_listener(addr, false, move |listener| async move {
        let bound = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
        tracing::info!("mock-upstream listening on http://{bound}");
        let stats = std::sync::Arc::new(tier1::mock_server::MockStats::default());
        tier1::mock_server::serve(listener, mock_config, stats, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
