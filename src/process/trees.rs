//! The registry of process trees toolboxd started, and shutdown. Every capability that starts a
//! child registers its tree (root pid and `MARKER_VAR` marker) for as long as it owns it — a
//! one-shot command or code-run until it returns, an interpreter worker while it lives, a session
//! shell while it serves — and waits on `closing()` where a client is waiting on the child, so
//! the client gets an answer (503 `SHUTTING_DOWN`) before the socket closes. PTYs and language
//! servers register the same way.
//!
//! At shutdown `terminate_all` refuses new children (`check_open`), wakes the waiting requests
//! (before any of their processes ends, so an end is not mistaken for an exit), sends SIGTERM to
//! every registered tree and to every other descendant of toolboxd (orphans were reparented to
//! it: it is PID 1 or a child subreaper, so nothing it started can be anywhere else), gives them a
//! grace, and then SIGKILLs whatever is left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::tree;
use crate::error::{Error, ErrorKind, Result};

/// The registry; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Trees {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: AtomicU64,
    trees: Mutex<HashMap<u64, Tree>>,
    /// Set first at shutdown: no child starts after it.
    closed: AtomicBool,
    /// Cancelled as shutdown begins: waiting requests answer then.
    closing: CancellationToken,
}

#[derive(Debug, Clone)]
struct Tree {
    pid: i32,
    marker: String,
}

/// Keeps a tree registered; dropping it takes the tree off the registry (it does not kill it).
#[derive(Debug)]
pub struct TreeGuard {
    id: u64,
    inner: Arc<Inner>,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        self.inner
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Trees {
    /// Registers the tree rooted at `pid` whose processes carry `MARKER_VAR=marker`.
    pub fn register(&self, pid: i32, marker: &str) -> TreeGuard {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Tree {
                    pid,
                    marker: marker.to_string(),
                },
            );
        TreeGuard {
            id,
            inner: self.inner.clone(),
        }
    }

    /// Fails with `ShuttingDown` once shutdown began: call before starting a child.
    pub fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        Ok(())
    }

    /// Resolves once shutdown began, before any tree is signalled: a request waiting on a child
    /// answers `shutting_down()` then (poll it first, `biased`, where the child's end is awaited
    /// too).
    pub fn closing(&self) -> WaitForCancellationFutureOwned {
        self.inner.closing.clone().cancelled_owned()
    }

    /// How many trees are registered (for tests and logs).
    pub fn len(&self) -> usize {
        self.inner
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// True when no tree is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blocking. Refuses new children, wakes the requests waiting on them, sends SIGTERM to
    /// every registered tree and every descendant of toolboxd, waits up to `grace` for all of
    /// them to end, then SIGKILLs the rest (cgroup leaves included).
    pub fn terminate_all(&self, grace: Duration) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let trees: Vec<Tree> = self
            .inner
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        // Waiting requests answer first: their processes ending must not look like an exit.
        self.inner.closing.cancel();
        let me = std::process::id() as i32;
        for tree in &trees {
            tree::signal_tree(tree.pid, &tree.marker, Signal::SIGTERM);
        }
        signal_all(&tree::descendants_of(me), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && tree::descendants_of(me).into_iter().any(tree::is_alive)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Trees registered meanwhile (a start that passed `check_open` just before) too.
        let late: Vec<Tree> = self
            .inner
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for tree in trees.iter().chain(&late) {
            tree::signal_tree(tree.pid, &tree.marker, Signal::SIGKILL);
        }
        signal_all(&tree::descendants_of(me), Signal::SIGKILL);
    }
}

/// The error a request gets when shutdown stopped (or refused) its process.
pub fn shutting_down() -> Error {
    Error::new(
        ErrorKind::ShuttingDown,
        "toolboxd is shutting down: the process was stopped (or not started); retry once the \
         sandbox is back",
    )
}

fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_unregister() {
        // (`terminate_all` signals every descendant of the process: the integration tests
        // exercise it on a daemon of their own.)
        let trees = Trees::default();
        let guard = trees.register(i32::MAX, "no-such-marker");
        let other = trees.register(i32::MAX, "no-such-marker");
        assert_eq!(trees.len(), 2);
        drop(guard);
        assert_eq!(trees.len(), 1);
        drop(other);
        assert!(trees.is_empty());
        assert!(trees.check_open().is_ok());
    }
}
