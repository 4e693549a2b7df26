//! Streamed commands: a shell command whose stdin, stdout and stderr are pipes that the caller
//! reads and writes as the command runs (an SSH `exec`), in its own process group, with the
//! environment new children get plus the caller's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;

use nix::sys::signal::Signal;

use super::{exec, tree, ExitWatch, Io, Marked, Process, TreeGuard};
use crate::error::{Error, Result};

/// A started command. Dropping it leaves the processes alone: the caller decides whether its
/// tree ends (`signal_tree`), so what a command deliberately left running may stay.
#[derive(Debug)]
pub struct PipedChild {
    /// Its pid, which is also its process group.
    pub pid: i32,
    /// Reports the exit (taken by whoever waits for it).
    pub exit: Option<ExitWatch>,
    /// The write end of its stdin.
    pub stdin: Option<File>,
    /// The read end of its stdout.
    pub stdout: Option<File>,
    /// The read end of its stderr.
    pub stderr: Option<File>,
    pub(super) marker: String,
    /// On the registry while the caller holds it: shutdown ends the tree.
    _registered: TreeGuard,
}

impl PipedChild {
    /// The child `spawn_marked` started, with whichever of its pipes it was given.
    pub(super) fn from_marked(marked: Marked) -> PipedChild {
        PipedChild {
            pid: marked.child.pid,
            exit: Some(marked.exit),
            stdin: marked.child.stdin,
            stdout: marked.child.stdout,
            stderr: marked.child.stderr,
            marker: marked.marker,
            _registered: marked.registered,
        }
    }

    /// A handle that signals the command after the caller gave the child away.
    pub fn control(&self) -> PipedControl {
        PipedControl {
            pid: self.pid,
            marker: self.marker.clone(),
        }
    }
}

/// Signals a streamed command: its group, or its whole tree.
#[derive(Debug, Clone)]
pub struct PipedControl {
    pid: i32,
    marker: String,
}

impl PipedControl {
    /// Sends `signal` to the command's process group (what a terminal's ^C reaches; OpenSSH
    /// forwards signals the same way).
    pub fn signal_group(&self, signal: Signal) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid), signal);
    }

    /// Blocking (reads /proc). Sends `signal` to the command's whole tree: its group, its
    /// descendants and every process carrying its marker.
    pub fn signal_tree(&self, signal: Signal) {
        tree::signal_tree(self.pid, &self.marker, signal);
    }

    /// Blocking. Whether any process of the tree is left (by its marker).
    pub fn tree_alive(&self) -> bool {
        !tree::marked_with(&self.marker).is_empty()
    }
}

impl Process {
    /// Blocking (it spawns). Starts the shell with `args` (`-c COMMAND`, or `-l` for a login
    /// shell reading commands from stdin) in the work dir, with piped stdin, stdout and stderr
    /// and the environment new children get plus `envs` (checked like `/env`'s).
    pub fn spawn_piped(
        &self,
        args: Vec<OsString>,
        envs: &BTreeMap<String, String>,
    ) -> Result<PipedChild> {
        exec::validate_env(envs)?;
        if args
            .iter()
            .any(|arg| std::os::unix::ffi::OsStrExt::as_bytes(arg.as_os_str()).contains(&0))
        {
            return Err(Error::bad_request(
                "command contains a NUL byte, which a shell command cannot hold",
            ));
        }
        let marked = self
            .spawn_marked(&self.shell, &self.workdir, false, |spawn| {
                spawn
                    .args(&args)
                    .envs(envs)
                    .stdio(Io::Piped, Io::Piped, Io::Piped)
            })
            .map_err(|err| err.into_error(&self.shell, &self.workdir))?;
        Ok(PipedChild::from_marked(marked))
    }
}
