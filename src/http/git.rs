//! Git routes (`/git/*`): snake_case bodies as both SDKs send them; every call runs on the
//! blocking pool, so a long clone never holds an async worker.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{blocking, Json, Query, QueryPath};
use crate::error::{Error, Result};
use crate::git::{
    Auth, CloneRequest, ConfigScope, PullRequest, PushRequest, ResetMode, RestoreRequest,
};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/git/clone", post(clone))
        .route("/git/status", get(status))
        .route(
            "/git/branches",
            get(list_branches).post(create_branch).delete(delete_branch),
        )
        .route("/git/checkout", post(checkout))
        .route("/git/add", post(add))
        .route("/git/commit", post(commit))
        .route("/git/push", post(push))
        .route("/git/pull", post(pull))
        .route("/git/history", get(history))
        .route("/git/init", post(init))
        .route("/git/reset", post(reset))
        .route("/git/restore", post(restore))
        .route("/git/remotes", get(list_remotes).post(add_remote))
        .route("/git/config", get(get_config).post(set_config))
        .route("/git/config/user", post(configure_user))
        .route("/git/credentials", post(credentials))
}

/// `?path=`
#[derive(Debug, Deserialize)]
pub struct PathQuery {
    path: Option<QueryPath>,
}

/// `?path=&limit=`
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    path: Option<QueryPath>,
    limit: Option<u32>,
}

/// `?key=&scope=&path=`
#[derive(Debug, Deserialize)]
pub struct ConfigQuery {
    key: Option<String>,
    scope: Option<String>,
    path: Option<String>,
}

/// A required path parameter (the repository), as bytes.
fn required_repo(value: Option<QueryPath>) -> Result<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    value
        .map(|path| path.0)
        .filter(|path| !path.as_bytes().trim_ascii().is_empty())
        .ok_or_else(|| Error::missing("path"))
}

fn required(value: Option<String>, name: &str) -> Result<String> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::missing(name))
}

/// An empty JSON object: typed-`None` routes of the SDKs accept it, and it is valid JSON.
fn ok(status: StatusCode) -> Response {
    (status, axum::Json(serde_json::json!({}))).into_response()
}

/// `POST /git/clone`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitCloneRequest {
    /// Remote URL (https, http or file).
    #[schema(pattern = r"^[^\x00]*[^\x00\s][^\x00]*$")]
    pub url: String,
    /// Target directory (must not exist or be empty).
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// Clone only this branch and check it out.
    pub branch: Option<String>,
    /// Check out this commit (detached) after cloning.
    pub commit_id: Option<String>,
    /// Shallow clone with this many commits (over http(s) and `file://`; a plain local path
    /// copies the whole history, as git does).
    pub depth: Option<u32>,
    /// User name for the remote.
    pub username: Option<String>,
    /// Password or token for the remote (never echoed).
    pub password: Option<String>,
    /// Accept any TLS certificate.
    pub insecure_skip_tls: Option<bool>,
}

/// The answer to `POST /git/clone`: `{}`, or what the clone did not do as asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct GitCloneResponse {
    /// Set when the clone ignored part of the request (a `depth` with a plain local path: the
    /// whole history is copied, as git does). Beyond Daytona; the SDKs ignore the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Clones a repository (packs stream to disk; a failure leaves the directory as it was).
/// `depth` gives a shallow clone over http(s) and for `file://` URLs; a plain path copies the
/// whole history, as git does, and the answer's `warning` says so.
#[utoipa::path(post, path = "/git/clone", tag = "git", request_body = GitCloneRequest,
    responses((status = 200, description = "cloned", body = GitCloneResponse),
        (status = 400, body = super::error::ErrorBody),
        (status = 401, description = "GIT_AUTH_FAILED", body = super::error::ErrorBody),
        (status = 404, description = "GIT_REPO_NOT_FOUND, GIT_BRANCH_NOT_FOUND", body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody),
        (status = 502, description = "GIT_TRANSPORT_FAILED", body = super::error::ErrorBody)))]
pub async fn clone(
    State(app): State<AppState>,
    Json(request): Json<GitCloneRequest>,
) -> Result<Response> {
    let request = CloneRequest {
        url: request.url,
        path: request.path,
        branch: request.branch,
        commit_id: request.commit_id,
        depth: request.depth,
        auth: Auth {
            username: request.username,
            password: request.password,
        },
        insecure_skip_tls: request.insecure_skip_tls.unwrap_or(false),
    };
    let url = request.url.clone();
    let report = blocking(move || app.git.clone_repo(&request)).await?;
    if let Some(warning) = &report.warning {
        tracing::warn!(%url, "clone: {warning}");
    }
    let answer = GitCloneResponse {
        warning: report.warning,
    };
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// One path in `GitStatus.fileStatus`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileStatus {
    /// Path relative to the repository root.
    pub name: String,
    /// The old name of a rename, else empty.
    pub extra: String,
    /// Index vs HEAD: Unmodified, Untracked, Modified, Added, Deleted, Renamed, Copied,
    /// Updated but unmerged.
    pub staging: String,
    /// Work tree vs index (same words).
    pub worktree: String,
}

/// `GitStatus`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitStatus {
    /// Branch name, or `HEAD` when detached.
    pub current_branch: String,
    /// Every changed path.
    pub file_status: Vec<FileStatus>,
    /// Commits not on the upstream.
    pub ahead: usize,
    /// Upstream commits not on the branch.
    pub behind: usize,
    /// The branch has an upstream.
    pub branch_published: bool,
    /// `remote/branch`, or empty.
    pub upstream: String,
    /// HEAD is detached.
    pub detached: bool,
}

/// Work tree and index status, with ahead/behind against the upstream (no git CLI needed).
#[utoipa::path(get, path = "/git/status", tag = "git", params(("path" = String, Query, min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")),
    responses((status = 200, body = GitStatus), (status = 400, body = super::error::ErrorBody),
        (status = 404, description = "GIT_REPO_NOT_FOUND", body = super::error::ErrorBody)))]
pub async fn status(
    State(app): State<AppState>,
    Query(query): Query<PathQuery>,
) -> Result<axum::Json<GitStatus>> {
    let path = required_repo(query.path)?;
    let status = blocking(move || app.git.status(&path)).await?;
    Ok(axum::Json(GitStatus {
        current_branch: status.current_branch,
        file_status: status
            .files
            .into_iter()
            .map(|f| FileStatus {
                name: f.name,
                extra: f.extra,
                staging: f.staging.to_string(),
                worktree: f.worktree.to_string(),
            })
            .collect(),
        ahead: status.ahead,
        behind: status.behind,
        branch_published: status.branch_published,
        upstream: status.upstream,
        detached: status.detached,
    }))
}

/// `ListBranchResponse`
#[derive(Debug, Serialize, ToSchema)]
pub struct ListBranchResponse {
    /// Local branches, sorted.
    pub branches: Vec<String>,
    /// The checked-out branch (empty when detached).
    pub current: String,
}

/// Local branches.
#[utoipa::path(get, path = "/git/branches", tag = "git", params(("path" = String, Query, min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")),
    responses((status = 200, body = ListBranchResponse), (status = 404, body = super::error::ErrorBody)))]
pub async fn list_branches(
    State(app): State<AppState>,
    Query(query): Query<PathQuery>,
) -> Result<axum::Json<ListBranchResponse>> {
    let path = required_repo(query.path)?;
    let (branches, current) = blocking(move || app.git.branches(&path)).await?;
    Ok(axum::Json(ListBranchResponse { branches, current }))
}

/// `{path, name}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitBranchRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// The branch.
    pub name: String,
}

/// Creates a branch at HEAD and checks it out (as Daytona does).
#[utoipa::path(post, path = "/git/branches", tag = "git", request_body = GitBranchRequest,
    responses((status = 201, description = "created and checked out"),
        (status = 400, body = super::error::ErrorBody),
        (status = 409, description = "GIT_BRANCH_EXISTS", body = super::error::ErrorBody)))]
pub async fn create_branch(
    State(app): State<AppState>,
    Json(request): Json<GitBranchRequest>,
) -> Result<Response> {
    blocking(move || app.git.create_branch(&request.path, &request.name)).await?;
    Ok(ok(StatusCode::CREATED))
}

/// Deletes a local branch (JSON body; not the checked-out one).
#[utoipa::path(delete, path = "/git/branches", tag = "git", request_body = GitBranchRequest,
    responses((status = 204, description = "deleted"),
        (status = 404, description = "GIT_BRANCH_NOT_FOUND", body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn delete_branch(
    State(app): State<AppState>,
    Json(request): Json<GitBranchRequest>,
) -> Result<StatusCode> {
    blocking(move || app.git.delete_branch(&request.path, &request.name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{path, branch}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitCheckoutRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// A local branch, a remote branch name, a remote-tracking ref or a commit.
    #[schema(pattern = r"^[^\x00]*[^\x00\s][^\x00]*$")]
    pub branch: String,
}

/// Checks out a branch or commit; refuses (409 GIT_DIRTY_WORKTREE) to clobber local changes.
#[utoipa::path(post, path = "/git/checkout", tag = "git", request_body = GitCheckoutRequest,
    responses((status = 200, description = "checked out"),
        (status = 404, description = "GIT_BRANCH_NOT_FOUND", body = super::error::ErrorBody),
        (status = 409, description = "GIT_DIRTY_WORKTREE", body = super::error::ErrorBody)))]
pub async fn checkout(
    State(app): State<AppState>,
    Json(request): Json<GitCheckoutRequest>,
) -> Result<Response> {
    blocking(move || app.git.checkout(&request.path, &request.branch)).await?;
    Ok(ok(StatusCode::OK))
}

/// `{path, files}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitAddRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// Paths to stage; `.` is everything (deletions included).
    #[schema(min_items = 1, value_type = Vec<super::extract::NoNul>)]
    pub files: Vec<String>,
}

/// Stages files.
#[utoipa::path(post, path = "/git/add", tag = "git", request_body = GitAddRequest,
    responses((status = 200, description = "staged"), (status = 404, body = super::error::ErrorBody)))]
pub async fn add(
    State(app): State<AppState>,
    Json(request): Json<GitAddRequest>,
) -> Result<Response> {
    blocking(move || app.git.add(&request.path, &request.files)).await?;
    Ok(ok(StatusCode::OK))
}

/// `{path, message, author, email, allow_empty}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitCommitRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// The message.
    pub message: String,
    /// Author name (default: user.name).
    pub author: Option<String>,
    /// Author email (default: user.email).
    pub email: Option<String>,
    /// Commit even when nothing changed.
    pub allow_empty: Option<bool>,
}

/// `{hash}`
#[derive(Debug, Serialize, ToSchema)]
pub struct GitCommitResponse {
    /// The new commit's id.
    pub hash: String,
}

/// Commits the index.
#[utoipa::path(post, path = "/git/commit", tag = "git", request_body = GitCommitRequest,
    responses((status = 200, body = GitCommitResponse), (status = 400, body = super::error::ErrorBody)))]
pub async fn commit(
    State(app): State<AppState>,
    Json(request): Json<GitCommitRequest>,
) -> Result<axum::Json<GitCommitResponse>> {
    let hash = blocking(move || {
        app.git.commit(
            &request.path,
            &request.message,
            request.author.as_deref(),
            request.email.as_deref(),
            request.allow_empty.unwrap_or(false),
        )
    })
    .await?;
    Ok(axum::Json(GitCommitResponse { hash }))
}

/// `{path, remote?, branch?, set_upstream?, username?, password?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitPushRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// Default `origin`.
    pub remote: Option<String>,
    /// Default: the current branch.
    pub branch: Option<String>,
    /// Record the upstream.
    pub set_upstream: Option<bool>,
    /// User name.
    pub username: Option<String>,
    /// Password or token.
    pub password: Option<String>,
}

/// Pushes a branch (never forced: a non-fast-forward is 409 GIT_PUSH_REJECTED).
#[utoipa::path(post, path = "/git/push", tag = "git", request_body = GitPushRequest,
    responses((status = 200, description = "pushed"),
        (status = 401, description = "GIT_AUTH_FAILED", body = super::error::ErrorBody),
        (status = 409, description = "GIT_PUSH_REJECTED", body = super::error::ErrorBody),
        (status = 422, description = "GIT_REMOTE_REJECTED", body = super::error::ErrorBody)))]
pub async fn push(
    State(app): State<AppState>,
    Json(request): Json<GitPushRequest>,
) -> Result<Response> {
    let request = PushRequest {
        path: request.path,
        remote: request.remote,
        branch: request.branch,
        set_upstream: request.set_upstream.unwrap_or(false),
        auth: Auth {
            username: request.username,
            password: request.password,
        },
    };
    blocking(move || app.git.push(&request)).await?;
    Ok(ok(StatusCode::OK))
}

/// `{path, remote?, branch?, username?, password?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitPullRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// Default: the upstream's remote, else `origin`.
    pub remote: Option<String>,
    /// Default: the upstream branch, else the current branch.
    pub branch: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password or token.
    pub password: Option<String>,
}

/// Fetches and fast-forwards, or merges (409 GIT_MERGE_CONFLICT leaves everything untouched).
#[utoipa::path(post, path = "/git/pull", tag = "git", request_body = GitPullRequest,
    responses((status = 200, description = "up to date"),
        (status = 401, description = "GIT_AUTH_FAILED", body = super::error::ErrorBody),
        (status = 409, description = "GIT_MERGE_CONFLICT, GIT_DIRTY_WORKTREE", body = super::error::ErrorBody)))]
pub async fn pull(
    State(app): State<AppState>,
    Json(request): Json<GitPullRequest>,
) -> Result<Response> {
    let request = PullRequest {
        path: request.path,
        remote: request.remote,
        branch: request.branch,
        auth: Auth {
            username: request.username,
            password: request.password,
        },
    };
    blocking(move || app.git.pull(&request)).await?;
    Ok(ok(StatusCode::OK))
}

/// `GitCommitInfo`
#[derive(Debug, Serialize, ToSchema)]
pub struct GitCommitInfo {
    /// Commit id.
    pub hash: String,
    /// Author name.
    pub author: String,
    /// Author email.
    pub email: String,
    /// Message.
    pub message: String,
    /// Author time, RFC 3339.
    pub timestamp: String,
}

/// The history from HEAD, newest first.
#[utoipa::path(get, path = "/git/history", tag = "git",
    params(("path" = String, Query, min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$"), ("limit" = Option<i64>, Query, minimum = 0, maximum = 4294967295_i64, description = "at most this many")),
    responses((status = 200, body = [GitCommitInfo]), (status = 404, body = super::error::ErrorBody)))]
pub async fn history(
    State(app): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<Vec<GitCommitInfo>>> {
    let path = required_repo(query.path)?;
    let commits = blocking(move || {
        app.git
            .history(&path, query.limit.map(|limit| limit as usize))
    })
    .await?;
    Ok(axum::Json(
        commits
            .into_iter()
            .map(|c| GitCommitInfo {
                hash: c.hash,
                author: c.author,
                email: c.email,
                message: c.message,
                timestamp: c.timestamp,
            })
            .collect(),
    ))
}

/// `{path, bare?, initial_branch?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitInitRequest {
    /// Where.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// Without a work tree.
    pub bare: Option<bool>,
    /// The first branch's name.
    pub initial_branch: Option<String>,
}

/// Creates a repository (re-initialising one is harmless).
#[utoipa::path(post, path = "/git/init", tag = "git", operation_id = "git_init", request_body = GitInitRequest,
    responses((status = 201, description = "initialised"), (status = 400, body = super::error::ErrorBody)))]
pub async fn init(
    State(app): State<AppState>,
    Json(request): Json<GitInitRequest>,
) -> Result<Response> {
    blocking(move || {
        app.git.init(
            &request.path,
            request.bare.unwrap_or(false),
            request.initial_branch.as_deref(),
        )
    })
    .await?;
    Ok(ok(StatusCode::CREATED))
}

/// `{path, mode?, target?, files?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitResetRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// soft, mixed (default), hard, merge or keep.
    #[schema(
        pattern = r"^\s*([Ss][Oo][Ff][Tt]|[Mm][Ii][Xx][Ee][Dd]|[Hh][Aa][Rr][Dd]|[Mm][Ee][Rr][Gg][Ee]|[Kk][Ee][Ee][Pp])?\s*$"
    )]
    pub mode: Option<String>,
    /// Revision (default HEAD).
    pub target: Option<String>,
    /// Only these paths (mixed only).
    #[schema(value_type = Option<Vec<super::extract::NoNul>>)]
    pub files: Option<Vec<String>>,
}

/// `git reset`.
#[utoipa::path(post, path = "/git/reset", tag = "git", request_body = GitResetRequest,
    responses((status = 200, description = "reset"), (status = 400, body = super::error::ErrorBody),
        (status = 409, description = "GIT_DIRTY_WORKTREE (keep, merge)", body = super::error::ErrorBody)))]
pub async fn reset(
    State(app): State<AppState>,
    Json(request): Json<GitResetRequest>,
) -> Result<Response> {
    let mode = ResetMode::parse(request.mode.as_deref())?;
    blocking(move || {
        app.git.reset(
            &request.path,
            mode,
            request.target.as_deref(),
            &request.files.unwrap_or_default(),
        )
    })
    .await?;
    Ok(ok(StatusCode::OK))
}

/// `{path, files, source?, staged?, worktree?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitRestoreRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// Paths to restore.
    #[schema(min_items = 1, value_type = Vec<super::extract::NoNul>)]
    pub files: Vec<String>,
    /// Take content from this revision.
    pub source: Option<String>,
    /// Restore the index.
    pub staged: Option<bool>,
    /// Restore the work tree (default when neither is set).
    pub worktree: Option<bool>,
}

/// `git restore`.
#[utoipa::path(post, path = "/git/restore", tag = "git", request_body = GitRestoreRequest,
    responses((status = 200, description = "restored"), (status = 400, body = super::error::ErrorBody)))]
pub async fn restore(
    State(app): State<AppState>,
    Json(request): Json<GitRestoreRequest>,
) -> Result<Response> {
    let request = RestoreRequest {
        path: request.path,
        files: request.files,
        source: request.source,
        staged: request.staged.unwrap_or(false),
        worktree: request.worktree.unwrap_or(false),
    };
    blocking(move || app.git.restore(&request)).await?;
    Ok(ok(StatusCode::OK))
}

/// `{name, url}`
#[derive(Debug, Serialize, ToSchema)]
pub struct GitRemote {
    /// Remote name.
    pub name: String,
    /// Fetch URL.
    pub url: String,
}

/// `{remotes}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ListRemotesResponse {
    /// Every remote.
    pub remotes: Vec<GitRemote>,
}

/// The remotes.
#[utoipa::path(get, path = "/git/remotes", tag = "git", params(("path" = String, Query, min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")),
    responses((status = 200, body = ListRemotesResponse), (status = 404, body = super::error::ErrorBody)))]
pub async fn list_remotes(
    State(app): State<AppState>,
    Query(query): Query<PathQuery>,
) -> Result<axum::Json<ListRemotesResponse>> {
    let path = required_repo(query.path)?;
    let remotes = blocking(move || app.git.remotes(&path)).await?;
    Ok(axum::Json(ListRemotesResponse {
        remotes: remotes
            .into_iter()
            .map(|(name, url)| GitRemote { name, url })
            .collect(),
    }))
}

/// `{path, name, url, fetch?, overwrite?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitAddRemoteRequest {
    /// The repository.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$")]
    pub path: String,
    /// Remote name.
    #[schema(pattern = r"^[^\x00]*[^\x00\s][^\x00]*$")]
    pub name: String,
    /// URL.
    #[schema(pattern = r"^[^\x00]*[^\x00\s][^\x00]*$")]
    pub url: String,
    /// Fetch right away.
    pub fetch: Option<bool>,
    /// Replace an existing remote's URL.
    pub overwrite: Option<bool>,
}

/// Adds a remote.
#[utoipa::path(post, path = "/git/remotes", tag = "git", request_body = GitAddRemoteRequest,
    responses((status = 201, description = "added"), (status = 409, body = super::error::ErrorBody)))]
pub async fn add_remote(
    State(app): State<AppState>,
    Json(request): Json<GitAddRemoteRequest>,
) -> Result<Response> {
    blocking(move || {
        app.git.add_remote(
            &request.path,
            &request.name,
            &request.url,
            request.fetch.unwrap_or(false),
            request.overwrite.unwrap_or(false),
        )
    })
    .await?;
    Ok(ok(StatusCode::CREATED))
}

/// `{value}`
#[derive(Debug, Serialize, ToSchema)]
pub struct GitConfigResponse {
    /// The value, `null` when unset.
    pub value: Option<String>,
}

/// A config value at a scope (global by default).
#[utoipa::path(get, path = "/git/config", tag = "git",
    params(("key" = String, Query, pattern = r"^[A-Za-z0-9-]+(\.[^\n\x00]*)?\.[A-Za-z][A-Za-z0-9-]*$"), ("scope" = Option<String>, Query, pattern = r"^\s*([Gg][Ll][Oo][Bb][Aa][Ll]|[Ll][Oo][Cc][Aa][Ll]|[Ss][Yy][Ss][Tt][Ee][Mm])?\s*$", description = "global (default), local or system"),
        ("path" = Option<String>, Query, description = "the repository, for scope local")),
    responses((status = 200, body = GitConfigResponse), (status = 400, body = super::error::ErrorBody)))]
pub async fn get_config(
    State(app): State<AppState>,
    Query(query): Query<ConfigQuery>,
) -> Result<axum::Json<GitConfigResponse>> {
    let key = required(query.key, "key")?;
    let scope = ConfigScope::parse(query.scope.as_deref())?;
    let value = blocking(move || app.git.get_config(&key, scope, query.path.as_deref())).await?;
    Ok(axum::Json(GitConfigResponse { value }))
}

/// `{key, value, scope?, path?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitSetConfigRequest {
    /// `section.name`.
    #[schema(pattern = r"^[A-Za-z0-9-]+(\.[^\n\x00]*)?\.[A-Za-z][A-Za-z0-9-]*$")]
    pub key: String,
    /// The value.
    #[schema(pattern = r"^[^\x00]*$")]
    pub value: String,
    /// global (default), local or system.
    #[schema(
        pattern = r"^\s*([Gg][Ll][Oo][Bb][Aa][Ll]|[Ll][Oo][Cc][Aa][Ll]|[Ss][Yy][Ss][Tt][Ee][Mm])?\s*$"
    )]
    pub scope: Option<String>,
    /// The repository, for scope local.
    pub path: Option<String>,
}

/// Sets a config value.
#[utoipa::path(post, path = "/git/config", tag = "git", request_body = GitSetConfigRequest,
    responses((status = 200, description = "set"), (status = 400, body = super::error::ErrorBody)))]
pub async fn set_config(
    State(app): State<AppState>,
    Json(request): Json<GitSetConfigRequest>,
) -> Result<Response> {
    let scope = ConfigScope::parse(request.scope.as_deref())?;
    blocking(move || {
        app.git
            .set_config(&request.key, &request.value, scope, request.path.as_deref())
    })
    .await?;
    Ok(ok(StatusCode::OK))
}

/// `{name, email, scope?, path?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitConfigureUserRequest {
    /// user.name
    #[schema(pattern = r"^[^\x00]*$")]
    pub name: String,
    /// user.email
    #[schema(pattern = r"^[^\x00]*$")]
    pub email: String,
    /// global (default), local or system.
    #[schema(
        pattern = r"^\s*([Gg][Ll][Oo][Bb][Aa][Ll]|[Ll][Oo][Cc][Aa][Ll]|[Ss][Yy][Ss][Tt][Ee][Mm])?\s*$"
    )]
    pub scope: Option<String>,
    /// The repository, for scope local.
    pub path: Option<String>,
}

/// Sets user.name and user.email.
#[utoipa::path(post, path = "/git/config/user", tag = "git", request_body = GitConfigureUserRequest,
    responses((status = 200, description = "set"), (status = 400, body = super::error::ErrorBody)))]
pub async fn configure_user(
    State(app): State<AppState>,
    Json(request): Json<GitConfigureUserRequest>,
) -> Result<Response> {
    let scope = ConfigScope::parse(request.scope.as_deref())?;
    blocking(move || {
        let path = request.path.as_deref();
        app.git
            .set_config("user.name", &request.name, scope, path)?;
        app.git
            .set_config("user.email", &request.email, scope, path)
    })
    .await?;
    Ok(ok(StatusCode::OK))
}

/// `{username, password, host?, protocol?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GitAuthenticateRequest {
    /// User name.
    #[schema(min_length = 1)]
    pub username: String,
    /// Password or token.
    #[schema(min_length = 1)]
    pub password: String,
    /// Host (and port); default github.com.
    #[schema(pattern = r"^[^/@ \n]*$")]
    pub host: Option<String>,
    /// Scheme; default https.
    #[schema(pattern = r"^[^:/ \n]*$")]
    pub protocol: Option<String>,
}

/// Stores credentials in `~/.git-credentials` (mode 0600) for later clone, pull and push.
#[utoipa::path(post, path = "/git/credentials", tag = "git", request_body = GitAuthenticateRequest,
    responses((status = 200, description = "stored"), (status = 400, body = super::error::ErrorBody)))]
pub async fn credentials(
    State(app): State<AppState>,
    Json(request): Json<GitAuthenticateRequest>,
) -> Result<Response> {
    blocking(move || {
        let host = request.host.filter(|h| !h.trim().is_empty());
        let protocol = request.protocol.filter(|p| !p.trim().is_empty());
        app.git.store_credentials(
            &request.username,
            &request.password,
            host.as_deref().unwrap_or("github.com"),
            protocol.as_deref().unwrap_or("https"),
        )
    })
    .await?;
    Ok(ok(StatusCode::OK))
}
