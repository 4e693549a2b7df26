//! One channel's two directions, decoupled from the connection.
//!
//! russh hands a channel's incoming data to it through a bounded queue and waits while that
//! queue is full, which stops the whole connection, window adjustments included. A program
//! that stops reading its input because its output waits for the client's window would then
//! never get that window: a deadlock (`ssh host cat < big`, rsync). So every channel has a
//! reader task that moves incoming data into an [`Inbox`] at once. The inbox holds the
//! connection back (backpressure on TCP) only while it holds more than [`SOFT_LIMIT`] and the
//! channel's own output is not waiting on the connection; past [`HARD_LIMIT`] it holds it back
//! regardless, and a channel stuck there for [`STALL_LIMIT`] is given up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Unread input past which the connection is held back while the channel's output is idle.
pub const SOFT_LIMIT: usize = 4 * 1024 * 1024;
/// Unread input past which the connection is held back in any case.
pub const HARD_LIMIT: usize = 64 * 1024 * 1024;
/// How long a channel may keep the connection held back at the hard limit before it is given up.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

/// A channel's unread input.
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
    readable: Notify,
    room: Notify,
    /// Output sends in progress on this channel (they need the connection to move).
    sending: AtomicUsize,
    /// Cancelled once toolboxd closed the channel: russh forgets a channel it closed first and
    /// ignores the client's answering close, so the reader learns of the end here.
    closed: CancellationToken,
}

#[derive(Debug, Default)]
struct InboxState {
    queue: VecDeque<Bytes>,
    bytes: usize,
    eof: bool,
    closed: bool,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `data`; waits while too much is unread (see the module docs). False when the
    /// channel should be given up (stuck at the hard limit, or the connection is closing).
    async fn push(&self, data: Bytes, closing: &CancellationToken) -> bool {
        {
            let mut state = self.lock();
            if state.closed {
                return true;
            }
            state.bytes += data.len();
            state.queue.push_back(data);
        }
        self.readable.notify_one();
        let stalled = tokio::time::sleep(STALL_LIMIT);
        tokio::pin!(stalled);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let (bytes, closed) = {
                let state = self.lock();
                (state.bytes, state.closed)
            };
            let sending = self.sending.load(Ordering::SeqCst) > 0;
            if closed || bytes <= SOFT_LIMIT || (bytes <= HARD_LIMIT && sending) {
                return true;
            }
            tokio::select! {
                () = room => {}
                () = closing.cancelled() => return false,
                () = &mut stalled, if bytes > HARD_LIMIT => return false,
            }
        }
    }

    /// The client will send no more.
    fn eof(&self) {
        self.lock().eof = true;
        self.readable.notify_one();
    }

    /// The channel is gone: unread input is dropped and the reader ends.
    pub fn close(&self) {
        {
            let mut state = self.lock();
            state.closed = true;
            state.queue.clear();
            state.bytes = 0;
        }
        self.readable.notify_one();
        self.room.notify_waiters();
    }

    /// The next chunk of input, in order; `None` once the client sent EOF (and everything
    /// before it was read) or the channel is gone. One consumer at a time.
    pub async fn recv(&self) -> Option<Bytes> {
        loop {
            let readable = self.readable.notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(chunk) = state.queue.pop_front() {
                    state.bytes -= chunk.len();
                    drop(state);
                    self.room.notify_waiters();
                    return Some(chunk);
                }
                if state.eof || state.closed {
                    return None;
                }
            }
            readable.await;
        }
    }

    fn sending(&self) -> Sending<'_> {
        self.sending.fetch_add(1, Ordering::SeqCst);
        // A reader holding the connection back must see that this channel now needs it.
        self.room.notify_waiters();
        Sending(self)
    }
}

struct Sending<'a>(&'a Inbox);

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Moves the channel's incoming data into `inbox` until the channel is closed (by the client, or
/// by toolboxd through its `Output`) or the connection ends; then closes the inbox and cancels
/// `ended`.
pub async fn read_into(
    mut read: ChannelReadHalf,
    inbox: Arc<Inbox>,
    ended: CancellationToken,
    closing: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            message = read.wait() => message,
            () = closing.cancelled() => None,
            () = inbox.closed.cancelled() => None,
        };
        match message {
            Some(ChannelMsg::Data { data }) => {
                if !inbox.push(data, &closing).await {
                    if !closing.is_cancelled() {
                        tracing::warn!(
                            "ssh: a channel left {} MiB of input unread for {} s while its output \
                             waited for the client; closing it",
                            HARD_LIMIT >> 20,
                            STALL_LIMIT.as_secs()
                        );
                    }
                    break;
                }
            }
            Some(ChannelMsg::Eof) => inbox.eof(),
            Some(ChannelMsg::Close) | None => break,
            // Requests are answered by the connection's handler; stderr from a client means
            // nothing here.
            Some(_) => {}
        }
    }
    inbox.close();
    ended.cancel();
}

/// The sending side of a channel: data, stderr, the exit and the end. Every send may wait for
/// the client's window; each is counted on the inbox so the reader never holds the connection
/// back while output waits on it.
pub struct Output {
    write: ChannelWriteHalf<Msg>,
    handle: Handle,
    inbox: Arc<Inbox>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").field("id", &self.id()).finish()
    }
}

impl Output {
    /// The output of a channel whose input goes to `inbox`.
    pub fn new(write: ChannelWriteHalf<Msg>, handle: Handle, inbox: Arc<Inbox>) -> Output {
        Output {
            write,
            handle,
            inbox,
        }
    }

    /// The channel.
    pub fn id(&self) -> ChannelId {
        self.write.id()
    }

    /// Sends `data` as channel data; false once the channel or connection is gone.
    pub async fn data(&self, data: Bytes) -> bool {
        let _sending = self.inbox.sending();
        self.write.data_bytes(data).await.is_ok()
    }

    /// Sends `data` as stderr (extended data 1); false once the channel or connection is gone.
    pub async fn stderr(&self, data: Bytes) -> bool {
        let _sending = self.inbox.sending();
        self.write.extended_data_bytes(1, data).await.is_ok()
    }

    /// Reports an exit code.
    pub async fn exit_status(&self, code: u32) {
        let _sending = self.inbox.sending();
        let _ = self.write.exit_status(code).await;
    }

    /// Reports a death by signal.
    pub async fn exit_signal(&self, signal: Sig) {
        let _sending = self.inbox.sending();
        let _ = self
            .handle
            .exit_signal_request(self.id(), signal, false, String::new(), String::new())
            .await;
    }

    /// Sends EOF: no more data follows.
    pub async fn eof(&self) {
        let _sending = self.inbox.sending();
        let _ = self.write.eof().await;
    }

    /// Closes the channel.
    pub async fn close(&self) {
        {
            let _sending = self.inbox.sending();
            let _ = self.write.close().await;
        }
        self.inbox.closed.cancel();
    }

    /// Sends EOF and closes the channel.
    pub async fn finish(&self) {
        self.eof().await;
        self.close().await;
    }
}

/// The SSH name of a signal (`INT`, `TERM`, …), as `exit-signal` carries it.
pub fn sig_of(signal: i32) -> Sig {
    match signal {
        libc::SIGABRT => Sig::ABRT,
        libc::SIGALRM => Sig::ALRM,
        libc::SIGFPE => Sig::FPE,
        libc::SIGHUP => Sig::HUP,
        libc::SIGILL => Sig::ILL,
        libc::SIGINT => Sig::INT,
        libc::SIGKILL => Sig::KILL,
        libc::SIGPIPE => Sig::PIPE,
        libc::SIGQUIT => Sig::QUIT,
        libc::SIGSEGV => Sig::SEGV,
        libc::SIGTERM => Sig::TERM,
        libc::SIGUSR1 => Sig::USR1,
        other => Sig::Custom(
            nix::sys::signal::Signal::try_from(other)
                .map(|s| s.as_str().trim_start_matches("SIG").to_string())
                .unwrap_or_else(|_| other.to_string()),
        ),
    }
}

/// The signal an SSH `signal` request names, if it is one.
pub fn signal_of(sig: &Sig) -> Option<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    Some(match sig {
        Sig::ABRT => Signal::SIGABRT,
        Sig::ALRM => Signal::SIGALRM,
        Sig::FPE => Signal::SIGFPE,
        Sig::HUP => Signal::SIGHUP,
        Sig::ILL => Signal::SIGILL,
        Sig::INT => Signal::SIGINT,
        Sig::KILL => Signal::SIGKILL,
        Sig::PIPE => Signal::SIGPIPE,
        Sig::QUIT => Signal::SIGQUIT,
        Sig::SEGV => Signal::SIGSEGV,
        Sig::TERM => Signal::SIGTERM,
        Sig::USR1 => Signal::SIGUSR1,
        Sig::Custom(name) => {
            let name = name.trim_start_matches("SIG");
            name.parse::<Signal>()
                .or_else(|_| format!("SIG{name}").parse::<Signal>())
                .ok()?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn input_comes_out_in_order_then_eof() {
        let inbox = Inbox::default();
        let closing = CancellationToken::new();
        assert!(inbox.push(Bytes::from_static(b"ab"), &closing).await);
        assert!(inbox.push(Bytes::from_static(b"c"), &closing).await);
        inbox.eof();
        assert_eq!(inbox.recv().await.unwrap(), Bytes::from_static(b"ab"));
        assert_eq!(inbox.recv().await.unwrap(), Bytes::from_static(b"c"));
        assert_eq!(inbox.recv().await, None);
    }

    #[tokio::test]
    async fn past_the_soft_limit_the_reader_waits_unless_output_is_waiting() {
        let inbox = Arc::new(Inbox::default());
        let closing = CancellationToken::new();
        let big = Bytes::from(vec![0u8; SOFT_LIMIT + 1]);
        // Held back: nobody reads and no output is in progress.
        let push = inbox.push(big.clone(), &closing);
        tokio::pin!(push);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut push)
            .await
            .is_err());
        // Output waiting on the connection releases it.
        let sending = inbox.sending();
        assert!(push.await);
        drop(sending);
        // Reading makes room too.
        let reader = inbox.clone();
        let pushed = tokio::spawn(async move {
            let closing = CancellationToken::new();
            reader.push(Bytes::from_static(b"x"), &closing).await
        });
        assert_eq!(inbox.recv().await.unwrap().len(), SOFT_LIMIT + 1);
        assert!(pushed.await.unwrap());
        // A closing connection gives up.
        let blocked = Bytes::from(vec![0u8; SOFT_LIMIT + 1]);
        closing.cancel();
        assert!(!inbox.push(blocked, &closing).await);
    }

    #[test]
    fn signals_map_both_ways() {
        assert!(matches!(sig_of(libc::SIGTERM), Sig::TERM));
        assert!(matches!(sig_of(libc::SIGWINCH), Sig::Custom(name) if name == "WINCH"));
        assert_eq!(
            signal_of(&Sig::Custom("WINCH".into())),
            Some(nix::sys::signal::Signal::SIGWINCH)
        );
        assert_eq!(signal_of(&Sig::INT), Some(nix::sys::signal::Signal::SIGINT));
        assert_eq!(signal_of(&Sig::Custom("NOPE".into())), None);
    }
}
