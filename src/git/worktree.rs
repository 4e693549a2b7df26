//! Changing a repository locally: init, add, commit, branches, checkout, reset, restore.

use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{BranchType, IndexAddOption, ObjectType, Oid, Repository, RepositoryInitOptions};

use super::remote::{current_branch, dirty};
use super::{error, git_error, workdir, Git};
use crate::error::{Error, ErrorKind, Result};

/// `mode` of `POST /git/reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetMode {
    /// Move the branch only.
    Soft,
    /// Move the branch and reset the index (the default).
    Mixed,
    /// Move the branch, reset index and work tree.
    Hard,
    /// Like `keep`: local changes are kept, and the reset is refused if they would be lost.
    Merge,
    /// Reset index and work tree, but refuse if a locally changed file differs between HEAD and
    /// the target.
    Keep,
}

impl ResetMode {
    /// Parses `soft|mixed|hard|merge|keep` (case-insensitive; empty is mixed).
    pub fn parse(text: Option<&str>) -> Result<ResetMode> {
        Ok(
            match text.unwrap_or("").trim().to_ascii_lowercase().as_str() {
                "" | "mixed" => ResetMode::Mixed,
                "soft" => ResetMode::Soft,
                "hard" => ResetMode::Hard,
                "merge" => ResetMode::Merge,
                "keep" => ResetMode::Keep,
                other => {
                    return Err(Error::bad_request(format!(
                        "invalid reset mode {other:?}: expected soft, mixed, hard, merge or keep"
                    )))
                }
            },
        )
    }
}

/// `POST /git/restore`.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// The repository.
    pub path: String,
    /// Paths relative to the repository root (or absolute inside it).
    pub files: Vec<String>,
    /// Take content from this revision.
    pub source: Option<String>,
    /// Restore the index.
    pub staged: bool,
    /// Restore the work tree (the default when neither is asked).
    pub worktree: bool,
}

impl Git {
    /// `git init` (re-running it on a repository is harmless).
    pub fn init(&self, path: &str, bare: bool, initial_branch: Option<&str>) -> Result<()> {
        self.libgit2();
        let dir = self.resolve(path)?;
        let mut options = RepositoryInitOptions::new();
        options.bare(bare).mkpath(true);
        if let Some(branch) = initial_branch.filter(|b| !b.trim().is_empty()) {
            check_branch_name(branch)?;
            options.initial_head(branch);
        }
        Repository::init_opts(&dir, &options).map_err(|e| git_error(e, &[]))?;
        Ok(())
    }

    /// Stages `files` (`.` is everything), deletions included.
    pub fn add(&self, path: &str, files: &[String]) -> Result<()> {
        let repo = self.open(path)?;
        let root = workdir(&repo)?.to_path_buf();
        let specs = pathspecs(&root, files)?;
        let mut index = repo.index().map_err(|e| git_error(e, &[]))?;
        for spec in &specs {
            let on_disk = spec == "." || root.join(spec).symlink_metadata().is_ok();
            let in_index = spec == "."
                || index.get_path(Path::new(spec), 0).is_some()
                || index
                    .iter()
                    .any(|e| e.path.starts_with(format!("{spec}/").as_bytes()));
            if !on_disk && !in_index {
                return Err(Error::new(
                    ErrorKind::FileNotFound,
                    format!("pathspec {spec:?} did not match any files"),
                ));
            }
        }
        let literal: Vec<&str> = specs
            .iter()
            .map(|s| if s == "." { "*" } else { s.as_str() })
            .collect();
        index
            .add_all(literal.iter(), IndexAddOption::DEFAULT, None)
            .and_then(|_| index.update_all(literal.iter(), None))
            .and_then(|_| index.write())
            .map_err(|e| staging_error(git_error(e, &[])))
    }

    /// Commits the index; `author`/`email` fall back to the configured user.
    pub fn commit(
        &self,
        path: &str,
        message: &str,
        author: Option<&str>,
        email: Option<&str>,
        allow_empty: bool,
    ) -> Result<String> {
        let mut repo = self.open(path)?;
        // A merge in progress (MERGE_HEAD) becomes a merge commit.
        let mut merging = Vec::new();
        let _ = repo.mergehead_foreach(|oid| {
            merging.push(*oid);
            true
        });
        let repo = repo;
        let signature = signature(&repo, author, email)?;
        let mut index = repo.index().map_err(|e| git_error(e, &[]))?;
        if index.has_conflicts() {
            return Err(error(
                ErrorKind::GitMergeConflict,
                "cannot commit: the index has unresolved conflicts",
            ));
        }
        let tree_id = index.write_tree().map_err(|e| git_error(e, &[]))?;
        let tree = repo.find_tree(tree_id).map_err(|e| git_error(e, &[]))?;
        let mut parents = Vec::new();
        if let Ok(head) = repo.head() {
            parents.push(head.peel_to_commit().map_err(|e| git_error(e, &[]))?);
        }
        for oid in &merging {
            parents.push(repo.find_commit(*oid).map_err(|e| git_error(e, &[]))?);
        }
        let unchanged = match parents.first() {
            Some(parent) => parent.tree_id() == tree_id,
            None => tree.is_empty(),
        };
        if unchanged && merging.is_empty() && !allow_empty {
            return Err(Error::bad_request(
                "nothing to commit: stage changes with /git/add, or set allow_empty",
            ));
        }
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let oid = repo
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parent_refs,
            )
            .map_err(|e| git_error(e, &[]))?;
        if !merging.is_empty() {
            let _ = repo.cleanup_state();
        }
        Ok(oid.to_string())
    }

    /// Creates `name` at HEAD and checks it out.
    pub fn create_branch(&self, path: &str, name: &str) -> Result<()> {
        let repo = self.open(path)?;
        check_branch_name(name)?;
        if repo.find_branch(name, BranchType::Local).is_ok() {
            return Err(error(
                ErrorKind::GitBranchExists,
                format!("branch already exists: {name}"),
            ));
        }
        // With no commits yet, the new branch is born with the first commit.
        if let Some(commit) = repo.head().ok().and_then(|h| h.peel_to_commit().ok()) {
            repo.branch(name, &commit, false)
                .map_err(|e| git_error(e, &[]))?;
        }
        repo.set_head(&format!("refs/heads/{name}"))
            .map_err(|e| git_error(e, &[]))
    }

    /// Deletes a local branch (not the checked-out one).
    pub fn delete_branch(&self, path: &str, name: &str) -> Result<()> {
        let repo = self.open(path)?;
        let mut branch = repo.find_branch(name, BranchType::Local).map_err(|_| {
            error(
                ErrorKind::GitBranchNotFound,
                format!("branch not found: {name}"),
            )
        })?;
        if current_branch(&repo).as_deref() == Some(name) && !repo.head_detached().unwrap_or(false)
        {
            return Err(Error::conflict(format!(
                "cannot delete branch {name}: it is checked out; check out another branch first"
            )));
        }
        branch.delete().map_err(|e| git_error(e, &[]))
    }

    /// Checks out a local branch, else a remote branch of that name (as a new tracking branch),
    /// else a remote-tracking ref or a commit (detached). Local changes are kept unless they
    /// would be overwritten, which is refused.
    pub fn checkout(&self, path: &str, target: &str) -> Result<()> {
        let repo = self.open(path)?;
        workdir(&repo)?;
        if target.trim().is_empty() {
            return Err(Error::missing("branch"));
        }
        if let Ok(branch) = repo.find_branch(target, BranchType::Local) {
            let reference = branch.get().name().unwrap_or_default().to_string();
            return switch(&repo, &reference, branch.get().target());
        }
        let remote_matches: Vec<String> = repo
            .remotes()
            .map(|names| {
                names
                    .iter()
                    .flatten()
                    .map(|remote| format!("{remote}/{target}"))
                    .filter(|name| repo.find_branch(name, BranchType::Remote).is_ok())
                    .collect()
            })
            .unwrap_or_default();
        if remote_matches.len() == 1 && check_branch_name(target).is_ok() {
            let remote_branch = repo
                .find_branch(&remote_matches[0], BranchType::Remote)
                .map_err(|e| git_error(e, &[]))?;
            let commit = remote_branch
                .get()
                .peel_to_commit()
                .map_err(|e| git_error(e, &[]))?;
            // Check out first, so a refusal leaves no new branch behind.
            repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().safe()))
                .map_err(dirty)?;
            let mut local = repo
                .branch(target, &commit, false)
                .map_err(|e| git_error(e, &[]))?;
            local
                .set_upstream(Some(&remote_matches[0]))
                .map_err(|e| git_error(e, &[]))?;
            return repo
                .set_head(&format!("refs/heads/{target}"))
                .map_err(|e| git_error(e, &[]));
        }
        let object = repo.revparse_single(target).map_err(|_| {
            error(
                ErrorKind::GitBranchNotFound,
                format!("branch or commit not found: {target}"),
            )
        })?;
        let commit = object.peel_to_commit().map_err(|_| {
            error(
                ErrorKind::GitBranchNotFound,
                format!("{target} does not name a commit"),
            )
        })?;
        repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().safe()))
            .map_err(dirty)?;
        repo.set_head_detached(commit.id())
            .map_err(|e| git_error(e, &[]))
    }

    /// `git reset [--mode] [target] [-- files]`.
    pub fn reset(
        &self,
        path: &str,
        mode: ResetMode,
        target: Option<&str>,
        files: &[String],
    ) -> Result<()> {
        let repo = self.open(path)?;
        let target = target.filter(|t| !t.trim().is_empty()).unwrap_or("HEAD");
        let object = repo
            .revparse_single(target)
            .and_then(|o| o.peel(ObjectType::Commit))
            .map_err(|_| {
                error(
                    ErrorKind::GitBranchNotFound,
                    format!("revision not found: {target}"),
                )
            })?;
        if !files.is_empty() {
            if !matches!(mode, ResetMode::Mixed) {
                return Err(Error::bad_request(
                    "files can only be reset in mixed mode (the index)",
                ));
            }
            let root = workdir(&repo)?.to_path_buf();
            let specs = pathspecs(&root, files)?;
            return repo
                .reset_default(Some(&object), specs.iter())
                .map_err(|e| git_error(e, &[]));
        }
        let kind = match mode {
            ResetMode::Soft => git2::ResetType::Soft,
            ResetMode::Mixed => git2::ResetType::Mixed,
            ResetMode::Hard => git2::ResetType::Hard,
            ResetMode::Merge | ResetMode::Keep => {
                // A safe checkout refuses exactly when a local change would be lost.
                repo.checkout_tree(&object, Some(CheckoutBuilder::new().safe()))
                    .map_err(dirty)?;
                git2::ResetType::Mixed
            }
        };
        repo.reset(&object, kind, None)
            .map_err(|e| git_error(e, &[]))
    }

    /// `git restore [--source] [--staged] [--worktree] files`.
    pub fn restore(&self, request: &RestoreRequest) -> Result<()> {
        let repo = self.open(&request.path)?;
        let root = workdir(&repo)?.to_path_buf();
        if request.files.is_empty() {
            return Err(Error::missing("files"));
        }
        let specs = pathspecs(&root, &request.files)?;
        let worktree = request.worktree || !request.staged;
        let source = match request.source.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(source) => Some(
                repo.revparse_single(source)
                    .and_then(|o| o.peel(ObjectType::Commit))
                    .map_err(|_| {
                        error(
                            ErrorKind::GitBranchNotFound,
                            format!("revision not found: {source}"),
                        )
                    })?,
            ),
            None => None,
        };
        if request.staged {
            // The index from the source (default HEAD); before the first commit, unstage.
            let from = match &source {
                Some(object) => Some(object.clone()),
                None => repo
                    .head()
                    .ok()
                    .and_then(|h| h.peel(ObjectType::Commit).ok()),
            };
            match from {
                Some(object) => repo
                    .reset_default(Some(&object), specs.iter())
                    .map_err(|e| git_error(e, &[]))?,
                None => {
                    let mut index = repo.index().map_err(|e| git_error(e, &[]))?;
                    for spec in &specs {
                        let _ = index.remove_path(Path::new(spec));
                    }
                    index.write().map_err(|e| git_error(e, &[]))?;
                }
            }
        }
        if !worktree {
            return Ok(());
        }
        let mut checkout = CheckoutBuilder::new();
        checkout.force().disable_pathspec_match(false);
        for spec in &specs {
            checkout.path(spec);
        }
        match (&source, request.staged) {
            // The work tree from the source without touching the index: write the blobs.
            (Some(object), false) => {
                let tree = object.peel_to_tree().map_err(|e| git_error(e, &[]))?;
                write_from_tree(&repo, &root, &tree, &specs)
            }
            // The index was just restored (or is the source): copy it out.
            _ => {
                let mut index = repo.index().map_err(|e| git_error(e, &[]))?;
                repo.checkout_index(Some(&mut index), Some(&mut checkout))
                    .map_err(|e| git_error(e, &[]))
            }
        }
    }
}

/// Writes the blobs of `tree` under `specs` into the work tree (files not in the tree are
/// removed, as git restore does).
fn write_from_tree(
    repo: &Repository,
    root: &Path,
    tree: &git2::Tree<'_>,
    specs: &[String],
) -> Result<()> {
    let mut matched = vec![false; specs.len()];
    let mut result = Ok(());
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        let relative = format!("{dir}{}", entry.name().unwrap_or_default());
        let Some(index) = specs
            .iter()
            .position(|s| s == "." || relative == *s || relative.starts_with(&format!("{s}/")))
        else {
            return git2::TreeWalkResult::Ok;
        };
        matched[index] = true;
        let write = || -> Result<()> {
            let blob = repo.find_blob(entry.id()).map_err(|e| git_error(e, &[]))?;
            let dest = root.join(&relative);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, &e))?;
            }
            let mode = if entry.filemode() == 0o100755 {
                0o755
            } else {
                0o644
            };
            write_file(&dest, blob.content(), mode)
        };
        if let Err(err) = write() {
            result = Err(err);
            return git2::TreeWalkResult::Abort;
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(|e| git_error(e, &[]))?;
    result?;
    if let Some((spec, _)) = specs.iter().zip(&matched).find(|(_, m)| !**m) {
        return Err(Error::new(
            ErrorKind::FileNotFound,
            format!("pathspec {spec:?} did not match any file in the source"),
        ));
    }
    Ok(())
}

/// Atomically replaces `dest` with `content`.
fn write_file(dest: &Path, content: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut temp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create", dir, &e))?;
    temp.write_all(content)
        .map_err(|e| Error::io("write", dest, &e))?;
    let _ = temp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode));
    temp.persist(dest)
        .map_err(|e| Error::io("write", dest, &e.error))?;
    Ok(())
}

/// Checks out `reference` (a local branch) safely and points HEAD at it.
fn switch(repo: &Repository, reference: &str, target: Option<Oid>) -> Result<()> {
    if let Some(oid) = target {
        let commit = repo.find_commit(oid).map_err(|e| git_error(e, &[]))?;
        repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().safe()))
            .map_err(dirty)?;
    }
    repo.set_head(reference).map_err(|e| git_error(e, &[]))
}

/// Request paths as repository-relative pathspecs (absolute paths must lie inside the work
/// tree; `.` and empty mean everything).
/// A name git refuses to stage that was found in the work tree (`d/.git.`, a name Windows would
/// read as `.git`) is the state of the work tree, not a fault of the request: a 409.
fn staging_error(err: Error) -> Error {
    if err.kind != ErrorKind::InvalidPath {
        return err;
    }
    Error::new(
        ErrorKind::Conflict,
        format!(
            "cannot stage: the work tree holds a name git refuses ({}); rename or remove it, or \
             stage other paths",
            err.message
        ),
    )
}

fn pathspecs(root: &Path, files: &[String]) -> Result<Vec<String>> {
    if files.is_empty() {
        return Err(Error::missing("files"));
    }
    let root: PathBuf = root.components().collect();
    files
        .iter()
        .map(|file| {
            // git2 panics on a pathspec with a NUL byte (it cannot become a C string).
            if file.contains('\0') {
                return Err(Error::invalid_path(format!("{file:?} contains a NUL byte")));
            }
            let file = file.trim_end_matches('/');
            if file.is_empty() || file == "." || file == "*" {
                return Ok(".".to_string());
            }
            let path = Path::new(file);
            let relative = if path.is_absolute() {
                let clean: PathBuf = path.components().collect();
                clean
                    .strip_prefix(&root)
                    .map(Path::to_path_buf)
                    .map_err(|_| {
                        Error::invalid_path(format!(
                            "{file} is outside the repository at {}",
                            root.display()
                        ))
                    })?
            } else {
                path.components().collect()
            };
            if relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(Error::invalid_path(format!("{file} leaves the repository")));
            }
            let text = relative.to_string_lossy().into_owned();
            Ok(if text.is_empty() {
                ".".to_string()
            } else {
                text
            })
        })
        .collect()
}

/// A valid branch name or a 400.
fn check_branch_name(name: &str) -> Result<()> {
    if git2::Branch::name_is_valid(name).unwrap_or(false) {
        Ok(())
    } else {
        Err(Error::bad_request(format!("invalid branch name: {name:?}")))
    }
}

/// The signature for a commit: the given author, else the configured user, else a placeholder
/// that says where it came from.
pub(super) fn signature(
    repo: &Repository,
    author: Option<&str>,
    email: Option<&str>,
) -> Result<git2::Signature<'static>> {
    let config = repo.config().ok();
    let configured = |key: &str| config.as_ref().and_then(|c| c.get_string(key).ok());
    let name = author
        .filter(|a| !a.trim().is_empty())
        .map(str::to_string)
        .or_else(|| configured("user.name"))
        .unwrap_or_else(|| "toolboxd".to_string());
    let email = email
        .filter(|e| !e.trim().is_empty())
        .map(str::to_string)
        .or_else(|| configured("user.email"))
        .unwrap_or_else(|| "toolboxd@localhost".to_string());
    git2::Signature::now(&name, &email)
        .map_err(|e| Error::bad_request(format!("invalid author: {}", e.message())))
}
