//! One-shot execution: a command under the shell, its own process group, stdin from /dev/null,
//! stdout and stderr kept apart and also interleaved in arrival order, output capped, the whole
//! tree killed on timeout.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::output::{Output, Stream};
use super::{cgroup, tree, Io, Process, Spawn};
use crate::error::{Error, ErrorKind, Result};

/// Commands longer than this go to the shell as a script file instead of `-c` (one argument
/// may not exceed 128 KiB on Linux).
const MAX_INLINE_COMMAND: usize = 64 * 1024;

/// How long to wait, after the shell exits, for background jobs that still hold its output.
const OUTPUT_GRACE: Duration = Duration::from_millis(300);

/// What to run.
#[derive(Debug, Default, Clone)]
pub struct ExecRequest {
    /// Shell command text.
    pub command: String,
    /// Working directory (relative to the work dir); default the work dir.
    pub cwd: Option<String>,
    /// Extra environment for this command.
    pub envs: BTreeMap<String, String>,
    /// Kill the tree and fail after this long.
    pub timeout: Option<Duration>,
    /// Kill the tree and fail with `Cancelled` once this is cancelled (or once the call's future
    /// is dropped before the command ended). `None`: the command runs to its end.
    pub cancel: Option<CancellationToken>,
}

/// How it went.
#[derive(Debug, Default, Clone)]
pub struct ExecOutcome {
    /// Exit code (128 + signal when killed).
    pub exit_code: i32,
    /// stdout and stderr, capped: interleaved in arrival order, and each stream apart.
    pub output: Output,
    /// What arrived on the side channel (capped; empty without one).
    pub side: Vec<u8>,
}

/// A program run directly (no shell), for capabilities such as code-run.
#[derive(Debug, Default, Clone)]
pub struct Program {
    /// The executable (a path, or a name looked up on the children's PATH).
    pub program: PathBuf,
    /// Its arguments, each passed as one argument.
    pub args: Vec<std::ffi::OsString>,
    /// Working directory (relative to the work dir); default the work dir.
    pub cwd: Option<String>,
    /// Extra environment.
    pub envs: BTreeMap<String, String>,
    /// Kill the tree and fail after this long.
    pub timeout: Option<Duration>,
    /// Give the child a private pipe: its write end is fd 3, named by `TOOLBOXD_CHART_FD=3`;
    /// what arrives comes back as `ExecOutcome::side` (capped like the output).
    pub side_channel: bool,
    /// Kill the tree and fail with `Cancelled` once this is cancelled, or once the call's future
    /// is dropped before the program ended (see `ExecRequest::cancel`).
    pub cancel: Option<CancellationToken>,
}

/// The environment variable naming the side channel's fd in the child.
pub const SIDE_CHANNEL_VAR: &str = "TOOLBOXD_CHART_FD";

impl Process {
    /// Runs `request` under the shell to completion (or timeout).
    pub async fn execute(&self, request: ExecRequest) -> Result<ExecOutcome> {
        if request.command.trim().is_empty() {
            return Err(Error::bad_request(
                "command cannot be empty or whitespace-only",
            ));
        }
        if request.command.contains('\0') {
            return Err(nul_in_command(&request.command));
        }
        let mut script_file = None;
        let mut args = Vec::new();
        if request.command.len() <= MAX_INLINE_COMMAND {
            args.push("-c".into());
            args.push(request.command.clone().into());
        } else {
            let mut file = tempfile::Builder::new()
                .prefix("toolboxd-exec-")
                .suffix(".sh")
                .tempfile()
                .map_err(|err| {
                    Error::internal(format!("cannot write the command to a script: {err}"))
                })?;
            std::io::Write::write_all(&mut file, request.command.as_bytes()).map_err(|err| {
                Error::internal(format!("cannot write the command to a script: {err}"))
            })?;
            args.push(file.path().into());
            script_file = Some(file);
        }
        let outcome = self
            .run(Program {
                program: self.shell.clone(),
                args,
                cwd: request.cwd,
                envs: request.envs,
                timeout: request.timeout,
                side_channel: false,
                cancel: request.cancel,
            })
            .await;
        drop(script_file);
        outcome
    }

    /// Runs `program` to completion (or timeout): its own process group, stdin from /dev/null,
    /// output collected and capped, the whole tree killed on timeout (408).
    pub async fn run(&self, program: Program) -> Result<ExecOutcome> {
        validate_env(&program.envs)?;
        self.trees.check_open()?;
        let cwd = self.cwd_of(program.cwd.as_deref())?;
        let env = self.env_snapshot();
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let mut spawn = Spawn::new(&program.program, &cwd)
            .args(&program.args)
            .envs(&env)
            .envs(&program.envs)
            .env(tree::MARKER_VAR, &marker)
            .stdio(Io::Null, Io::Piped, Io::Piped);
        // Only a command with a timeout pays for a cgroup leaf (which needs a fork: the others
        // keep posix_spawn). A cancelled one is killed by process group, /proc descendants and
        // marker: cancelling is MCP's everyday stop, and its commands keep posix_spawn's speed.
        if program.timeout.is_some() {
            spawn = spawn.cgroup(&marker);
        }
        let side = if program.side_channel {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|err| out_of_resources("cannot create a pipe", err.into()))?;
            spawn = spawn.pass_fds(vec![write]).env(SIDE_CHANNEL_VAR, "3");
            Some(read)
        } else {
            None
        };
        // The parent's copy of the side channel's write end closes as the child starts: EOF
        // comes when the child (and whatever it handed the fd to) is done.
        let (mut child, exit) = self.reaper.spawn(spawn).map_err(|err| {
            cgroup::remove(&marker);
            spawn_error(&program.program, &cwd, &err)
        })?;
        let pid = child.pid;
        // Until this returns: shutdown ends the tree and answers the request.
        let _registered = self.trees.register(pid, &marker);
        // A cancellable caller that goes away (its future dropped) takes the tree with it.
        let mut dropped = KillOnDrop {
            armed: program.cancel.is_some(),
            pid,
            marker: marker.clone(),
        };
        let cancelled = async {
            match &program.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let closing = self.trees.closing();
        tokio::pin!(closing);
        // The pipes are read here, by this task, as they become readable: no thread per pipe.
        let ends = [
            child
                .stdout
                .take()
                .map(|f| (OwnedFd::from(f), Source::Out(Stream::Stdout))),
            child
                .stderr
                .take()
                .map(|f| (OwnedFd::from(f), Source::Out(Stream::Stderr))),
            side.map(|fd| (fd, Source::Side)),
        ];
        let mut pipes: [Pipe; 3] = [None, None, None];
        for (slot, end) in pipes.iter_mut().zip(ends) {
            let Some((fd, source)) = end else {
                continue;
            };
            match watch(fd) {
                Ok(pipe) => *slot = Some((pipe, source)),
                Err(err) => {
                    // Unread, the child would block or die on a write: end it instead.
                    tree::signal_tree(pid, &marker, Signal::SIGKILL);
                    cgroup::remove_when_empty(&marker);
                    return Err(out_of_resources("cannot watch the command's output", err));
                }
            }
        }
        let mut collected = Collected::new(self.max_output);
        let mut buf = Vec::with_capacity(READ_BYTES);
        let waited = async {
            match program.timeout {
                Some(limit) => tokio::time::timeout(limit, exit.wait()).await.ok(),
                None => Some(exit.wait().await),
            }
        };
        tokio::pin!(waited);
        tokio::pin!(cancelled);
        let mut status = None;
        // Set once the command exited: a background job may keep a pipe open, its later output
        // is not waited for past this.
        let grace = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(grace);
        // Which pipe is looked at first turns, so a stream that never runs dry cannot hold the
        // others back.
        let mut turn = 0;
        loop {
            if status.is_some() && pipes.iter().all(Option::is_none) {
                break;
            }
            let order = [turn % 3, (turn + 1) % 3, (turn + 2) % 3];
            turn += 1;
            tokio::select! {
                biased;
                // The registry ends the tree (SIGTERM, grace, SIGKILL): that end is no exit.
                () = &mut closing => return Err(super::shutting_down()),
                () = &mut cancelled, if status.is_none() => {
                    dropped.armed = false;
                    tree::signal_tree(pid, &marker, Signal::SIGKILL);
                    cgroup::remove_when_empty(&marker);
                    return Err(Error::new(
                        ErrorKind::Cancelled,
                        "cancelled: the command's process tree was killed",
                    ));
                }
                waited = &mut waited, if status.is_none() => match waited {
                    Some(exited) => {
                        // The program ended: what it left running in the background is not
                        // killed on drop.
                        dropped.armed = false;
                        status = Some(exited);
                        grace.as_mut().reset(tokio::time::Instant::now() + OUTPUT_GRACE);
                    }
                    None => {
                        dropped.armed = false;
                        let limit = program.timeout.unwrap_or_default();
                        tree::signal_tree(pid, &marker, Signal::SIGKILL);
                        cgroup::remove_when_empty(&marker);
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!("command execution timeout: still running after {} s; its process tree was killed", limit.as_secs_f64()),
                        ));
                    }
                },
                (i, ready) = readable(&pipes, order[0]) => read_some(&mut pipes[i], ready, &mut buf, &mut collected),
                (i, ready) = readable(&pipes, order[1]) => read_some(&mut pipes[i], ready, &mut buf, &mut collected),
                (i, ready) = readable(&pipes, order[2]) => read_some(&mut pipes[i], ready, &mut buf, &mut collected),
                () = &mut grace, if status.is_some() => break,
            }
        }
        // What a background job still writes is read and dropped, so it never blocks on a full
        // pipe (or dies of SIGPIPE) for outliving the command.
        for (pipe, _) in pipes.into_iter().flatten() {
            tokio::spawn(discard(pipe));
        }
        if program.timeout.is_some() {
            // Off the async workers: removing a cgroup can wait on the kernel.
            tokio::task::spawn_blocking(move || cgroup::remove(&marker));
        }
        // (The loop ends only once the exit is known.)
        let status = status.unwrap_or(super::ExitStatus::Signaled(libc::SIGKILL));
        Ok(ExecOutcome {
            exit_code: status.code(),
            output: collected.output,
            side: collected.side,
        })
    }

    pub(super) fn cwd_of(&self, cwd: Option<&str>) -> Result<PathBuf> {
        let Some(cwd) = cwd.filter(|c| !c.is_empty()) else {
            return Ok(self.workdir.clone());
        };
        let path = self.workdir.join(cwd);
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_dir() => Ok(path),
            Ok(_) => Err(Error::bad_request(format!(
                "cwd is not a directory: {}",
                path.display()
            ))),
            Err(_) => Err(Error::bad_request(format!(
                "cwd does not exist: {}",
                path.display()
            ))),
        }
    }
}

/// Kills a cancellable program's tree when `Process::run` is dropped before the program ended.
struct KillOnDrop {
    armed: bool,
    pid: i32,
    marker: String,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            tree::signal_tree(self.pid, &self.marker, Signal::SIGKILL);
            cgroup::remove_when_empty(&self.marker);
        }
    }
}

/// The 400 for a command with a NUL byte (no shell can be given one).
pub(super) fn nul_in_command(command: &str) -> Error {
    let at = command.find('\0').unwrap_or_default();
    Error::bad_request(format!(
        "command contains a NUL byte (at byte {at}), which a shell command cannot hold"
    ))
}

/// A child that could not start, said plainly and never as a 500: what the request chose or
/// set up (a missing program or working directory, an environment too large for the kernel, a
/// NUL byte) is a 400; a sandbox out of processes, memory or descriptors is a 503 worth
/// retrying.
pub(super) fn spawn_error(program: &Path, cwd: &Path, err: &std::io::Error) -> Error {
    let program = program.display();
    match err.raw_os_error() {
        Some(libc::E2BIG) => Error::bad_request(format!(
            "cannot start {program}: its arguments and environment are too large for a new \
             process (argument list too long); unset large variables with POST /env"
        )),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) if !cwd.is_dir() => Error::bad_request(format!(
            "cannot start {program}: its working directory {} does not exist",
            cwd.display()
        )),
        Some(libc::ENOENT) => Error::bad_request(format!(
            "cannot start {program}: no such file (is it installed, and on PATH?)"
        )),
        Some(libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE) => Error::new(
            ErrorKind::Unavailable,
            format!(
                "cannot start {program}: {}; the sandbox is out of processes, memory or file \
                 descriptors, try again once some are free",
                plain(err)
            ),
        ),
        _ => Error::bad_request(format!("cannot start {program}: {}", plain(err))),
    }
}

/// A failure to get what starting a child needs (a pipe, a thread): 503 when the sandbox is out
/// of descriptors, memory or threads, which may pass; anything else is a bug (500).
pub(super) fn out_of_resources(what: &str, err: std::io::Error) -> Error {
    let kind = match err.raw_os_error() {
        Some(libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("{what}: {}", plain(&err)))
}

/// An OS error's text without Rust's " (os error N)".
fn plain(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The most one `NAME=value` string of a new process may take, its NUL included: the kernel's
/// `MAX_ARG_STRLEN` (32 pages); a longer one makes `execve` fail with E2BIG.
pub const MAX_ENV_STRING: usize = 128 * 1024;

/// The most the environment of new processes (`NAME=value` strings, their NULs and pointers) may
/// grow to through `POST /env`: half of the 2 MiB the kernel allows arguments and environment
/// together under the usual 8 MiB stack limit, so commands keep room for their arguments.
pub const ENV_BUDGET: usize = 1024 * 1024;

/// Checks variables a child is to be started with: names are shell identifiers, and no name or
/// value holds a NUL byte or makes a `NAME=value` string past `MAX_ENV_STRING`.
pub fn validate_env<'a>(vars: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    for (name, value) in vars {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !valid {
            return Err(Error::bad_request(format!(
                "invalid environment variable name: {name:?} (use letters, digits and _, not starting with a digit)"
            )));
        }
        if value.contains('\0') {
            return Err(Error::bad_request(format!(
                "environment variable {name} contains a NUL byte, which no process can be \
                 started with"
            )));
        }
        let size = name.len() + value.len() + 2;
        if size > MAX_ENV_STRING {
            return Err(Error::bad_request(format!(
                "environment variable {name} is {size} bytes as NAME=value: the kernel starts no \
                 process with one over {MAX_ENV_STRING} bytes (put large data in a file)"
            )));
        }
    }
    Ok(())
}

/// Where a pipe's bytes go.
#[derive(Debug, Clone, Copy)]
enum Source {
    Out(Stream),
    Side,
}

/// Bytes asked for per read: a pipe's default capacity.
const READ_BYTES: usize = 64 * 1024;

/// What was read so far: the output (capped, see `Output`) and the side channel (capped alike).
struct Collected {
    output: Output,
    side: Vec<u8>,
    side_full: bool,
}

impl Collected {
    fn new(cap: usize) -> Collected {
        Collected {
            output: Output::new(cap),
            side: Vec::new(),
            side_full: false,
        }
    }

    fn push(&mut self, source: Source, data: &[u8]) {
        match source {
            Source::Out(stream) => self.output.push(stream, data),
            Source::Side => {
                // Past the cap the rest is dropped (a cut last record fails to parse, nothing
                // else).
                if !self.side_full && self.side.len() + data.len() <= self.output.cap() {
                    self.side.extend_from_slice(data);
                } else {
                    self.side_full = true;
                }
            }
        }
    }
}

type Pipe = Option<(pipe::Receiver, Source)>;

/// Resolves with `i` once `pipes[i]` is readable (or failed); never while it is closed.
async fn readable(pipes: &[Pipe; 3], i: usize) -> (usize, std::io::Result<()>) {
    match &pipes[i] {
        Some((pipe, _)) => (i, pipe.readable().await),
        None => std::future::pending().await,
    }
}

/// One read from a readable pipe into `collected`; at EOF or on an error the pipe is closed.
fn read_some(
    slot: &mut Pipe,
    ready: std::io::Result<()>,
    buf: &mut Vec<u8>,
    collected: &mut Collected,
) {
    let Some((pipe, source)) = slot else {
        return;
    };
    if ready.is_err() {
        *slot = None;
        return;
    }
    buf.clear();
    match pipe.try_read_buf(buf) {
        Ok(0) => *slot = None,
        Ok(n) => collected.push(*source, &buf[..n]),
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) => {}
        Err(_) => *slot = None,
    }
}

/// Reads `pipe` to its end and drops what comes.
async fn discard(pipe: pipe::Receiver) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if pipe.readable().await.is_err() {
            return;
        }
        match pipe.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// Our end of a pipe, non-blocking and registered with the runtime. (`F_SETFL` changes only
/// the status flags, of which a fresh pipe end has none but its access mode, which it ignores;
/// the child's end is another open file description and stays blocking.)
fn watch(fd: OwnedFd) -> std::io::Result<pipe::Receiver> {
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    pipe::Receiver::from_file_unchecked(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_identifiers_and_values_startable() {
        let ok = BTreeMap::from([("_A1".to_string(), "x".repeat(MAX_ENV_STRING - 5))]);
        assert!(validate_env(&ok).is_ok());
        for bad in ["1A", "A-B", "", "A B", "A=B"] {
            let map = BTreeMap::from([(bad.to_string(), String::new())]);
            assert!(validate_env(&map).is_err(), "{bad}");
        }
        let nul = BTreeMap::from([("A".to_string(), "x\0y".to_string())]);
        assert!(validate_env(&nul).unwrap_err().message.contains("NUL"));
        let big = BTreeMap::from([("_A1".to_string(), "x".repeat(MAX_ENV_STRING - 4))]);
        assert!(validate_env(&big).is_err());
    }

    #[test]
    fn start_failures_are_never_500() {
        let cwd = Path::new("/");
        let status = |errno: i32| {
            spawn_error(
                Path::new("bash"),
                cwd,
                &std::io::Error::from_raw_os_error(errno),
            )
            .kind
            .status()
        };
        assert_eq!(status(libc::E2BIG), 400);
        assert_eq!(status(libc::ENOENT), 400);
        assert_eq!(status(libc::EACCES), 400);
        assert_eq!(status(libc::EAGAIN), 503);
        let gone = spawn_error(
            Path::new("bash"),
            Path::new("/no/such/dir"),
            &std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(
            gone.message.contains("working directory /no/such/dir"),
            "{gone}"
        );
    }
}
