//! The reaper: the only code in toolboxd that calls `waitpid`. It reaps every child, including
//! orphans reparented to toolboxd (as PID 1, or as a child subreaper when not PID 1, so tests run
//! the same path), and tells whoever registered a pid how it ended.
//!
//! Invariant: a child is registered under the same lock the reaper holds while it waits, so a
//! child cannot be reaped before its spawner has registered it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::spawn::{Child, Spawn};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }
}

/// Resolves when the child exits.
#[derive(Debug)]
pub struct ExitWatch(oneshot::Receiver<ExitStatus>);

impl ExitWatch {
    /// Waits for the exit. A reaper that went away reports a SIGKILL.
    pub async fn wait(self) -> ExitStatus {
        self.0.await.unwrap_or(ExitStatus::Signaled(libc::SIGKILL))
    }

    /// Whether the child has exited already (without waiting).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.0.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }
}

/// Handle to the reaper; cheap to clone.
#[derive(Debug, Clone)]
pub struct Reaper {
    waiters: Arc<Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>>,
}

impl Reaper {
    /// Becomes a child subreaper (unless already PID 1) and starts reaping on SIGCHLD, with a
    /// slow tick as a safety net. Must run inside a tokio runtime.
    pub fn start() -> Reaper {
        if std::process::id() != 1 {
            if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
                tracing::warn!("cannot become a child subreaper ({err}); orphans go to PID 1");
            }
        }
        let reaper = Reaper {
            waiters: Arc::new(Mutex::new(HashMap::new())),
        };
        let background = reaper.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut sigchld = signal(SignalKind::child()).ok();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                match sigchld.as_mut() {
                    Some(sigchld) => {
                        tokio::select! {
                            _ = sigchld.recv() => {}
                            _ = tick.tick() => {}
                        }
                    }
                    None => {
                        tick.tick().await;
                    }
                }
                background.reap_all();
            }
        });
        reaper
    }

    /// Starts `spawn` and registers the child before the reaper can see it exit. This is the
    /// only way toolboxd starts a process; the returned watch reports the exit.
    pub fn spawn(&self, spawn: Spawn) -> std::io::Result<(Child, ExitWatch)> {
        let prepared = spawn.prepare()?;
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        // The child starts at oom_score_adj 0, not toolboxd's own (see `oom`).
        let child = super::oom::for_child(|| prepared.start())?;
        crate::metrics::PROCESSES_STARTED.inc();
        let (sender, receiver) = oneshot::channel();
        waiters.insert(child.pid, sender);
        Ok((child, ExitWatch(receiver)))
    }

    /// Runs `work` while no child can start (under the lock `spawn` holds). For descriptors that
    /// only become close-on-exec after they exist, such as the pair `openpty` returns: a child
    /// started in between would inherit them.
    pub fn exclusive<T>(&self, work: impl FnOnce() -> T) -> T {
        let _waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        work()
    }

    /// Reaps every child that has exited; registered ones are told, orphans are just reaped.
    fn reap_all(&self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Exited(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid, ExitStatus::Signaled(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                // Stopped/continued children are not gone; keep reaping the rest.
                Ok(_) => continue,
            };
            crate::metrics::PROCESSES_REAPED.inc();
            match waiters.remove(&pid.as_raw()) {
                Some(sender) => {
                    let _ = sender.send(status);
                }
                None => {
                    crate::metrics::ORPHANS_REAPED.inc();
                }
            }
        }
    }
}
