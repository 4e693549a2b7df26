//! Long-lived workers (the interpreter's Python and Node processes): their own process group,
//! stdin from /dev/null, raw stdout and stderr pipes, and a private protocol on two more pipes —
//! jobs in on fd 3, frames out on fd 4 — so nothing the user's code prints can be taken for
//! protocol.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;

use super::{cgroup, tree, ExitWatch, Io, NotStarted, PipedChild, Process, TreeGuard};
use crate::error::{Error, Result};

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    /// Its pid (also its process group).
    pub pid: i32,
    /// Reports the exit.
    pub exit: ExitWatch,
    /// Raw output of the worker and its children.
    pub stdout: File,
    /// Raw error output.
    pub stderr: File,
    /// Jobs, one JSON line each (the worker's fd 3).
    pub jobs: File,
    /// Frames, one JSON line each (the worker's fd 4).
    pub frames: File,
    marker: String,
    /// On the registry while it lives: shutdown ends it.
    _registered: TreeGuard,
}

impl Worker {
    /// Sends `signal` to the worker's process group.
    pub fn interrupt(&self) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid), Signal::SIGINT);
    }

    /// Kills the worker and everything it started.
    pub fn kill(&self) {
        tree::signal_tree(self.pid, &self.marker, Signal::SIGKILL);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        cgroup::remove_when_empty(&self.marker);
    }
}

impl Process {
    /// Starts `program args…` in `cwd` as a worker.
    pub fn spawn_worker(
        &self,
        program: &Path,
        args: &[OsString],
        cwd: &Path,
        envs: &BTreeMap<String, String>,
    ) -> Result<Worker> {
        let pipe = || {
            nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|err| super::exec::out_of_resources("cannot create a pipe", err.into()))
        };
        let (jobs_read, jobs_write) = pipe()?;
        let (frames_read, frames_write) = pipe()?;
        let marked = self
            .spawn_marked(program, cwd, true, |spawn| {
                spawn
                    .args(args)
                    .envs(envs)
                    .stdio(Io::Null, Io::Piped, Io::Piped)
                    .pass_fds(vec![jobs_read, frames_write])
            })
            .map_err(|err| err.into_error(program, cwd))?;
        let (Some(stdout), Some(stderr)) = (marked.child.stdout, marked.child.stderr) else {
            return Err(Error::internal("the worker's pipes are missing"));
        };
        Ok(Worker {
            pid: marked.child.pid,
            exit: marked.exit,
            stdout,
            stderr,
            jobs: File::from(jobs_write),
            frames: File::from(frames_read),
            marker: marked.marker,
            _registered: marked.registered,
        })
    }

    /// The work dir joined with `cwd` (absolute paths stay), checked to be a directory.
    pub fn directory(&self, cwd: Option<&str>) -> Result<PathBuf> {
        self.cwd_of(cwd)
    }
}

/// A long-lived child speaking a protocol on its stdin and stdout (a language server), in its
/// own process group and cgroup leaf; stderr is piped too, for diagnostics. A [`PipedChild`]
/// whose whole tree is killed, and its leaf removed, when it is dropped.
#[derive(Debug)]
pub struct StdioChild(PipedChild);

impl StdioChild {
    /// Sends `signal` to the child and everything it started.
    pub fn signal(&self, signal: Signal) {
        tree::signal_tree(self.0.pid, &self.0.marker, signal);
    }
}

impl std::ops::Deref for StdioChild {
    type Target = PipedChild;

    fn deref(&self) -> &PipedChild {
        &self.0
    }
}

impl std::ops::DerefMut for StdioChild {
    fn deref_mut(&mut self) -> &mut PipedChild {
        &mut self.0
    }
}

impl Drop for StdioChild {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
        cgroup::kill(&self.0.marker);
        cgroup::remove_when_empty(&self.0.marker);
    }
}

impl Process {
    /// Starts `program args…` in `cwd` with piped stdin, stdout and stderr. The OS error is kept
    /// (a missing program is `NotFound`) so the caller can say how to install it.
    pub fn spawn_stdio(
        &self,
        program: &Path,
        args: &[String],
        cwd: &Path,
    ) -> std::io::Result<StdioChild> {
        let marked = self
            .spawn_marked(program, cwd, true, |spawn| {
                spawn.args(args).stdio(Io::Piped, Io::Piped, Io::Piped)
            })
            .map_err(|err| match err {
                NotStarted::ShuttingDown(err) => std::io::Error::other(err.message),
                NotStarted::Spawn(err) => err,
            })?;
        Ok(StdioChild(PipedChild::from_marked(marked)))
    }

    /// The first of `names` that is an executable on the PATH children get.
    pub fn find_program(&self, name: &str) -> Option<PathBuf> {
        let env = self.env_snapshot();
        let path = env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_string());
        std::env::split_paths(&path)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(name))
            .find(|candidate| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(candidate)
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
    }
}
