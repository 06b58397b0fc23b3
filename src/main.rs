//! The `tier1` binary: parse the command line, load config, start the runtime, call the library.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use tier1::cli::{self, Command};
use tier1::config::{self, Config, Env, Format, ProcessEnv};

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => stdout(cli::USAGE),
        Command::Version => stdout(&format!("tier1 {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Check { config } => match config::load_file(&config, &ProcessEnv) {
            Ok(c) => stdout(&format!(
                "{}: ok ({} providers, {} routes)\n",
                config.display(),
                c.providers.len(),
                c.routes.len()
            )),
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{}: {e}", config.display());
                }
                ExitCode::FAILURE
            }
        },
        Command::Run { config, listen } => serve(config, listen),
        Command::MockUpstream { listen, config } => mock_upstream(&listen, config),
        Command::Health { url, timeout } => {
            let result = runtime().and_then(|rt| rt.block_on(tier1::health::check(&url, timeout)));
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

fn init_logging(config_level: &str) {
    let level = ProcessEnv.var("TIER1_LOG").unwrap_or_else(|| config_level.to_owned());
    let filter: tracing_subscriber::filter::Targets = level.parse().unwrap_or_default();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry().with(filter).with(fmt).try_init();
}

fn load(path: Option<std::path::PathBuf>) -> Result<(Config, String), String> {
    let path = path.or_else(|| ProcessEnv.var("TIER1_CONFIG").map(Into::into));
    let result = match &path {
        Some(p) => config::load_file(p, &ProcessEnv).map(|c| (c, p.display().to_string())),
        None => config::parse(config::DEMO_TOML, Format::Toml, &ProcessEnv)
            .map(|c| (c, "built-in demo config".to_owned())),
    };
    result.map_err(|errors| {
        let origin = path.map_or_else(|| "built-in demo config".to_owned(), |p| p.display().to_string());
        errors.0.iter().map(|e| format!("{origin}: {e}")).collect::<Vec<_>>().join("\n")
    })
}

fn serve(config_path: Option<std::path::PathBuf>, listen: Option<String>) -> ExitCode {
    let (mut config, origin) = match load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log.level);
    if let Some(addr) = listen.or_else(|| ProcessEnv.var("TIER1_LISTEN")) {
        match addr.parse::<SocketAddr>() {
            Ok(a) => config.server.listen = a,
            Err(_) => {
                eprintln!("error: invalid listen address {addr:?} (want IP:PORT, e.g. 127.0.0.1:8080)");
                return ExitCode::from(2);
            }
        }
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match bind(config.server.listen).await {
            Ok(l) => l,
            Err(msg) => {
                eprintln!("{msg}");
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
        tracing::info!(config = %origin, "tier1 {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
        match tier1::run(listener, config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| match e.kind() {
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
    init_logging("info");
    let mock_config = match config {
        None => tier1::mock::server::MockConfig::default(),
        Some(path) => match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| tier1::mock::server::MockConfig::from_toml(&t).map_err(|e| e.to_string()))
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
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match bind(addr).await {
            Ok(l) => l,
            Err(msg) => {
                eprintln!("{msg}");
                return ExitCode::FAILURE;
            }
        };
        let bound = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
        tracing::info!("mock-upstream listening on http://{bound}");
        let stats = std::sync::Arc::new(tier1::mock::server::MockStats::default());
        tier1::mock::server::serve(listener, mock_config, stats, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
