//! `AppState`: one cheap-to-clone handle per capability, shared by every handler.

use std::sync::Arc;

use crate::code::Code;
use crate::config::Config;
use crate::files::Files;
use crate::git::Git;
use crate::interpreter::Interpreters;
use crate::lsp::Lsp;
use crate::ports::Ports;
use crate::process::{Process, Sessions};
use crate::proxy::Proxy;
use crate::pty::Ptys;
use crate::sdk_api::SigningKey;
use crate::system::System;
use crate::watch::Watch;

/// What handlers reach the capabilities through.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The resolved configuration.
    pub config: Arc<Config>,
    /// The file capability.
    pub files: Files,
    /// Git on libgit2.
    pub git: Git,
    /// code_run.
    pub code: Code,
    /// Interpreter contexts.
    pub interpreters: Interpreters,
    /// Processes: the reaper, exec, the environment of new children.
    pub process: Process,
    /// Sessions: long-lived shells.
    pub sessions: Sessions,
    /// PTYs: named ones (`/process/pty`) and the web terminal's.
    pub ptys: Ptys,
    /// System metrics.
    pub system: System,
    /// Language servers.
    pub lsp: Lsp,
    /// File watching.
    pub watch: Watch,
    /// Cancelled as shutdown begins: listeners stop accepting, long-lived streams (MCP
    /// sessions and their SSE streams) end.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Listening TCP ports.
    pub ports: Ports,
    /// The preview proxy and its connection pool.
    pub proxy: Proxy,
    /// The key of signed file URLs: `--signing-key`, else a fresh one (local SDK mode serves and
    /// rotates it; the toolbox listener accepts signed URLs only with `--signing-key`).
    pub signing_key: SigningKey,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// Builds every capability from the configuration.
    pub fn new(config: Config) -> AppState {
        let signing_key = match &config.signing_key {
            Some(key) => SigningKey::fixed(key.expose()),
            None => SigningKey::default(),
        };
        let files = Files::new(config.workdir.clone(), config.umask);
        let process = Process::start(
            config.shell.clone(),
            config.workdir.clone(),
            config.max_output,
            config.max_log,
        );
        let sessions = Sessions::new(
            process.clone(),
            config.home.join(".toolboxd").join("sessions"),
            config.history,
        );
        let ptys = Ptys::new(process.clone());
        let git = Git::new(config.workdir.clone(), config.home.clone());
        let code = Code::new(process.clone());
        let interpreters = Interpreters::new(process.clone(), code.clone());
        let lsp = Lsp::new(process.clone(), config.workdir.clone(), config.lsp.clone());
        let watch = Watch::new(config.max_watches);
        AppState {
            interpreters,
            code,
            git,
            sessions,
            ptys,
            config: Arc::new(config),
            files,
            process,
            system: System::default(),
            lsp,
            watch,
            shutdown: tokio_util::sync::CancellationToken::new(),
            ports: Ports::default(),
            proxy: Proxy::new(),
            signing_key,
            metrics: Arc::new(crate::metrics::Metrics::new()),
        }
    }
}
