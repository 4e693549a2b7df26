//! PTYs: a login shell on a pseudo-terminal, started through the reaper like every child, in
//! its own cgroup leaf, as the leader of a new session with the PTY as its controlling terminal
//! (`process::Spawn::terminal`). portable-pty only opens the pair and resizes it.
//!
//! Per running PTY: a reader thread (non-blocking reads and poll on the master, never on the
//! async workers) publishes output into a 256 KiB scrollback ring and one queue per attached
//! client, at most 8 MiB each (`output.rs`); a writer thread types what clients send, in order;
//! a supervisor task waits for the shell's exit, gives its output a moment to drain, kills what
//! is left of its tree (a PTY's whole tree dies with it), publishes the exit and forgets the
//! PTY, leaving a tombstone for its id.
//!
//! `Ptys` is the registry of named PTYs (the `/process/pty` API) and of unlisted ones (one per
//! web-terminal connection). The ids of named PTYs whose shell ended by itself are kept
//! (`ENDED_IDS` at most, oldest evicted first) until the id is used again, so a request for one
//! says it has terminated (410, as Daytona answers a resize), not that it never existed (404).

mod output;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use nix::sys::signal::Signal;
use portable_pty::{MasterPty, PtySize};
use tokio::sync::{mpsc, oneshot, watch};

pub use output::{Attachment, PtyEvent, PtyInput, CLIENT_QUEUE, SCROLLBACK};

use crate::error::{Error, ErrorKind, Result};
use crate::process::{self, Process, Spawn, MARKER_VAR};

/// Columns and rows when none are given.
pub const DEFAULT_SIZE: (u16, u16) = (80, 24);
/// The largest number of columns or rows.
pub const MAX_SIZE: u16 = 1000;
/// The terminal type a PTY announces unless its environment says otherwise.
pub const TERM: &str = "xterm-256color";
/// Most bytes published as one chunk (one pass of reads of the master).
const READ_CHUNK: usize = 64 * 1024;
/// Input chunks queued for the writer thread.
const INPUT_QUEUE: usize = 64;
/// How long after the shell exits its output may take to reach EOF (a background job may hold
/// the terminal open; it is killed after this).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// How long the master may take to report EOF once the tree has been killed.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long a kill waits for the PTY to end before it answers anyway.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Ids of ended PTYs remembered (a tombstone each; at most 256 bytes per id).
pub const ENDED_IDS: usize = 1024;

/// What a new PTY is.
#[derive(Debug, Clone, Default)]
pub struct PtyOptions {
    /// The id (unique among named PTYs).
    pub id: String,
    /// Working directory, relative to the work dir; the work dir when `None`.
    pub cwd: Option<String>,
    /// Environment on top of the one every child inherits (`TERM` defaults to xterm-256color).
    pub envs: BTreeMap<String, String>,
    /// Columns (`DEFAULT_SIZE` when `None`).
    pub cols: Option<u16>,
    /// Rows (`DEFAULT_SIZE` when `None`).
    pub rows: Option<u16>,
    /// Start the shell when the first client attaches rather than now.
    pub lazy_start: bool,
    /// Run this command (`shell -c COMMAND`) instead of a login shell.
    pub command: Option<std::ffi::OsString>,
    /// Only its creator attaches (an SSH session): output waits for that client instead of
    /// dropping it when it falls behind, as a program waits on a slow terminal.
    pub exclusive: bool,
}

/// A PTY as listed.
#[derive(Debug, Clone)]
pub struct PtyInfo {
    /// The id.
    pub id: String,
    /// Absolute working directory of the shell.
    pub cwd: PathBuf,
    /// The environment it was given (with `TERM`).
    pub envs: BTreeMap<String, String>,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// When it was created.
    pub created_at: SystemTime,
    /// Whether its shell runs (false for a lazy PTY nobody attached to yet).
    pub active: bool,
    /// Whether it starts on the first attach.
    pub lazy_start: bool,
}

/// How a PTY's shell ended: its exit code, or 128 + the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtyExit {
    /// The shell's convention.
    pub code: i32,
}

impl PtyExit {
    /// What a PTY killed with SIGKILL reports.
    pub const KILLED: PtyExit = PtyExit { code: 128 + 9 };

    /// Daytona's words for a non-zero exit: `Ctrl+C`, `SIGKILL`, `SIGTERM`, `signal N`,
    /// `non-zero exit`; `None` for 0.
    pub fn reason(self) -> Option<String> {
        match self.code {
            0 => None,
            130 => Some("Ctrl+C".to_string()),
            137 => Some("SIGKILL".to_string()),
            143 => Some("SIGTERM".to_string()),
            code if code > 128 => Some(format!("signal {}", code - 128)),
            _ => Some("non-zero exit".to_string()),
        }
    }
}

/// The PTY registry; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ptys {
    process: Process,
    named: Arc<Mutex<Named>>,
    unlisted: Arc<Mutex<HashMap<u64, Arc<Pty>>>>,
    next_unlisted: Arc<AtomicU64>,
}

/// The named PTYs: the live ones, and the ids of those that ended by themselves.
#[derive(Debug, Default)]
struct Named {
    live: HashMap<String, Arc<Pty>>,
    ended: HashSet<String>,
    /// `ended`, oldest first.
    ended_order: VecDeque<String>,
}

impl Named {
    /// Remembers that `id` ended, evicting the oldest tombstone past `ENDED_IDS`.
    fn bury(&mut self, id: &str) {
        if self.ended.insert(id.to_string()) {
            self.ended_order.push_back(id.to_string());
        }
        while self.ended_order.len() > ENDED_IDS {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    /// Forgets `id`'s tombstone (the id is used again, or deleted); whether there was one.
    fn unbury(&mut self, id: &str) -> bool {
        if !self.ended.remove(id) {
            return false;
        }
        self.ended_order.retain(|old| old != id);
        true
    }
}

/// One PTY.
#[derive(Debug)]
pub struct Pty {
    id: String,
    /// The shell's arguments: a login shell, or `-c COMMAND`.
    args: Vec<std::ffi::OsString>,
    /// Its key among the unlisted PTYs, if it is one.
    unlisted: Option<u64>,
    cwd: PathBuf,
    envs: BTreeMap<String, String>,
    created_at: SystemTime,
    lazy_start: bool,
    state: Mutex<State>,
    output: output::Output,
    exit: watch::Sender<Option<PtyExit>>,
}

#[derive(Debug)]
struct State {
    cols: u16,
    rows: u16,
    phase: Phase,
}

enum Phase {
    /// Lazy, nobody attached yet.
    Waiting,
    Running(Running),
    Ended,
}

impl std::fmt::Debug for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Waiting => "Waiting",
            Phase::Running(_) => "Running",
            Phase::Ended => "Ended",
        })
    }
}

struct Running {
    master: Box<dyn MasterPty + Send>,
    input: mpsc::Sender<Bytes>,
    pid: i32,
    marker: String,
}

impl Ptys {
    /// An empty registry whose shells are started through `process`.
    pub fn new(process: Process) -> Ptys {
        Ptys {
            process,
            named: Arc::default(),
            unlisted: Arc::default(),
            next_unlisted: Arc::default(),
        }
    }

    /// Registers a named PTY and, unless it is lazy, starts its shell. Blocking (it spawns).
    pub fn create(&self, options: PtyOptions) -> Result<Arc<Pty>> {
        let pty = self.describe(options, None)?;
        {
            let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
            if named.live.contains_key(&pty.id) {
                return Err(Error::conflict(format!(
                    "pty session {} already exists",
                    pty.id
                )));
            }
            named.unbury(&pty.id);
            named.live.insert(pty.id.clone(), pty.clone());
        }
        if !pty.lazy_start {
            if let Err(err) = self.start(&pty) {
                self.forget(&pty);
                return Err(err);
            }
        }
        Ok(pty)
    }

    /// Creates a named PTY, starts it and attaches to it. Blocking.
    pub fn create_and_attach(&self, mut options: PtyOptions) -> Result<Attachment> {
        options.lazy_start = false;
        let pty = self.create(options)?;
        pty.subscribe()
    }

    /// Starts an unlisted PTY (the web terminal's) and attaches to it. Blocking.
    pub fn open_unlisted(&self, options: PtyOptions) -> Result<(Arc<Pty>, Attachment)> {
        let key = self.next_unlisted.fetch_add(1, Ordering::Relaxed);
        let pty = self.describe(options, Some(key))?;
        self.unlisted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pty.clone());
        if let Err(err) = self.start(&pty) {
            self.forget(&pty);
            return Err(err);
        }
        let attachment = pty.subscribe()?;
        Ok((pty, attachment))
    }

    /// Attaches to a named PTY, starting a lazy one. Blocking (it may spawn).
    pub fn attach(&self, id: &str) -> Result<Attachment> {
        let pty = self.named(id, "is no longer available")?;
        self.start(&pty)?;
        pty.subscribe()
    }

    /// Every named PTY, oldest first.
    pub fn list(&self) -> Vec<PtyInfo> {
        let mut list: Vec<PtyInfo> = self
            .named
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .values()
            .map(|pty| pty.info())
            .collect();
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        list
    }

    /// One named PTY.
    pub fn get(&self, id: &str) -> Result<PtyInfo> {
        Ok(self.named(id, "is no longer available")?.info())
    }

    /// Sets a named PTY's size (the shell gets SIGWINCH); a lazy one starts with it.
    pub fn resize(&self, id: &str, cols: u16, rows: u16) -> Result<PtyInfo> {
        check_size(cols, rows)?;
        let pty = self.named(id, "cannot be resized")?;
        pty.resize(cols, rows)?;
        Ok(pty.info())
    }

    /// Kills a named PTY's whole tree (SIGKILL) and forgets it; waits (a few seconds at most)
    /// until its clients have been told. A PTY that already ended is only forgotten (Daytona's
    /// delete of a terminated PTY succeeds too).
    pub async fn kill(&self, id: &str) -> Result<()> {
        let pty = {
            let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
            match named.live.get(id).cloned() {
                Some(pty) => pty,
                None if named.unbury(id) => return Ok(()),
                None => return Err(not_found(id)),
            }
        };
        self.forget(&pty);
        pty.kill(Signal::SIGKILL).await;
        pty.ended(KILL_WAIT).await;
        Ok(())
    }

    /// Ends every PTY, named and unlisted: SIGHUP to each tree (what a closing terminal sends),
    /// then SIGKILL to what still runs after `grace`.
    pub async fn terminate_all(&self, grace: Duration) {
        let mut all: Vec<Arc<Pty>> = self
            .named
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .drain()
            .map(|(_, pty)| pty)
            .collect();
        all.extend(
            self.unlisted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .map(|(_, pty)| pty),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for pty in all {
            tasks.spawn(async move { pty.hang_up(grace).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// The live named PTY `id`; for an id that ended, a 410 whose message ends in `what`.
    fn named(&self, id: &str, what: &str) -> Result<Arc<Pty>> {
        let named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        match named.live.get(id) {
            Some(pty) => Ok(pty.clone()),
            None if named.ended.contains(id) => Err(ended(id, what)),
            None => Err(not_found(id)),
        }
    }

    /// Removes `pty`, whose shell ended, from the registry and keeps a tombstone for its id,
    /// unless the id now names another PTY or was deleted.
    fn retire(&self, pty: &Arc<Pty>) {
        if pty.unlisted.is_some() {
            return self.forget(pty);
        }
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if named.live.get(&pty.id).is_some_and(|p| Arc::ptr_eq(p, pty)) {
            named.live.remove(&pty.id);
            named.bury(&pty.id);
        }
    }

    /// Removes `pty` from the registry, unless its id now names another PTY.
    fn forget(&self, pty: &Arc<Pty>) {
        match pty.unlisted {
            Some(key) => {
                self.unlisted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
            }
            None => {
                let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
                if named.live.get(&pty.id).is_some_and(|p| Arc::ptr_eq(p, pty)) {
                    named.live.remove(&pty.id);
                }
            }
        }
    }

    /// Checks `options` and builds the PTY (not started, not registered).
    fn describe(&self, options: PtyOptions, unlisted: Option<u64>) -> Result<Arc<Pty>> {
        if unlisted.is_none() {
            check_id(&options.id)?;
        }
        let cols = options.cols.unwrap_or(DEFAULT_SIZE.0);
        let rows = options.rows.unwrap_or(DEFAULT_SIZE.1);
        check_size(cols, rows)?;
        process::validate_env(options.envs.iter())?;
        let cwd = self.process.directory(options.cwd.as_deref())?;
        let mut envs = options.envs;
        envs.entry("TERM".to_string())
            .or_insert_with(|| TERM.to_string());
        let args: Vec<std::ffi::OsString> = match options.command {
            Some(command) => vec!["-c".into(), command],
            None => vec!["-l".into(), "-i".into()],
        };
        Ok(Arc::new(Pty {
            id: options.id,
            args,
            unlisted,
            cwd,
            envs,
            created_at: SystemTime::now(),
            lazy_start: options.lazy_start,
            state: Mutex::new(State {
                cols,
                rows,
                phase: Phase::Waiting,
            }),
            output: output::Output::new(options.exclusive),
            exit: watch::channel(None).0,
        }))
    }

    /// Starts `pty`'s shell if it is waiting; an ended PTY is an error.
    fn start(&self, pty: &Arc<Pty>) -> Result<()> {
        let mut state = pty.lock();
        match state.phase {
            Phase::Waiting => {}
            Phase::Running(_) => return Ok(()),
            Phase::Ended => return Err(pty.ended_error()),
        }
        let size = PtySize {
            rows: state.rows,
            cols: state.cols,
            pixel_width: 0,
            pixel_height: 0,
        };
        let reaper = self.process.reaper();
        // portable-pty marks the pair close-on-exec only after opening it: no child may start
        // in between and inherit it.
        let pair = reaper
            .exclusive(|| portable_pty::native_pty_system().openpty(size))
            .map_err(|err| Error::internal(format!("cannot open a pty: {err:#}")))?;
        let slave = pair
            .master
            .tty_name()
            .ok_or_else(|| Error::internal("cannot find the pty's slave device"))?;
        let master_fd = pair
            .master
            .as_raw_fd()
            .ok_or_else(|| Error::internal("the pty has no master descriptor"))?;
        // Non-blocking (the flag is the open file's, so the duplicates share it): the reader
        // drains everything ready before it publishes, the writer waits in poll.
        // SAFETY: F_GETFL/F_SETFL on a live descriptor.
        unsafe {
            let flags = libc::fcntl(master_fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(master_fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(Error::internal(format!(
                    "cannot make the pty non-blocking: {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
        let reader = duplicate(master_fd)?;
        let writer = duplicate(master_fd)?;
        let (cancel_read, cancel_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|err| Error::internal(format!("cannot create a pipe: {err}")))?;
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let shell = self.process.shell();
        let spawn = Spawn::new(shell, &pty.cwd)
            .args(&pty.args)
            .envs(self.process.env_snapshot())
            .envs(&pty.envs)
            .env(MARKER_VAR, &marker)
            .terminal(slave)
            .cgroup(&marker);
        self.process.trees().check_open()?;
        let (child, exit) = reaper.spawn(spawn).map_err(|err| {
            Error::bad_request(format!("cannot start {}: {err}", shell.display()))
        })?;
        // On the process registry while the supervisor below owns it: shutdown ends it too.
        let registered = self.process.trees().register(child.pid, &marker);
        // Only the shell holds the slave now: the master reads EOF once its tree lets go.
        drop(pair.slave);
        let (input, queue) = mpsc::channel(INPUT_QUEUE);
        let (read_done, reader_done) = oneshot::channel();
        let output = pty.clone();
        let spawned = std::thread::Builder::new()
            .name("pty-reader".into())
            .spawn(move || {
                read_loop(reader, cancel_read, &output.output);
                let _ = read_done.send(());
            })
            .and_then(|_| {
                std::thread::Builder::new()
                    .name("pty-writer".into())
                    .spawn(move || write_loop(writer, queue))
            });
        if let Err(err) = spawned {
            process::signal_tree(child.pid, &marker, Signal::SIGKILL);
            return Err(Error::internal(format!("cannot start a pty thread: {err}")));
        }
        state.phase = Phase::Running(Running {
            master: pair.master,
            input,
            pid: child.pid,
            marker: marker.clone(),
        });
        drop(state);
        let ptys = self.clone();
        let pty = pty.clone();
        tokio::spawn(async move {
            let status = exit.wait().await;
            let mut reader_done = reader_done;
            let drained = tokio::time::timeout(OUTPUT_GRACE, &mut reader_done)
                .await
                .is_ok();
            // The PTY's whole tree ends with its shell (background jobs too).
            let kill_marker = marker.clone();
            let _ = tokio::task::spawn_blocking(move || {
                process::signal_marked(&kill_marker, Signal::SIGKILL)
            })
            .await;
            if !drained
                && tokio::time::timeout(DRAIN_LIMIT, &mut reader_done)
                    .await
                    .is_err()
            {
                // Something outside the tree still holds the terminal: stop reading anyway.
                let _ = File::from(cancel_write).write_all(b"x");
                let _ = reader_done.await;
            }
            process::cgroup::remove_when_empty(&marker);
            pty.finish(PtyExit {
                code: status.code(),
            });
            ptys.retire(&pty);
            drop(registered);
        });
        Ok(())
    }
}

impl Pty {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How it is now.
    pub fn info(&self) -> PtyInfo {
        let state = self.lock();
        PtyInfo {
            id: self.id.clone(),
            cwd: self.cwd.clone(),
            envs: self.envs.clone(),
            cols: state.cols,
            rows: state.rows,
            created_at: self.created_at,
            active: matches!(state.phase, Phase::Running(_)),
            lazy_start: self.lazy_start,
        }
    }

    /// Sets the size; a running shell gets SIGWINCH.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        check_size(cols, rows)?;
        let mut state = self.lock();
        match &state.phase {
            Phase::Running(running) => {
                running
                    .master
                    .resize(PtySize {
                        rows,
                        cols,
                        pixel_width: 0,
                        pixel_height: 0,
                    })
                    .map_err(|err| Error::internal(format!("cannot resize the pty: {err:#}")))?;
            }
            Phase::Waiting => {}
            Phase::Ended => return Err(ended(&self.id, "cannot be resized")),
        }
        state.cols = cols;
        state.rows = rows;
        Ok(())
    }

    /// Sends `signal` to its whole tree (nothing to a PTY whose shell is not running).
    pub async fn kill(self: &Arc<Self>, signal: Signal) {
        // On the blocking pool: the state lock may be held by a start (a spawn), and the tree is
        // found by reading /proc.
        let pty = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let target = match &pty.lock().phase {
                Phase::Running(running) => Some((running.pid, running.marker.clone())),
                Phase::Waiting | Phase::Ended => None,
            };
            match target {
                Some((pid, marker)) => process::signal_tree(pid, &marker, signal),
                None => pty.finish(PtyExit::KILLED),
            }
        })
        .await;
    }

    /// What a closed terminal does: SIGHUP to the tree, SIGKILL if it still runs after `grace`.
    pub async fn hang_up(self: &Arc<Self>, grace: Duration) {
        self.kill(Signal::SIGHUP).await;
        if !self.ended(grace).await {
            self.kill(Signal::SIGKILL).await;
            self.ended(KILL_WAIT).await;
        }
    }

    /// Waits up to `limit` for the end; whether it ended.
    async fn ended(&self, limit: Duration) -> bool {
        let mut exit = self.exit.subscribe();
        let ended = tokio::time::timeout(limit, exit.wait_for(Option::is_some))
            .await
            .is_ok();
        ended
    }

    /// A new client (the shell must have been started).
    fn subscribe(&self) -> Result<Attachment> {
        let input = match &self.lock().phase {
            Phase::Running(running) => running.input.clone(),
            Phase::Waiting | Phase::Ended => return Err(self.ended_error()),
        };
        let (replay, queue) = self.output.subscribe().ok_or_else(|| self.ended_error())?;
        Ok(Attachment {
            replay,
            queue,
            exit: self.exit.subscribe(),
            input: PtyInput(input),
            held: None,
        })
    }

    /// Publishes the end: the exit first, then every client's queue closes once drained.
    fn finish(&self, exit: PtyExit) {
        let ended = std::mem::replace(&mut self.lock().phase, Phase::Ended);
        if matches!(ended, Phase::Ended) {
            return;
        }
        self.exit.send_replace(Some(exit));
        self.output.end();
    }

    fn ended_error(&self) -> Error {
        ended(&self.id, "is no longer available")
    }
}

/// The 404 for a PTY id that names nothing.
fn not_found(id: &str) -> Error {
    Error::not_found(format!("pty session {id} not found"))
}

/// The 410 for a PTY whose shell ended: `pty session ID has terminated and WHAT`.
fn ended(id: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Ended,
        format!("pty session {id} has terminated and {what}"),
    )
}

/// An id must be usable as a path segment.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::bad_request("session ID is required"));
    }
    if id.contains('/') || id.chars().any(char::is_control) || id.len() > 256 {
        return Err(Error::bad_request(format!(
            "invalid pty session ID {id:?}: use up to 256 characters, no `/` and no control characters"
        )));
    }
    if id == "create-connect" {
        return Err(Error::bad_request(
            "`create-connect` is reserved: choose another pty session ID",
        ));
    }
    Ok(())
}

/// Both dimensions must be 1 to `MAX_SIZE`.
pub fn check_size(cols: u16, rows: u16) -> Result<()> {
    for (name, value) in [("cols", cols), ("rows", rows)] {
        if value == 0 || value > MAX_SIZE {
            return Err(Error::bad_request(format!(
                "invalid value for {name}: {value} (must be between 1 and {MAX_SIZE})"
            )));
        }
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd`.
fn duplicate(fd: RawFd) -> Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC on a live descriptor returns a new descriptor or -1.
    let raw = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if raw < 0 {
        return Err(Error::internal(format!(
            "cannot duplicate the pty descriptor: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// Waits until `fd` is ready for `events` (or hung up), or `cancel` is readable; false for the
/// latter.
fn wait_for(fd: RawFd, events: libc::c_short, cancel: Option<RawFd>) -> bool {
    loop {
        let mut fds = [
            libc::pollfd {
                fd,
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: cancel.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two initialised pollfd entries that live across the call (a negative fd is
        // ignored by poll).
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ready < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return fds[1].revents == 0;
    }
}

/// Reads the master (non-blocking) until EOF (EIO: no slave is open any more) or until `cancel`
/// is readable. What one pass of reads finds (the kernel hands out about 4 KiB per read) is
/// published as one chunk, up to `READ_CHUNK`, as soon as the master has nothing more.
fn read_loop(mut master: File, cancel: OwnedFd, output: &output::Output) {
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut filled = 0;
    loop {
        match master.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled == buffer.len() {
                    output.publish(&buffer);
                    filled = 0;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if filled > 0 {
                    output.publish(&buffer[..filled]);
                    filled = 0;
                }
                if !wait_for(master.as_raw_fd(), libc::POLLIN, Some(cancel.as_raw_fd())) {
                    return;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO once the last slave descriptor closed.
            Err(_) => break,
        }
    }
    if filled > 0 {
        output.publish(&buffer[..filled]);
    }
}

/// Types queued input into the master (non-blocking, waiting while the program does not read),
/// in order, until every sender is gone or the terminal is.
fn write_loop(mut master: File, mut queue: mpsc::Receiver<Bytes>) {
    while let Some(data) = queue.blocking_recv() {
        let mut rest = &data[..];
        while !rest.is_empty() {
            match master.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_for(master.as_raw_fd(), libc::POLLOUT, None);
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_follow_daytona() {
        let reason = |code| PtyExit { code }.reason();
        assert_eq!(reason(0), None);
        assert_eq!(reason(3).as_deref(), Some("non-zero exit"));
        assert_eq!(reason(130).as_deref(), Some("Ctrl+C"));
        assert_eq!(reason(137).as_deref(), Some("SIGKILL"));
        assert_eq!(reason(143).as_deref(), Some("SIGTERM"));
        assert_eq!(reason(129).as_deref(), Some("signal 1"));
    }

    #[test]
    fn tombstones_are_bounded_and_end_when_an_id_is_used_again() {
        let mut named = Named::default();
        for i in 0..ENDED_IDS + 10 {
            named.bury(&format!("p{i}"));
        }
        named.bury("p20");
        assert_eq!(named.ended.len(), ENDED_IDS);
        assert_eq!(named.ended_order.len(), ENDED_IDS);
        assert!(!named.ended.contains("p9"));
        assert!(named.ended.contains("p10") && named.ended.contains("p20"));
        assert!(named.unbury("p20"));
        assert!(!named.unbury("p20"));
        assert_eq!(named.ended_order.len(), ENDED_IDS - 1);
    }

    #[test]
    fn ids_and_sizes_are_checked() {
        assert!(check_id("a b.c-1").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
        assert!(check_id("create-connect").is_err());
        assert!(check_size(1, 1000).is_ok());
        assert!(check_size(0, 24).is_err());
        assert!(check_size(80, 1001).is_err());
    }
}
