//! Sessions: one long-lived shell per session whose state (cwd, exports, functions) persists
//! because every command is *sourced* in it.
//!
//! Per command, under `<state>/<sid>/<cmdId>/`: `cmd.sh` (the text), FIFOs `stdout`, `stderr`
//! (and `stdin` for async commands), and the logs `output.log` (both streams in arrival order,
//! a 3-byte marker `01 01 01` / `02 02 02` at every switch of stream), `stdout.log`,
//! `stderr.log`: all of the output unless `--max-log` caps them (a reply that carries a log holds
//! at most `--max-output` bytes of each, memory being the bound there; a follower streams every
//! byte from disk). toolboxd opens the FIFO read ends itself
//! (non-blocking, before the shell reaches the command) and drains them on plain threads, so
//! partial lines and NUL bytes reach the log at once.
//!
//! The shell's stdin is a pipe toolboxd writes one control line to per command; the shell's
//! stdout is a pipe on which each control line reports `TOOLBOXD_DONE <cmdId> <status>`. A command
//! is complete once its status arrived and both readers hit EOF (or a short grace passed: a
//! background job may hold the FIFO forever). `exit` is aliased to `return`, so `exit 3` ends
//! the sourced command with 3 and the session survives; a shell that dies anyway (`set -e`,
//! `kill $$`) marks its running commands with its status and is restarted on the next exec.
//! After each command the shell also checks that it can still set up the redirections a command
//! needs (`ulimit -n 3` makes that impossible); a shell that cannot is replaced at once, and the
//! command that left it so ends with [`ExitCause::ShellUnusable`].
//!
//! Input for an async command goes through a bounded queue to a writer task that holds the FIFO
//! non-blocking: a request never waits on a reader that may never come, and once the command ends
//! the task, its queue and its descriptor are gone.
//!
//! History is bounded ([`History`]): once a command ends, the oldest finished commands beyond the
//! session's count or byte budget are forgotten and their directories removed (a running command
//! never is); their ids are remembered (a bounded set) so a lookup says they were evicted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

mod format;
mod history;
mod log;
mod shell;

pub use format::{strip_markers, LogFormat, MarkerStripper};
pub use history::History;

use history::{disk_bytes, read_text, CommandId, Entry, Tombstones};
use log::{drain, read_head, LogWriter, Stream, LOG_NAMES};

use super::{tree, Io, Process, Spawn, TreeGuard};
use crate::error::{Error, ErrorKind, Result};

/// The id reserved for the entrypoint session.
pub const ENTRYPOINT_SESSION: &str = "entrypoint";
/// The entrypoint session's one command.
pub const ENTRYPOINT_COMMAND: &str = "entrypoint_command";
/// How often a follower at the end of the log looks for more (no writer notification needed, so
/// a slow or stuck follower can never hold the command up).
const FOLLOW_POLL: Duration = Duration::from_millis(20);
/// Bytes read per follower chunk.
const FOLLOW_CHUNK: usize = 128 * 1024;

const DONE_PREFIX: &str = "TOOLBOXD_DONE ";
/// What the shell prints as it begins a command (commands queue in the shell's stdin).
const START_PREFIX: &str = "TOOLBOXD_START ";
/// How long to wait for output EOF once a command's status is known (a background job may keep
/// the FIFO open; its later output still lands in the log).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// SIGTERM → SIGKILL grace when a session is deleted.
const TERMINATION_GRACE: Duration = Duration::from_secs(5);
/// SIGTERM → SIGKILL grace when a command's timeout expires.
const TIMEOUT_GRACE: Duration = Duration::from_secs(1);
/// What a timed-out command exits with (as coreutils `timeout` does).
const TIMEOUT_EXIT_CODE: i32 = 124;
/// Bytes of input queued per command before a request waits for the command to read (one input
/// larger than this is taken alone).
const INPUT_QUEUE_BYTES: usize = 1024 * 1024;

/// The session capability; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sessions {
    process: Process,
    root: PathBuf,
    history: History,
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
    /// Why it ended, once complete.
    pub exit_cause: Option<ExitCause>,
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

/// A piece of a command's log read from an offset (`Sessions::read_log`).
#[derive(Debug, Clone)]
pub struct LogSlice {
    /// Both streams in arrival order, without stream markers.
    pub output: Vec<u8>,
    /// The offset (in the marker-framed `output.log`) to read on from.
    pub next_offset: u64,
    /// More of the log was there already (the read stopped at its size limit).
    pub more: bool,
    /// The command's exit code as it was before the read: once it has one, a read that reaches
    /// the end of the log has everything.
    pub exit_code: Option<i32>,
    /// Why it ended, once it has.
    pub exit_cause: Option<ExitCause>,
}

/// How to run a session command.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecOptions {
    /// Return the id at once instead of waiting for the end.
    pub run_async: bool,
    /// Do not echo input sent to the command into its stdout log.
    pub suppress_echo: bool,
    /// End it (and its session's shell) if it still runs this long after it began.
    pub timeout: Option<Duration>,
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
    /// Oldest first.
    commands: Mutex<Vec<Entry>>,
    history: History,
    /// Ids of evicted commands, oldest first (at most `history::TOMBSTONES`).
    evicted: Mutex<Tombstones>,
    deleted: AtomicBool,
    /// Held while a timeout kills the session's tree: no new command (and so no new shell,
    /// which would carry the same marker and cgroup) starts until it is dead.
    killing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Shell {
    pid: i32,
    stdin: File,
    /// On the registry while it serves: shutdown ends its tree.
    _registered: TreeGuard,
}

/// Bytes queued for a command's stdin, holding their share of the queue's room.
type Input = (Vec<u8>, OwnedSemaphorePermit);

/// The queue in front of an async command's stdin (see `input_writer`).
#[derive(Debug, Clone)]
struct InputQueue {
    sender: mpsc::UnboundedSender<Input>,
    /// Bytes that may still be queued; closed when the writer ends.
    room: Arc<Semaphore>,
}

#[derive(Debug)]
struct Command {
    id: String,
    /// `None` in a finished command rebuilt from its record: read from `cmd.sh` when asked.
    text: Option<String>,
    dir: PathBuf,
    /// Its session, for the history bound.
    session: Weak<Session>,
    /// Started with `runAsync`: its stdin is a FIFO that takes input.
    run_async: bool,
    suppress_echo: bool,
    /// Most bytes of each log a reply carries.
    max_reply: usize,
    shell_pid: AtomicI32,
    /// Set when the shell begins it (it may wait behind earlier commands).
    started: watch::Sender<bool>,
    exit: watch::Sender<Option<i32>>,
    stdin: Mutex<Option<File>>,
    /// Created with the first input.
    input: Mutex<Option<InputQueue>>,
    log: Arc<Mutex<LogWriter>>,
    readers_done: Arc<(Mutex<u8>, Condvar)>,
    cancel: Arc<AtomicBool>,
    cause: Mutex<Option<ExitCause>>,
}

/// Why a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// It finished by itself with a status below 129.
    Exited,
    /// The shell reported 128 + N: a process killed by signal N (or an `exit 129..255`).
    Signal,
    /// Its session was deleted, or its shell died, while it ran.
    Killed,
    /// It ran past the `timeout` it was given: its session shell was killed (exit code 124).
    Timeout,
    /// It ended (with its own exit code) leaving its session shell unable to run commands, e.g.
    /// after `ulimit -n 3`: the shell was replaced, so shell state is lost.
    ShellUnusable,
}

impl ExitCause {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::Signal => "signal",
            ExitCause::Killed => "killed",
            ExitCause::Timeout => "timeout",
            ExitCause::ShellUnusable => "shell_unusable",
        }
    }
}

impl Sessions {
    /// Sessions under `root` (created 0700 on first use), children spawned through `process`,
    /// each keeping the finished commands `history` allows.
    pub fn new(process: Process, root: PathBuf, history: History) -> Sessions {
        Sessions {
            process,
            root,
            history,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Starts session `id`.
    pub fn create(&self, id: &str) -> Result<()> {
        validate_id(id, "session")?;
        self.create_unchecked(id).map(drop)
    }

    fn create_unchecked(&self, id: &str) -> Result<Arc<Session>> {
        self.process.trees.check_open()?;
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
            history: self.history,
            evicted: Mutex::default(),
            deleted: AtomicBool::new(false),
            killing: tokio::sync::Mutex::new(()),
        });
        let shell = self.start_shell(&session)?;
        *session.shell.lock().unwrap_or_else(|e| e.into_inner()) = Some(shell);
        sessions.insert(id.to_string(), session.clone());
        Ok(session)
    }

    /// Runs the image's command (`argv`, each word shell-quoted) as session `entrypoint`,
    /// command `entrypoint_command`: async, input not echoed.
    pub fn start_entrypoint(&self, argv: &[String]) -> Result<()> {
        let text = argv
            .iter()
            .map(|word| quote_word(word))
            .collect::<Vec<_>>()
            .join(" ");
        let session = self.create_unchecked(ENTRYPOINT_SESSION)?;
        self.start_command(&session, ENTRYPOINT_COMMAND.to_string(), &text, true, true)
            .map(drop)
    }

    /// Sends `signal` to the entrypoint's process tree and waits up to `grace` for its command
    /// to end. Nothing to do without an entrypoint.
    pub async fn signal_entrypoint(&self, signal: Signal, grace: Duration) {
        let Ok(session) = self.session(ENTRYPOINT_SESSION) else {
            return;
        };
        let Ok(command) = session.command(ENTRYPOINT_COMMAND) else {
            return;
        };
        if command.exit.borrow().is_some() {
            return;
        }
        let pid = command.shell_pid.load(Ordering::SeqCst);
        let marker = session.marker.clone();
        // Everything under the session shell, not the shell itself: it reports the entrypoint's
        // real exit status once the command ends.
        let _ = tokio::task::spawn_blocking(move || {
            let mut pids = tree::descendants_of(pid);
            pids.extend(tree::marked_with(&marker));
            pids.sort_unstable();
            pids.dedup();
            for target in pids.into_iter().filter(|&p| p != pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), signal);
            }
        })
        .await;
        let _ = tokio::time::timeout(grace, command.wait()).await;
    }

    /// Terminates every session's tree (entrypoint included): SIGTERM, up to `grace`, SIGKILL.
    pub async fn terminate_all(&self, grace: Duration) {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, session)| session)
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for session in sessions {
            session.deleted.store(true, Ordering::SeqCst);
            let pid = session
                .shell
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .map(|shell| shell.pid);
            let marker = session.marker.clone();
            tasks.spawn_blocking(move || {
                terminate(pid, &marker, grace);
                for entry in session
                    .commands
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                {
                    entry.cancel();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// How many sessions there are, the entrypoint's not counted.
    pub fn count(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|id| *id != ENTRYPOINT_SESSION)
            .count()
    }

    /// Blocking (finished commands' texts are read from disk). Every session but the entrypoint
    /// (sorted by id).
    pub fn list(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|session| session.id != ENTRYPOINT_SESSION)
            .cloned()
            .collect();
        let mut infos: Vec<SessionInfo> = sessions.iter().map(|s| s.info()).collect();
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        infos
    }

    /// Blocking (see `list`). One session.
    pub fn get(&self, id: &str) -> Result<SessionInfo> {
        Ok(self.session(id)?.info())
    }

    /// Blocking (a finished command's text is read from disk). One command.
    pub fn command(&self, id: &str, cmd_id: &str) -> Result<CommandInfo> {
        Ok(self.session(id)?.command(cmd_id)?.info())
    }

    /// Runs `text` in session `id`: to completion, or (`run_async`) returning the id at once.
    ///
    /// With a `timeout`, counted from when the shell begins the command (it may wait behind
    /// earlier ones), a command still running then ends with exit code 124 and cause
    /// [`ExitCause::Timeout`]: a sourced command cannot be stopped apart from its shell, so the
    /// session's whole tree is killed (SIGTERM, then SIGKILL after a short grace; commands queued
    /// behind it end as killed) and the next command starts a fresh shell once that tree is
    /// gone. A sync exec then fails with [`ErrorKind::Timeout`].
    pub async fn exec(
        &self,
        id: &str,
        text: &str,
        options: ExecOptions,
    ) -> Result<(String, Option<SessionExecOutcome>)> {
        let ExecOptions {
            run_async,
            suppress_echo,
            timeout,
        } = options;
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
        if text.contains('\0') {
            return Err(super::exec::nul_in_command(text));
        }
        let session = self.session(id)?;
        self.process.trees.check_open()?;
        let id = uuid::Uuid::new_v4().to_string();
        // After a timeout's kill, not during it.
        drop(session.killing.lock().await);
        let command = self.start_command(&session, id, text, run_async, suppress_echo)?;
        if let Some(limit) = timeout {
            tokio::spawn(enforce_timeout(session.clone(), command.clone(), limit));
        }
        if run_async {
            return Ok((command.id.clone(), None));
        }
        let exit_code = tokio::select! {
            biased;
            // The registry and `terminate_all` end the shell.
            () = self.process.trees.closing() => return Err(super::shutting_down()),
            code = command.wait() => code,
        };
        if command.outcome().1 == Some(ExitCause::Timeout) {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "command {} timed out after {}s: its session shell was killed and the next \
                     command starts a new one; its output is in \
                     /process/session/{}/command/{}/logs",
                    command.id,
                    timeout.unwrap_or_default().as_secs(),
                    session.id,
                    command.id
                ),
            ));
        }
        let logs = command.read_logs().await;
        if let Some(mut lost) = command.lost() {
            // The command ran, but what the reply would carry is not all it wrote.
            lost.message = format!(
                "command {} ended with exit code {exit_code}, but its log is incomplete ({}); \
                 what was kept is in /process/session/{}/command/{}/logs",
                command.id, lost.message, session.id, command.id
            );
            return Err(lost);
        }
        Ok((
            command.id.clone(),
            Some(SessionExecOutcome {
                cmd_id: command.id.clone(),
                exit_code,
                logs,
            }),
        ))
    }

    fn start_command(
        &self,
        session: &Arc<Session>,
        id: String,
        text: &str,
        run_async: bool,
        suppress_echo: bool,
    ) -> Result<Arc<Command>> {
        let command = self.prepare(session, id, text, run_async, suppress_echo)?;
        session
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry::Live(command.clone()));
        if let Err(err) = self.send(session, &command) {
            command.cancel.store(true, Ordering::SeqCst);
            // Off the async workers: finishing waits (briefly) for the readers.
            let failed = command.clone();
            tokio::task::spawn_blocking(move || failed.finish(127));
            return Err(err);
        }
        Ok(command)
    }

    /// A reader of a command's `output.log` (markers included) from byte `offset`: with
    /// `follow`, it keeps reading as the log grows and ends once the command completed and
    /// every byte was read; without, it ends at the current end of the log.
    pub fn follow(&self, id: &str, cmd_id: &str, offset: u64, follow: bool) -> Result<LogFollower> {
        let command = self.session(id)?.command(cmd_id)?;
        let path = command.dir.join("output.log");
        let mut file = File::open(&path).map_err(|err| Error::io("open", &path, &err))?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))
            .map_err(|err| Error::io("seek", &path, &err))?;
        Ok(LogFollower {
            file: Some(file),
            command,
            follow,
        })
    }

    /// Blocking. Up to `max` bytes of a command's `output.log` from byte `offset`, stream
    /// markers removed. The slice never ends inside a marker or (unless the log ends there) a
    /// UTF-8 character: `next_offset` is where the next read starts.
    pub fn read_log(&self, id: &str, cmd_id: &str, offset: u64, max: usize) -> Result<LogSlice> {
        let command = self.session(id)?.command(cmd_id)?;
        // Completion first: whatever was written before the exit was published is read below.
        let (exit_code, exit_cause) = command.outcome();
        let path = command.dir.join("output.log");
        let mut file = File::open(&path).map_err(|err| Error::io("open", &path, &err))?;
        let size = file
            .metadata()
            .map_err(|err| Error::io("stat", &path, &err))?
            .len();
        if offset > size {
            return Err(Error::bad_request(format!(
                "offset {offset} is past the end of the log ({size} bytes so far)"
            )));
        }
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))
            .map_err(|err| Error::io("seek", &path, &err))?;
        let wanted = usize::try_from(size - offset)
            .unwrap_or(usize::MAX)
            .min(max);
        let mut raw = Vec::with_capacity(wanted);
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, wanted as u64), &mut raw)
            .map_err(|err| Error::io("read", &path, &err))?;
        let at_end = offset + raw.len() as u64 >= size;
        let mut stripper = MarkerStripper::default();
        let mut output = stripper.feed(&raw);
        let held = stripper.finish();
        let mut consumed = raw.len();
        if exit_code.is_some() && at_end {
            // The log is complete: a lone 1 or 2 byte at its end is data.
            output.extend_from_slice(&held);
        } else {
            consumed -= held.len();
            // A character cut by the size limit (or still being written) is read next time.
            let cut = incomplete_utf8_tail(&output);
            if cut > 0 && raw[..consumed].ends_with(&output[output.len() - cut..]) {
                output.truncate(output.len() - cut);
                consumed -= cut;
            }
        }
        Ok(LogSlice {
            output,
            next_offset: offset + consumed as u64,
            more: !at_end,
            exit_code,
            exit_cause,
        })
    }

    /// The logs of a command so far.
    pub async fn logs(&self, id: &str, cmd_id: &str) -> Result<CommandLogs> {
        let command = self.session(id)?.command(cmd_id)?;
        Ok(command.read_logs().await)
    }

    /// Queues `data` (plus a newline if missing) for a running async command's stdin. Answers
    /// once the bytes are queued: a command that does not read never holds the request, only a
    /// full queue does (until the command reads or ends: then 410).
    pub async fn input(&self, id: &str, cmd_id: &str, data: &str) -> Result<()> {
        if id == ENTRYPOINT_SESSION {
            return Err(Error::bad_request(
                "the entrypoint session does not accept input",
            ));
        }
        let command = self.session(id)?.command(cmd_id)?;
        if !command.run_async {
            return Err(Error::bad_request(
                "the command was not started with runAsync: its stdin is closed",
            ));
        }
        let InputQueue { sender, room } = command.input_queue()?;
        let mut bytes = data.as_bytes().to_vec();
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        let wanted = bytes.len().clamp(1, INPUT_QUEUE_BYTES) as u32;
        let mut exit = command.exit.subscribe();
        let permit = tokio::select! {
            permit = room.acquire_many_owned(wanted) => permit.ok(),
            _ = exit.wait_for(Option::is_some) => None,
        };
        let Some(permit) = permit else {
            return Err(command.gone());
        };
        sender.send((bytes, permit)).map_err(|_| command.gone())
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
        tokio::task::spawn_blocking(move || terminate(pid, &marker, TERMINATION_GRACE))
            .await
            .map_err(|err| Error::internal(format!("background task failed: {err}")))?;
        let running: Vec<Arc<Command>> = {
            let commands = session.commands.lock().unwrap_or_else(|e| e.into_inner());
            for entry in commands.iter() {
                entry.cancel();
            }
            commands
                .iter()
                .filter_map(|entry| match entry {
                    Entry::Live(command) => Some(command.clone()),
                    Entry::Done(_) => None,
                })
                .collect()
        };
        let dir = session.dir.clone();
        tokio::task::spawn_blocking(move || {
            for command in running {
                command.finish_with(128 + libc::SIGKILL, ExitCause::Killed);
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
}

impl Session {
    /// Blocking: finished commands' texts are read from their files.
    fn info(&self) -> SessionInfo {
        let commands: Vec<(CommandInfo, bool)> = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(Entry::info)
            .collect();
        SessionInfo {
            id: self.id.clone(),
            commands: commands
                .into_iter()
                .map(|(mut info, from_disk)| {
                    if from_disk {
                        info.command = read_text(&self.dir.join(&info.id));
                    }
                    info
                })
                .collect(),
        }
    }

    fn command(self: &Arc<Self>, cmd_id: &str) -> Result<Arc<Command>> {
        let wanted = CommandId::new(cmd_id);
        let found = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|entry| entry.is(&wanted))
            .map(|entry| entry.command(self));
        found.ok_or_else(|| {
            let evicted = self
                .evicted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ids
                .contains(cmd_id);
            if evicted {
                Error::not_found(format!(
                    "command {cmd_id} was evicted from session {}'s history: a session keeps \
                     its newest {} finished commands and {} bytes of their logs \
                     (--max-history, --max-history-bytes)",
                    self.id, self.history.max_commands, self.history.max_bytes
                ))
            } else {
                Error::not_found(format!("command not found: {cmd_id}"))
            }
        })
    }
}

impl Command {
    fn info(&self) -> CommandInfo {
        let (exit_code, exit_cause) = self.outcome();
        CommandInfo {
            id: self.id.clone(),
            command: self.text.clone().unwrap_or_else(|| read_text(&self.dir)),
            exit_code,
            exit_cause,
        }
    }

    /// Its exit code and why it ended, once it has.
    fn outcome(&self) -> (Option<i32>, Option<ExitCause>) {
        (
            *self.exit.borrow(),
            *self.cause.lock().unwrap_or_else(|e| e.into_inner()),
        )
    }

    fn stdin_is_fifo(&self) -> bool {
        self.run_async
    }

    /// Bytes its files take: the script and the three logs.
    fn disk_bytes(&self) -> u64 {
        disk_bytes(self.script_len(), &self.log)
    }

    /// Bytes of its text.
    fn script_len(&self) -> usize {
        self.text.as_ref().map_or(0, String::len)
    }

    /// The 410 for input to a command that has ended (or is ending).
    fn gone(&self) -> Error {
        match *self.exit.borrow() {
            Some(code) => gone(code),
            None => Error::new(ErrorKind::Gone, "gone: the command is ending"),
        }
    }

    /// The queue in front of its stdin, and the writer task behind it, started on first use.
    fn input_queue(&self) -> Result<InputQueue> {
        let mut input = self.input.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = input.as_ref() {
            return Ok(queue.clone());
        }
        let pipe = {
            let stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
            // Taken as the command finishes.
            let Some(file) = stdin.as_ref() else {
                return Err(self.gone());
            };
            file.try_clone()
                .and_then(tokio::net::unix::pipe::Sender::from_file)
                .map_err(|err| Error::internal(format!("cannot open command stdin: {err}")))?
        };
        let (sender, queue) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(INPUT_QUEUE_BYTES));
        let echo = (!self.suppress_echo).then(|| self.log.clone());
        tokio::spawn(input_writer(
            pipe,
            queue,
            room.clone(),
            self.exit.subscribe(),
            echo,
        ));
        let queue = InputQueue { sender, room };
        *input = Some(queue.clone());
        Ok(queue)
    }

    /// Blocking: waits (bounded) for the readers, then publishes the exit code once.
    fn finish(&self, code: i32) {
        let cause = if code > 128 {
            ExitCause::Signal
        } else {
            ExitCause::Exited
        };
        self.finish_with(code, cause);
    }

    /// Marks a running command as timed out, before its tree is killed: whoever finishes it
    /// then publishes the timeout (exit code 124), not the signal that ended the shell.
    /// Returns false when it already ended (its cause is claimed as soon as its status is
    /// known, before its output is drained), so a command that ended in time is never relabelled.
    fn time_out(&self) -> bool {
        let mut cause = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        if cause.is_some() || self.exit.borrow().is_some() {
            return false;
        }
        *cause = Some(ExitCause::Timeout);
        true
    }

    fn finish_with(&self, code: i32, cause: ExitCause) {
        if self.exit.borrow().is_some() {
            return;
        }
        // Claimed before the wait for the readers: a timeout expiring meanwhile loses.
        let cause = *self
            .cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(cause);
        let (count, cvar) = &*self.readers_done;
        let guard = count.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cvar
            .wait_timeout_while(guard, OUTPUT_GRACE, |n| *n < 2)
            .unwrap_or_else(|e| e.into_inner());
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
        let code = if cause == ExitCause::Timeout {
            TIMEOUT_EXIT_CODE
        } else {
            code
        };
        // Before the exit is published: whoever waits on it then sees the history trimmed.
        if let Some(session) = self.session.upgrade() {
            session.trim_history(&self.id);
        }
        let published = self.exit.send_if_modified(|exit| {
            if exit.is_none() {
                *exit = Some(code);
                true
            } else {
                false
            }
        });
        if published {
            if let Some(session) = self.session.upgrade() {
                session.retire(&self.id);
            }
        }
    }

    async fn wait(&self) -> i32 {
        let mut receiver = self.exit.subscribe();
        let code = match receiver.wait_for(Option::is_some).await {
            Ok(code) => code.unwrap_or(-1),
            Err(_) => -1,
        };
        code
    }

    /// Why its logs stopped short of what it wrote (a write failed, e.g. on a full disk).
    fn lost(&self) -> Option<Error> {
        let writer = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let (index, err) = writer.lost.as_ref()?;
        Some(Error::io("write", &self.dir.join(LOG_NAMES[*index]), err))
    }

    async fn read_logs(&self) -> CommandLogs {
        let dir = self.dir.clone();
        let log = self.log.clone();
        let limit = self.max_reply;
        let lost = self.lost();
        tokio::task::spawn_blocking(move || {
            // Hold the writer so the three files are read at one consistent point.
            let _writer = log.lock().unwrap_or_else(|e| e.into_inner());
            let read = |name: &str| {
                let mut head = read_head(&dir.join(name), limit, name == "output.log");
                if let Some(lost) = &lost {
                    head.extend_from_slice(
                        format!(
                            "\n[toolboxd: log incomplete: {lost}; later output was not kept]\n"
                        )
                        .as_bytes(),
                    );
                }
                head
            };
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

/// Writes queued input to a command's stdin (non-blocking) until the command ends, echoing what
/// went in into its stdout log unless `echo` is None. On its end the queue closes (later input is
/// 410) and the descriptor is released with the task.
async fn input_writer(
    pipe: tokio::net::unix::pipe::Sender,
    mut queue: mpsc::UnboundedReceiver<Input>,
    room: Arc<Semaphore>,
    mut exit: watch::Receiver<Option<i32>>,
    echo: Option<Arc<Mutex<LogWriter>>>,
) {
    'items: loop {
        let (bytes, _permit) = tokio::select! {
            item = queue.recv() => match item {
                Some(item) => item,
                None => break,
            },
            _ = exit.wait_for(Option::is_some) => break,
        };
        let mut written = 0;
        while written < bytes.len() {
            tokio::select! {
                ready = pipe.writable() => if ready.is_err() { break 'items },
                _ = exit.wait_for(Option::is_some) => break 'items,
            }
            match pipe.try_write(&bytes[written..]) {
                Ok(n) => {
                    if let Some(log) = echo.clone() {
                        let chunk = bytes[written..written + n].to_vec();
                        let _ = tokio::task::spawn_blocking(move || {
                            log.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(Stream::Stdout, &chunk)
                        })
                        .await;
                    }
                    written += n;
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => {
                    tracing::warn!("writing a command's input failed: {err}");
                    break 'items;
                }
            }
        }
    }
    room.close();
}

/// Ends `command` if it is still running `limit` after its shell began it: marks it timed out,
/// then kills the session's tree (the shell that runs it, and everything it started), holding
/// the session's `killing` gate so no new shell starts until that tree is gone.
async fn enforce_timeout(session: Arc<Session>, command: Arc<Command>, limit: Duration) {
    let mut started = command.started.subscribe();
    let mut exit = command.exit.subscribe();
    tokio::select! {
        _ = started.wait_for(|started| *started) => {}
        _ = exit.wait_for(Option::is_some) => return,
    }
    if tokio::time::timeout(limit, command.wait()).await.is_ok() {
        return;
    }
    let _gate = session.killing.lock().await;
    let shell = command.shell_pid.load(Ordering::SeqCst);
    let runs_it = session
        .shell
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|s| s.pid == shell);
    if session.deleted.load(Ordering::SeqCst) || !runs_it || !command.time_out() {
        return;
    }
    let marker = session.marker.clone();
    let _ = tokio::task::spawn_blocking(move || {
        terminate(Some(shell), &marker, TIMEOUT_GRACE);
        // The shell's watcher finishes it; this covers a shell that was already gone.
        command.finish_with(TIMEOUT_EXIT_CODE, ExitCause::Timeout);
    })
    .await;
}

/// SIGTERM the tree, wait until nothing of it is alive (up to the grace), then SIGKILL.
fn terminate(pid: Option<i32>, marker: &str, grace: Duration) {
    let alive_in_tree = |pid: Option<i32>| -> bool {
        let mut pids = tree::marked_with(marker);
        if let Some(pid) = pid {
            pids.push(pid);
            pids.extend(tree::descendants_of(pid));
        }
        pids.into_iter().any(tree::is_alive)
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
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && alive_in_tree(pid) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive_in_tree(pid) {
        signal_all(Signal::SIGKILL);
    }
    crate::process::cgroup::remove_when_empty(marker);
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
    if id.contains('/')
        || id.chars().any(char::is_control)
        || id == "."
        || id == ".."
        || id.len() > 255
    {
        return Err(Error::bad_request(format!(
            "invalid {what} id {id:?}: no '/', control characters, '.' or '..', at most 255 bytes"
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

/// A reader of `output.log` that can follow it; see `Sessions::follow`.
#[derive(Debug)]
pub struct LogFollower {
    file: Option<File>,
    command: Arc<Command>,
    follow: bool,
}

impl LogFollower {
    /// The next bytes of the log, or `None` at the end of the stream. Not cancel-safe: a call
    /// dropped mid-read ends the stream.
    pub async fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut exit = self.command.exit.subscribe();
        loop {
            // Completion is checked before the read: whatever was written before the exit was
            // published is read before the stream ends.
            let done = !self.follow || exit.borrow_and_update().is_some();
            let Some(mut file) = self.file.take() else {
                return Ok(None);
            };
            let (file, read) = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; FOLLOW_CHUNK];
                let read = std::io::Read::read(&mut file, &mut buf).map(|n| {
                    buf.truncate(n);
                    buf
                });
                (file, read)
            })
            .await
            .map_err(std::io::Error::other)?;
            self.file = Some(file);
            let chunk = read?;
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
            if done {
                self.file = None;
                return Ok(None);
            }
            let _ = tokio::time::timeout(FOLLOW_POLL, exit.changed()).await;
        }
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 character that is not complete.
fn incomplete_utf8_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue;
        }
        let length = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if length > back { back } else { 0 };
    }
    0
}

/// Single-quotes a word for the shell unless it is plainly safe.
fn quote_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,+@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Single-quotes a path for the shell.
fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_utf8_tails() {
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        assert_eq!(incomplete_utf8_tail("é".as_bytes()), 0);
        assert_eq!(incomplete_utf8_tail(&"é".as_bytes()[..1]), 1);
        assert_eq!(incomplete_utf8_tail(&"€".as_bytes()[..2]), 2);
        assert_eq!(incomplete_utf8_tail(&"a😀".as_bytes()[..4]), 3);
        assert_eq!(incomplete_utf8_tail("a😀".as_bytes()), 0);
        assert_eq!(incomplete_utf8_tail(b""), 0);
    }

    #[test]
    fn quotes_single_quotes() {
        assert_eq!(quote(Path::new("/a'b")), "'/a'\\''b'");
        assert_eq!(quote_word("ls"), "ls");
        assert_eq!(quote_word("a b"), "'a b'");
        assert_eq!(quote_word(""), "''");
        assert_eq!(quote_word("it's"), "'it'\\''s'");
    }
}
