//! toolboxd: the in-sandbox agent. `run` serves the toolbox API (and, when asked, the local
//! control plane) on listeners the caller bound, until `shutdown` resolves.
//!
//! Reading order: `config` (flags → Config), `error` (the one Error), `state` (capability
//! handles), the capabilities (`files`, `search`, `process`, `system`, `ports`, `proxy`,
//! `sdk_api`, `lsp`, `watch`), then `http` (the only place that knows axum and the wire).

pub mod code;
pub mod config;
pub mod entrypoint_logs;
pub mod error;
pub mod files;
pub mod git;
pub mod http;
pub mod interpreter;
pub mod lsp;
pub mod mcp;
pub mod memory;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod pty;
pub mod sdk_api;
pub mod search;
pub mod ssh;
pub mod state;
pub mod system;
pub mod terminal;
#[cfg(test)]
mod testing;
pub mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;
use http::serve::serve;

/// How long in-flight requests may take to finish after shutdown begins.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long the entrypoint gets to exit after toolboxd forwarded it the shutdown signal.
pub const ENTRYPOINT_GRACE: Duration = Duration::from_secs(5);
/// SIGTERM → SIGKILL grace for every tree toolboxd started (sessions, commands, code runs,
/// interpreter workers, …) at shutdown.
pub const SESSION_GRACE: Duration = Duration::from_secs(2);

/// The sockets toolboxd serves, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    /// The toolbox API.
    pub toolbox: TcpListener,
    /// The local control plane (`--sdk-api-addr`), when enabled.
    pub sdk_api: Option<TcpListener>,
    /// The web terminal (`--terminal-addr`), unless `off`.
    pub terminal: Option<TcpListener>,
    /// The SSH server (`--ssh-addr`), unless `off`.
    pub ssh: Option<TcpListener>,
}

/// Serves until `shutdown` resolves, then stops accepting and gives in-flight requests up to
/// `DRAIN_DEADLINE` to finish.
///
/// With `config.entrypoint` set, the image's command runs as the `entrypoint` session. When
/// `shutdown` resolves with a signal, that signal goes to the entrypoint's process tree first
/// (up to `ENTRYPOINT_GRACE` to exit); then the listeners stop and every tree toolboxd started
/// (the process registry's: commands, code runs, workers, sessions, PTYs, language servers; and
/// any other descendant) is terminated (SIGTERM, `SESSION_GRACE`, SIGKILL; language servers are
/// sent `shutdown` and `exit` first, PTYs SIGHUP), so nothing started by toolboxd survives it.
/// Requests still waiting on one of those processes answer 503 `SHUTTING_DOWN` before their
/// connections close.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = Option<nix::sys::signal::Signal>> + Send + 'static,
) -> std::io::Result<()> {
    memory::start_trimmer();
    let ssh_settings = config.ssh.clone();
    let ssh_host_key = match &listeners.ssh {
        Some(_) => {
            let path = ssh_settings.host_key.clone();
            let key = tokio::task::spawn_blocking(move || ssh::load_host_key(&path))
                .await
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)?;
            Some(key)
        }
        None => None,
    };
    let sandbox_id = config.sandbox_id.clone();
    // The token is local SDK mode's API key unless --sdk-api-key names another one.
    let sdk_api_key = config.sdk_api_key.clone().or_else(|| {
        config
            .token
            .as_ref()
            .map(|token| token.expose().to_string())
    });
    let entrypoint = config.entrypoint.clone();
    let state = state::AppState::new(config);
    let sessions = state.sessions.clone();
    let trees = state.process.trees().clone();
    let lsp = state.lsp.clone();
    let ptys = state.ptys.clone();
    let local = listeners.sdk_api.is_some();
    let terminal = listeners
        .terminal
        .map(|listener| (listener, http::terminal::router(state.clone(), local)));
    if !entrypoint.is_empty() {
        match sessions.start_entrypoint(&entrypoint) {
            Ok(()) => tracing::info!(command = ?entrypoint, "entrypoint started"),
            Err(err) => {
                tracing::error!(command = ?entrypoint, "cannot start the entrypoint: {}", err.message)
            }
        }
    }
    let token = state.shutdown.clone();
    let ssh = match (listeners.ssh, ssh_host_key) {
        (Some(listener), Some(key)) => {
            let server = Arc::new(ssh::Server::new(state.clone(), ssh_settings, key));
            let logged = server.clone();
            let _ = tokio::task::spawn_blocking(move || logged.log_start()).await;
            Some((listener, server))
        }
        _ => None,
    };
    let signing_key = state.signing_key.clone();
    let metrics = state.metrics.clone();
    let toolbox = http::router(state);
    let trigger = token.clone();
    let teardown = tokio::spawn(async move {
        if let Some(signal) = shutdown.await {
            sessions.signal_entrypoint(signal, ENTRYPOINT_GRACE).await;
        }
        trigger.cancel();
        let registry = tokio::task::spawn_blocking(move || trees.terminate_all(SESSION_GRACE));
        tokio::join!(
            sessions.terminate_all(SESSION_GRACE),
            ptys.terminate_all(SESSION_GRACE),
            lsp.stop_all()
        );
        let _ = registry.await;
    });

    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(serve(listeners.toolbox, toolbox.clone(), token.clone()));
    if let Some((listener, router)) = terminal {
        servers.spawn(serve(listener, router, token.clone()));
    }
    if let Some((listener, server)) = ssh {
        servers.spawn(ssh::serve(listener, server, token.clone()));
    }
    if let Some(listener) = listeners.sdk_api {
        let store = sdk_api::SandboxStore::new(sandbox_id);
        servers.spawn(serve(
            listener,
            http::sdk_api::router(store, sdk_api_key, signing_key, toolbox, metrics),
            token.clone(),
        ));
    }

    let all_done = async {
        let mut result = Ok(());
        while let Some(joined) = servers.join_next().await {
            match joined {
                Ok(Err(err)) => {
                    // One listener failing takes the daemon down cleanly, as Daytona's does.
                    token.cancel();
                    result = Err(err);
                }
                Err(err) => tracing::error!("server task failed: {err}"),
                Ok(Ok(())) => {}
            }
        }
        result
    };
    let result = tokio::select! {
        result = all_done => result,
        () = async { token.cancelled().await; tokio::time::sleep(DRAIN_DEADLINE).await } => {
            tracing::warn!("drain deadline passed; closing remaining connections");
            Ok(())
        }
    };
    if token.is_cancelled() {
        // Trees are torn down concurrently with the drain; wait for it (bounded by its graces)
        // so the process does not exit with children alive.
        let _ = tokio::time::timeout(
            ENTRYPOINT_GRACE + SESSION_GRACE + Duration::from_secs(1),
            teardown,
        )
        .await;
    }
    result
}

/// `toolboxd mcp`: serves the MCP tools to one client over stdin/stdout until stdin closes or
/// `shutdown` resolves, with no listener. Then every tree the client's tools started (commands,
/// sessions, language servers) is terminated as at daemon shutdown.
pub async fn run_mcp_stdio(
    config: Config,
    shutdown: impl Future<Output = Option<nix::sys::signal::Signal>> + Send + 'static,
) -> std::io::Result<()> {
    let state = state::AppState::new(config);
    let sessions = state.sessions.clone();
    let trees = state.process.trees().clone();
    let lsp = state.lsp.clone();
    let token = state.shutdown.clone();
    let result = mcp::serve_stdio(state, async move {
        shutdown.await;
    })
    .await;
    token.cancel();
    let registry = tokio::task::spawn_blocking(move || trees.terminate_all(SESSION_GRACE));
    tokio::join!(sessions.terminate_all(SESSION_GRACE), lsp.stop_all());
    let _ = registry.await;
    result
}
