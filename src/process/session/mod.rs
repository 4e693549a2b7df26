//! Sessions: one long-lived shell per session whose state (cwd, exports, functions) persists
//! because every command is *sourced* in it.
//!
//! Per command, under `<state>/<sid>/<cmdId>/`: `cmd.sh` (the text), FIFOs `stdout`, `stderr`
//! (and `stdin` for async commands), and the logs `output.log` (both streams in arrival order,
//! a 3-byte marker `01 01 01` / `02 02 02` at every switch of stream), `stdout.log`,
//! `stderr.log`, each capped at `max_output` bytes. toolboxd opens the FIFO read ends itself
//! (non-blocking, before the shell reaches the command) and drains them on plain threads, so
//! partial lines and NUL bytes reach the log at once.
//!
//! The shell's stdin is a pipe toolboxd writes one control line to per command; the shell's
//! stdout is a pipe on which each control line reports `TOOLBOXD_DONE <cmdId> <status>`. A command
//! is complete once its status arrived and both readers hit EOF (or a short grace passed: a
//! background job may hold the FIFO forever). `exit` is aliased to `return`, so `exit 3` ends
//! the sourced command with 3 and the session survives; a shell that dies anyway (`set -e`,
//! `kill $$`) marks its running commands with its status and is restarted on the next exec.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use tokio::sync::watch;

mod log;

use log::{drain, LogWriter, Stream};

use super::{tree, Process};
use crate::error::{Error, ErrorKind, Result};

/// The id reserved for the entrypoint session.
pub const ENTRYPOINT_SESSION: &str = "entrypoint";

const DONE_PREFIX: &str = "TOOLBOXD_DONE ";
/// How long to wait for output EOF once a command's status is known (a background job may keep
/// the FIFO open; its later output still lands in the log).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// SIGTERM → SIGKILL grace when a session is deleted.
const TERMINATION_GRACE: Duration = Duration::from_secs(5);

/// The session capability; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sessions {
    process: Process,
    root: PathBuf,
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
}

/// A session as listed.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The id.
    pub id: String,
    /// Its commands, oldest first.
    pub commands: Vec<CommandInfo>,
}

/// A command as listed.
#[derive(Debug, Clone)]
pub struct CommandInfo {
    /// The command id.
    pub id: String,
    /// The command text.
    pub command: String,
    /// The exit status, once complete (128 + signal when killed).
    pub exit_code: Option<i32>,
}

/// A command's logs.
#[derive(Debug, Clone, Default)]
pub struct CommandLogs {
    /// Both streams with the 3-byte markers.
    pub output: Vec<u8>,
    /// stdout alone.
    pub stdout: Vec<u8>,
    /// stderr alone.
    pub stderr: Vec<u8>,
}

/// The result of a sync exec.
#[derive(Debug, Clone)]
pub struct SessionExecOutcome {
    /// The command id.
    pub cmd_id: String,
    /// Exit status.
    pub exit_code: i32,
    /// Logs at completion.
    pub logs: CommandLogs,
}

#[derive(Debug)]
struct Session {
    id: String,
    dir: PathBuf,
    marker: String,
    shell: Mutex<Option<Shell>>,
    commands: Mutex<Vec<Arc<Command>>>,
    deleted: AtomicBool,
}

#[derive(Debug)]
struct Shell {
    pid: i32,
    stdin: ChildStdin,
}

#[derive(Debug)]
struct Command {
    id: String,
    text: String,
    dir: PathBuf,
    suppress_echo: bool,
    shell_pid: AtomicI32,
    exit: watch::Sender<Option<i32>>,
    stdin: Mutex<Option<File>>,
    log: Arc<Mutex<LogWriter>>,
    readers_done: Arc<(Mutex<u8>, Condvar)>,
    cancel: Arc<AtomicBool>,
}

impl Sessions {
    /// Sessions under `root` (created 0700 on first use), children spawned through `process`.
    pub fn new(process: Process, root: PathBuf) -> Sessions {
        Sessions {
            process,
            root,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Starts session `id`.
    pub fn create(&self, id: &str) -> Result<()> {
        validate_id(id, "session")?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.contains_key(id) {
            return Err(Error::conflict(format!("session already exists: {id}")));
        }
        let dir = self.root.join(id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|err| Error::io("create session dir", &dir, &err))?;
        let session = Arc::new(Session {
            id: id.to_string(),
            dir,
            marker: format!("session-{}", uuid::Uuid::new_v4().simple()),
            shell: Mutex::new(None),
            commands: Mutex::new(Vec::new()),
            deleted: AtomicBool::new(false),
        });
        let shell = self.start_shell(&session)?;
        *session.shell.lock().unwrap_or_else(|e| e.into_inner()) = Some(shell);
        sessions.insert(id.to_string(), session);
        Ok(())
    }

    /// Every session (sorted by id).
    pub fn list(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut infos: Vec<SessionInfo> = sessions.iter().map(|s| s.info()).collect();
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        infos
    }

    /// One session.
    pub fn get(&self, id: &str) -> Result<SessionInfo> {
        Ok(self.session(id)?.info())
    }

    /// One command.
    pub fn command(&self, id: &str, cmd_id: &str) -> Result<CommandInfo> {
        Ok(self.session(id)?.command(cmd_id)?.info())
    }

    /// Runs `text` in session `id`: to completion, or (`run_async`) returning the id at once.
    pub async fn exec(
        &self,
        id: &str,
        text: &str,
        run_async: bool,
        suppress_echo: bool,
    ) -> Result<(String, Option<SessionExecOutcome>)> {
        if id == ENTRYPOINT_SESSION {
            return Err(Error::bad_request(
                "the entrypoint session does not accept commands",
            ));
        }
        if text.trim().is_empty() {
            return Err(Error::bad_request(
                "command cannot be empty or whitespace-only",
            ));
        }
        let session = self.session(id)?;
        let command = self.prepare(&session, text, run_async, suppress_echo)?;
        session
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command.clone());
        if let Err(err) = self.send(&session, &command) {
            command.cancel.store(true, Ordering::SeqCst);
            command.finish(127);
            return Err(err);
        }
        if run_async {
            return Ok((command.id.clone(), None));
        }
        let exit_code = command.wait().await;
        let logs = command.read_logs().await;
        Ok((
            command.id.clone(),
            Some(SessionExecOutcome {
                cmd_id: command.id.clone(),
                exit_code,
                logs,
            }),
        ))
    }

    /// The logs of a command so far.
    pub async fn logs(&self, id: &str, cmd_id: &str) -> Result<CommandLogs> {
        let command = self.session(id)?.command(cmd_id)?;
        Ok(command.read_logs().await)
    }

    /// Writes `data` (plus a newline if missing) to a running async command's stdin.
    pub async fn input(&self, id: &str, cmd_id: &str, data: &str) -> Result<()> {
        if id == ENTRYPOINT_SESSION {
            return Err(Error::bad_request(
                "the entrypoint session does not accept input",
            ));
        }
        let command = self.session(id)?.command(cmd_id)?;
        if let Some(code) = *command.exit.borrow() {
            return Err(gone(code));
        }
        let pipe = {
            let stdin = command.stdin.lock().unwrap_or_else(|e| e.into_inner());
            match stdin.as_ref() {
                Some(file) => file
                    .try_clone()
                    .map_err(|err| Error::internal(format!("cannot open command stdin: {err}")))?,
                None => {
                    return Err(Error::bad_request(
                        "the command was not started with runAsync: its stdin is closed",
                    ))
                }
            }
        };
        let mut data = data.to_string();
        if !data.ends_with('\n') {
            data.push('\n');
        }
        let echo = (!command.suppress_echo).then(|| command.log.clone());
        let bytes = data.into_bytes();
        tokio::task::spawn_blocking(move || {
            let mut pipe = pipe;
            pipe.write_all(&bytes)?;
            if let Some(log) = echo {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Stream::Stdout, &bytes);
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|err| Error::internal(format!("background task failed: {err}")))?
        .map_err(|err| Error::internal(format!("cannot write to command stdin: {err}")))
    }

    /// Kills the session's whole tree (SIGTERM, up to 5 s, SIGKILL) and removes its dir.
    pub async fn delete(&self, id: &str) -> Result<()> {
        if id == ENTRYPOINT_SESSION {
            return Err(Error::bad_request(
                "the entrypoint session cannot be deleted",
            ));
        }
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
            .ok_or_else(|| session_not_found(id))?;
        session.deleted.store(true, Ordering::SeqCst);
        let shell = session
            .shell
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let pid = shell.as_ref().map(|s| s.pid);
        drop(shell);
        let marker = session.marker.clone();
        tokio::task::spawn_blocking(move || terminate(pid, &marker))
            .await
            .map_err(|err| Error::internal(format!("background task failed: {err}")))?;
        let commands = session
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let dir = session.dir.clone();
        tokio::task::spawn_blocking(move || {
            for command in commands {
                command.cancel.store(true, Ordering::SeqCst);
                command.finish(128 + libc::SIGKILL);
            }
            let _ = std::fs::remove_dir_all(&dir);
        })
        .await
        .map_err(|err| Error::internal(format!("background task failed: {err}")))?;
        Ok(())
    }

    fn session(&self, id: &str) -> Result<Arc<Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| session_not_found(id))
    }

    /// Writes the command's files, opens the FIFO ends, starts the readers.
    fn prepare(
        &self,
        session: &Arc<Session>,
        text: &str,
        run_async: bool,
        suppress_echo: bool,
    ) -> Result<Arc<Command>> {
        let id = uuid::Uuid::new_v4().to_string();
        let dir = session.dir.join(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|err| Error::io("create command dir", &dir, &err))?;
        let script = dir.join("cmd.sh");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&script)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|err| Error::io("write", &script, &err))?;
        let fifo = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
                .map_err(|errno| Error::io("create fifo", &path, &std::io::Error::from(errno)))?;
            Ok(path)
        };
        let open_reader = |path: &Path| -> Result<File> {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|err| Error::io("open fifo", path, &err))
        };
        let stdout_pipe = open_reader(&fifo("stdout")?)?;
        let stderr_pipe = open_reader(&fifo("stderr")?)?;
        let stdin = if run_async {
            let path = fifo("stdin")?;
            // Read-write: never blocks, and the command sees no EOF until it completes.
            Some(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|err| Error::io("open fifo", &path, &err))?,
            )
        } else {
            None
        };
        let create = |name: &str| -> Result<File> {
            let path = dir.join(name);
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .map_err(|err| Error::io("create", &path, &err))
        };
        let log = Arc::new(Mutex::new(LogWriter {
            cap: self.process.max_output.max(1),
            output: create("output.log")?,
            stdout: create("stdout.log")?,
            stderr: create("stderr.log")?,
            last: None,
            sizes: [0; 3],
            truncated: [false; 3],
        }));
        let (exit, _) = watch::channel(None);
        let command = Arc::new(Command {
            id,
            text: text.to_string(),
            dir,
            suppress_echo,
            shell_pid: AtomicI32::new(0),
            exit,
            stdin: Mutex::new(stdin),
            log,
            readers_done: Arc::new((Mutex::new(0), Condvar::new())),
            cancel: Arc::new(AtomicBool::new(false)),
        });
        for (pipe, stream) in [(stdout_pipe, Stream::Stdout), (stderr_pipe, Stream::Stderr)] {
            let log = command.log.clone();
            let done = command.readers_done.clone();
            let cancel = command.cancel.clone();
            std::thread::Builder::new()
                .name("session-reader".into())
                .spawn(move || {
                    drain(pipe, stream, &log, &cancel);
                    let (count, cvar) = &*done;
                    *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    cvar.notify_all();
                })
                .map_err(|err| Error::internal(format!("cannot start a reader thread: {err}")))?;
        }
        Ok(command)
    }

    /// Sends the command's control line, (re)starting the shell if it is gone.
    fn send(&self, session: &Arc<Session>, command: &Arc<Command>) -> Result<()> {
        let stdin_path = if command.stdin_is_fifo() {
            command.dir.join("stdin")
        } else {
            PathBuf::from("/dev/null")
        };
        let printf = if self.process.shell.to_string_lossy().contains("bash") {
            "builtin printf"
        } else {
            "printf"
        };
        let line = format!(
            "{{ . {script}; }} < {stdin} > {stdout} 2> {stderr}; {printf} '{DONE_PREFIX}%s %s\\n' {id} \"$?\"\n",
            script = quote(&command.dir.join("cmd.sh")),
            stdin = quote(&stdin_path),
            stdout = quote(&command.dir.join("stdout")),
            stderr = quote(&command.dir.join("stderr")),
            id = command.id,
        );
        let mut shell = session.shell.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if shell.is_none() {
                if attempt == 0 {
                    tracing::warn!(session = %session.id, "session shell is gone; starting a new one");
                }
                *shell = Some(self.start_shell(session)?);
            }
            let Some(current) = shell.as_mut() else {
                continue;
            };
            command.shell_pid.store(current.pid, Ordering::SeqCst);
            match current
                .stdin
                .write_all(line.as_bytes())
                .and_then(|()| current.stdin.flush())
            {
                Ok(()) => return Ok(()),
                Err(err) => {
                    tracing::warn!(session = %session.id, "session shell stopped reading ({err})");
                    *shell = None;
                }
            }
        }
        Err(Error::internal(
            "cannot send the command to the session shell",
        ))
    }

    fn start_shell(&self, session: &Arc<Session>) -> Result<Shell> {
        let mut command = std::process::Command::new(&self.process.shell);
        command
            .current_dir(&self.process.workdir)
            .env_clear()
            .envs(self.process.env_snapshot())
            .env(tree::MARKER_VAR, &session.marker)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let (mut child, exit) = self.process.reaper.spawn(&mut command).map_err(|err| {
            Error::internal(format!(
                "cannot start {}: {err}",
                self.process.shell.display()
            ))
        })?;
        let pid = child.id() as i32;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::internal("session shell has no pipes"));
        };
        drop(child);
        stdin
            .write_all(b"shopt -s expand_aliases 2>/dev/null; alias exit=return\n")
            .map_err(|err| Error::internal(format!("cannot set up the session shell: {err}")))?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let reader_session = session.clone();
        std::thread::Builder::new()
            .name("session-status".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    let Some(rest) = line.strip_prefix(DONE_PREFIX) else {
                        continue;
                    };
                    let mut parts = rest.split(' ');
                    let (Some(cmd_id), Some(code)) = (parts.next(), parts.next()) else {
                        continue;
                    };
                    let code = code.trim().parse().unwrap_or(1);
                    if let Ok(command) = reader_session.command(cmd_id) {
                        command.finish(code);
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|err| Error::internal(format!("cannot start a status thread: {err}")))?;
        let watcher = session.clone();
        tokio::spawn(async move {
            let status = exit.wait().await;
            let _ = done_rx.await;
            {
                let mut shell = watcher.shell.lock().unwrap_or_else(|e| e.into_inner());
                if shell.as_ref().is_some_and(|s| s.pid == pid) {
                    *shell = None;
                }
            }
            let pending: Vec<Arc<Command>> = watcher
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|c| c.shell_pid.load(Ordering::SeqCst) == pid && c.exit.borrow().is_none())
                .cloned()
                .collect();
            if !watcher.deleted.load(Ordering::SeqCst) {
                tracing::warn!(session = %watcher.id, code = status.code(),
                    "session shell exited; {} running command(s) end with its status; the next command starts a new shell",
                    pending.len());
            }
            if !pending.is_empty() {
                let _ = tokio::task::spawn_blocking(move || {
                    for command in pending {
                        command.finish(status.code());
                        // Nothing writes for a command the dead shell never started.
                        command.cancel.store(true, Ordering::SeqCst);
                    }
                })
                .await;
            }
        });
        Ok(Shell { pid, stdin })
    }
}

impl Session {
    fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id.clone(),
            commands: self
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|c| c.info())
                .collect(),
        }
    }

    fn command(&self, cmd_id: &str) -> Result<Arc<Command>> {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|c| c.id == cmd_id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("command not found: {cmd_id}")))
    }
}

impl Command {
    fn info(&self) -> CommandInfo {
        CommandInfo {
            id: self.id.clone(),
            command: self.text.clone(),
            exit_code: *self.exit.borrow(),
        }
    }

    fn stdin_is_fifo(&self) -> bool {
        self.stdin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Blocking: waits (bounded) for the readers, then publishes the exit code once.
    fn finish(&self, code: i32) {
        if self.exit.borrow().is_some() {
            return;
        }
        let (count, cvar) = &*self.readers_done;
        let guard = count.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cvar
            .wait_timeout_while(guard, OUTPUT_GRACE, |n| *n < 2)
            .unwrap_or_else(|e| e.into_inner());
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.exit.send_if_modified(|exit| {
            if exit.is_none() {
                *exit = Some(code);
                true
            } else {
                false
            }
        });
    }

    async fn wait(&self) -> i32 {
        let mut receiver = self.exit.subscribe();
        let code = match receiver.wait_for(Option::is_some).await {
            Ok(code) => code.unwrap_or(-1),
            Err(_) => -1,
        };
        code
    }

    async fn read_logs(&self) -> CommandLogs {
        let dir = self.dir.clone();
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            // Hold the writer so the three files are read at one consistent point.
            let _writer = log.lock().unwrap_or_else(|e| e.into_inner());
            let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
            CommandLogs {
                output: read("output.log"),
                stdout: read("stdout.log"),
                stderr: read("stderr.log"),
            }
        })
        .await
        .unwrap_or_default()
    }
}

/// SIGTERM the tree, wait until nothing of it is alive (up to the grace), then SIGKILL.
fn terminate(pid: Option<i32>, marker: &str) {
    let alive_in_tree = |pid: Option<i32>| -> bool {
        let mut pids = tree::marked_with(marker);
        if let Some(pid) = pid {
            pids.push(pid);
            pids.extend(tree::descendants_of(pid));
        }
        pids.into_iter().any(is_alive)
    };
    let signal_all = |signal: Signal| match pid {
        Some(pid) => tree::signal_tree(pid, marker, signal),
        None => {
            for other in tree::marked_with(marker) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(other), signal);
            }
        }
    };
    signal_all(Signal::SIGTERM);
    let deadline = Instant::now() + TERMINATION_GRACE;
    while Instant::now() < deadline {
        if !alive_in_tree(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_all(Signal::SIGKILL);
}

fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn validate_id(id: &str, what: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(Error::bad_request(format!("{what} id cannot be empty")));
    }
    if id == ENTRYPOINT_SESSION {
        return Err(Error::bad_request(
            "bad request: provided session ID is reserved for the entrypoint session",
        ));
    }
    if id.contains('/') || id.contains('\0') || id == "." || id == ".." || id.len() > 255 {
        return Err(Error::bad_request(format!(
            "invalid {what} id {id:?}: no '/', NUL, '.' or '..', at most 255 bytes"
        )));
    }
    Ok(())
}

fn session_not_found(id: &str) -> Error {
    Error::not_found(format!("session not found: {id}"))
}

fn gone(code: i32) -> Error {
    Error::new(
        ErrorKind::Gone,
        format!("gone: command has already completed with exit code {code}"),
    )
}

/// Single-quotes a path for the shell.
fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_single_quotes() {
        assert_eq!(quote(Path::new("/a'b")), "'/a'\\''b'");
    }
}
