//! Flags and environment, resolved in two steps: `Cli` mirrors the command line, `Config` is what
//! the daemon runs with (absolute work dir, home, umask, sandbox id).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// `toolboxd [OPTIONS] [-- ENTRYPOINT...]`
#[derive(Debug, Parser)]
#[command(
    name = "toolboxd",
    version,
    about = "In-sandbox agent: the Daytona-compatible toolbox API (:2280), the web terminal \
             (:22222) and PID 1 for the image's own command",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Address of the toolbox HTTP API. Port 0 binds a free port. Default 0.0.0.0:2280, or
    /// 127.0.0.1:2280 when --sdk-api-addr is given (local development stays on this machine).
    #[arg(long, env = "TOOLBOXD_TOOLBOX_ADDR")]
    pub toolbox_addr: Option<SocketAddr>,

    /// Address of the web terminal (an xterm.js page with a login shell per connection), or
    /// `off`. Port 0 binds a free port. Default 0.0.0.0:22222, or 127.0.0.1:22222 when
    /// --sdk-api-addr is given.
    #[arg(long, env = "TOOLBOXD_TERMINAL_ADDR", value_parser = parse_listen)]
    pub terminal_addr: Option<Listen>,

    /// Address of the SSH server (shells, commands, SFTP/scp, rsync, `ssh -L`), or `off`. Port 0
    /// binds a free port. Default 0.0.0.0:22220, or 127.0.0.1:22220 when --sdk-api-addr is given.
    #[arg(long, env = "TOOLBOXD_SSH_ADDR", value_parser = parse_listen)]
    pub ssh_addr: Option<Listen>,

    /// The SSH host key (OpenSSH format). Created (ed25519, mode 0600) on first start and kept,
    /// so clients see the same key after a restart. Default: $HOME/.toolboxd/ssh_host_ed25519_key.
    #[arg(long, env = "TOOLBOXD_SSH_HOST_KEY")]
    pub ssh_host_key: Option<PathBuf>,

    /// A file of public keys (authorized_keys format) that may log in over SSH, besides
    /// $HOME/.ssh/authorized_keys. Both are read again at every login.
    #[arg(long, env = "TOOLBOXD_SSH_AUTHORIZED_KEYS")]
    pub ssh_authorized_keys: Option<PathBuf>,

    /// Accept any public key over SSH. Only for a platform gateway that authenticates users in
    /// front of the sandbox: anyone who reaches the port gets a shell.
    #[arg(long, env = "TOOLBOXD_SSH_INSECURE_ACCEPT_ANY_KEY")]
    pub ssh_insecure_accept_any_key: bool,

    /// Seconds an SSH connection may stay without an open channel (no shell, command, transfer
    /// or forward) before it is closed; 0 keeps such connections open.
    #[arg(long, env = "TOOLBOXD_SSH_IDLE_TIMEOUT", default_value_t = 900)]
    pub ssh_idle_timeout: u64,

    /// Directory that relative paths resolve against. Default: the current directory, or $HOME
    /// when DAYTONA_USER_HOME_AS_WORKDIR=true.
    #[arg(long, env = "TOOLBOXD_WORKDIR")]
    pub workdir: Option<PathBuf>,

    /// Serve a minimal Daytona control plane for this one sandbox on this address, so the
    /// unmodified Daytona SDKs work locally (DAYTONA_API_URL=http://ADDR/api). Off by default.
    #[arg(long, env = "TOOLBOXD_SDK_API_ADDR")]
    pub sdk_api_addr: Option<SocketAddr>,

    /// In local SDK mode, require `Authorization: Bearer KEY` on the control plane and the
    /// toolbox proxy (signed file URLs excepted). Default: any key is accepted.
    #[arg(long, env = "TOOLBOXD_SDK_API_KEY", hide_env_values = true)]
    pub sdk_api_key: Option<String>,

    /// Require this token on every listener: `Authorization: Bearer TOKEN` or `X-Toolboxd-Token:
    /// TOKEN` on HTTP (browsers may pass `?token=TOKEN` once and get a cookie), the password over
    /// SSH, and the API key in local SDK mode unless --sdk-api-key is given. Only `GET /version`
    /// and `GET /healthz` stay open. Default: no token (nothing is authenticated).
    #[arg(
        long,
        env = "TOOLBOXD_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// Accept the SDKs' signed file URLs (`expires` + `signature`, HMAC-SHA256 under this key) on
    /// `GET /files/download` and `POST /files/upload-v2` in place of the token. In local SDK mode
    /// it is also the key the control plane serves (and rotates). Default: no signed URLs outside
    /// local SDK mode.
    #[arg(long, env = "TOOLBOXD_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,

    /// Read the token from this file (surrounding whitespace dropped), so it stays out of the
    /// process list and the environment.
    #[arg(long, env = "TOOLBOXD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Shell that runs commands. Default: bash from PATH, else sh.
    #[arg(long, env = "TOOLBOXD_SHELL")]
    pub shell: Option<PathBuf>,

    /// Most output kept per command, in bytes; the rest is cut with a marker.
    #[arg(long, env = "TOOLBOXD_MAX_OUTPUT", default_value_t = 64 * 1024 * 1024)]
    pub max_output: usize,

    /// Most bytes of a session command's log kept on disk; 0 (the default) keeps all of it.
    /// Answers that carry a log in their body (sync session exec, the logs snapshot) hold at most
    /// --max-output bytes of it; following the log streams all of it.
    #[arg(long, env = "TOOLBOXD_MAX_LOG", default_value_t = 0)]
    pub max_log: usize,

    /// Finished commands each session keeps (with their logs); once a command ends, the oldest
    /// finished ones beyond this are evicted (their ids answer 404 saying so). At least 1.
    #[arg(long, env = "TOOLBOXD_MAX_HISTORY", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_history: u64,

    /// Bytes of logs (and scripts) of finished commands each session keeps; the oldest finished
    /// commands are evicted beyond it (the one that just ended always stays).
    #[arg(long, env = "TOOLBOXD_MAX_HISTORY_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_history_bytes: u64,
    /// Command of the Python language server: words split at whitespace, or a JSON array of
    /// strings. Default: pylsp, else basedpyright-langserver --stdio, else pyright-langserver
    /// --stdio, whichever is first on PATH.
    #[arg(long, env = "TOOLBOXD_LSP_PYTHON")]
    pub lsp_python_cmd: Option<String>,

    /// Command of the TypeScript/JavaScript language server (same forms). Default:
    /// typescript-language-server --stdio.
    #[arg(long, env = "TOOLBOXD_LSP_TYPESCRIPT")]
    pub lsp_typescript_cmd: Option<String>,

    /// Most directories the file watchers may watch at once (inotify watches, shared by every
    /// watcher); past it a new watch is refused with 507. The kernel's own limit
    /// (fs.inotify.max_user_watches) applies as well.
    #[arg(long, env = "TOOLBOXD_MAX_WATCHES", default_value_t = 100_000)]
    pub max_watches: usize,

    /// The URL clients reach this toolbox API at (e.g. the sandbox's preview URL of port 2280),
    /// for links toolboxd hands out: the MCP `preview_link` tool answers BASE/proxy/PORT/.
    /// Default: the scheme (`X-Forwarded-Proto`) and `Host` of the MCP request, or
    /// http://127.0.0.1:2280 over stdio.
    #[arg(long, env = "TOOLBOXD_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// toolboxd's own oom_score_adj (-1000..=1000), so the kernel's OOM killer picks user code
    /// first when memory runs out; every child starts back at 0. 0 leaves it alone. Lowering
    /// needs CAP_SYS_RESOURCE (root in a sandbox); without it, it is left alone with a warning.
    #[arg(long, env = "TOOLBOXD_OOM_SCORE_ADJ", default_value_t = -900, allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub oom_score_adj: i32,

    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, env = "TOOLBOXD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// The image's own command, run as the `entrypoint` session.
    #[arg(last = true)]
    pub entrypoint: Vec<String>,

    /// Helper commands.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The toolbox address: as given, else all interfaces in a sandbox, loopback in local SDK mode.
    pub fn toolbox_addr(&self) -> SocketAddr {
        self.toolbox_addr.unwrap_or_else(|| {
            let ip = if self.sdk_api_addr.is_some() {
                [127, 0, 0, 1]
            } else {
                [0, 0, 0, 0]
            };
            SocketAddr::from((ip, 2280))
        })
    }

    /// The terminal address: as given (`None` for `off`), else all interfaces in a sandbox,
    /// loopback in local SDK mode.
    pub fn terminal_addr(&self) -> Option<SocketAddr> {
        match self.terminal_addr {
            Some(Listen::Off) => None,
            Some(Listen::At(addr)) => Some(addr),
            None => {
                let ip = if self.sdk_api_addr.is_some() {
                    [127, 0, 0, 1]
                } else {
                    [0, 0, 0, 0]
                };
                Some(SocketAddr::from((ip, 22222)))
            }
        }
    }
}

impl Cli {
    /// The SSH address: as given (`None` for `off`), else all interfaces in a sandbox, loopback
    /// in local SDK mode.
    pub fn ssh_addr(&self) -> Option<SocketAddr> {
        match self.ssh_addr {
            Some(Listen::Off) => None,
            Some(Listen::At(addr)) => Some(addr),
            None => {
                let ip = if self.sdk_api_addr.is_some() {
                    [127, 0, 0, 1]
                } else {
                    [0, 0, 0, 0]
                };
                Some(SocketAddr::from((ip, 22220)))
            }
        }
    }
}

/// A listener's address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Not served.
    Off,
    /// Served here.
    At(SocketAddr),
}

fn parse_listen(text: &str) -> Result<Listen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    text.parse()
        .map(Listen::At)
        .map_err(|_| format!("{text:?} is neither HOST:PORT nor `off`"))
}

/// Helper commands that do not start the daemon.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the toolbox OpenAPI document (OpenAPI 3.1 JSON) and exit.
    Openapi,
    /// Serve the MCP tools over stdio for an agent that starts toolboxd itself: stdin and stdout
    /// carry the protocol, logs go to stderr, nothing listens. Ends (with every process it
    /// started) when stdin closes or on SIGTERM/SIGINT.
    Mcp {
        /// Directory that relative paths resolve against (default: the current directory).
        #[arg(long, env = "TOOLBOXD_WORKDIR")]
        workdir: Option<PathBuf>,
        /// The URL of a toolbox API whose preview proxy `preview_link` should point at
        /// (default http://127.0.0.1:2280).
        #[arg(long, env = "TOOLBOXD_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// The entrypoint session of a running toolboxd.
    Entrypoint {
        /// What to do.
        #[command(subcommand)]
        action: EntrypointAction,
    },
}

/// `toolboxd entrypoint …`
#[derive(Debug, Subcommand)]
pub enum EntrypointAction {
    /// Print the entrypoint's output (stdout to stdout, stderr to stderr), following it until
    /// the entrypoint exits, as Daytona's `daytona entrypoint logs` does.
    Logs {
        /// The running toolboxd's toolbox address.
        #[arg(long, env = "TOOLBOXD_TOOLBOX_ADDR", default_value = "127.0.0.1:2280")]
        addr: SocketAddr,
        /// Print what there is now and exit instead of following.
        #[arg(long)]
        no_follow: bool,
    },
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The resolved configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute directory relative paths resolve against (`/work-dir`).
    pub workdir: PathBuf,
    /// The user's home (`/user-home-dir`).
    pub home: PathBuf,
    /// Sandbox id used in local SDK mode and logs.
    pub sandbox_id: String,
    /// The process umask, read once at start: new files get `0o666 & !umask`.
    pub umask: u32,
    /// The image's command, run as the `entrypoint` session.
    pub entrypoint: Vec<String>,
    /// Local SDK mode's required bearer key, if any.
    pub sdk_api_key: Option<String>,
    /// The shell commands run under.
    pub shell: PathBuf,
    /// Output cap per command, in bytes: what a reply holds.
    pub max_output: usize,
    /// Session log cap per command on disk, in bytes (0: none).
    pub max_log: usize,
    /// Finished commands (and bytes of their logs) a session keeps.
    pub history: crate::process::History,
    /// Language server commands (`None`: the defaults).
    pub lsp: crate::lsp::Commands,
    /// Most directories watched at once.
    pub max_watches: usize,
    /// Where clients reach the toolbox API (`--public-url`), without a trailing `/`.
    pub public_url: Option<String>,
    /// The SSH server's settings.
    pub ssh: SshSettings,
    /// The token every listener requires (`--token`, `--token-file`), if any.
    pub token: Option<Secret>,
    /// The key of signed file URLs on the toolbox listener (`--signing-key`), if any.
    pub signing_key: Option<Secret>,
}

/// How the SSH server authenticates and how long it keeps idle connections.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// The host key file (created when missing).
    pub host_key: PathBuf,
    /// Files of authorized public keys, read at every login: the user's
    /// `~/.ssh/authorized_keys` and `--ssh-authorized-keys`.
    pub authorized_keys: Vec<PathBuf>,
    /// Any public key is accepted (`--ssh-insecure-accept-any-key`).
    pub accept_any_key: bool,
    /// The password SSH accepts: the token (`--token`), if any; `None` refuses password logins.
    pub password: Option<Secret>,
    /// How long a connection may stay without an open channel (`None`: no limit).
    pub idle_timeout: Option<std::time::Duration>,
}

impl SshSettings {
    /// The defaults for a user whose home is `home`.
    pub fn for_home(home: &std::path::Path) -> SshSettings {
        SshSettings {
            host_key: home.join(".toolboxd").join("ssh_host_ed25519_key"),
            authorized_keys: vec![home.join(".ssh").join("authorized_keys")],
            accept_any_key: false,
            password: None,
            idle_timeout: Some(std::time::Duration::from_secs(900)),
        }
    }
}

/// A secret string: compared in constant time, never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for a place that must hand it on (local SDK mode's API key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, in time that depends only on the lengths.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths (for secrets and
/// signatures).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in a.iter().enumerate() {
        diff |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Config {
    /// Resolves the command line against the environment. Call before any thread starts: it
    /// reads the umask by setting it and putting it back.
    pub fn from_cli(cli: &Cli) -> Result<Config, String> {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|home| !home.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("/"));
        let home_as_workdir = std::env::var("DAYTONA_USER_HOME_AS_WORKDIR")
            .map(|value| value.eq_ignore_ascii_case("true"))
            .unwrap_or(false);
        let workdir = match &cli.workdir {
            Some(dir) => dir.clone(),
            None if home_as_workdir => home.clone(),
            None => std::env::current_dir()
                .map_err(|err| format!("cannot read the current directory: {err}"))?,
        };
        let workdir = std::fs::canonicalize(&workdir)
            .map_err(|err| format!("work dir {}: {err}", workdir.display()))?;
        if !workdir.is_dir() {
            return Err(format!("work dir {} is not a directory", workdir.display()));
        }
        let sandbox_id = std::env::var("DAYTONA_SANDBOX_ID")
            .ok()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| "local".to_string());
        let token = read_token(cli)?;
        let mut ssh = ssh_settings(cli, &home);
        ssh.password = token.clone();
        Ok(Config {
            workdir,
            home,
            sandbox_id,
            umask: read_umask(),
            entrypoint: cli.entrypoint.clone(),
            sdk_api_key: cli.sdk_api_key.clone().filter(|key| !key.is_empty()),
            shell: crate::process::resolve_shell(cli.shell.as_deref()),
            max_output: cli.max_output,
            max_log: cli.max_log,
            history: crate::process::History {
                max_commands: usize::try_from(cli.max_history).unwrap_or(usize::MAX),
                max_bytes: cli.max_history_bytes,
            },
            lsp: crate::lsp::Commands {
                python: parse_lsp(cli.lsp_python_cmd.as_deref(), "--lsp-python-cmd")?,
                typescript: parse_lsp(cli.lsp_typescript_cmd.as_deref(), "--lsp-typescript-cmd")?,
            },
            max_watches: cli.max_watches,
            public_url: parse_public_url(cli.public_url.as_deref())?,
            ssh,
            token,
            signing_key: cli
                .signing_key
                .as_deref()
                .filter(|key| !key.is_empty())
                .map(Secret::new),
        })
    }

    /// A configuration for tests and embedding: `workdir` and `home` as given, umask 022.
    pub fn for_dir(workdir: PathBuf, home: PathBuf) -> Config {
        let ssh = SshSettings::for_home(&home);
        Config {
            workdir,
            home,
            sandbox_id: "local".to_string(),
            umask: 0o022,
            entrypoint: Vec::new(),
            sdk_api_key: None,
            shell: crate::process::resolve_shell(None),
            max_output: 64 * 1024 * 1024,
            max_log: 0,
            history: crate::process::History::default(),
            lsp: crate::lsp::Commands::default(),
            max_watches: 100_000,
            public_url: None,
            ssh,
            token: None,
            signing_key: None,
        }
    }
}

/// `--token` (empty: none) or the content of `--token-file` (must not be empty).
fn read_token(cli: &Cli) -> Result<Option<Secret>, String> {
    if let Some(path) = &cli.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("--token-file {}: {err}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!(
                "--token-file {}: the file is empty",
                path.display()
            ));
        }
        return check_token(token).map(Some);
    }
    match cli.token.as_deref().filter(|token| !token.is_empty()) {
        Some(token) => check_token(token).map(Some),
        None => Ok(None),
    }
}

/// A token must fit in a header and a cookie: visible ASCII, no `;` or `,`.
fn check_token(token: &str) -> Result<Secret, String> {
    let fits = token
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',' && b != b'"' && b != b'\\');
    if !fits {
        return Err("the token must be visible ASCII without ; , \" or \\".to_string());
    }
    Ok(Secret::new(token))
}

/// `--public-url`: an http(s) URL; a trailing `/` is dropped.
fn parse_public_url(text: Option<&str>) -> Result<Option<String>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let valid = ["http://", "https://"].iter().any(|scheme| {
        text.len() > scheme.len() && text[..scheme.len()].eq_ignore_ascii_case(scheme)
    });
    if !valid || text.contains(char::is_whitespace) {
        return Err(format!(
            "--public-url {text:?}: expected an http:// or https:// URL"
        ));
    }
    Ok(Some(text.trim_end_matches('/').to_string()))
}

/// The SSH settings from the command line (paths as given, relative to the current directory).
fn ssh_settings(cli: &Cli, home: &std::path::Path) -> SshSettings {
    let mut settings = SshSettings::for_home(home);
    if let Some(path) = &cli.ssh_host_key {
        settings.host_key = path.clone();
    }
    if let Some(path) = &cli.ssh_authorized_keys {
        settings.authorized_keys.push(path.clone());
    }
    settings.accept_any_key = cli.ssh_insecure_accept_any_key;
    settings.idle_timeout =
        (cli.ssh_idle_timeout > 0).then(|| std::time::Duration::from_secs(cli.ssh_idle_timeout));
    settings
}

/// A configured language server command (empty: the default).
fn parse_lsp(text: Option<&str>, flag: &str) -> Result<Option<Vec<String>>, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => crate::lsp::parse_command(text)
            .map(Some)
            .map_err(|err| format!("{flag}: {err}")),
    }
}

/// Reads the umask. Setting it is the only portable way; it is put back at once.
fn read_umask() -> u32 {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o022));
    umask(old);
    old.bits()
}
