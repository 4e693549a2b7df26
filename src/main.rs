//! The `toolboxd` binary: parse flags, start logging, bind, serve until SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use toolboxd::config::{Cli, Command, EntrypointAction, LogFormat};
use toolboxd::{Config, Listeners};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Mcp {
        workdir,
        public_url,
    }) = &cli.command
    {
        cli.workdir = workdir.clone().or(cli.workdir.take());
        cli.public_url = public_url.clone().or(cli.public_url.take());
        return mcp_stdio(cli);
    }
    match &cli.command {
        Some(Command::Openapi) => {
            print!("{}", toolboxd::http::openapi::document());
            return ExitCode::SUCCESS;
        }
        Some(Command::Entrypoint {
            action: EntrypointAction::Logs { addr, no_follow },
        }) => {
            return toolboxd::entrypoint_logs::run(*addr, !*no_follow);
        }
        Some(Command::Mcp { .. }) | None => {}
    }
    // Read the environment and umask before any thread exists.
    let config = match Config::from_cli(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("toolboxd: {err}");
            return ExitCode::from(2);
        }
    };
    toolboxd::memory::tune();
    init_logging(cli.log_format);
    protect_from_oom(cli.oom_score_adj);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(toolboxd::memory::BLOCKING_KEEP_ALIVE)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("toolboxd: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = shutdown_signal();
        let toolbox = match bind("toolbox", cli.toolbox_addr()).await {
            Ok(listener) => listener,
            Err(code) => return code,
        };
        let sdk_api = match cli.sdk_api_addr {
            Some(addr) => match bind("sdk-api", addr).await {
                Ok(listener) => Some(listener),
                Err(code) => return code,
            },
            None => None,
        };
        let terminal = match cli.terminal_addr() {
            Some(addr) => match bind("terminal", addr).await {
                Ok(listener) => Some(listener),
                Err(code) => return code,
            },
            None => None,
        };
        let ssh = match cli.ssh_addr() {
            Some(addr) => match bind("ssh", addr).await {
                Ok(listener) => Some(listener),
                Err(code) => return code,
            },
            None => None,
        };
        tracing::info!(sandbox_id = %config.sandbox_id, workdir = %config.workdir.display(), "toolboxd started");
        match toolboxd::run(config, Listeners {
                toolbox,
                sdk_api,
                terminal,
                ssh,
            }, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("toolboxd: {err}");
                ExitCode::FAILURE
            }
        }
    });
    // Blocking work still running (a search over /, a read stuck on a slow mount) must not keep
    // the process alive past the drain deadline.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// `toolboxd mcp`: the MCP tools over stdio. Nothing but the protocol goes to stdout: logs go to
/// stderr, and no listener is bound (so nothing prints its address).
fn mcp_stdio(cli: Cli) -> ExitCode {
    let config = match Config::from_cli(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("toolboxd: {err}");
            return ExitCode::from(2);
        }
    };
    toolboxd::memory::tune();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("toolboxd: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async move {
        tracing::info!(workdir = %config.workdir.display(), "toolboxd mcp: serving MCP over stdio");
        match toolboxd::run_mcp_stdio(config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("toolboxd: {err}");
                ExitCode::FAILURE
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn bind(name: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, ExitCode> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            let mut shown = listener.local_addr().unwrap_or(addr);
            if shown.ip().is_unspecified() {
                shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let mut stdout = std::io::stdout().lock();
            let scheme = if name == "ssh" { "ssh" } else { "http" };
            let _ = writeln!(stdout, "toolboxd: {name} listening on {scheme}://{shown}");
            let _ = stdout.flush();
            Ok(listener)
        }
        Err(err) => {
            eprintln!("toolboxd: cannot listen on {addr} ({name}): {err}");
            Err(ExitCode::from(2))
        }
    }
}

/// Resolves with the signal that asked toolboxd to stop (it is forwarded to the entrypoint).
/// Installs the SIGTERM/SIGINT handlers at once (before anything is bound, so a signal that
/// arrives as soon as the address is printed is not lost) and returns the future that waits.
fn shutdown_signal() -> impl std::future::Future<Output = Option<nix::sys::signal::Signal>> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(term), Ok(int)) = handlers else {
            // Without signal handlers there is nothing to wait for; serve until killed.
            return std::future::pending().await;
        };
        wait_for_signal(term, int).await
    }
}

async fn wait_for_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) -> Option<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    tokio::select! {
        _ = term.recv() => {
            tracing::info!("SIGTERM: shutting down");
            Some(Signal::SIGTERM)
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: shutting down");
            Some(Signal::SIGINT)
        }
    }
}

/// Lowers toolboxd's own oom_score_adj (children start back at 0: `process::oom`).
fn protect_from_oom(value: i32) {
    match toolboxd::process::oom::protect_self(value) {
        Ok(true) => tracing::debug!(oom_score_adj = value, "oom_score_adj set"),
        Ok(false) => {}
        Err(err) => tracing::info!(
            oom_score_adj = value,
            "cannot set oom_score_adj (left as it is): {err}"
        ),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rmcp logs every MCP notification at info: its own logs start at warn.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    // Colour only on a terminal: `docker logs` and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
