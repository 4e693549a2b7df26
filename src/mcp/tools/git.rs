//! Git tools: `git_clone` (Daytona's parameters; progress while it runs, stopped when the
//! request is cancelled), `git_status` and `git_commit`, through the `Git` capability on
//! libgit2.

use super::Parameters;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::super::output;
use super::super::progress::Progress;
use super::super::{blocking, Toolbox};
use crate::error::Result;
use crate::git::{Auth, CloneObserver, CloneProgress, CloneRequest, CloneStage};

/// `git_clone`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CloneArgs {
    /// The repository URL (https, http or file).
    pub url: String,
    /// The directory to clone into, which must not exist or be empty (default: the URL's last
    /// part without `.git`, in the work dir).
    pub path: Option<String>,
    /// Clone only this branch and check it out.
    pub branch: Option<String>,
    /// Check out this commit (detached) after cloning.
    pub commit_id: Option<String>,
    /// User name for the remote.
    pub username: Option<String>,
    /// Password or token for the remote.
    pub password: Option<String>,
}

/// A clone.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Cloned {
    /// The absolute path of the new work tree.
    pub path: String,
}

/// `{path}` of a repository.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RepoArgs {
    /// The repository's work tree (default: the work dir).
    pub path: Option<String>,
}

/// One changed path.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ChangedFile {
    /// The path relative to the repository root.
    pub name: String,
    /// Index against HEAD: Unmodified, Untracked, Modified, Added, Deleted, Renamed, Copied,
    /// Updated but unmerged.
    pub staging: String,
    /// Work tree against the index (same words).
    pub worktree: String,
    /// The old name of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
}

/// `git_status`
#[derive(Debug, Serialize, JsonSchema)]
pub struct RepoStatus {
    /// The branch, or `HEAD` when detached.
    pub current_branch: String,
    /// HEAD is detached.
    pub detached: bool,
    /// `remote/branch` the branch tracks, or empty.
    pub upstream: String,
    /// Commits not on the upstream.
    pub ahead: usize,
    /// Upstream commits not on the branch.
    pub behind: usize,
    /// Every changed (or untracked) path.
    pub files: Vec<ChangedFile>,
}

/// `git_commit`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CommitArgs {
    /// The repository's work tree (default: the work dir).
    pub path: Option<String>,
    /// The commit message.
    pub message: String,
    /// Paths to stage first (`.` stages everything, deletions included); default: commit what
    /// is staged.
    pub files: Option<Vec<String>>,
    /// Author name (default: user.name from the git config).
    pub author: Option<String>,
    /// Author email (default: user.email).
    pub email: Option<String>,
    /// Commit even when nothing changed.
    pub allow_empty: Option<bool>,
}

/// A commit.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Committed {
    /// The new commit's id.
    pub hash: String,
}

/// Hands clone progress from the cloning thread to the request's task (the latest report
/// only), and the request's cancellation back.
struct Observer {
    reports: watch::Sender<Option<CloneProgress>>,
    cancel: tokio_util::sync::CancellationToken,
}

impl CloneObserver for Observer {
    fn progress(&self, report: CloneProgress) {
        self.reports.send_replace(Some(report));
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// A clone's progress as a percentage: receiving 0–70, resolving 70–85, checking out 85–100.
fn percent(report: &CloneProgress) -> f64 {
    let (start, span) = match report.stage {
        CloneStage::Receiving => (0.0, 70.0),
        CloneStage::Resolving => (70.0, 15.0),
        CloneStage::CheckingOut => (85.0, 15.0),
    };
    let fraction = if report.total == 0 {
        0.0
    } else {
        report.done as f64 / report.total as f64
    };
    start + span * fraction.min(1.0)
}

fn stage_words(stage: CloneStage) -> &'static str {
    match stage {
        CloneStage::Receiving => "receiving objects",
        CloneStage::Resolving => "resolving deltas",
        CloneStage::CheckingOut => "checking out files",
    }
}

/// The directory `git clone URL` would make: the URL's last part without `.git`.
fn default_clone_dir(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':']).next().unwrap_or(trimmed);
    let name = last.strip_suffix(".git").unwrap_or(last);
    if name.is_empty() {
        "repo".to_string()
    } else {
        name.to_string()
    }
}

#[rmcp::tool_router(router = git_router, vis = "pub(crate)")]
impl Toolbox {
    /// Clones a git repository (https, http or file URL) with libgit2. Reports progress
    /// (objects received, files checked out); cancelling the request stops the clone and
    /// leaves the directory as it was.
    #[rmcp::tool(
        annotations(
            title = "Git clone",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        ),
        output_schema = schema_for_output::<Cloned>()
    )]
    async fn git_clone(
        &self,
        Parameters(args): Parameters<CloneArgs>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let mut progress = Progress::of(&context);
        let path = args
            .path
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| default_clone_dir(&args.url));
        let request = CloneRequest {
            url: args.url,
            path: path.clone(),
            branch: args.branch,
            commit_id: args.commit_id,
            depth: None,
            auth: Auth {
                username: args.username,
                password: args.password,
            },
            insecure_skip_tls: false,
        };
        let (reports, mut updates) = watch::channel(None);
        let observer = Observer {
            reports,
            cancel: context.ct.clone(),
        };
        let git = self.app.git.clone();
        let clone = blocking(move || {
            let target = git.resolve(&request.path)?;
            git.clone_repo_observed(&request, Some(&observer))?;
            Ok(Cloned {
                path: target.to_string_lossy().into_owned(),
            })
        });
        tokio::pin!(clone);
        let done: Result<Cloned> = loop {
            tokio::select! {
                biased;
                done = &mut clone => break done,
                changed = updates.changed(), if progress.wanted() => {
                    if changed.is_err() {
                        // The observer is gone: the clone is ending.
                        break clone.await;
                    }
                    let latest = *updates.borrow_and_update();
                    if let Some(report) = latest {
                        let message = format!(
                            "{} {}/{}",
                            stage_words(report.stage),
                            report.done,
                            report.total
                        );
                        progress.report(percent(&report), Some(100.0), message).await;
                    }
                }
            }
        };
        Ok(output::outcome(done))
    }

    /// The repository's branch, its position against the upstream, and every changed file.
    #[rmcp::tool(
        annotations(
            title = "Git status",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<RepoStatus>()
    )]
    async fn git_status(
        &self,
        Parameters(args): Parameters<RepoArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let git = self.app.git.clone();
        let path = args
            .path
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| ".".into());
        let status = blocking(move || git.status(path.as_ref()))
            .await
            .map(|status| RepoStatus {
                current_branch: status.current_branch,
                detached: status.detached,
                upstream: status.upstream,
                ahead: status.ahead,
                behind: status.behind,
                files: status
                    .files
                    .into_iter()
                    .map(|f| ChangedFile {
                        name: f.name,
                        staging: f.staging.to_string(),
                        worktree: f.worktree.to_string(),
                        renamed_from: (!f.extra.is_empty()).then_some(f.extra),
                    })
                    .collect(),
            });
        Ok(output::outcome(status))
    }

    /// Commits: stages `files` first when given (`.` for everything), then commits the index.
    #[rmcp::tool(
        annotations(
            title = "Git commit",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<Committed>()
    )]
    async fn git_commit(
        &self,
        Parameters(args): Parameters<CommitArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let git = self.app.git.clone();
        let path = args
            .path
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| ".".into());
        let committed = blocking(move || {
            if let Some(files) = args.files.filter(|f| !f.is_empty()) {
                git.add(&path, &files)?;
            }
            git.commit(
                &path,
                &args.message,
                args.author.as_deref(),
                args.email.as_deref(),
                args.allow_empty.unwrap_or(false),
            )
        })
        .await
        .map(|hash| Committed { hash });
        Ok(output::outcome(committed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_dirs_follow_git() {
        assert_eq!(default_clone_dir("https://github.com/a/b.git"), "b");
        assert_eq!(default_clone_dir("https://github.com/a/b/"), "b");
        assert_eq!(default_clone_dir("file:///tmp/x/repo.git"), "repo");
        assert_eq!(default_clone_dir("git@host:a/b.git"), "b");
        assert_eq!(default_clone_dir("/srv/repo"), "repo");
    }

    #[test]
    fn progress_rises_through_the_stages() {
        let at = |stage, done, total| percent(&CloneProgress { stage, done, total });
        assert_eq!(at(CloneStage::Receiving, 0, 0), 0.0);
        assert_eq!(at(CloneStage::Receiving, 10, 10), 70.0);
        assert_eq!(at(CloneStage::Resolving, 5, 10), 77.5);
        assert_eq!(at(CloneStage::CheckingOut, 10, 10), 100.0);
    }
}
