//! One-shot execution: a command under the shell, its own process group, stdin from /dev/null,
//! stdout and stderr kept apart and also interleaved in arrival order, output capped, the whole
//! tree killed on timeout.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{tree, Process};
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
    /// True when the output cap cut it.
    pub truncated: bool,
}

impl Process {
    /// Runs `request` to completion (or timeout).
    pub async fn execute(&self, request: ExecRequest) -> Result<ExecOutcome> {
        if request.command.trim().is_empty() {
            return Err(Error::bad_request(
                "command cannot be empty or whitespace-only",
            ));
        }
        validate_env_names(&request.envs)?;
        let cwd = self.cwd_of(request.cwd.as_deref())?;
        let mut script_file = None;
        let mut command = std::process::Command::new(&self.shell);
        if request.command.len() <= MAX_INLINE_COMMAND {
            command.arg("-c").arg(&request.command);
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
            command.arg(file.path());
            script_file = Some(file);
        }
        let marker = uuid::Uuid::new_v4().simple().to_string();
        command
            .current_dir(&cwd)
            .env_clear()
            .envs(self.env_snapshot())
            .envs(&request.envs)
            .env(tree::MARKER_VAR, &marker)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let (mut child, exit) = self.reaper.spawn(&mut command).map_err(|err| {
            Error::bad_request(format!("cannot start {}: {err}", self.shell.display()))
        })?;
        let pid = child.id() as i32;
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
        ];
        drop(child);
        let status = match request.timeout {
            Some(limit) => match tokio::time::timeout(limit, exit.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    tree::signal_tree(pid, &marker, Signal::SIGKILL);
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!("command execution timeout: still running after {} s; its process tree was killed", limit.as_secs_f64()),
                    ));
                }
            },
            None => exit.wait().await,
        };
        drop(script_file);
        for reader in readers.into_iter().flatten() {
            // A background job may keep the pipe open; its later output is not waited for.
            let _ = tokio::time::timeout(OUTPUT_GRACE, reader).await;
        }
        let collected = collected.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ExecOutcome {
            exit_code: status.code(),
            output: collected.output.clone(),
            stdout: collected.stdout.clone(),
            stderr: collected.stderr.clone(),
            truncated: collected.truncated,
        })
    }

    fn cwd_of(&self, cwd: Option<&str>) -> Result<PathBuf> {
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
}

/// Output kept so far, bounded by `cap` bytes for the interleaved copy and `cap` for the two
/// streams together.
struct Collected {
    cap: usize,
    output: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl Collected {
    fn new(cap: usize) -> Collected {
        Collected {
            cap,
            output: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
        }
    }

    fn push(&mut self, stream: Stream, data: &[u8]) {
        let room = self.cap.saturating_sub(self.output.len());
        let kept = &data[..data.len().min(room)];
        self.output.extend_from_slice(kept);
        match stream {
            Stream::Stdout => self.stdout.extend_from_slice(kept),
            Stream::Stderr => self.stderr.extend_from_slice(kept),
        }
        if kept.len() < data.len() && !self.truncated {
            self.truncated = true;
            let marker = format!("\n[toolboxd: output truncated at {} bytes]\n", self.cap);
            self.output.extend_from_slice(marker.as_bytes());
            match stream {
                Stream::Stdout => self.stdout.extend_from_slice(marker.as_bytes()),
                Stream::Stderr => self.stderr.extend_from_slice(marker.as_bytes()),
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
