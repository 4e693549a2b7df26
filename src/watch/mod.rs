//! File watching: `hub` (one inotify instance, shared reference-counted directory watches,
//! coalescing, burst summaries) and the long-poll watchers (`POST /files/watch`): a watcher whose events wait in a
//! bounded buffer until polled by cursor, ended when unpolled for `POLLER_IDLE`.

mod hub;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use hub::{Change, EndReason, Hub, Subscription, WatchEvent, COALESCE};

use crate::error::{Error, Result};

/// A long-poll watcher not polled for this long is ended.
pub const POLLER_IDLE: Duration = Duration::from_secs(300);
/// Events a long-poll watcher keeps; older ones are dropped (the poll says so).
pub const POLLER_BUFFER: usize = 10_000;
/// The longest a poll waits.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(60);

/// The watch capability.
#[derive(Debug, Clone)]
pub struct Watch {
    hub: Arc<Hub>,
    pollers: Arc<Mutex<HashMap<String, Arc<Poller>>>>,
    sweeper: Arc<std::sync::Once>,
}

/// What one poll returns.
#[derive(Debug)]
pub struct Poll {
    /// Events from the cursor on.
    pub events: Vec<WatchEvent>,
    /// The cursor to poll with next.
    pub cursor: u64,
    /// Events between the given cursor and the oldest kept were dropped.
    pub dropped: bool,
    /// The watcher has ended (nothing more will come).
    pub ended: Option<EndReason>,
}

#[derive(Debug)]
struct Poller {
    buffer: Mutex<Buffer>,
    changed: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Buffer {
    /// Sequence number of `events[0]`.
    first: u64,
    events: VecDeque<WatchEvent>,
    ended: Option<EndReason>,
    last_poll: Instant,
}

impl Drop for Poller {
    fn drop(&mut self) {
        // The task owns the subscription: aborting it releases the kernel watches.
        self.task.abort();
    }
}

impl Watch {
    /// A hub allowing `max_dirs` watched directories.
    pub fn new(max_dirs: usize) -> Watch {
        Watch {
            hub: Hub::new(max_dirs),
            pollers: Arc::new(Mutex::new(HashMap::new())),
            sweeper: Arc::new(std::sync::Once::new()),
        }
    }

    /// Directories watched now.
    pub fn watched_dirs(&self) -> usize {
        self.hub.watched_dirs()
    }

    /// Starts a watcher on `path` (blocking: walks the tree).
    pub fn subscribe(
        &self,
        path: &Path,
        recursive: bool,
        include_git: bool,
    ) -> Result<Subscription> {
        self.hub.subscribe(path, recursive, include_git)
    }

    /// Starts a long-poll watcher (blocking: walks the tree) and returns its id. Must run inside
    /// the tokio runtime.
    pub fn create_poller(
        &self,
        handle: &tokio::runtime::Handle,
        path: &Path,
        recursive: bool,
        include_git: bool,
    ) -> Result<String> {
        let mut subscription = self.hub.subscribe(path, recursive, include_git)?;
        let id = uuid::Uuid::new_v4().to_string();
        let (changed, _) = watch::channel(0);
        let poller = Arc::new_cyclic(|me: &std::sync::Weak<Poller>| {
            let me = me.clone();
            let task = handle.spawn(async move {
                loop {
                    let event = subscription.events.recv().await;
                    let Some(poller) = me.upgrade() else { return };
                    let mut buffer = poller.buffer.lock().unwrap_or_else(|e| e.into_inner());
                    match event {
                        Some(event) => {
                            buffer.events.push_back(event);
                            if buffer.events.len() > POLLER_BUFFER {
                                buffer.events.pop_front();
                                buffer.first += 1;
                            }
                        }
                        None => {
                            buffer.ended = Some(subscription.end_reason().unwrap_or_else(|| {
                                EndReason::Failed(Error::internal("the watcher stopped"))
                            }));
                        }
                    }
                    let ended = buffer.ended.is_some();
                    drop(buffer);
                    poller.changed.send_modify(|n| *n += 1);
                    if ended {
                        return;
                    }
                }
            });
            Poller {
                buffer: Mutex::new(Buffer {
                    first: 0,
                    events: VecDeque::new(),
                    ended: None,
                    last_poll: Instant::now(),
                }),
                changed,
                task,
            }
        });
        self.pollers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), poller);
        self.start_sweeper(handle);
        Ok(id)
    }

    fn start_sweeper(&self, handle: &tokio::runtime::Handle) {
        let pollers = Arc::downgrade(&self.pollers);
        self.sweeper.call_once(|| {
            handle.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    let Some(pollers) = pollers.upgrade() else {
                        return;
                    };
                    let idle: Vec<Arc<Poller>> = {
                        let mut pollers = pollers.lock().unwrap_or_else(|e| e.into_inner());
                        let expired: Vec<String> = pollers
                            .iter()
                            .filter(|(_, p)| {
                                p.buffer
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .last_poll
                                    .elapsed()
                                    >= POLLER_IDLE
                            })
                            .map(|(id, _)| id.clone())
                            .collect();
                        expired.iter().filter_map(|id| pollers.remove(id)).collect()
                    };
                    drop(idle);
                }
            });
        });
    }

    /// Events of long-poll watcher `id` from `cursor` on, waiting up to `wait` for the first.
    pub async fn poll(&self, id: &str, cursor: Option<u64>, wait: Duration) -> Result<Poll> {
        let poller = self
            .pollers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("watcher not found: {id}")))?;
        let mut changed = poller.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait.min(MAX_POLL_WAIT);
        loop {
            {
                let mut buffer = poller.buffer.lock().unwrap_or_else(|e| e.into_inner());
                buffer.last_poll = Instant::now();
                let end = buffer.first + buffer.events.len() as u64;
                let cursor = cursor.unwrap_or(buffer.first).min(end);
                if cursor < end || buffer.ended.is_some() || tokio::time::Instant::now() >= deadline
                {
                    let start = cursor.max(buffer.first);
                    let events = buffer
                        .events
                        .iter()
                        .skip((start - buffer.first) as usize)
                        .cloned()
                        .collect();
                    return Ok(Poll {
                        events,
                        cursor: end,
                        dropped: cursor < buffer.first,
                        ended: buffer.ended.clone(),
                    });
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                // The poller was ended and dropped while waiting.
                return Err(Error::not_found(format!("watcher not found: {id}")));
            }
        }
    }

    /// Ends long-poll watcher `id`.
    pub fn delete_poller(&self, id: &str) -> Result<()> {
        self.pollers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
            .map(drop)
            .ok_or_else(|| Error::not_found(format!("watcher not found: {id}")))
    }
}
