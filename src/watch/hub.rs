//! The watcher hub: one inotify instance (through `notify`) for every watcher in the daemon.
//! Kernel watches are per directory, non-recursive, and reference-counted: two watchers over the
//! same tree share them, and a directory is unwatched when the last watcher needing it goes.
//! Recursion is the hub's: a directory created (or moved) under a recursive watcher is watched
//! as it appears, and what it already holds is reported as created.
//!
//! Raw events go from notify's thread to the hub thread over a channel; the hub thread pairs
//! renames, filters each watcher's view (its root, depth, `.git`), and coalesces per path within
//! `COALESCE` before delivering, so a burst of writes to one file is one event.
//!
//! A burst over many paths (a `git checkout` of 10,000 files) is bounded per watcher: past
//! `BURST_LIMIT` events within `BURST_WINDOW`, the watcher is in a burst, and instead of events
//! it gets summaries: one `overflow` per directory under which something changed (its `path`
//! is the directory, `coalesced` how many events it stands for), meaning "rescan that
//! subtree". Such a directory is the parent of a changed path, so every change lies below one;
//! a directory whose ancestor is also reported is left out, and past `BURST_SUMMARIES`
//! directories the deepest are replaced by their parents, up to the watched root. Summaries go
//! out `BURST_WINDOW` after the burst began, then at intervals that double up to
//! `BURST_MAX_INTERVAL` while it lasts, and once it has been quiet for `BURST_WINDOW`, which
//! ends it: events are exact again from then on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind, Result};

/// Events for one path within this window are merged into one.
pub const COALESCE: Duration = Duration::from_millis(50);
/// Events a watcher may have undelivered before it gets an `overflow` instead.
const QUEUE: usize = 16 * 1024;
/// Exact events a watcher gets per `BURST_WINDOW`; more, and it is in a burst.
pub const BURST_LIMIT: usize = 256;
/// The window of `BURST_LIMIT`; the first interval of a burst's summaries, and the quiet that
/// ends a burst.
pub const BURST_WINDOW: Duration = Duration::from_secs(1);
/// The longest interval between a burst's summaries.
pub const BURST_MAX_INTERVAL: Duration = Duration::from_secs(8);
/// Most summaries sent for one window of a burst.
pub const BURST_SUMMARIES: usize = 64;
/// How long a rename's first half waits for its second before it counts as a removal.
const RENAME_PAIRING: Duration = Duration::from_millis(50);

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created (or moved in from outside the watched tree).
    Create,
    /// Content or metadata changed.
    Modify,
    /// Removed (or moved out of the watched tree).
    Remove,
    /// Renamed within the watched tree (`old_path` is set).
    Rename,
    /// Events were lost (the kernel queue or the watcher's queue overflowed), or a burst was
    /// summed up (`coalesced` is set): rescan the subtree at `path`.
    Overflow,
}

impl Change {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Modify => "modify",
            Change::Remove => "remove",
            Change::Rename => "rename",
            Change::Overflow => "overflow",
        }
    }
}

/// One (coalesced) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// What happened.
    pub change: Change,
    /// The path it happened to (the new path of a rename; for an overflow, the subtree to
    /// rescan).
    pub path: PathBuf,
    /// The old path of a rename.
    pub old_path: Option<PathBuf>,
    /// Whether the path is a directory.
    pub is_dir: bool,
    /// When toolboxd saw it.
    pub timestamp: SystemTime,
    /// For a burst's summary (an overflow): how many events it stands for.
    pub coalesced: Option<u64>,
}

/// Why a watcher ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Its path was removed or moved away.
    Removed(PathBuf),
    /// It could not go on (e.g. out of inotify watches for a new directory).
    Failed(Error),
}

struct Sub {
    root: PathBuf,
    root_is_dir: bool,
    recursive: bool,
    include_git: bool,
    held: HashSet<PathBuf>,
    pending: Vec<Option<WatchEvent>>,
    index: HashMap<PathBuf, usize>,
    first: Option<Instant>,
    overflowed: bool,
    /// Exact events sent within the last `BURST_WINDOW`: when, and how many (one entry per
    /// flush, so at most about `BURST_WINDOW / COALESCE` of them).
    sent: VecDeque<(Instant, usize)>,
    /// Set while the watcher is in a burst.
    burst: Option<Burst>,
    sender: mpsc::Sender<WatchEvent>,
    end: Arc<Mutex<Option<EndReason>>>,
}

/// A burst in progress: the directories under which something changed since `since` (when
/// the burst began or summaries last went out), with the number of events each stands for.
struct Burst {
    since: Instant,
    /// How long after `since` the next summaries go out.
    interval: Duration,
    /// When events last arrived.
    last: Instant,
    dirty: HashMap<PathBuf, u64>,
}

impl Sub {
    /// Whether this watcher sees `path` (its root itself excluded).
    fn sees(&self, path: &Path) -> bool {
        if !self.root_is_dir {
            return path == self.root;
        }
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
        let mut components = relative.components();
        if components.next().is_none() {
            return false;
        }
        if !self.recursive && components.next().is_some() {
            return false;
        }
        self.include_git || !relative.components().any(|c| c.as_os_str() == ".git")
    }

    /// Whether the directory `dir` (inside the root) should be watched for this watcher.
    fn wants_dir(&self, dir: &Path) -> bool {
        self.root_is_dir && self.recursive && (dir == self.root || self.sees(dir))
    }

    fn push(&mut self, event: WatchEvent) {
        self.first.get_or_insert_with(Instant::now);
        if event.change == Change::Rename {
            if let Some(old) = &event.old_path {
                // Created and renamed in one window (a temp file saved over a target): the
                // target was created or replaced.
                if let Some(index) = self.index.get(old).copied() {
                    if self.pending[index]
                        .as_ref()
                        .is_some_and(|e| e.change == Change::Create)
                    {
                        self.pending[index] = None;
                        self.index.remove(old);
                        return self.push(WatchEvent {
                            change: Change::Create,
                            old_path: None,
                            ..event
                        });
                    }
                }
            }
        }
        match self.index.get(&event.path).copied() {
            Some(index) => {
                let merged = match (self.pending[index].as_ref().map(|e| e.change), event.change) {
                    (Some(Change::Create), Change::Modify) => Some(Change::Create),
                    (Some(Change::Rename), Change::Modify) => Some(Change::Rename),
                    (Some(Change::Create), Change::Remove) => None,
                    (Some(Change::Remove), Change::Create) => Some(Change::Modify),
                    (_, change) => Some(change),
                };
                match merged {
                    None => {
                        self.pending[index] = None;
                        self.index.remove(&event.path);
                    }
                    Some(change) => {
                        let old_path = if change == Change::Rename {
                            event
                                .old_path
                                .clone()
                                .or_else(|| self.pending[index].as_ref()?.old_path.clone())
                        } else {
                            None
                        };
                        self.pending[index] = Some(WatchEvent {
                            change,
                            old_path,
                            ..event
                        });
                    }
                }
            }
            None => {
                self.index.insert(event.path.clone(), self.pending.len());
                self.pending.push(Some(event));
            }
        }
    }

    /// Delivers what is pending; `force` ignores the window.
    fn flush(&mut self, now: Instant, force: bool) {
        if self.burst.is_some() {
            self.flush_burst(now, force);
        } else if self
            .first
            .is_some_and(|first| force || now.duration_since(first) >= COALESCE)
        {
            self.first = None;
            self.index.clear();
            let events: Vec<WatchEvent> = std::mem::take(&mut self.pending)
                .into_iter()
                .flatten()
                .collect();
            while self
                .sent
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) >= BURST_WINDOW)
            {
                self.sent.pop_front();
            }
            let recent: usize = self.sent.iter().map(|(_, count)| count).sum();
            if recent + events.len() > BURST_LIMIT {
                let mut burst = Burst {
                    since: now,
                    interval: BURST_WINDOW,
                    last: now,
                    dirty: HashMap::new(),
                };
                for event in &events {
                    self.note(&mut burst, event);
                }
                self.burst = Some(burst);
                if force {
                    self.flush_burst(now, true);
                }
            } else {
                self.sent.push_back((now, events.len()));
                for event in events {
                    self.send(event);
                }
            }
        }
        if self.overflowed {
            self.send_overflow();
        }
    }

    /// During a burst: notes what is pending, and sends the summaries when they are due (or
    /// `force`); a burst quiet for `BURST_WINDOW` (or forced) ends with them.
    fn flush_burst(&mut self, now: Instant, force: bool) {
        let Some(mut burst) = self.burst.take() else {
            return;
        };
        self.first = None;
        self.index.clear();
        for event in std::mem::take(&mut self.pending).into_iter().flatten() {
            self.note(&mut burst, &event);
            burst.last = now;
        }
        let ended = force || now.duration_since(burst.last) >= BURST_WINDOW;
        if !ended && now.duration_since(burst.since) < burst.interval {
            self.burst = Some(burst);
            return;
        }
        let timestamp = SystemTime::now();
        for (dir, count) in summaries(std::mem::take(&mut burst.dirty)) {
            let is_dir = dir != self.root || self.root_is_dir;
            self.send(WatchEvent {
                change: Change::Overflow,
                path: dir,
                old_path: None,
                is_dir,
                timestamp,
                coalesced: Some(count),
            });
        }
        if ended {
            self.sent.clear();
        } else {
            burst.since = now;
            burst.interval = (burst.interval * 2).min(BURST_MAX_INTERVAL);
            self.burst = Some(burst);
        }
    }

    /// Adds `event` to a burst: the directory (or directories, for a rename) whose entries it
    /// changed.
    fn note(&self, burst: &mut Burst, event: &WatchEvent) {
        for path in std::iter::once(&event.path).chain(event.old_path.as_ref()) {
            let dir = match path.parent() {
                Some(parent) if self.root_is_dir && parent.starts_with(&self.root) => parent,
                _ => &self.root,
            };
            *burst.dirty.entry(dir.to_path_buf()).or_insert(0) += 1;
        }
    }

    /// Sends `event`, after the overflow owed for events lost before it (a full queue drops
    /// the event and owes an overflow).
    fn send(&mut self, event: WatchEvent) {
        if self.overflowed && !self.send_overflow() {
            return;
        }
        if self.sender.try_send(event).is_err() {
            self.overflowed = true;
        }
    }

    /// Sends the owed overflow for the whole root; whether it went.
    fn send_overflow(&mut self) -> bool {
        let overflow = WatchEvent {
            change: Change::Overflow,
            path: self.root.clone(),
            old_path: None,
            is_dir: self.root_is_dir,
            timestamp: SystemTime::now(),
            coalesced: None,
        };
        if self.sender.try_send(overflow).is_err() {
            return false;
        }
        self.overflowed = false;
        true
    }

    /// When this watcher next needs a flush, if it does.
    fn next_flush(&self, now: Instant) -> Option<Duration> {
        if let Some(burst) = &self.burst {
            let due = burst
                .interval
                .saturating_sub(now.duration_since(burst.since));
            let quiet = BURST_WINDOW.saturating_sub(now.duration_since(burst.last));
            return Some(due.min(quiet));
        }
        if self.overflowed {
            return Some(COALESCE);
        }
        self.first
            .map(|first| COALESCE.saturating_sub(now.duration_since(first)))
    }
}

/// A burst's directories as summaries: without those under another one (the subtree covers
/// them; their counts are added to it), and at most `BURST_SUMMARIES`, the deepest replaced by
/// their parents until they fit.
fn summaries(dirty: HashMap<PathBuf, u64>) -> Vec<(PathBuf, u64)> {
    let merge = |mut dirs: Vec<(PathBuf, u64)>| {
        // Sorted by components, a directory comes right before everything below it.
        dirs.sort();
        let mut kept: Vec<(PathBuf, u64)> = Vec::with_capacity(dirs.len());
        for (dir, count) in dirs {
            match kept.last_mut() {
                Some((top, total)) if dir.starts_with(&*top) => *total += count,
                _ => kept.push((dir, count)),
            }
        }
        kept
    };
    let mut kept = merge(dirty.into_iter().collect());
    while kept.len() > BURST_SUMMARIES {
        let deepest = kept
            .iter()
            .map(|(dir, _)| dir.components().count())
            .max()
            .unwrap_or(0);
        kept = merge(
            kept.into_iter()
                .map(|(dir, count)| match dir.parent() {
                    Some(parent) if dir.components().count() == deepest => {
                        (parent.to_path_buf(), count)
                    }
                    _ => (dir, count),
                })
                .collect(),
        );
    }
    kept
}

enum Msg {
    Raw(notify::Result<notify::Event>),
}

struct State {
    watcher: Option<RecommendedWatcher>,
    dirs: HashMap<PathBuf, usize>,
    subs: HashMap<u64, Sub>,
    next_id: u64,
    renames: HashMap<usize, (PathBuf, bool, Instant)>,
}

/// The hub (shared by every watcher).
pub struct Hub {
    max_dirs: usize,
    state: Mutex<State>,
    me: Weak<Hub>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("max_dirs", &self.max_dirs)
            .finish_non_exhaustive()
    }
}

/// One watcher: receives events until it ends (then `events` closes and `end` says why).
#[derive(Debug)]
pub struct Subscription {
    /// Coalesced events.
    pub events: mpsc::Receiver<WatchEvent>,
    end: Arc<Mutex<Option<EndReason>>>,
    id: u64,
    hub: Arc<Hub>,
    /// The watched path.
    pub root: PathBuf,
}

impl Subscription {
    /// Why the watcher ended, once `events` has closed (`None`: it was not ended by the hub).
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

impl Hub {
    /// A hub allowing `max_dirs` watched directories; the inotify instance and the hub thread
    /// start with the first watcher.
    pub fn new(max_dirs: usize) -> Arc<Hub> {
        Arc::new_cyclic(|me| Hub {
            max_dirs,
            state: Mutex::new(State {
                watcher: None,
                dirs: HashMap::new(),
                subs: HashMap::new(),
                next_id: 1,
                renames: HashMap::new(),
            }),
            me: me.clone(),
        })
    }

    /// Directories watched now (kernel watches held by the hub).
    pub fn watched_dirs(&self) -> usize {
        self.lock().dirs.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `root` (blocking: walks the tree). Errors leave nothing watched.
    pub fn subscribe(
        &self,
        root: &Path,
        recursive: bool,
        include_git: bool,
    ) -> Result<Subscription> {
        let hub = self
            .me
            .upgrade()
            .ok_or_else(|| Error::internal("the watch hub is gone"))?;
        let meta = std::fs::metadata(root).map_err(|err| Error::io("watch", root, &err))?;
        let (sender, events) = mpsc::channel(QUEUE);
        let end = Arc::new(Mutex::new(None));
        let mut state = self.lock();
        if state.watcher.is_none() {
            state.watcher = Some(self.start_thread()?);
        }
        let id = state.next_id;
        state.next_id += 1;
        let sub = Sub {
            root: root.to_path_buf(),
            root_is_dir: meta.is_dir(),
            recursive,
            include_git,
            held: HashSet::new(),
            pending: Vec::new(),
            index: HashMap::new(),
            first: None,
            overflowed: false,
            sent: VecDeque::new(),
            burst: None,
            sender,
            end: end.clone(),
        };
        let dirs: Vec<PathBuf> = if !sub.root_is_dir {
            vec![root.parent().unwrap_or(Path::new("/")).to_path_buf()]
        } else if recursive {
            tree_dirs(root, &sub)
        } else {
            vec![root.to_path_buf()]
        };
        state.subs.insert(id, sub);
        for dir in dirs {
            match self.hold(&mut state, id, &dir) {
                Ok(()) => {}
                // A directory that vanished while walking is not the root's problem.
                Err(err) if err.kind == ErrorKind::FileNotFound && dir != root => {}
                Err(err) => {
                    self.drop_sub(&mut state, id);
                    return Err(err);
                }
            }
        }
        Ok(Subscription {
            events,
            end,
            id,
            hub,
            root: root.to_path_buf(),
        })
    }

    fn unsubscribe(&self, id: u64) {
        let mut state = self.lock();
        self.drop_sub(&mut state, id);
    }

    fn drop_sub(&self, state: &mut State, id: u64) {
        if let Some(sub) = state.subs.remove(&id) {
            for dir in sub.held {
                self.release(state, &dir);
            }
        }
    }

    /// Adds `dir` to watcher `id`'s set, watching it if nobody did.
    fn hold(&self, state: &mut State, id: u64, dir: &Path) -> Result<()> {
        if state.subs.get(&id).is_none_or(|sub| sub.held.contains(dir)) {
            return Ok(());
        }
        if !state.dirs.contains_key(dir) {
            if state.dirs.len() >= self.max_dirs {
                return Err(Error::new(
                    ErrorKind::InsufficientStorage,
                    format!(
                        "out of watches: toolboxd watches {} directories, its limit (--max-watches); watch a smaller tree or stop other watchers",
                        state.dirs.len()
                    ),
                ));
            }
            let watcher = state
                .watcher
                .as_mut()
                .ok_or_else(|| Error::internal("no watcher"))?;
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|err| watch_error(dir, err))?;
        }
        *state.dirs.entry(dir.to_path_buf()).or_insert(0) += 1;
        if let Some(sub) = state.subs.get_mut(&id) {
            sub.held.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn release(&self, state: &mut State, dir: &Path) {
        let Some(count) = state.dirs.get_mut(dir) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            state.dirs.remove(dir);
            if let Some(watcher) = state.watcher.as_mut() {
                let _ = watcher.unwatch(dir);
            }
        }
    }

    /// The kernel dropped the watches of `dir` and below (removed or moved away): forget them.
    fn forget_tree(&self, state: &mut State, dir: &Path) {
        let gone: Vec<PathBuf> = state
            .dirs
            .keys()
            .filter(|d| d.starts_with(dir))
            .cloned()
            .collect();
        for d in &gone {
            state.dirs.remove(d);
        }
        for sub in state.subs.values_mut() {
            for d in &gone {
                sub.held.remove(d);
            }
        }
    }

    fn start_thread(&self) -> Result<RecommendedWatcher> {
        let (sender, receiver) = std_mpsc::channel::<Msg>();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = sender.send(Msg::Raw(event));
        })
        .map_err(|err| watch_error(Path::new("/"), err))?;
        let hub = self.me.clone();
        std::thread::Builder::new()
            .name("watch-hub".into())
            .spawn(move || run(hub, receiver))
            .map_err(|err| Error::internal(format!("cannot start the watch thread: {err}")))?;
        Ok(watcher)
    }

    fn handle(&self, state: &mut State, event: notify::Event) {
        let now = SystemTime::now();
        if event.need_rescan() {
            for sub in state.subs.values_mut() {
                sub.overflowed = true;
            }
            return;
        }
        let tracker = event.attrs.tracker();
        let mut paths = event.paths.into_iter();
        let Some(path) = paths.next() else { return };
        match event.kind {
            EventKind::Create(kind) => {
                let is_dir = match kind {
                    CreateKind::Folder => true,
                    CreateKind::File => false,
                    _ => path.is_dir(),
                };
                self.appeared(state, &path, is_dir, now);
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                let is_dir = state.dirs.contains_key(&path);
                if is_dir {
                    self.forget_tree(state, &path);
                }
                match tracker {
                    Some(tracker) => {
                        state
                            .renames
                            .insert(tracker, (path, is_dir, Instant::now()));
                    }
                    // No cookie: a watched directory's own MOVE_SELF. Its parent's MOVED_FROM
                    // reports the move; only a watcher rooted there learns it from this.
                    None => self.end_watchers_of(state, &path),
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                if tracker.is_some_and(|t| state.renames.contains_key(&t)) {
                    return; // the Both event follows
                }
                let is_dir = path.is_dir();
                self.appeared(state, &path, is_dir, now);
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                let Some(to) = paths.next() else { return };
                let from_was_dir = tracker
                    .and_then(|t| state.renames.remove(&t))
                    .map(|(_, is_dir, _)| is_dir);
                let is_dir = from_was_dir.unwrap_or_else(|| to.is_dir());
                self.renamed(state, &path, &to, is_dir, now);
            }
            EventKind::Modify(_) => {
                // Only a change some watcher sees is worth a stat.
                if state.subs.values().any(|sub| sub.sees(&path)) {
                    let is_dir = path.is_dir();
                    self.deliver(state, &path, Change::Modify, is_dir, None, now);
                }
            }
            EventKind::Remove(kind) => {
                let is_dir = matches!(kind, RemoveKind::Folder) || state.dirs.contains_key(&path);
                if is_dir {
                    self.forget_tree(state, &path);
                }
                self.vanished(state, &path, is_dir, now);
            }
            EventKind::Access(_) | EventKind::Any | EventKind::Other => {}
        }
    }

    fn deliver(
        &self,
        state: &mut State,
        path: &Path,
        change: Change,
        is_dir: bool,
        old_path: Option<&Path>,
        now: SystemTime,
    ) {
        for sub in state.subs.values_mut() {
            if !sub.sees(path) {
                continue;
            }
            sub.push(WatchEvent {
                change,
                path: path.to_path_buf(),
                old_path: old_path.map(Path::to_path_buf),
                is_dir,
                timestamp: now,
                coalesced: None,
            });
        }
    }

    /// `path` appeared: reported, and a directory is watched (with its contents reported) for
    /// the recursive watchers it falls under.
    fn appeared(&self, state: &mut State, path: &Path, is_dir: bool, now: SystemTime) {
        self.deliver(state, path, Change::Create, is_dir, None, now);
        if is_dir {
            self.watch_new_tree(state, path, None, now);
        }
    }

    /// Watches `dir` and below for the recursive watchers it falls under, and reports what it
    /// holds as created, except to watchers that saw it arrive by a rename from `moved_from`
    /// (its contents moved with it).
    fn watch_new_tree(
        &self,
        state: &mut State,
        dir: &Path,
        moved_from: Option<&Path>,
        now: SystemTime,
    ) {
        let ids: Vec<u64> = state
            .subs
            .iter()
            .filter(|(_, sub)| sub.wants_dir(dir))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        // One walk, shared by every watcher: the new directory and what it holds (below a
        // `.git` only when a watcher asked for it).
        let into_git = ids
            .iter()
            .any(|id| state.subs.get(id).is_some_and(|sub| sub.include_git));
        let entries: Vec<(PathBuf, bool)> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_entry(|entry| into_git || entry.depth() == 0 || entry.file_name() != ".git")
            .filter_map(|entry| entry.ok())
            .map(|entry| {
                let is_dir = entry.file_type().is_dir();
                (entry.into_path(), is_dir)
            })
            .collect();
        for id in ids {
            let Some(sub) = state.subs.get(&id) else {
                continue;
            };
            // A path `sees` refuses (under `.git`) makes every path below it refused too, so
            // filtering entry by entry prunes as a walk would.
            let dirs: Vec<PathBuf> = entries
                .iter()
                .filter(|(path, is_dir)| *is_dir && (*path == sub.root || sub.sees(path)))
                .map(|(path, _)| path.clone())
                .collect();
            for d in dirs {
                if let Err(err) = self.hold(state, id, &d) {
                    if err.kind != ErrorKind::FileNotFound {
                        self.end(state, id, EndReason::Failed(err));
                        break;
                    }
                }
            }
            // What the new directory held before its watch existed.
            let Some(sub) = state.subs.get_mut(&id) else {
                continue;
            };
            if moved_from.is_some_and(|from| sub.sees(from)) {
                continue;
            }
            for (path, is_dir) in entries.iter().filter(|(path, _)| path != dir) {
                if sub.sees(path) {
                    sub.push(WatchEvent {
                        change: Change::Create,
                        path: path.clone(),
                        old_path: None,
                        is_dir: *is_dir,
                        timestamp: now,
                        coalesced: None,
                    });
                }
            }
        }
    }

    fn vanished(&self, state: &mut State, path: &Path, is_dir: bool, now: SystemTime) {
        self.deliver(state, path, Change::Remove, is_dir, None, now);
        self.end_watchers_of(state, path);
    }

    fn renamed(&self, state: &mut State, from: &Path, to: &Path, is_dir: bool, now: SystemTime) {
        let ids: Vec<u64> = state.subs.keys().copied().collect();
        for id in ids {
            let Some(sub) = state.subs.get_mut(&id) else {
                continue;
            };
            let (saw_from, sees_to) = (sub.sees(from), sub.sees(to));
            let event = |change, old: Option<&Path>, path: &Path| WatchEvent {
                change,
                path: path.to_path_buf(),
                old_path: old.map(Path::to_path_buf),
                is_dir,
                timestamp: now,
                coalesced: None,
            };
            match (saw_from, sees_to) {
                (true, true) => sub.push(event(Change::Rename, Some(from), to)),
                (false, true) => sub.push(event(Change::Create, None, to)),
                (true, false) => sub.push(event(Change::Remove, None, from)),
                (false, false) => {}
            }
        }
        self.end_watchers_of(state, from);
        if is_dir {
            self.watch_new_tree(state, to, Some(from), now);
        }
    }

    /// Ends the watchers whose root is `path` or lies below it (it is gone).
    fn end_watchers_of(&self, state: &mut State, path: &Path) {
        let ids: Vec<u64> = state
            .subs
            .iter()
            .filter(|(_, sub)| sub.root.starts_with(path))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end(state, id, EndReason::Removed(path.to_path_buf()));
        }
    }

    fn end(&self, state: &mut State, id: u64, reason: EndReason) {
        if let Some(sub) = state.subs.get_mut(&id) {
            sub.flush(Instant::now(), true);
            *sub.end.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        }
        // Dropping the sender closes the watcher's channel once it has read what is queued.
        self.drop_sub(state, id);
    }

    fn tick(&self, state: &mut State) -> Duration {
        let now = Instant::now();
        // Unpaired first halves of renames: moved out of every watched tree.
        let expired: Vec<usize> = state
            .renames
            .iter()
            .filter(|(_, (_, _, at))| now.duration_since(*at) >= RENAME_PAIRING)
            .map(|(t, _)| *t)
            .collect();
        for tracker in expired {
            if let Some((path, is_dir, _)) = state.renames.remove(&tracker) {
                self.vanished(state, &path, is_dir, SystemTime::now());
            }
        }
        let mut next = Duration::from_secs(1);
        for sub in state.subs.values_mut() {
            sub.flush(now, false);
            if let Some(wait) = sub.next_flush(now) {
                next = next.min(wait);
            }
        }
        if !state.renames.is_empty() {
            next = next.min(RENAME_PAIRING);
        }
        next.max(Duration::from_millis(1))
    }
}

/// The hub thread: handles raw events and flushes coalesced ones when their window closes.
fn run(hub: Weak<Hub>, receiver: std_mpsc::Receiver<Msg>) {
    let mut wait = Duration::from_secs(1);
    loop {
        let message = receiver.recv_timeout(wait);
        let Some(hub) = hub.upgrade() else { return };
        let mut state = hub.lock();
        match message {
            Ok(Msg::Raw(Ok(event))) => {
                hub.handle(&mut state, event);
                // Take whatever else is queued before flushing, so a burst is one batch.
                while let Ok(Msg::Raw(next)) = receiver.try_recv() {
                    if let Ok(event) = next {
                        hub.handle(&mut state, event);
                    }
                }
            }
            Ok(Msg::Raw(Err(err))) => {
                tracing::warn!("file watcher error: {err}");
                if matches!(err.kind, notify::ErrorKind::MaxFilesWatch) {
                    for sub in state.subs.values_mut() {
                        sub.overflowed = true;
                    }
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        wait = hub.tick(&mut state);
    }
}

/// The directories to watch for `sub` at and below `dir` (symlinks not followed; `.git` left
/// out unless the watcher asked for it).
fn tree_dirs(dir: &Path, sub: &Sub) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|entry| {
            entry.file_type().is_dir() && (entry.path() == sub.root || sub.sees(entry.path()))
        })
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.into_path())
        .collect()
}

/// A notify error as ours: running out of inotify watches is a 507 that says which limit.
fn watch_error(path: &Path, err: notify::Error) -> Error {
    match &err.kind {
        notify::ErrorKind::MaxFilesWatch => {
            let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".to_string());
            Error::new(
                ErrorKind::InsufficientStorage,
                format!(
                    "out of inotify watches watching {}: the kernel limit fs.inotify.max_user_watches ({limit}) is reached; raise it or watch a smaller tree",
                    path.display()
                ),
            )
        }
        notify::ErrorKind::PathNotFound => Error::new(
            ErrorKind::FileNotFound,
            format!("file not found: {}", path.display()),
        ),
        notify::ErrorKind::Io(io) => {
            if io.raw_os_error() == Some(libc::EMFILE) {
                Error::new(
                    ErrorKind::InsufficientStorage,
                    "out of inotify instances: the kernel limit fs.inotify.max_user_instances is reached",
                )
            } else {
                Error::io("watch", path, io)
            }
        }
        _ => Error::internal(format!("cannot watch {}: {err}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> (Sub, mpsc::Receiver<WatchEvent>) {
        let (sender, receiver) = mpsc::channel(16);
        let sub = Sub {
            root: PathBuf::from("/w"),
            root_is_dir: true,
            recursive: true,
            include_git: false,
            held: HashSet::new(),
            pending: Vec::new(),
            index: HashMap::new(),
            first: None,
            overflowed: false,
            sent: VecDeque::new(),
            burst: None,
            sender,
            end: Arc::new(Mutex::new(None)),
        };
        (sub, receiver)
    }

    fn event(change: Change, path: &str, old: Option<&str>) -> WatchEvent {
        WatchEvent {
            change,
            path: PathBuf::from(path),
            old_path: old.map(PathBuf::from),
            is_dir: false,
            timestamp: SystemTime::UNIX_EPOCH,
            coalesced: None,
        }
    }

    fn flushed(sub: &mut Sub, receiver: &mut mpsc::Receiver<WatchEvent>) -> Vec<(Change, String)> {
        sub.flush(Instant::now(), true);
        let mut out = Vec::new();
        while let Ok(e) = receiver.try_recv() {
            out.push((e.change, e.path.display().to_string()));
        }
        out
    }

    #[test]
    fn events_for_one_path_merge_within_a_window() {
        let (mut sub, mut receiver) = sub();
        sub.push(event(Change::Create, "/w/a", None));
        sub.push(event(Change::Modify, "/w/a", None));
        sub.push(event(Change::Modify, "/w/b", None));
        sub.push(event(Change::Modify, "/w/b", None));
        sub.push(event(Change::Create, "/w/gone", None));
        sub.push(event(Change::Remove, "/w/gone", None));
        assert_eq!(
            flushed(&mut sub, &mut receiver),
            vec![
                (Change::Create, "/w/a".to_string()),
                (Change::Modify, "/w/b".to_string())
            ]
        );
        // A temp file created and renamed over its target: the target was created.
        sub.push(event(Change::Create, "/w/.tmp1", None));
        sub.push(event(Change::Rename, "/w/t", Some("/w/.tmp1")));
        assert_eq!(
            flushed(&mut sub, &mut receiver),
            vec![(Change::Create, "/w/t".to_string())]
        );
    }

    #[test]
    fn a_burst_becomes_one_overflow_per_directory() {
        let (mut sub, mut receiver) = sub();
        let received = |receiver: &mut mpsc::Receiver<WatchEvent>| {
            std::iter::from_fn(|| receiver.try_recv().ok())
                .map(|e| {
                    assert_eq!((e.change, e.is_dir), (Change::Overflow, true));
                    (e.path.display().to_string(), e.coalesced.unwrap())
                })
                .collect::<Vec<(String, u64)>>()
        };
        let second = BURST_WINDOW;
        // Small batches are exact.
        for i in 0..5 {
            sub.push(event(Change::Create, &format!("/w/a/{i}"), None));
        }
        let start = Instant::now() + COALESCE;
        sub.flush(start, false);
        assert_eq!(std::iter::from_fn(|| receiver.try_recv().ok()).count(), 5);
        // Past the limit within a second: nothing at once.
        for i in 0..BURST_LIMIT {
            sub.push(event(Change::Create, &format!("/w/a/{i}"), None));
            sub.push(event(Change::Modify, &format!("/w/b/c/{i}"), None));
        }
        sub.push(event(Change::Rename, "/w/d/x", Some("/w/e/x")));
        let t = start + COALESCE;
        sub.flush(t, false);
        assert!(received(&mut receiver).is_empty());
        sub.push(event(Change::Modify, "/w/b/top", None));
        sub.flush(t + second / 2, false);
        assert!(received(&mut receiver).is_empty());
        // A second after it began, the summaries: `/w/b/c` is inside `/w/b`; a rename marks
        // both of its directories.
        sub.flush(t + second, false);
        assert_eq!(
            received(&mut receiver),
            vec![
                ("/w/a".to_string(), BURST_LIMIT as u64),
                ("/w/b".to_string(), BURST_LIMIT as u64 + 1),
                ("/w/d".to_string(), 1),
                ("/w/e".to_string(), 1),
            ]
        );
        // While it lasts, the next ones come two seconds later (not one).
        for at in [second * 3 / 2, second * 2, second * 5 / 2] {
            sub.push(event(Change::Create, "/w/a/late", None));
            sub.flush(t + at, false);
            assert!(received(&mut receiver).is_empty());
        }
        sub.flush(t + second * 3, false);
        assert_eq!(received(&mut receiver), vec![("/w/a".to_string(), 3)]);
        // A second of quiet ends it: the rest goes out, and events are exact again.
        sub.push(event(Change::Create, "/w/a/last", None));
        sub.flush(t + second * 7 / 2, false);
        assert!(received(&mut receiver).is_empty());
        sub.flush(t + second * 9 / 2, false);
        assert_eq!(received(&mut receiver), vec![("/w/a".to_string(), 1)]);
        assert!(sub.burst.is_none());
        sub.push(event(Change::Create, "/w/a/exact", None));
        sub.flush(t + second * 5, false);
        let exact = receiver.try_recv().unwrap();
        assert_eq!(
            (exact.change, exact.path.as_path()),
            (Change::Create, Path::new("/w/a/exact"))
        );
    }

    #[test]
    fn summaries_are_bounded_by_cutting_the_deepest_directories() {
        let mut dirty = HashMap::new();
        for i in 0..BURST_SUMMARIES * 2 {
            dirty.insert(PathBuf::from(format!("/w/deep/{i}/x")), 1);
        }
        dirty.insert(PathBuf::from("/w/other"), 5);
        let kept = summaries(dirty.clone());
        assert!(kept.len() <= BURST_SUMMARIES, "{kept:?}");
        assert_eq!(
            kept,
            vec![
                (PathBuf::from("/w/deep"), BURST_SUMMARIES as u64 * 2),
                (PathBuf::from("/w/other"), 5)
            ]
        );
        for i in 0..BURST_SUMMARIES * 2 {
            dirty.insert(PathBuf::from(format!("/w/d{i}")), 1);
        }
        assert_eq!(
            summaries(dirty),
            vec![(PathBuf::from("/w"), BURST_SUMMARIES as u64 * 4 + 5)]
        );
    }

    #[test]
    fn scope_follows_root_depth_and_git() {
        let (mut sub, _receiver) = sub();
        assert!(sub.sees(Path::new("/w/a/b")));
        assert!(!sub.sees(Path::new("/w")));
        assert!(!sub.sees(Path::new("/wx/a")));
        assert!(!sub.sees(Path::new("/w/.git/index")));
        assert!(!sub.sees(Path::new("/w/sub/.git/HEAD")));
        assert!(sub.sees(Path::new("/w/.gitignore")));
        sub.recursive = false;
        assert!(!sub.sees(Path::new("/w/a/b")));
        sub.include_git = true;
        assert!(sub.sees(Path::new("/w/.git")));
    }
}
