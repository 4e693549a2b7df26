//! One-shot execution: a command under the shell, its own process group, stdin from /dev/null,
//! stdout and stderr kept apart and also interleaved in arrival order, output capped, the whole
//! tree killed on timeout.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

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
}

/// How it went.
#[derive(Debug, Default, Clone)]
pub struct ExecOutcome {
    /// Exit code (128 + signal when killed).
    pub exit_code: i32,
    /// stdout and stderr interleaved in arrival order.
    pub output: Vec<u8>,
    /// stdout alone.
    pub stdout: Vec<u8>,
    /// stderr alone.
    pub stderr: Vec<u8>,
    /// What arrived on the side channel (capped; empty without one).
    pub side: Vec<u8>,
    /// True when the output cap cut it.
    pub truncated: bool,
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
            })
            .await;
        drop(script_file);
        outcome
    }

    /// Runs `program` to completion (or timeout): its own process group, stdin from /dev/null,
    /// output collected and capped, the whole tree killed on timeout (408).
    pub async fn run(&self, program: Program) -> Result<ExecOutcome> {
        validate_env_names(&program.envs)?;
        let cwd = self.cwd_of(program.cwd.as_deref())?;
        let env = self.env_snapshot();
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let mut spawn = Spawn::new(&program.program, &cwd)
            .args(&program.args)
            .envs(&env)
            .envs(&program.envs)
            .env(tree::MARKER_VAR, &marker)
            .stdio(Io::Null, Io::Piped, Io::Piped);
        // Only a command with a timeout is ever killed as a tree, so only it pays for a cgroup
        // leaf (which needs a fork: the others keep posix_spawn).
        if program.timeout.is_some() {
            spawn = spawn.cgroup(&marker);
        }
        let side = if program.side_channel {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|err| Error::internal(format!("cannot create a pipe: {err}")))?;
            spawn = spawn.pass_fds(vec![write]).env(SIDE_CHANNEL_VAR, "3");
            Some(read)
        } else {
            None
        };
        // The parent's copy of the side channel's write end closes as the child starts: EOF
        // comes when the child (and whatever it handed the fd to) is done.
        let (mut child, exit) = self.reaper.spawn(spawn).map_err(|err| {
            cgroup::remove(&marker);
            spawn_error(&program.program, &err)
        })?;
        let pid = child.pid;
        let collected = Arc::new(Mutex::new(Collected::new(self.max_output)));
        let readers = [
            child
                .stdout
                .take()
                .map(|pipe| read_into(pipe, Stream::Stdout, collected.clone())),
            child
                .stderr
                .take()
                .map(|pipe| read_into(pipe, Stream::Stderr, collected.clone())),
            side.map(|pipe| read_into(std::fs::File::from(pipe), Stream::Side, collected.clone())),
        ];
        let status = match program.timeout {
            Some(limit) => match tokio::time::timeout(limit, exit.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    tree::signal_tree(pid, &marker, Signal::SIGKILL);
                    cgroup::remove_when_empty(&marker);
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!("command execution timeout: still running after {} s; its process tree was killed", limit.as_secs_f64()),
                    ));
                }
            },
            None => exit.wait().await,
        };
        for reader in readers.into_iter().flatten() {
            // A background job may keep the pipe open; its later output is not waited for.
            let _ = tokio::time::timeout(OUTPUT_GRACE, reader).await;
        }
        if program.timeout.is_some() {
            // Off the async workers: removing a cgroup can wait on the kernel.
            tokio::task::spawn_blocking(move || cgroup::remove(&marker));
        }
        let collected = collected.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ExecOutcome {
            exit_code: status.code(),
            output: collected.output.clone(),
            stdout: collected.stdout.clone(),
            stderr: collected.stderr.clone(),
            side: collected.side.clone(),
            truncated: collected.truncated,
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

/// A child that could not start: a 400 naming the program, since it is what the request chose
/// (a missing interpreter, a bad argument).
pub(super) fn spawn_error(program: &Path, err: &std::io::Error) -> Error {
    Error::bad_request(format!("cannot start {}: {err}", program.display()))
}

/// Environment names must be shell identifiers.
pub fn validate_env_names<'a>(
    names: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<()> {
    for (name, _) in names {
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
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
    Side,
}

/// Output kept so far, bounded by `cap` bytes for the interleaved copy and `cap` for the two
/// streams together.
struct Collected {
    cap: usize,
    output: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    side: Vec<u8>,
    side_full: bool,
    truncated: bool,
}

impl Collected {
    fn new(cap: usize) -> Collected {
        Collected {
            cap,
            output: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            side: Vec::new(),
            side_full: false,
            truncated: false,
        }
    }

    fn push(&mut self, stream: Stream, data: &[u8]) {
        if let Stream::Side = stream {
            // Past the cap the rest is dropped (a cut last record fails to parse, nothing else).
            if !self.side_full && self.side.len() + data.len() <= self.cap {
                self.side.extend_from_slice(data);
            } else {
                self.side_full = true;
            }
            return;
        }
        let room = self.cap.saturating_sub(self.output.len());
        let kept = &data[..data.len().min(room)];
        self.output.extend_from_slice(kept);
        match stream {
            Stream::Stdout => self.stdout.extend_from_slice(kept),
            Stream::Stderr => self.stderr.extend_from_slice(kept),
            Stream::Side => {}
        }
        if kept.len() < data.len() && !self.truncated {
            self.truncated = true;
            let marker = format!("\n[toolboxd: output truncated at {} bytes]\n", self.cap);
            self.output.extend_from_slice(marker.as_bytes());
            match stream {
                Stream::Stdout => self.stdout.extend_from_slice(marker.as_bytes()),
                Stream::Stderr | Stream::Side => self.stderr.extend_from_slice(marker.as_bytes()),
            }
        }
    }
}

/// Drains `pipe` on a blocking thread into `collected` (the rest is read and dropped once the
/// cap is reached, so the child never blocks on a full pipe).
fn read_into<R: Read + Send + 'static>(
    mut pipe: R,
    stream: Stream,
    collected: Arc<Mutex<Collected>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => collected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(stream, &buf[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collected_output_is_capped_with_a_marker() {
        let mut collected = Collected::new(10);
        collected.push(Stream::Stdout, b"12345");
        collected.push(Stream::Stderr, b"abcdefgh");
        collected.push(Stream::Stdout, b"more");
        assert!(collected.truncated);
        assert!(collected
            .output
            .starts_with(b"12345abcde\n[toolboxd: output truncated"));
        assert_eq!(collected.stdout, b"12345");
        assert!(collected.stderr.starts_with(b"abcde\n[toolboxd"));
    }

    #[test]
    fn env_names_are_identifiers() {
        let ok = BTreeMap::from([("_A1".to_string(), String::new())]);
        assert!(validate_env_names(&ok).is_ok());
        for bad in ["1A", "A-B", "", "A B"] {
            let map = BTreeMap::from([(bad.to_string(), String::new())]);
            assert!(validate_env_names(&map).is_err(), "{bad}");
        }
    }
}
