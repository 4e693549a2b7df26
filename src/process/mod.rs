//! Processes: the reaper (sole owner of `waitpid`), the only spawner (`Reaper::spawn` of a
//! `Spawn`, used by everything here), one-shot execution with tree kill, and the environment new children inherit.
//! Sessions, the entrypoint and PTYs (`crate::pty`) build on these pieces.

pub(crate) mod cgroup;
mod exec;
pub mod oom;
mod output;
mod piped;
mod reaper;
mod session;
mod spawn;
mod tree;
mod trees;
mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use exec::{
    validate_env, ExecOutcome, ExecRequest, Program, ENV_BUDGET, MAX_ENV_STRING, SIDE_CHANNEL_VAR,
};
pub use output::{Cursor, Output, Pieces, Stream};
pub use piped::{PipedChild, PipedControl};
pub use reaper::{ExitStatus, ExitWatch, Reaper};
pub use session::{
    strip_markers, CommandInfo, CommandLogs, ExecOptions, ExitCause, History, LogFollower,
    LogFormat, LogSlice, MarkerStripper, SessionExecOutcome, SessionInfo, Sessions,
    ENTRYPOINT_COMMAND, ENTRYPOINT_SESSION,
};
pub use spawn::{Child, Io, Spawn};
pub use tree::{descendants_of, marked_with, signal_marked, signal_tree, MARKER_VAR};
pub use trees::{shutting_down, TreeGuard, Trees};
pub use worker::{StdioChild, Worker};

use crate::error::Result;

/// The process capability.
#[derive(Debug, Clone)]
pub struct Process {
    reaper: Reaper,
    trees: Trees,
    shell: PathBuf,
    workdir: PathBuf,
    env: Arc<RwLock<BTreeMap<String, String>>>,
    max_output: usize,
    max_log: usize,
}

/// A change to the environment of future children (`POST /env`).
#[derive(Debug, Default, Clone)]
pub struct EnvUpdate {
    /// Variables to set.
    pub set: BTreeMap<String, String>,
    /// Variables to remove (before `set`).
    pub unset: Vec<String>,
    /// Remove every variable whose value starts with this and whose name is not in `set`.
    pub unset_value_prefix: Option<String>,
}

impl Process {
    /// Starts the reaper. `shell` runs commands; a reply holds at most `max_output` bytes of a
    /// command's output, a session log on disk at most `max_log` (0: no limit). Must run inside a
    /// tokio runtime.
    pub fn start(shell: PathBuf, workdir: PathBuf, max_output: usize, max_log: usize) -> Process {
        Process {
            reaper: Reaper::start(),
            trees: Trees::default(),
            shell,
            workdir,
            env: Arc::new(RwLock::new(std::env::vars().collect())),
            max_output,
            max_log,
        }
    }

    /// The reaper, for capabilities that spawn children of their own.
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    /// The registry of trees toolboxd started: every capability that starts a child registers
    /// its tree there, so shutdown can end it (see `Trees`).
    pub fn trees(&self) -> &Trees {
        &self.trees
    }

    /// The shell commands, sessions and PTYs run under.
    pub fn shell(&self) -> &Path {
        &self.shell
    }

    /// The environment a new child starts with.
    pub fn env_snapshot(&self) -> BTreeMap<String, String> {
        self.env.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies `update` and returns what changed: set variables with their value, removed ones
    /// with an empty value. Every variable set must be one a child can be started with (see
    /// `validate_env`), and the environment may not grow past `ENV_BUDGET`; otherwise nothing
    /// changes (400).
    pub fn update_env(&self, update: EnvUpdate) -> Result<BTreeMap<String, String>> {
        validate_env(update.set.iter())?;
        let mut env = self.env.write().unwrap_or_else(|e| e.into_inner());
        let before = env_size(&env);
        let mut next = env.clone();
        let changes = apply(&mut next, update);
        let after = env_size(&next);
        if after > ENV_BUDGET && after > before {
            return Err(crate::error::Error::bad_request(format!(
                "the environment of new processes would be {after} bytes, over the {ENV_BUDGET} \
                 bytes toolboxd allows (the kernel refuses to start a process whose arguments \
                 and environment pass about 2 MiB); nothing was changed"
            )));
        }
        *env = next;
        Ok(changes)
    }
}

/// A child started under a fresh tree marker and registered in `Trees`, so shutdown ends its
/// tree while the guard lives.
#[derive(Debug)]
struct Marked {
    child: Child,
    exit: ExitWatch,
    marker: String,
    registered: TreeGuard,
}

/// Why a marked child did not start.
enum NotStarted {
    /// toolboxd is shutting down.
    ShuttingDown(crate::error::Error),
    /// The OS refused (a missing program, out of resources…).
    Spawn(std::io::Error),
}

impl NotStarted {
    /// The API's error for a child of `program` in `cwd`.
    fn into_error(self, program: &Path, cwd: &Path) -> crate::error::Error {
        match self {
            NotStarted::ShuttingDown(err) => err,
            NotStarted::Spawn(err) => exec::spawn_error(program, cwd, &err),
        }
    }
}

impl Process {
    /// Blocking (it spawns). Starts `program` in `cwd` with the environment new children get,
    /// then what `configure` adds (arguments, more variables, stdio), under a fresh tree marker
    /// (in `MARKER_VAR`, and naming its cgroup leaf when `leaf`), registered in `Trees`.
    fn spawn_marked(
        &self,
        program: &Path,
        cwd: &Path,
        leaf: bool,
        configure: impl FnOnce(Spawn) -> Spawn,
    ) -> std::result::Result<Marked, NotStarted> {
        self.trees.check_open().map_err(NotStarted::ShuttingDown)?;
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let mut spawn = configure(Spawn::new(program, cwd).envs(self.env_snapshot()))
            .env(tree::MARKER_VAR, &marker);
        if leaf {
            spawn = spawn.cgroup(&marker);
        }
        let (child, exit) = self.reaper.spawn(spawn).map_err(NotStarted::Spawn)?;
        let registered = self.trees.register(child.pid, &marker);
        Ok(Marked {
            child,
            exit,
            marker,
            registered,
        })
    }
}

/// The bytes `env` takes in a new process: each `NAME=value` with its NUL, and its pointer.
fn env_size(env: &BTreeMap<String, String>) -> usize {
    env.iter()
        .map(|(name, value)| name.len() + value.len() + 2 + std::mem::size_of::<usize>())
        .sum()
}

/// Applies `update` to `env` and returns the changes.
fn apply(env: &mut BTreeMap<String, String>, update: EnvUpdate) -> BTreeMap<String, String> {
    let mut changes = BTreeMap::new();
    for name in &update.unset {
        if env.remove(name).is_some() {
            changes.insert(name.clone(), String::new());
        }
    }
    if let Some(prefix) = update
        .unset_value_prefix
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let doomed: Vec<String> = env
            .iter()
            .filter(|(name, value)| value.starts_with(prefix) && !update.set.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in doomed {
            env.remove(&name);
            changes.insert(name, String::new());
        }
    }
    for (name, value) in update.set {
        env.insert(name.clone(), value.clone());
        changes.insert(name, value);
    }
    changes
}

/// The shell commands run under: `preferred` if given, else bash from PATH, else `sh`.
pub fn resolve_shell(preferred: Option<&Path>) -> PathBuf {
    if let Some(shell) = preferred {
        return shell.to_path_buf();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join("bash"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("sh"))
}
