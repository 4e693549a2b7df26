//! Reading a repository: status words with ahead/behind and the upstream, branches, history.

use git2::{BranchType, Repository, Sort, StatusOptions};

use super::remote::{current_branch, upstream_of};
use super::{git_error, Git};
use crate::error::Result;

/// One path's state, in the words the SDKs know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    /// The path relative to the repository root.
    pub name: String,
    /// For a rename, the old name; otherwise empty.
    pub extra: String,
    /// Index vs HEAD.
    pub staging: &'static str,
    /// Work tree vs index.
    pub worktree: &'static str,
}

/// `GET /git/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The branch name, or `HEAD` when detached.
    pub current_branch: String,
    /// Every path that is not unmodified (ignored files excluded).
    pub files: Vec<FileStatus>,
    /// Commits on the branch and not on its upstream.
    pub ahead: usize,
    /// Commits on the upstream and not on the branch.
    pub behind: usize,
    /// Whether the branch has an upstream.
    pub branch_published: bool,
    /// `remote/branch`, or empty.
    pub upstream: String,
    /// HEAD is not on a branch.
    pub detached: bool,
}

/// One commit of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full hex id.
    pub hash: String,
    /// Author name.
    pub author: String,
    /// Author email.
    pub email: String,
    /// The whole message.
    pub message: String,
    /// Author time, RFC 3339 with the author's offset.
    pub timestamp: String,
}

const UNMODIFIED: &str = "Unmodified";
const UNTRACKED: &str = "Untracked";
const MODIFIED: &str = "Modified";
const ADDED: &str = "Added";
const DELETED: &str = "Deleted";
const RENAMED: &str = "Renamed";
const UNMERGED: &str = "Updated but unmerged";

impl Git {
    /// Status of the work tree and index, with the branch's position against its upstream.
    pub fn status(&self, path: &std::ffi::OsStr) -> Result<Status> {
        let repo = self.open(path)?;
        super::workdir(&repo)?;
        let mut options = StatusOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false)
            .renames_head_to_index(true);
        let statuses = repo
            .statuses(Some(&mut options))
            .map_err(|e| git_error(e, &[]))?;
        let mut files = Vec::with_capacity(statuses.len());
        for entry in statuses.iter() {
            let status = entry.status();
            if status.is_ignored() {
                continue;
            }
            let renamed = entry
                .head_to_index()
                .filter(|_| status.is_index_renamed())
                .and_then(|delta| {
                    let old = delta.old_file().path()?.to_string_lossy().into_owned();
                    let new = delta.new_file().path()?.to_string_lossy().into_owned();
                    Some((new, old))
                });
            let name = match &renamed {
                Some((new, _)) => new.clone(),
                None => String::from_utf8_lossy(entry.path_bytes()).into_owned(),
            };
            let (staging, worktree) = words(status);
            files.push(FileStatus {
                name,
                extra: renamed.map(|(_, old)| old).unwrap_or_default(),
                staging,
                worktree,
            });
        }
        let branch = current_branch(&repo);
        let detached = repo.head_detached().unwrap_or(false);
        let mut status = Status {
            current_branch: match (&branch, detached) {
                (Some(name), false) => name.clone(),
                _ => "HEAD".to_string(),
            },
            files,
            ahead: 0,
            behind: 0,
            branch_published: false,
            upstream: String::new(),
            detached,
        };
        if let Some((remote, merge)) = branch.as_deref().and_then(|b| upstream_of(&repo, b)) {
            status.branch_published = true;
            status.upstream = format!("{remote}/{merge}");
            let local = repo.head().ok().and_then(|head| head.target());
            let tracking = repo
                .find_reference(&format!("refs/remotes/{remote}/{merge}"))
                .ok()
                .and_then(|r| r.target());
            match (local, tracking) {
                (Some(local), Some(tracking)) => {
                    let (ahead, behind) = repo
                        .graph_ahead_behind(local, tracking)
                        .map_err(|e| git_error(e, &[]))?;
                    status.ahead = ahead;
                    status.behind = behind;
                }
                // The upstream was never fetched: every local commit is ahead.
                (Some(local), None) => status.ahead = count_from(&repo, local)?,
                _ => {}
            }
        }
        Ok(status)
    }

    /// Local branch names, sorted, and the current one (empty when detached).
    pub fn branches(&self, path: &std::ffi::OsStr) -> Result<(Vec<String>, String)> {
        let repo = self.open(path)?;
        let mut names = Vec::new();
        for branch in repo
            .branches(Some(BranchType::Local))
            .map_err(|e| git_error(e, &[]))?
        {
            let (branch, _) = branch.map_err(|e| git_error(e, &[]))?;
            if let Ok(Some(name)) = branch.name() {
                names.push(name.to_string());
            }
        }
        names.sort();
        let current = if repo.head_detached().unwrap_or(false) {
            String::new()
        } else {
            current_branch(&repo).unwrap_or_default()
        };
        Ok((names, current))
    }

    /// The history from HEAD, newest first, at most `limit` commits (empty before the first).
    pub fn history(&self, path: &std::ffi::OsStr, limit: Option<usize>) -> Result<Vec<CommitInfo>> {
        let repo = self.open(path)?;
        if repo.head().is_err() {
            return Ok(Vec::new());
        }
        let mut walk = repo.revwalk().map_err(|e| git_error(e, &[]))?;
        walk.set_sorting(Sort::TIME)
            .map_err(|e| git_error(e, &[]))?;
        walk.push_head().map_err(|e| git_error(e, &[]))?;
        let mut commits = Vec::new();
        for oid in walk.take(limit.unwrap_or(usize::MAX)) {
            let oid = oid.map_err(|e| git_error(e, &[]))?;
            let commit = repo.find_commit(oid).map_err(|e| git_error(e, &[]))?;
            let author = commit.author();
            commits.push(CommitInfo {
                hash: oid.to_string(),
                author: String::from_utf8_lossy(author.name_bytes()).into_owned(),
                email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
                message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
                timestamp: timestamp(&author.when()),
            });
        }
        Ok(commits)
    }
}

/// The (staging, worktree) words for one status.
fn words(status: git2::Status) -> (&'static str, &'static str) {
    if status.is_conflicted() {
        return (UNMERGED, UNMERGED);
    }
    if status.is_wt_new() && !status.intersects(INDEX_ANY) {
        return (UNTRACKED, UNTRACKED);
    }
    let staging = if status.is_index_new() {
        ADDED
    } else if status.is_index_deleted() {
        DELETED
    } else if status.is_index_renamed() {
        RENAMED
    } else if status.is_index_modified() || status.is_index_typechange() {
        MODIFIED
    } else {
        UNMODIFIED
    };
    let worktree = if status.is_wt_deleted() {
        DELETED
    } else if status.is_wt_renamed() {
        RENAMED
    } else if status.is_wt_modified() || status.is_wt_typechange() {
        MODIFIED
    } else if status.is_wt_new() {
        UNTRACKED
    } else {
        UNMODIFIED
    };
    (staging, worktree)
}

const INDEX_ANY: git2::Status = git2::Status::INDEX_NEW
    .union(git2::Status::INDEX_MODIFIED)
    .union(git2::Status::INDEX_DELETED)
    .union(git2::Status::INDEX_RENAMED)
    .union(git2::Status::INDEX_TYPECHANGE);

/// Commits reachable from `from`.
fn count_from(repo: &Repository, from: git2::Oid) -> Result<usize> {
    let mut walk = repo.revwalk().map_err(|e| git_error(e, &[]))?;
    walk.push(from).map_err(|e| git_error(e, &[]))?;
    Ok(walk.count())
}

/// A git time as RFC 3339 with its own offset.
fn timestamp(time: &git2::Time) -> String {
    use chrono::{FixedOffset, TimeZone};
    let offset = FixedOffset::east_opt(time.offset_minutes() * 60)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
    match offset.timestamp_opt(time.seconds(), 0).single() {
        Some(when) => when.to_rfc3339(),
        None => time.seconds().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Status as S;

    #[test]
    fn status_words_match_go_git() {
        assert_eq!(words(S::WT_NEW), (UNTRACKED, UNTRACKED));
        assert_eq!(words(S::INDEX_NEW), (ADDED, UNMODIFIED));
        assert_eq!(words(S::INDEX_NEW | S::WT_MODIFIED), (ADDED, MODIFIED));
        assert_eq!(words(S::WT_DELETED), (UNMODIFIED, DELETED));
        assert_eq!(words(S::INDEX_DELETED), (DELETED, UNMODIFIED));
        assert_eq!(words(S::INDEX_RENAMED), (RENAMED, UNMODIFIED));
        assert_eq!(words(S::CONFLICTED), (UNMERGED, UNMERGED));
        assert_eq!(words(S::INDEX_DELETED | S::WT_NEW), (DELETED, UNTRACKED));
    }

    #[test]
    fn timestamps_keep_the_author_offset() {
        let time = git2::Time::new(1_700_000_000, 120);
        assert_eq!(timestamp(&time), "2023-11-15T00:13:20+02:00");
    }
}
