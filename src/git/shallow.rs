//! Shallow clones of repositories on this machine (`file://` URLs), and keeping shallow
//! repositories shallow across fetches from them.
//!
//! libgit2's local transport cannot fetch shallow (it refuses a depth), and after every fetch
//! that brought a pack it rewrites `.git/shallow` from what the transport reports, which is
//! nothing: a shallow repository pulled from a local remote would keep commits whose parents it
//! does not have. git itself honours `--depth` for `file://` URLs (upload-pack runs as for a
//! remote) and ignores it only for plain paths. So toolboxd does what upload-pack would, in
//! process, without a transport:
//!
//! * [`Plan`]: the commits within the depth of every tip the clone fetches (a breadth-first walk
//!   of the source, so each commit gets its shortest distance from a tip), the commits at the
//!   depth (upload-pack's `shallow` lines, the new `.git/shallow`), and the annotated tags that
//!   point into them (git's `include-tag`).
//! * [`Plan::populate`] packs exactly those objects from the source into the new repository
//!   (`git2::PackBuilder`, streamed into its indexer: one pack file on disk; deltas are searched
//!   only when the history outweighs the tips' trees) and writes its `.git/shallow`. The clone
//!   (`remote.rs::clone_shallow`, libgit2's clone step by step, since that one asks for every
//!   tag when no depth is given) then fetches as usual: libgit2 finds every wanted branch
//!   present and transfers nothing (so it leaves `.git/shallow` alone), creates the refs and
//!   the tags whose objects came along, and HEAD is set and checked out as libgit2's clone does.
//! * [`keep`] puts the shallow roots back after a fetch through the local transport (a pull),
//!   which had removed them.
//!
//! The alternative, an in-process smart transport serving upload-pack to libgit2's client, would
//! need the whole negotiation (pkt-lines, shallow/deepen, ACK/NAK, side band) re-implemented for
//! the same pack; here the pack is the only thing built, and libgit2's fetch, refs and checkout
//! do the rest.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Odb, Oid, Repository};

use super::{error, git_error};
use crate::error::{Error, ErrorKind, Result};

/// The path a `file://` URL names, read as libgit2 reads it (`file:///path` or
/// `file://localhost/path`, percent-decoded); None for anything else.
pub(super) fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') || path.starts_with("//") {
        return None;
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

/// The commits a shallow fetch sends.
struct Window {
    /// Each commit with its tree, nearest the tips first.
    commits: Vec<(Oid, Oid)>,
    /// How many of `commits` are tips (the first ones).
    tips: usize,
    /// The commits at the depth: the `.git/shallow` lines.
    shallow: Vec<Oid>,
}

/// Walks `depth` commits back from `tips` in `source`. With `have` (the repository receiving
/// the commits), commits it already holds are neither sent nor walked through.
fn window(source: &Repository, tips: &[Oid], depth: u32, have: Option<&Odb<'_>>) -> Result<Window> {
    let has = |oid: Oid| have.is_some_and(|odb| odb.exists(oid));
    // A source that is itself shallow: its roots stay roots (their parents are nowhere).
    let grafted: HashSet<Oid> = read_roots(source.path())?.into_iter().collect();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    for tip in tips {
        if !has(*tip) && seen.insert(*tip) {
            queue.push_back((*tip, 0u32));
        }
    }
    let mut window = Window {
        commits: Vec::new(),
        tips: queue.len(),
        shallow: Vec::new(),
    };
    // Breadth first: a commit is first reached at its shortest distance from a tip. As in
    // upload-pack, the commits at the last distance within the depth are the shallow ones,
    // whether or not their parents come along another way (and a root there is listed too).
    while let Some((oid, distance)) = queue.pop_front() {
        let commit = source.find_commit(oid).map_err(|e| git_error(e, &[]))?;
        let last = distance + 1 >= depth;
        if last || grafted.contains(&oid) {
            window.shallow.push(oid);
        }
        if !last {
            for parent in commit.parent_ids() {
                if !has(parent) && seen.insert(parent) {
                    queue.push_back((parent, distance + 1));
                }
            }
        }
        window.commits.push((oid, commit.tree_id()));
    }
    Ok(window)
}

/// The source's HEAD, which a clone without a branch checks out.
pub(super) enum Head {
    /// `refs/heads/<name>`, at this commit.
    Branch(String, Oid),
    /// A commit.
    Detached(Oid),
    /// Unborn or not a commit (only with a branch named: then it does not matter).
    Unknown,
}

/// A shallow clone of a `file://` repository, planned before the target is created.
pub(super) struct Plan {
    source: Repository,
    source_path: PathBuf,
    depth: u32,
    head: Head,
    window: Window,
    /// Annotated tags (and tags of tags) whose commit is in the window.
    tags: Vec<Oid>,
}

impl Plan {
    /// The plan for cloning `depth` commits of `branch` (else of every branch, and HEAD) from
    /// the repository at `path`. None when there is nothing to plan and the ordinary clone
    /// should run: the source does not open or lacks the branch (libgit2 then reports it as
    /// usual), or the depth goes past every root (the whole history is the answer, not shallow,
    /// as from git, and copying the source's packs gives it cheapest).
    pub(super) fn new(path: &Path, branch: Option<&str>, depth: u32) -> Result<Option<Plan>> {
        let Ok(source) = Repository::open(path) else {
            return Ok(None);
        };
        let mut tips = Vec::new();
        let peel = |reference: git2::Reference<'_>| reference.peel_to_commit().ok().map(|c| c.id());
        let head = match source.find_reference("HEAD") {
            Ok(head) => match head.symbolic_target().map(str::to_string) {
                Some(target) => match (
                    target.strip_prefix("refs/heads/"),
                    source.find_reference(&target).ok().and_then(peel),
                ) {
                    (Some(name), Some(oid)) => Head::Branch(name.to_string(), oid),
                    _ => Head::Unknown,
                },
                None => peel(head).map_or(Head::Unknown, Head::Detached),
            },
            Err(_) => Head::Unknown,
        };
        match branch {
            Some(branch) => {
                let reference = source.find_reference(&format!("refs/heads/{branch}"));
                tips.extend(reference.ok().and_then(peel));
            }
            None => {
                let heads = source
                    .references_glob("refs/heads/*")
                    .map_err(|e| git_error(e, &[]))?;
                tips.extend(heads.flatten().filter_map(peel));
                match head {
                    // A detached HEAD is what the clone checks out.
                    Head::Detached(oid) => tips.push(oid),
                    Head::Branch(..) => {}
                    // libgit2's clone has its own rules for a HEAD it cannot follow.
                    Head::Unknown => return Ok(None),
                }
            }
        }
        if tips.is_empty() {
            return Ok(None);
        }
        let window = window(&source, &tips, depth, None)?;
        if window.shallow.is_empty() {
            return Ok(None);
        }
        let tags = tags_into(&source, &window)?;
        Ok(Some(Plan {
            source_path: path.to_path_buf(),
            source,
            depth,
            head,
            window,
            tags,
        }))
    }

    /// The commits whose parents the clone does not get.
    pub(super) fn shallow(&self) -> &[Oid] {
        &self.window.shallow
    }

    /// The source's HEAD.
    pub(super) fn head(&self) -> &Head {
        &self.head
    }

    /// Fills the new, empty repository `target` with the window's objects (one pack) and writes
    /// its `.git/shallow`. A `Repository` opened before reads no shallow roots: reopen it.
    pub(super) fn populate(&self, target: &Repository) -> Result<()> {
        write_pack(&self.source, &self.window, &self.tags, target, None)?;
        write_roots(target.path(), &self.window.shallow)
    }

    /// Brings `commit` (any revision of the source) and `depth` commits behind it into
    /// `target`, which has the clone's history: only commits and objects it lacks are packed,
    /// and the new roots join its `.git/shallow`. Returns the commit's id. Reopen `target`
    /// afterwards: a `Repository` reads `.git/shallow` once.
    pub(super) fn fetch_commit(&self, target: &Repository, commit: &str) -> Result<Oid> {
        let oid = self
            .source
            .revparse_single(commit)
            .and_then(|object| object.peel_to_commit())
            .map(|commit| commit.id())
            .map_err(|_| {
                error(
                    ErrorKind::GitBranchNotFound,
                    format!(
                        "commit not found on the remote: {commit} (in {})",
                        self.source_path.display()
                    ),
                )
            })?;
        let odb = target.odb().map_err(|e| git_error(e, &[]))?;
        let window = window(&self.source, &[oid], self.depth, Some(&odb))?;
        if window.commits.is_empty() {
            return Ok(oid);
        }
        write_pack(&self.source, &window, &[], target, Some(&odb))?;
        keep(target.path(), &window.shallow)?;
        Ok(oid)
    }
}

/// Tag objects of `source`'s tags whose commit is in `window` (a chain of tags in full):
/// lightweight tags need nothing packed, libgit2 creates every tag whose object is present.
fn tags_into(source: &Repository, window: &Window) -> Result<Vec<Oid>> {
    let commits: HashSet<Oid> = window.commits.iter().map(|(commit, _)| *commit).collect();
    let mut tags = Vec::new();
    let references = source
        .references_glob("refs/tags/*")
        .map_err(|e| git_error(e, &[]))?;
    for reference in references.flatten() {
        let Some(mut id) = reference.target() else {
            continue;
        };
        let mut chain = Vec::new();
        while let Ok(tag) = source.find_tag(id) {
            chain.push(id);
            id = tag.target_id();
        }
        if !chain.is_empty() && commits.contains(&id) {
            tags.extend(chain);
        }
    }
    Ok(tags)
}

/// Packs the commits of `window`, their trees, and `tags` from `source` into `target`'s object
/// database. Trees and blobs `have` holds are left out (a subtree it holds is whole there).
fn write_pack(
    source: &Repository,
    window: &Window,
    tags: &[Oid],
    target: &Repository,
    have: Option<&Odb<'_>>,
) -> Result<()> {
    let git = |e| git_error(e, &[]);
    let started = std::time::Instant::now();
    let mut objects = Vec::new();
    let mut seen = HashSet::new();
    let mut snapshot = 0;
    for (n, (commit, tree)) in window.commits.iter().enumerate() {
        objects.push((*commit, None));
        add_tree(&mut objects, &mut seen, source, *tree, have)?;
        if n + 1 == window.tips {
            snapshot = objects.len();
        }
    }
    objects.extend(tags.iter().map(|tag| (*tag, None)));
    // Deltas pay between versions of a file, which a shallow history holds few of: the tips'
    // trees are most of the pack, and libgit2 would try each of their objects against ten
    // others for next to nothing (on a 50 000-file tree: 30 s of CPU, the same pack within a
    // percent). Only a history bigger than its snapshots is searched for deltas.
    let count = objects.len();
    let deltas = count - snapshot > snapshot;
    let plain;
    let (packer, _config) = if deltas {
        (source, None)
    } else {
        let (handle, config) = without_deltas(source, target.path())?;
        plain = handle;
        (&plain, Some(config))
    };
    let mut pack = packer.packbuilder().map_err(git)?;
    // As libgit2's local transport does: one delta-search thread per CPU.
    pack.set_threads(0);
    for (id, name) in &objects {
        pack.insert_object(*id, name.as_deref()).map_err(git)?;
    }
    drop(objects);
    let odb = target.odb().map_err(git)?;
    let mut writer = odb.packwriter().map_err(git)?;
    // A failed write (a full disk) is told by libgit2's last error, which io::Write drops.
    let mut failed = None;
    let mut bytes = 0;
    pack.foreach(|chunk| match writer.write_all(chunk) {
        Ok(()) => {
            bytes += chunk.len();
            true
        }
        Err(_) => {
            failed = Some(git2::Error::last_error(-1));
            false
        }
    })
    .map_err(|err| git(failed.take().unwrap_or(err)))?;
    writer.commit().map_err(git)?;
    tracing::debug!(
        objects = count,
        commits = window.commits.len(),
        deltas,
        bytes,
        seconds = started.elapsed().as_secs_f64(),
        "shallow pack written"
    );
    Ok(())
}

/// A second handle on `source` whose pack builder searches no deltas. libgit2 has no switch for
/// it; objects above its big-file threshold are never deltified, and it reads that threshold
/// from `pack.deltaCacheSize` (libgit2 1.9; `core.bigFileThreshold` is set too, for a libgit2
/// that reads the key git reads). The settings come from a config file in `scratch` added to
/// this handle only, never to the source's files; the builder copies its config when it is
/// created, after which the returned file may go.
fn without_deltas(source: &Repository, scratch: &Path) -> Result<(Repository, tempfile::TempPath)> {
    let git = |e| git_error(e, &[]);
    let written = tempfile::Builder::new()
        .prefix("toolboxd-pack")
        .tempfile_in(scratch)
        .and_then(|mut file| {
            file.write_all(b"[pack]\n\tdeltaCacheSize = 1\n[core]\n\tbigFileThreshold = 1\n")?;
            Ok(file.into_temp_path())
        });
    let config = written.map_err(|err| Error::io("write a config file in", scratch, &err))?;
    let handle = Repository::open(source.path()).map_err(git)?;
    handle
        .config()
        .and_then(|mut settings| settings.add_file(&config, git2::ConfigLevel::App, false))
        .map_err(git)?;
    Ok((handle, config))
}

/// Appends `root` and everything under it (submodule commits aside) to `objects`, except what
/// `have` holds and what `seen` lists already (a tree shared by several commits is walked once).
fn add_tree(
    objects: &mut Vec<(Oid, Option<String>)>,
    seen: &mut HashSet<Oid>,
    source: &Repository,
    root: Oid,
    have: Option<&Odb<'_>>,
) -> Result<()> {
    let has = |oid: Oid| have.is_some_and(|odb| odb.exists(oid));
    let mut stack = vec![(root, None::<String>)];
    while let Some((id, name)) = stack.pop() {
        if !seen.insert(id) || has(id) {
            continue;
        }
        objects.push((id, name));
        let tree = source.find_tree(id).map_err(|e| git_error(e, &[]))?;
        for entry in tree.iter() {
            let name = entry.name().map(str::to_string);
            match entry.kind() {
                Some(ObjectType::Tree) => stack.push((entry.id(), name)),
                Some(ObjectType::Blob) if !has(entry.id()) && seen.insert(entry.id()) => {
                    objects.push((entry.id(), name));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The commits listed in `<git_dir>/shallow` (none when it does not exist).
pub(super) fn read_roots(git_dir: &Path) -> Result<Vec<Oid>> {
    let path = git_dir.join("shallow");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io("read", &path, &err)),
    };
    Ok(text
        .lines()
        .filter_map(|line| Oid::from_str(line.trim()).ok())
        .collect())
}

/// Replaces `<git_dir>/shallow` with `roots` (sorted, one per line), through `shallow.lock` as
/// git does; no roots removes it.
fn write_roots(git_dir: &Path, roots: &[Oid]) -> Result<()> {
    let path = git_dir.join("shallow");
    if roots.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &path, &err))
            }
            _ => Ok(()),
        };
    }
    let mut sorted = roots.to_vec();
    sorted.sort();
    sorted.dedup();
    let text: String = sorted.iter().map(|oid| format!("{oid}\n")).collect();
    let lock = git_dir.join("shallow.lock");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(err) = written.and_then(|_| std::fs::rename(&lock, &path)) {
        let _ = std::fs::remove_file(&lock);
        return Err(Error::io("write", &path, &err));
    }
    Ok(())
}

/// Makes sure `<git_dir>/shallow` lists `roots` (adding them to what it lists). Returns whether
/// it had to write: then a `Repository` opened before has stale grafts and must be reopened.
pub(super) fn keep(git_dir: &Path, roots: &[Oid]) -> Result<bool> {
    if roots.is_empty() {
        return Ok(false);
    }
    let mut current = read_roots(git_dir)?;
    let listed: HashSet<Oid> = current.iter().copied().collect();
    let missing: Vec<Oid> = roots
        .iter()
        .filter(|r| !listed.contains(r))
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    current.extend(missing);
    write_roots(git_dir, &current)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_name_paths_as_libgit2_reads_them() {
        let path = |url| file_url_path(url).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(path("file:///srv/a.git").as_deref(), Some("/srv/a.git"));
        assert_eq!(
            path("file://localhost/srv/a%20b.git").as_deref(),
            Some("/srv/a b.git")
        );
        assert_eq!(path("file://host/srv/a.git"), None);
        assert_eq!(path("file:////srv"), None);
        assert_eq!(path("/srv/a.git"), None);
    }
}
