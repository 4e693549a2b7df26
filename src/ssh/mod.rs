//! SSH on `--ssh-addr` (:22220): the edge for SSH clients, as `http` is for HTTP. It knows russh
//! (transport, keys, channels) and calls the capabilities for the work: `pty` for terminals,
//! `process` for commands (`Process::spawn_piped`, through the reaper, on the process registry),
//! `files` for SFTP.
//!
//! Safe by default: only public keys listed in `~/.ssh/authorized_keys` or
//! `--ssh-authorized-keys` log in (read again at every attempt), a password only once token auth
//! exists (`SshSettings::password`), and nothing at all when neither is configured. Refused
//! attempts are rate-limited per source address (`auth.rs`). A connection must log in within
//! `LOGIN_GRACE`, is closed after `--ssh-idle-timeout` without an open channel, and after
//! `KEEPALIVE_MAX` unanswered keepalives (a client that vanished). Every connection, and what
//! its channels started, ends at shutdown.

mod auth;
mod channel;
mod connection;
mod exec;
mod forward;
mod keys;
mod sftp;
mod terminal;

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::Config as RusshConfig;
use russh::{MethodKind, MethodSet, SshId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

pub use keys::load_host_key;

use crate::config::SshSettings;
use crate::state::AppState;
use connection::{Activity, Connection};

/// How long a client has to log in.
pub const LOGIN_GRACE: Duration = Duration::from_secs(60);
/// Keepalive interval while the client sends nothing.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Unanswered keepalives before the connection counts as gone.
pub const KEEPALIVE_MAX: usize = 3;
/// How long connections get to close at shutdown before they are cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Connections that have not logged in yet, at most (more are closed at once, as OpenSSH's
/// MaxStartups does): each costs a key exchange.
pub const MAX_UNAUTHENTICATED: usize = 64;

/// What the log says when no key is configured.
pub const HOW_TO_CONFIGURE: &str = "add a public key to ~/.ssh/authorized_keys (of the user \
     toolboxd runs as) or pass --ssh-authorized-keys FILE; keys are read at every login, no \
     restart needed";

/// What every connection shares.
pub struct Server {
    app: AppState,
    settings: SshSettings,
    config: Arc<RusshConfig>,
    limiter: auth::Limiter,
    /// Connections not logged in yet.
    unauthenticated: AtomicUsize,
}

/// Counts a connection among those not logged in until it logs in or ends.
pub struct NotLoggedIn(Arc<Server>);

impl Drop for NotLoggedIn {
    fn drop(&mut self) {
        self.0.unauthenticated.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// The server for `app` with `host_key`.
    pub fn new(app: AppState, settings: SshSettings, host_key: PrivateKey) -> Server {
        let mut methods = vec![MethodKind::PublicKey];
        if settings.password.is_some() {
            methods.push(MethodKind::Password);
        }
        let config = RusshConfig {
            server_id: SshId::Standard(Cow::Owned(format!(
                "SSH-2.0-toolboxd_{}",
                env!("CARGO_PKG_VERSION")
            ))),
            methods: MethodSet::from(&methods[..]),
            // Refusals take this long (russh pads them), which also slows guessing; the `none`
            // probe every client starts with is answered at once.
            auth_rejection_time: Duration::from_millis(200),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![host_key],
            window_size: 2 * 1024 * 1024,
            maximum_packet_size: 32 * 1024,
            inactivity_timeout: None,
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            ..RusshConfig::default()
        };
        Server {
            app,
            settings,
            config: Arc::new(config),
            limiter: auth::Limiter::default(),
            unauthenticated: AtomicUsize::new(0),
        }
    }

    /// Blocking. Logs how logins are decided (the host key's fingerprint, the keys configured,
    /// a warning when anyone or no one can log in).
    pub fn log_start(&self) {
        if let Some(key) = self.config.keys.first() {
            tracing::info!("ssh: host key {}", keys::fingerprint(key.public_key()));
        }
        if self.settings.accept_any_key {
            tracing::warn!(
                "ssh: --ssh-insecure-accept-any-key: ANY public key logs in; only for a gateway \
                 that authenticates users in front of this sandbox"
            );
            return;
        }
        let (usable, skipped) = keys::survey(&self.settings.authorized_keys);
        for line in skipped {
            tracing::warn!(
                "ssh: authorized key at {line} is skipped: toolboxd does not enforce that option"
            );
        }
        let files: Vec<String> = self
            .settings
            .authorized_keys
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        if usable == 0 && self.settings.password.is_none() {
            tracing::warn!(
                "ssh: no authorized keys in {}: every login is refused; {HOW_TO_CONFIGURE}",
                files.join(", ")
            );
        } else {
            tracing::info!("ssh: {usable} authorized key(s) in {}", files.join(", "));
        }
    }
}

/// Serves SSH on `listener` until `shutdown` is cancelled; then every connection is told and
/// closed (their channels' programs end with them) and this returns.
pub async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    crate::http::serve::accept_failed(&err, &shutdown).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // An address locked out for failed logins, or too many connections still logging in:
        // closed before the key exchange.
        if !server.limiter.allows(peer.ip()) {
            tracing::debug!(peer = %peer, "ssh: connection refused: too many failed logins from this address");
            continue;
        }
        if server.unauthenticated.fetch_add(1, Ordering::SeqCst) >= MAX_UNAUTHENTICATED {
            server.unauthenticated.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(peer = %peer, "ssh: connection refused: {MAX_UNAUTHENTICATED} connections are still logging in");
            continue;
        }
        let pending = NotLoggedIn(server.clone());
        connections.spawn(serve_connection(
            server.clone(),
            stream,
            peer,
            pending,
            shutdown.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(
    server: Arc<Server>,
    stream: TcpStream,
    peer: SocketAddr,
    pending: NotLoggedIn,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    crate::metrics::SSH_CONNECTIONS.inc();
    // Counted down however the connection ends.
    struct Open;
    impl Drop for Open {
        fn drop(&mut self) {
            crate::metrics::SSH_CONNECTIONS.dec();
        }
    }
    let _open = Open;
    let local = stream.local_addr().unwrap_or(peer);
    let closing = CancellationToken::new();
    let cut = CancellationToken::new();
    let activity = Arc::new(Activity::default());
    let handler = Connection::new(
        server.clone(),
        peer,
        local,
        activity.clone(),
        closing.clone(),
        pending,
    );
    let stream = Severable::new(stream, cut.clone());
    let started = tokio::select! {
        started = russh::server::run_stream(server.config.clone(), stream, handler) => started,
        () = tokio::time::sleep(LOGIN_GRACE) => return,
        () = shutdown.cancelled() => return,
    };
    let Ok(mut session) = started else {
        return;
    };
    let handle = session.handle();
    let reason = tokio::select! {
        result = &mut session => {
            if let Err(err) = result {
                tracing::debug!(peer = %peer, "ssh: connection ended: {err}");
            }
            closing.cancel();
            return;
        }
        () = shutdown.cancelled() => "toolboxd is shutting down",
        reason = idle(&activity, server.settings.idle_timeout) => reason,
    };
    tracing::debug!(peer = %peer, "ssh: closing the connection: {reason}");
    // Channels end first (their programs are hung up or, at shutdown, terminated with every
    // other tree); then the client is told why, and a connection that does not go is cut.
    closing.cancel();
    let _ = tokio::time::timeout(
        CLOSE_GRACE,
        handle.disconnect(
            russh::Disconnect::ByApplication,
            reason.to_string(),
            "en".to_string(),
        ),
    )
    .await;
    if tokio::time::timeout(CLOSE_GRACE, &mut session)
        .await
        .is_err()
    {
        cut.cancel();
        let _ = tokio::time::timeout(CLOSE_GRACE, session).await;
    }
}

/// Resolves with the reason once the connection has been idle too long: not logged in within
/// `LOGIN_GRACE`, or no open channel for `timeout`.
async fn idle(activity: &Activity, timeout: Option<Duration>) -> &'static str {
    let deadline = tokio::time::Instant::now() + LOGIN_GRACE;
    while !activity.authenticated() {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if activity.authenticated() {
            break;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return "not logged in in time";
        }
    }
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if activity.channels() > 0 {
            changed.await;
            continue;
        }
        if tokio::time::timeout(timeout, changed).await.is_err() && activity.channels() == 0 {
            return "idle: no open channel";
        }
    }
}

/// A TCP stream that can be cut from outside: once `cut` is cancelled every read ends and every
/// write fails, so a connection whose client does not go away at shutdown still ends.
struct Severable {
    stream: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    token: CancellationToken,
}

impl Severable {
    fn new(stream: TcpStream, token: CancellationToken) -> Severable {
        Severable {
            stream,
            cut: Box::pin(token.clone().cancelled_owned()),
            token,
        }
    }

    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.token.is_cancelled() || self.cut.as_mut().poll(cx).is_ready()
    }
}

fn severed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by toolboxd",
    )
}

impl AsyncRead for Severable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.poll_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Severable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.poll_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.poll_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
