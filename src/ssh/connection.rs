//! One SSH connection: russh's `Handler`. It authenticates (keys from the authorized_keys files,
//! read at every attempt; the token as a password once token auth exists), rate-limited per
//! source address, and runs what each channel asks for: a terminal (`pty-req`, `window-change`),
//! `env`, `shell`, `exec`, the `sftp` subsystem, `signal`, and `direct-tcpip` forwards.
//!
//! Channel requests are answered here, in order, as they arrive (russh's reply flag is per
//! channel and the next request replaces it): a start is done before its answer is sent. The
//! program then runs on tasks of its own (`exec.rs`, `terminal.rs`, `sftp.rs`, `forward.rs`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, Pty as TermMode, Sig};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::channel::{read_into, signal_of, Inbox, Output};
use super::keys::{self, Grant, Lookup};
use super::{exec, forward, sftp, terminal, NotLoggedIn, Server};
use crate::error::Error;
use crate::process::{PipedControl, MARKER_VAR};
use crate::pty::{Pty, PtyOptions, MAX_SIZE};

/// The longest exec command: the shell gets it as its `-c` argument, and Linux takes at most
/// 128 KiB in one argument, its NUL included (`MAX_ARG_STRLEN`). russh's own packet limit
/// (256 KiB) is above it.
const MAX_COMMAND: usize = 128 * 1024 - 1;
/// Environment variables one channel may set with `env` requests, and their bytes in all.
const MAX_ENV_REQUESTS: usize = 256;
const MAX_ENV_BYTES: usize = 256 * 1024;

/// What a connection is doing, for its idle timer.
#[derive(Debug, Default)]
pub struct Activity {
    /// Channels open now.
    channels: AtomicUsize,
    /// The client logged in.
    authenticated: AtomicBool,
    /// Either of the above changed.
    pub changed: Notify,
}

impl Activity {
    /// Channels open now.
    pub fn channels(&self) -> usize {
        self.channels.load(Ordering::SeqCst)
    }

    /// Whether the client logged in.
    pub fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::SeqCst)
    }

    fn open(self: &Arc<Self>) -> OpenChannel {
        self.channels.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        OpenChannel(self.clone())
    }
}

/// Counts one open channel while it lives.
struct OpenChannel(Arc<Activity>);

impl Drop for OpenChannel {
    fn drop(&mut self) {
        self.0.channels.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A session channel and what was asked of it so far.
struct SessionChannel {
    /// Taken by the program that starts on it.
    write: Option<ChannelWriteHalf<Msg>>,
    inbox: Arc<Inbox>,
    ended: CancellationToken,
    env: BTreeMap<String, String>,
    terminal: Option<TermRequest>,
    running: Option<Running>,
}

#[derive(Debug, Clone)]
struct TermRequest {
    term: String,
    cols: u16,
    rows: u16,
}

enum Running {
    Piped(PipedControl),
    Terminal(Arc<Pty>),
    Sftp,
    /// The program could not start; the channel is ending.
    Refused,
}

/// The handler of one connection.
pub struct Connection {
    server: Arc<Server>,
    peer: SocketAddr,
    local: SocketAddr,
    activity: Arc<Activity>,
    /// Cancelled when the connection ends (the handler is dropped) or is closed by the server.
    closing: CancellationToken,
    _closing_on_drop: DropGuard,
    grant: Grant,
    /// The key (fingerprint) or method that logged the user in, for the log.
    logged_in_with: String,
    told_unconfigured: bool,
    /// Held until the client logs in (see `MAX_UNAUTHENTICATED`).
    not_logged_in: Option<NotLoggedIn>,
    channels: HashMap<ChannelId, SessionChannel>,
}

impl Connection {
    /// The handler for a client at `peer` that reached us at `local`.
    pub fn new(
        server: Arc<Server>,
        peer: SocketAddr,
        local: SocketAddr,
        activity: Arc<Activity>,
        closing: CancellationToken,
        not_logged_in: NotLoggedIn,
    ) -> Connection {
        Connection {
            server,
            peer,
            local,
            activity,
            _closing_on_drop: closing.clone().drop_guard(),
            closing,
            grant: Grant::ALL,
            logged_in_with: String::new(),
            told_unconfigured: false,
            not_logged_in: Some(not_logged_in),
            channels: HashMap::new(),
        }
    }

    /// Decides a public key login (the signature, when there is one, was checked by russh).
    async fn check_key(&mut self, user: &str, key: &PublicKey) -> Auth {
        let ip = self.peer.ip();
        if !self.server.limiter.allows(ip) {
            tracing::info!(peer = %self.peer, "ssh: login refused: too many failed attempts from this address; try again later");
            return Auth::reject();
        }
        let fingerprint = keys::fingerprint(key);
        if self.server.settings.accept_any_key {
            self.grant = Grant::ALL;
            self.logged_in_with = format!("any key accepted, {fingerprint}");
            return Auth::Accept;
        }
        let files = self.server.settings.authorized_keys.clone();
        let key = key.clone();
        let lookup = tokio::task::spawn_blocking(move || keys::lookup(&files, &key))
            .await
            .unwrap_or(Lookup::Unknown { listed: 0 });
        match lookup {
            Lookup::Authorized(grant) => {
                self.grant = grant;
                self.logged_in_with = format!("key {fingerprint}");
                Auth::Accept
            }
            Lookup::Unknown { listed } => {
                self.server.limiter.refused(ip);
                if listed == 0 && !self.told_unconfigured {
                    self.told_unconfigured = true;
                    tracing::warn!(peer = %self.peer, user, "ssh: login refused: no authorized keys are configured; {}", super::HOW_TO_CONFIGURE);
                } else {
                    tracing::debug!(peer = %self.peer, user, "ssh: key {fingerprint} is not authorized");
                }
                Auth::reject()
            }
        }
    }

    /// The environment a channel's program gets on top of the sandbox's: what OpenSSH sets about
    /// the connection, and the client's `env` requests.
    fn environment(&self, channel: &SessionChannel) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "SSH_CONNECTION".to_string(),
            format!(
                "{} {} {} {}",
                self.peer.ip(),
                self.peer.port(),
                self.local.ip(),
                self.local.port()
            ),
        );
        env.insert(
            "SSH_CLIENT".to_string(),
            format!(
                "{} {} {}",
                self.peer.ip(),
                self.peer.port(),
                self.local.port()
            ),
        );
        env.extend(channel.env.clone());
        env
    }

    /// Starts the shell (`command` `None`) or a command on `id`, on its terminal if one was
    /// requested, and answers the request. A program that cannot start gets its reason on
    /// stderr and exit status 127, as a shell says "command not found".
    async fn start(
        &mut self,
        id: ChannelId,
        command: Option<OsString>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let env = match self.channels.get(&id) {
            Some(channel) if channel.running.is_none() && channel.write.is_some() => {
                self.environment(channel)
            }
            _ => {
                session.channel_failure(id)?;
                return Ok(());
            }
        };
        let app = self.server.app.clone();
        let handle = session.handle();
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        let Some(write) = channel.write.take() else {
            return Ok(());
        };
        let output = Output::new(write, handle, channel.inbox.clone());
        let inbox = channel.inbox.clone();
        let ended = channel.ended.clone();
        if let Some(command) = command.as_ref().filter(|c| c.len() > MAX_COMMAND) {
            session.channel_success(id)?;
            channel.running = Some(Running::Refused);
            let err = Error::bad_request(format!(
                "the command is too long: {} bytes, and a command may hold at most {MAX_COMMAND} \
                 bytes (the shell gets it as one argument); send a longer script on stdin \
                 (ssh HOST bash -s < script)",
                command.len()
            ));
            tokio::spawn(refuse(output, err));
            return Ok(());
        }
        match channel.terminal.clone() {
            Some(term) => {
                let mut envs = env;
                envs.insert("TERM".to_string(), term.term.clone());
                let options = PtyOptions {
                    cols: Some(term.cols),
                    rows: Some(term.rows),
                    envs,
                    command,
                    exclusive: true,
                    ..PtyOptions::default()
                };
                let ptys = app.ptys.clone();
                let started = tokio::task::spawn_blocking(move || ptys.open_unlisted(options))
                    .await
                    .unwrap_or_else(|err| Err(Error::internal(format!("start failed: {err}"))));
                session.channel_success(id)?;
                match started {
                    Ok((pty, attachment)) => {
                        channel.running = Some(Running::Terminal(pty.clone()));
                        tokio::spawn(terminal::run(pty, attachment, output, inbox, ended));
                    }
                    Err(err) => {
                        channel.running = Some(Running::Refused);
                        tokio::spawn(refuse(output, err));
                    }
                }
            }
            None => {
                let args: Vec<OsString> = match command {
                    Some(command) => vec!["-c".into(), command],
                    None => vec!["-l".into()],
                };
                let process = app.process.clone();
                let started = tokio::task::spawn_blocking(move || process.spawn_piped(args, &env))
                    .await
                    .unwrap_or_else(|err| Err(Error::internal(format!("start failed: {err}"))));
                session.channel_success(id)?;
                match started {
                    Ok(child) => {
                        channel.running = Some(Running::Piped(child.control()));
                        tokio::spawn(exec::run(child, output, inbox, ended));
                    }
                    Err(err) => {
                        channel.running = Some(Running::Refused);
                        tokio::spawn(refuse(output, err));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Ends a channel whose program could not start: the reason on stderr, exit status 127.
async fn refuse(output: Output, err: Error) {
    tracing::info!("ssh: cannot start the program: {}", err.message);
    output
        .stderr(Bytes::from(format!("toolboxd: {}\r\n", err.message)))
        .await;
    output.exit_status(127).await;
    output.finish().await;
}

/// A terminal dimension from a request: 0 (the client does not know) is the default.
fn dimension(value: u32, default: u16) -> u16 {
    match value {
        0 => default,
        value => value.min(u32::from(MAX_SIZE)) as u16,
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.check_key(user, offer.public_key).await)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        verified: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.check_key(user, verified.public_key).await)
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ip = self.peer.ip();
        if !self.server.limiter.allows(ip) {
            tracing::info!(peer = %self.peer, "ssh: login refused: too many failed attempts from this address; try again later");
            return Ok(Auth::reject());
        }
        match &self.server.settings.password {
            Some(secret) if secret.matches(password) => {
                self.grant = Grant::ALL;
                self.logged_in_with = "password".to_string();
                Ok(Auth::Accept)
            }
            _ => {
                self.server.limiter.refused(ip);
                tracing::debug!(peer = %self.peer, user, "ssh: password refused");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, "ssh: logged in ({})", self.logged_in_with);
        self.not_logged_in = None;
        self.activity.authenticated.store(true, Ordering::SeqCst);
        self.activity.changed.notify_waiters();
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.server.app.process.trees().check_open().is_err() {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // Channels toolboxd closed first are not reported by russh (`channel_close` only
        // follows the client's close): forget the ones that ended.
        self.channels.retain(|_, state| !state.ended.is_cancelled());
        let id = channel.id();
        let (read, write) = channel.split();
        let inbox = Arc::new(Inbox::default());
        let ended = CancellationToken::new();
        let open = self.activity.open();
        let reader = read_into(read, inbox.clone(), ended.clone(), self.closing.clone());
        tokio::spawn(async move {
            reader.await;
            drop(open);
        });
        self.channels.insert(
            id,
            SessionChannel {
                write: Some(write),
                inbox,
                ended,
                env: BTreeMap::new(),
                terminal: None,
                running: None,
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.grant.port_forwarding {
            tracing::info!(peer = %self.peer, "ssh: port forwarding refused: the key has no-port-forwarding");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let targets = match forward::targets(host_to_connect, port_to_connect) {
            Ok(targets) => targets,
            Err(reason) => {
                tracing::info!(peer = %self.peer, "ssh: forward to {host_to_connect}:{port_to_connect} refused: {reason}");
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return Ok(());
            }
        };
        let open = self.activity.open();
        let closing = self.closing.clone();
        let handle = session.handle();
        tokio::spawn(async move {
            let stream = tokio::select! {
                stream = forward::connect(&targets) => stream,
                () = closing.cancelled() => return,
            };
            let stream = match stream {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!("ssh: forward to {targets:?} failed: {err}");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    return;
                }
            };
            reply.accept().await;
            let (read, write) = channel.split();
            let inbox = Arc::new(Inbox::default());
            let ended = CancellationToken::new();
            let output = Output::new(write, handle, inbox.clone());
            let reader = tokio::spawn(read_into(
                read,
                inbox.clone(),
                ended.clone(),
                closing.clone(),
            ));
            forward::run(stream, output, inbox, ended).await;
            let _ = reader.await;
            drop(open);
        });
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(TermMode, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = self.grant.pty;
        match self.channels.get_mut(&channel) {
            Some(state) if allowed && state.running.is_none() => {
                state.terminal = Some(TermRequest {
                    term: if term.is_empty() {
                        crate::pty::TERM.to_string()
                    } else {
                        term.to_string()
                    },
                    cols: dimension(col_width, crate::pty::DEFAULT_SIZE.0),
                    rows: dimension(row_height, crate::pty::DEFAULT_SIZE.1),
                });
                session.channel_success(channel)?;
            }
            _ => {
                if !allowed {
                    tracing::info!(peer = %self.peer, "ssh: terminal refused: the key has no-pty");
                }
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let name = variable_name.to_string();
        let value = variable_value.to_string();
        let valid = name != MARKER_VAR && crate::process::validate_env([(&name, &value)]).is_ok();
        let fits = |env: &BTreeMap<String, String>| {
            let bytes: usize = env
                .iter()
                .filter(|(key, _)| **key != name)
                .map(|(key, value)| key.len() + value.len())
                .sum();
            let count = env.len() + usize::from(!env.contains_key(&name));
            count <= MAX_ENV_REQUESTS && bytes + name.len() + value.len() <= MAX_ENV_BYTES
        };
        match self.channels.get_mut(&channel) {
            Some(state) if valid && state.running.is_none() && fits(&state.env) => {
                state.env.insert(name, value);
                session.channel_success(channel)?;
            }
            _ => {
                tracing::debug!(peer = %self.peer, "ssh: env request for {name:?} refused");
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, None, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Some(OsString::from_vec(data.to_vec())), session)
            .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(state) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let write = match state.write.take() {
            Some(write) if name == "sftp" && state.running.is_none() => write,
            other => {
                state.write = other;
                tracing::debug!(peer = %self.peer, "ssh: subsystem {name:?} refused");
                session.channel_failure(channel)?;
                return Ok(());
            }
        };
        state.running = Some(Running::Sftp);
        let output = Output::new(write, session.handle(), state.inbox.clone());
        session.channel_success(channel)?;
        tokio::spawn(sftp::run(
            self.server.app.files.clone(),
            self.server.app.config.home.clone(),
            sftp::symlink_order(session.remote_sshid()),
            output,
            state.inbox.clone(),
            state.ended.clone(),
        ));
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(state) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let Some(term) = state.terminal.as_mut() else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        term.cols = dimension(col_width, term.cols);
        term.rows = dimension(row_height, term.rows);
        if let Some(Running::Terminal(pty)) = &state.running {
            // An ioctl on the master: quick.
            let _ = pty.resize(term.cols, term.rows);
        }
        session.channel_success(channel)?;
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(signal) = signal_of(&signal) else {
            return Ok(());
        };
        match self
            .channels
            .get(&channel)
            .and_then(|state| state.running.as_ref())
        {
            Some(Running::Piped(control)) => control.signal_group(signal),
            Some(Running::Terminal(pty)) => {
                let pty = pty.clone();
                tokio::spawn(async move { pty.kill(signal).await });
            }
            Some(Running::Sftp | Running::Refused) | None => {}
        }
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, "ssh: remote forwarding ({address}:{port}) is not supported");
        Ok(false)
    }
}
