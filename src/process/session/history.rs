//! A session's history: the record a finished command is kept as ([`Done`]), its id, the
//! budget ([`History`]) and the eviction that keeps a session within it, with tombstones for the
//! ids it forgot.

use super::*;

/// Ids of evicted commands remembered per session (oldest forgotten first).
const TOMBSTONES: usize = 4096;

/// How much history a session keeps: once a command ends, the oldest finished commands are
/// evicted (logs and all) while more than `max_commands` have finished or their files take more
/// than `max_bytes`. A running command and the command that just ended are never evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// Finished commands kept per session.
    pub max_commands: usize,
    /// Bytes of finished commands' logs and scripts kept per session.
    pub max_bytes: u64,
}

impl Default for History {
    fn default() -> History {
        History {
            max_commands: 1000,
            max_bytes: 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Tombstones {
    pub(super) order: VecDeque<String>,
    pub(super) ids: HashSet<String>,
}

/// A command in its session's history: whole while it runs and until its exit is published,
/// then only what a finished command still needs ([`Done`]). A session keeps up to
/// `--max-history` finished commands, so their size is what a busy session holds in memory.
#[derive(Debug)]
pub(super) enum Entry {
    Live(Arc<Command>),
    Done(Done),
}

/// What a finished command keeps: 64 bytes inline in its session's history and nothing on the
/// heap (a whole [`Command`], whose two watch channels alone take some 700 bytes, held some
/// 1,400). Its text is read back from its `cmd.sh`, so a command of any size costs the same; a
/// lookup rebuilds a `Command` from the record ([`Command::finished`]).
#[derive(Debug)]
pub(super) struct Done {
    id: CommandId,
    code: i32,
    cause: ExitCause,
    run_async: bool,
    max_reply: usize,
    /// The bytes its files took once its readers had ended.
    bytes: u64,
    /// Only while a background job still holds the command's FIFOs: its log, still written to
    /// (the history's byte budget counts that, and reads take its lock), and the flag that stops
    /// those writes when the session ends.
    writers: Option<Box<Writers>>,
    /// The write that failed and ended its logs (a full disk), if one did: its logs still say
    /// so once the writers are gone.
    lost: Option<Box<(usize, std::io::Error)>>,
}

/// A finished command's logs while a background job it left still writes them.
#[derive(Debug)]
struct Writers {
    log: Arc<Mutex<LogWriter>>,
    /// Set when the session ends: the writes stop.
    cancel: Arc<AtomicBool>,
    /// Bytes of its text (its `cmd.sh`), for the history's byte budget.
    script: usize,
}

/// A command's id: the UUID every exec gets, kept as its 16 bytes, or a name (the entrypoint's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CommandId {
    Uuid(uuid::Uuid),
    Name(Box<str>),
}

impl CommandId {
    pub(super) fn new(id: &str) -> CommandId {
        match uuid::Uuid::try_parse(id) {
            Ok(uuid) if CommandId::Uuid(uuid).is(id) => CommandId::Uuid(uuid),
            _ => CommandId::Name(id.into()),
        }
    }

    /// Whether `id` is this id, spelled exactly as it was given out.
    fn is(&self, id: &str) -> bool {
        match self {
            CommandId::Uuid(uuid) => {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                *uuid.hyphenated().encode_lower(&mut buf) == *id
            }
            CommandId::Name(name) => **name == *id,
        }
    }
}

impl std::fmt::Display for CommandId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandId::Uuid(uuid) => uuid.hyphenated().fmt(f),
            CommandId::Name(name) => f.write_str(name),
        }
    }
}

/// A finished command's text, read back from its `cmd.sh` (empty if that is gone).
pub(super) fn read_text(command_dir: &Path) -> String {
    std::fs::read(command_dir.join("cmd.sh"))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

impl Entry {
    /// Whether it is command `id` (parsed once by the caller, so that a search compares 16
    /// bytes per finished command rather than spelling each one's UUID out).
    pub(super) fn is(&self, id: &CommandId) -> bool {
        match self {
            Entry::Live(command) => id.is(&command.id),
            Entry::Done(done) => done.id == *id,
        }
    }

    pub(super) fn id(&self) -> String {
        match self {
            Entry::Live(command) => command.id.clone(),
            Entry::Done(done) => done.id.to_string(),
        }
    }

    /// Its info; a finished command's `command` is left empty for [`read_text`] to fill (the
    /// bool says so), so that a listing reads the files outside the history's lock.
    pub(super) fn info(&self) -> (CommandInfo, bool) {
        match self {
            Entry::Live(command) => (command.info(), false),
            Entry::Done(done) => (
                CommandInfo {
                    id: done.id.to_string(),
                    command: String::new(),
                    exit_code: Some(done.code),
                    exit_cause: Some(done.cause),
                },
                true,
            ),
        }
    }

    pub(super) fn finished(&self) -> bool {
        match self {
            Entry::Live(command) => command.exit.borrow().is_some(),
            Entry::Done(_) => true,
        }
    }

    pub(super) fn disk_bytes(&self) -> u64 {
        match self {
            Entry::Live(command) => command.disk_bytes(),
            Entry::Done(Done {
                writers: Some(writers),
                ..
            }) => disk_bytes(writers.script, &writers.log),
            Entry::Done(done) => done.bytes,
        }
    }

    pub(super) fn cancel(&self) {
        match self {
            Entry::Live(command) => command.cancel.store(true, Ordering::SeqCst),
            Entry::Done(Done {
                writers: Some(writers),
                ..
            }) => writers.cancel.store(true, Ordering::SeqCst),
            Entry::Done(_) => {}
        }
    }

    /// The command whole, rebuilt for this lookup if it has finished.
    pub(super) fn command(&self, session: &Arc<Session>) -> Arc<Command> {
        match self {
            Entry::Live(command) => command.clone(),
            Entry::Done(done) => Command::finished(done, session),
        }
    }
}

impl Session {
    /// Blocking. Evicts the oldest finished commands while the finished ones are more, or take
    /// more bytes, than the history allows; `ending` (the command that is being finished, counted
    /// as finished) and running commands stay. Their ids become tombstones and their directories
    /// are removed.
    pub(super) fn trim_history(&self, ending: &str) {
        if self.deleted.load(Ordering::SeqCst) {
            return;
        }
        let ending = CommandId::new(ending);
        let evicted: Vec<Entry> = {
            let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
            let finished: Vec<(usize, u64)> = commands
                .iter()
                .enumerate()
                .filter(|(_, entry)| entry.is(&ending) || entry.finished())
                .map(|(i, entry)| (i, entry.disk_bytes()))
                .collect();
            let mut count = finished.len();
            let mut bytes: u64 = finished.iter().map(|(_, size)| size).sum();
            let mut doomed = Vec::new();
            for (i, size) in finished {
                if count <= self.history.max_commands && bytes <= self.history.max_bytes {
                    break;
                }
                if commands[i].is(&ending) {
                    continue;
                }
                doomed.push(i);
                count -= 1;
                bytes -= size;
            }
            doomed
                .into_iter()
                .rev()
                .map(|i| commands.remove(i))
                .collect()
        };
        if evicted.is_empty() {
            return;
        }
        {
            let mut tombstones = self.evicted.lock().unwrap_or_else(|e| e.into_inner());
            for entry in evicted.iter().rev() {
                let id = entry.id();
                tombstones.ids.insert(id.clone());
                tombstones.order.push_back(id);
            }
            while tombstones.order.len() > TOMBSTONES {
                if let Some(old) = tombstones.order.pop_front() {
                    tombstones.ids.remove(&old);
                }
            }
        }
        for entry in evicted {
            // A follower that has the log open still reads it to the end.
            let _ = std::fs::remove_dir_all(self.dir.join(entry.id()));
        }
    }

    /// Replaces the finished command `cmd_id` with its [`Done`] record.
    pub(super) fn retire(&self, cmd_id: &str) {
        let cmd_id = CommandId::new(cmd_id);
        let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = commands.iter_mut().find(|entry| entry.is(&cmd_id)) else {
            return;
        };
        if let Entry::Live(command) = entry {
            if let Some(done) = command.done() {
                *entry = Entry::Done(done);
            }
        }
    }
}

impl Command {
    /// Its record in the history, once its exit is published.
    pub(super) fn done(&self) -> Option<Done> {
        let code = (*self.exit.borrow())?;
        let readers_ended = *self
            .readers_done
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            == 2;
        Some(Done {
            id: CommandId::new(&self.id),
            code,
            cause: self
                .cause
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or(ExitCause::Exited),
            run_async: self.run_async,
            max_reply: self.max_reply,
            bytes: self.disk_bytes(),
            writers: (!readers_ended).then(|| {
                Box::new(Writers {
                    log: self.log.clone(),
                    cancel: self.cancel.clone(),
                    script: self.script_len(),
                })
            }),
            lost: self
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .lost
                .as_ref()
                .map(|(index, err)| {
                    Box::new((*index, std::io::Error::new(err.kind(), err.to_string())))
                }),
        })
    }

    /// A finished command rebuilt from its record: complete, so every lookup answers as it did
    /// before the command was retired (input gets 410, a follower reads to the end and stops).
    pub(super) fn finished(done: &Done, session: &Arc<Session>) -> Arc<Command> {
        let (log, cancel) = match &done.writers {
            Some(writers) => (writers.log.clone(), writers.cancel.clone()),
            None => (
                Arc::new(Mutex::new(LogWriter::closed(done.lost.as_ref().map(
                    |lost| {
                        (
                            lost.0,
                            std::io::Error::new(lost.1.kind(), lost.1.to_string()),
                        )
                    },
                )))),
                Arc::new(AtomicBool::new(true)),
            ),
        };
        let id = done.id.to_string();
        let dir = session.dir.join(&id);
        Arc::new(Command {
            id,
            text: None,
            dir,
            session: Arc::downgrade(session),
            run_async: done.run_async,
            suppress_echo: true,
            max_reply: done.max_reply,
            shell_pid: AtomicI32::new(0),
            started: watch::channel(true).0,
            exit: watch::channel(Some(done.code)).0,
            stdin: Mutex::new(None),
            input: Mutex::new(None),
            log,
            readers_done: Arc::new((Mutex::new(2), Condvar::new())),
            cancel,
            cause: Mutex::new(Some(done.cause)),
        })
    }
}

/// Bytes a command's files take: the script and the three logs.
pub(super) fn disk_bytes(script: usize, log: &Mutex<LogWriter>) -> u64 {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    (script + log.sizes.iter().sum::<usize>()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_command_record_is_small_and_knows_its_id() {
        assert!(
            std::mem::size_of::<Entry>() <= 64,
            "{}",
            std::mem::size_of::<Entry>()
        );
        let uuid = uuid::Uuid::new_v4().to_string();
        let id = CommandId::new(&uuid);
        assert!(matches!(id, CommandId::Uuid(_)));
        assert!(id.is(&uuid) && id.to_string() == uuid);
        // Other spellings of the same UUID are other ids.
        assert!(!id.is(&uuid.to_uppercase()) && !id.is(&uuid.replace('-', "")));
        for name in [ENTRYPOINT_COMMAND, &uuid.to_uppercase(), ""] {
            let id = CommandId::new(name);
            assert!(matches!(id, CommandId::Name(_)) && id.is(name) && id.to_string() == name);
        }
    }
}
