//! A PTY's output on its way to the clients: the scrollback ring a late joiner is replayed, and
//! one queue per attached client, bounded in bytes. The reader thread publishes into both under
//! one lock and never waits: a client whose queue is full is dropped (it can attach again and
//! gets the scrollback), so a slow client slows neither the others nor the program.
//!
//! An exclusive PTY (an SSH session's: one client, its creator) is the exception: there the
//! reader waits while the client's queue is full, so the program blocks on its terminal as it
//! would on a slow real one, and no output is ever dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

use super::PtyExit;

/// Bytes of recent output kept for clients that attach later.
pub const SCROLLBACK: usize = 256 * 1024;
/// Bytes queued for one client before it counts as slow and is dropped (about a tenth of a second
/// of a PTY at full speed).
pub const CLIENT_QUEUE: usize = 8 * 1024 * 1024;
/// How far into the replay a cut may move to land on a clean boundary.
const BOUNDARY_WINDOW: usize = 4096;

/// The fan-out of one PTY's output.
#[derive(Debug)]
pub(super) struct Output {
    inner: Mutex<Inner>,
    /// Set for an exclusive PTY: publishing waits here for room in the client's queue.
    room: Option<Arc<Room>>,
}

/// Where the reader of an exclusive PTY waits for its client to take output. The client takes
/// the lock before it signals, and the reader checks and waits under it, so no wake-up is lost.
#[derive(Debug, Default)]
pub(super) struct Room {
    lock: Mutex<()>,
    taken: Condvar,
}

impl Room {
    fn signal(&self) {
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.taken.notify_all();
    }
}

#[derive(Debug)]
struct Inner {
    ring: Ring,
    clients: Vec<Client>,
    ended: bool,
}

#[derive(Debug)]
struct Client {
    sender: mpsc::UnboundedSender<Bytes>,
    /// Bytes sent and not yet received: the bound.
    queued: Arc<AtomicUsize>,
    slow: Arc<AtomicBool>,
}

/// One client's end of its queue.
#[derive(Debug)]
pub(super) struct Queue {
    receiver: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    slow: Arc<AtomicBool>,
    room: Option<Arc<Room>>,
}

impl Queue {
    async fn recv(&mut self) -> Option<Bytes> {
        let chunk = self.receiver.recv().await?;
        self.took(chunk.len());
        Some(chunk)
    }

    fn try_recv(&mut self) -> Option<Bytes> {
        let chunk = self.receiver.try_recv().ok()?;
        self.took(chunk.len());
        Some(chunk)
    }

    fn took(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::SeqCst);
        if let Some(room) = &self.room {
            room.signal();
        }
    }

    /// Whether this client was dropped for falling behind.
    fn slow(&self) -> bool {
        self.slow.load(Ordering::SeqCst)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // A reader waiting for this client's room must see that it left.
        self.receiver.close();
        if let Some(room) = &self.room {
            room.signal();
        }
    }
}

impl Output {
    /// The output of a PTY; `exclusive` for one whose only client is its creator, whose reader
    /// waits for room instead of dropping the client.
    pub(super) fn new(exclusive: bool) -> Output {
        Output {
            inner: Mutex::new(Inner {
                ring: Ring::new(SCROLLBACK),
                clients: Vec::new(),
                ended: false,
            }),
            room: exclusive.then(Arc::default),
        }
    }

    /// Exclusive PTYs: waits (on the reader thread) until every client has room for `len` more
    /// bytes or has gone.
    fn wait_for_room(&self, room: &Room, len: usize) {
        let mut guard = room.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let full = self.lock().clients.iter().any(|client| {
                client.queued.load(Ordering::SeqCst) + len > CLIENT_QUEUE
                    && client.queued.load(Ordering::SeqCst) > 0
                    && !client.sender.is_closed()
            });
            if !full {
                return;
            }
            // The timeout only bounds a wait whose signal was missed by a client that never
            // takes the lock (none does).
            guard = room
                .taken
                .wait_timeout(guard, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `data` to the scrollback and queues it for every client; a client whose queue is
    /// full is marked slow and dropped, one that went away is forgotten.
    pub(super) fn publish(&self, data: &[u8]) {
        if let Some(room) = &self.room {
            self.wait_for_room(room, data.len());
        }
        let chunk = Bytes::copy_from_slice(data);
        let mut inner = self.lock();
        inner.ring.push(data);
        let exclusive = self.room.is_some();
        inner.clients.retain(|client| {
            if !exclusive && client.queued.load(Ordering::SeqCst) + chunk.len() > CLIENT_QUEUE {
                client.slow.store(true, Ordering::SeqCst);
                return false;
            }
            client.queued.fetch_add(chunk.len(), Ordering::SeqCst);
            client.sender.send(chunk.clone()).is_ok()
        });
    }

    /// A new client: the scrollback (cut at a clean boundary if older output was dropped) and
    /// a queue that continues exactly where it ends. `None` once the output has ended.
    pub(super) fn subscribe(&self) -> Option<(Vec<u8>, Queue)> {
        let mut inner = self.lock();
        if inner.ended {
            return None;
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let slow = Arc::new(AtomicBool::new(false));
        inner.clients.push(Client {
            sender,
            queued: queued.clone(),
            slow: slow.clone(),
        });
        let mut replay = inner.ring.contents();
        if inner.ring.cut {
            replay.drain(..safe_start(&replay));
        }
        Some((
            replay,
            Queue {
                receiver,
                queued,
                slow,
                room: self.room.clone(),
            },
        ))
    }

    /// No more output: every client's queue closes once drained.
    pub(super) fn end(&self) {
        let mut inner = self.lock();
        inner.ended = true;
        inner.clients.clear();
    }
}

/// What an attached client receives next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    /// Output, in order.
    Output(Bytes),
    /// The PTY ended; nothing follows.
    Exited(PtyExit),
    /// This client fell too far behind and was dropped; the PTY goes on.
    Dropped,
}

/// One client attached to a PTY: its replay, its output queue, and a way to type.
#[derive(Debug)]
pub struct Attachment {
    /// Recent output from before the client attached (empty for a new PTY).
    pub replay: Vec<u8>,
    pub(super) queue: Queue,
    pub(super) exit: watch::Receiver<Option<PtyExit>>,
    pub(super) input: PtyInput,
    /// A chunk taken from the queue that did not fit in the previous event.
    pub(super) held: Option<Bytes>,
}

impl Attachment {
    /// The next event. Output chunks already queued are joined up to `max` bytes (a single
    /// larger chunk goes alone), so a fast producer meets a few large frames rather than many
    /// small ones.
    pub async fn next(&mut self, max: usize) -> PtyEvent {
        let first = match self.held.take() {
            Some(chunk) => Some(chunk),
            None => self.queue.recv().await,
        };
        let Some(first) = first else {
            if self.queue.slow() {
                return PtyEvent::Dropped;
            }
            // The queue closes after the exit is published.
            let exit = self
                .exit
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|exit| *exit);
            return PtyEvent::Exited(exit.unwrap_or(PtyExit::KILLED));
        };
        if first.len() >= max {
            return PtyEvent::Output(first);
        }
        let mut joined: Option<BytesMut> = None;
        let mut size = first.len();
        while size < max {
            let Some(more) = self.queue.try_recv() else {
                break;
            };
            if size + more.len() > max {
                self.held = Some(more);
                break;
            }
            size += more.len();
            joined
                .get_or_insert_with(|| {
                    let mut buffer = BytesMut::with_capacity(max);
                    buffer.extend_from_slice(&first);
                    buffer
                })
                .extend_from_slice(&more);
        }
        PtyEvent::Output(joined.map_or(first, BytesMut::freeze))
    }

    /// A handle that types into the PTY (usable from another task).
    pub fn input(&self) -> PtyInput {
        self.input.clone()
    }
}

/// Types into a PTY: the bytes go to its writer thread, in order.
#[derive(Debug, Clone)]
pub struct PtyInput(pub(super) mpsc::Sender<Bytes>);

impl PtyInput {
    /// Queues `data` for the PTY; waits while the program is not reading its input. False once
    /// the PTY is gone.
    pub async fn write(&self, data: Bytes) -> bool {
        data.is_empty() || self.0.send(data).await.is_ok()
    }
}

/// Where a replay whose beginning was cut off may start without showing half a character or
/// the tail of an escape sequence: just after the first newline within the first few KiB (a
/// clean line: escape sequences do not span lines in practice), else at the first ESC there
/// (where a sequence starts), else at the first byte that starts a UTF-8 character.
pub(super) fn safe_start(bytes: &[u8]) -> usize {
    let window = &bytes[..bytes.len().min(BOUNDARY_WINDOW)];
    if let Some(at) = window.iter().position(|b| *b == b'\n') {
        return at + 1;
    }
    if let Some(at) = window.iter().position(|b| *b == 0x1b) {
        return at;
    }
    bytes
        .iter()
        .position(|b| !(0x80..0xc0).contains(b))
        .unwrap_or(bytes.len())
}

/// A fixed-size ring of the most recent bytes.
#[derive(Debug)]
struct Ring {
    buffer: Box<[u8]>,
    start: usize,
    len: usize,
    /// Whether older bytes were dropped.
    cut: bool,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        Ring {
            buffer: vec![0; capacity].into_boxed_slice(),
            start: 0,
            len: 0,
            cut: false,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        let capacity = self.buffer.len();
        if data.len() >= capacity {
            self.cut |= self.len > 0 || data.len() > capacity;
            data = &data[data.len() - capacity..];
            self.buffer.copy_from_slice(data);
            self.start = 0;
            self.len = capacity;
            return;
        }
        let overflow = (self.len + data.len()).saturating_sub(capacity);
        if overflow > 0 {
            self.start = (self.start + overflow) % capacity;
            self.len -= overflow;
            self.cut = true;
        }
        let end = (self.start + self.len) % capacity;
        let first = data.len().min(capacity - end);
        self.buffer[end..end + first].copy_from_slice(&data[..first]);
        self.buffer[..data.len() - first].copy_from_slice(&data[first..]);
        self.len += data.len();
    }

    fn contents(&self) -> Vec<u8> {
        let capacity = self.buffer.len();
        let first = self.len.min(capacity - self.start);
        let mut out = Vec::with_capacity(self.len);
        out.extend_from_slice(&self.buffer[self.start..self.start + first]);
        out.extend_from_slice(&self.buffer[..self.len - first]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_most_recent_bytes_in_order() {
        let mut ring = Ring::new(8);
        ring.push(b"abc");
        assert_eq!(ring.contents(), b"abc");
        assert!(!ring.cut);
        ring.push(b"defgh");
        assert_eq!(ring.contents(), b"abcdefgh");
        assert!(!ring.cut);
        ring.push(b"ij");
        assert_eq!(ring.contents(), b"cdefghij");
        assert!(ring.cut);
        ring.push(b"klmnopqrstu");
        assert_eq!(ring.contents(), b"nopqrstu");
        let mut exact = Ring::new(4);
        exact.push(b"wxyz");
        assert_eq!(exact.contents(), b"wxyz");
        assert!(!exact.cut);
    }

    #[test]
    fn a_cut_replay_starts_at_a_line_an_escape_or_a_character() {
        // The tail of a CSI sequence, then text, no newline: cut at the next ESC.
        assert_eq!(safe_start(b"5;10Hhello\x1b[0mworld"), 10);
        // Just after the first newline, even with an escape sequence before it.
        assert_eq!(safe_start(b"ld\nnext line\n"), 3);
        assert_eq!(safe_start(b"2mtail\x1b[0m\n\x1b[32mnext"), 11);
        // A line longer than the window with no escape: the first whole UTF-8 character.
        let mut long = vec![0xa9];
        long.extend(std::iter::repeat_n(b'x', BOUNDARY_WINDOW + 10));
        assert_eq!(safe_start(&long), 1);
        let mut split = vec![0x82, 0xac];
        split.extend_from_slice("€ and more".as_bytes());
        split.extend(std::iter::repeat_n(b'y', BOUNDARY_WINDOW));
        assert_eq!(safe_start(&split), 2);
        assert_eq!(safe_start(b""), 0);
    }

    #[test]
    fn a_full_queue_drops_only_that_client() {
        let output = Output::new(false);
        let (_, mut fast) = output.subscribe().unwrap();
        let (_, stalled) = output.subscribe().unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..CLIENT_QUEUE / chunk.len() {
            output.publish(&chunk);
            assert_eq!(fast.try_recv().unwrap().len(), chunk.len());
        }
        // The stalled client holds exactly its bound: one more byte is too many.
        assert!(!stalled.slow());
        output.publish(b"y");
        assert_eq!(fast.try_recv().unwrap(), Bytes::from_static(b"y"));
        assert!(stalled.slow());
        assert!(!fast.slow());
        assert_eq!(output.lock().clients.len(), 1);
    }

    #[test]
    fn an_exclusive_pty_waits_for_its_client_instead_of_dropping_it() {
        let output = Arc::new(Output::new(true));
        let (_, mut queue) = output.subscribe().unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..CLIENT_QUEUE / chunk.len() {
            output.publish(&chunk);
        }
        let (done, published) = std::sync::mpsc::channel();
        let publisher = output.clone();
        std::thread::spawn(move || {
            publisher.publish(b"y");
            done.send(()).unwrap();
        });
        // Full: the reader waits rather than dropping the client.
        assert!(published
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        assert!(!queue.slow());
        assert_eq!(queue.try_recv().unwrap().len(), chunk.len());
        published
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("room was made");
        let mut total = 0;
        while let Some(taken) = queue.try_recv() {
            total += taken.len();
        }
        assert_eq!(total, CLIENT_QUEUE - chunk.len() + 1);
        // A client that goes away releases a waiting reader too.
        for _ in 0..CLIENT_QUEUE / chunk.len() {
            output.publish(&chunk);
        }
        drop(queue);
        output.publish(b"z");
    }

    #[tokio::test]
    async fn queued_chunks_are_joined_up_to_the_limit_in_order() {
        let output = Output::new(false);
        let (replay, queue) = output.subscribe().unwrap();
        let (_, exit) = watch::channel(None);
        let (input, _typed) = mpsc::channel(1);
        let mut attachment = Attachment {
            replay,
            queue,
            exit,
            input: PtyInput(input),
            held: None,
        };
        for chunk in [&b"aaa"[..], b"bb", b"cccc", b"d"] {
            output.publish(chunk);
        }
        let output_of = |text: &'static [u8]| PtyEvent::Output(Bytes::from_static(text));
        // 3 + 2 fit in 6; 4 does not and waits for the next event.
        assert_eq!(attachment.next(6).await, output_of(b"aaabb"));
        assert_eq!(attachment.next(6).await, output_of(b"ccccd"));
        output.end();
        // Without an exit published (its sender is gone here), the end reads as a kill.
        assert_eq!(attachment.next(6).await, PtyEvent::Exited(PtyExit::KILLED));
    }

    #[test]
    fn a_late_joiner_gets_the_scrollback_then_the_rest_without_a_gap() {
        let output = Output::new(false);
        output.publish(b"before ");
        let (replay, mut queue) = output.subscribe().unwrap();
        output.publish(b"after");
        assert_eq!(replay, b"before ");
        assert_eq!(queue.try_recv().unwrap(), Bytes::from_static(b"after"));
        output.end();
        assert!(output.subscribe().is_none());
    }
}
