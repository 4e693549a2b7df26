//! File routes that answer with metadata: list, info, folder, delete, move, permissions.
//! Transfers live in `download.rs` and `upload.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{blocking, flag, required_path, Flag, Query, QueryPath};
use super::{stream, wire};
use crate::error::{Error, Result};
use crate::files::{FileInfo, PermissionsChange};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files", get(list_files).delete(delete_file))
        .route("/files/", get(list_files).delete(delete_file))
        .route("/files/info", get(file_info))
        .route("/files/folder", post(create_folder))
        .route("/files/move", post(move_file))
        .route("/files/permissions", post(set_permissions))
}

/// Daytona's `FileInfo`; every field is always present.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInfoDto {
    /// Base name.
    pub name: String,
    /// Absolute path of the entry.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Go `FileMode.String()`, e.g. `-rw-r--r--`, `drwxr-xr-x`.
    pub mode: String,
    /// Deprecated: Go `time.Time.String()`.
    pub mod_time: String,
    /// RFC 3339 with nanoseconds.
    pub modified_at: String,
    /// True for a directory.
    pub is_dir: bool,
    /// Numeric uid as a string.
    pub owner: String,
    /// Numeric gid as a string.
    pub group: String,
    /// `%04o` of the permission bits.
    pub permissions: String,
    /// Beyond Daytona, only for a path that is not valid UTF-8 (`name` and `path` then show
    /// U+FFFD for its other bytes): the path's bytes percent-encoded, to be put in a query as
    /// they are (`/files/download?path=<rawPath>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_path: Option<String>,
}

impl FileInfoDto {
    /// Wire form of `info`.
    pub fn from_info(info: FileInfo) -> FileInfoDto {
        FileInfoDto {
            raw_path: wire::raw_path(&info.path),
            name: info.name,
            path: info.path.to_string_lossy().into_owned(),
            size: info.size,
            mode: wire::go_mode_string(info.mode),
            mod_time: wire::go_time_string(info.modified),
            modified_at: wire::rfc3339_nano(info.modified),
            is_dir: info.is_dir,
            owner: info.uid.to_string(),
            group: info.gid.to_string(),
            permissions: wire::permissions_string(info.mode),
        }
    }
}

/// `?path=&depth=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Directory to list (default `.`, the work dir).
    #[param(value_type = Option<String>, pattern = r"^[^\x00]*$")]
    pub path: Option<QueryPath>,
    /// Levels to descend, 1 (default) = children only.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 4294967295_i64)]
    pub depth: Option<String>,
}

/// `?path=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// A file or directory; relative to the work dir unless absolute.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: Option<QueryPath>,
}

/// `?path=&mode=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FolderQuery {
    /// The directory to create (parents too).
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: Option<QueryPath>,
    /// Octal mode, default `0755`.
    #[param(pattern = r"^((0o)?0*[0-7]{1,4})?$")]
    pub mode: Option<String>,
}

/// `?path=&recursive=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// What to delete.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: Option<QueryPath>,
    /// `true` to delete a directory tree.
    #[param(value_type = Option<Flag>)]
    pub recursive: Option<String>,
}

/// `?source=&destination=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MoveQuery {
    /// What to move.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub source: Option<QueryPath>,
    /// Where to; must not exist.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub destination: Option<QueryPath>,
}

/// `?path=&mode=&owner=&group=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PermissionsQuery {
    /// The file or directory.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: Option<QueryPath>,
    /// Octal mode.
    #[param(pattern = r"^((0o)?0*[0-7]{1,4})?$")]
    pub mode: Option<String>,
    /// User name or uid.
    pub owner: Option<String>,
    /// Group name or gid.
    pub group: Option<String>,
}

/// Lists a directory (sorted; `depth` levels; every entry has `path`). The array is streamed as
/// the walk goes (see `stream.rs`); the directory itself is checked before the first byte.
#[utoipa::path(get, path = "/files", tag = "files", params(ListQuery),
    responses((status = 200, body = [FileInfoDto]), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn list_files(
    State(app): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response> {
    let shown = query
        .path
        .clone()
        .filter(|p| !p.0.is_empty())
        .unwrap_or_else(|| QueryPath(".".into()));
    let depth = match query.depth.as_deref() {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(depth) if depth >= 1 => depth,
            _ => {
                return Err(Error::bad_request(format!(
                    "invalid depth {text:?}: expected an integer >= 1"
                )))
            }
        },
    };
    let dir = app.files.resolve(shown.as_os_str())?;
    let files = app.files.clone();
    stream::json_array(
        move || files.open_listing(&dir, depth),
        |listing, out| {
            for info in listing {
                if !out.push(&FileInfoDto::from_info(info)) {
                    break;
                }
            }
            Ok(())
        },
    )
    .await
}

/// Stats one path (symlinks followed).
#[utoipa::path(get, path = "/files/info", tag = "files", params(PathQuery),
    responses((status = 200, body = FileInfoDto), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn file_info(
    State(app): State<AppState>,
    Query(query): Query<PathQuery>,
) -> Result<Json<FileInfoDto>> {
    let path = app
        .files
        .resolve(required_path(&query.path, "path")?.as_os_str())?;
    let files = app.files.clone();
    let info = blocking(move || files.info(&path)).await?;
    Ok(Json(FileInfoDto::from_info(info)))
}

/// `mkdir -p` with a mode; an existing directory is fine. Answers 201.
#[utoipa::path(post, path = "/files/folder", tag = "files", params(FolderQuery),
    responses((status = 201), (status = 400, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn create_folder(
    State(app): State<AppState>,
    Query(query): Query<FolderQuery>,
) -> Result<StatusCode> {
    let path = app
        .files
        .resolve(required_path(&query.path, "path")?.as_os_str())?;
    let files = app.files.clone();
    blocking(move || files.create_folder(&path, query.mode.as_deref().filter(|m| !m.is_empty())))
        .await?;
    Ok(StatusCode::CREATED)
}

/// Deletes a file, or a directory with `recursive=true`. Answers 204.
///
/// A symlink is deleted as a link, also as `link/`. A tree is deleted whole or not at all: a mount
/// point, a read-only filesystem, an immutable file or a missing permission anywhere in it is
/// refused (409 or 403) before anything is deleted.
#[utoipa::path(delete, path = "/files", tag = "files", params(DeleteQuery),
    responses((status = 204), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn delete_file(
    State(app): State<AppState>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode> {
    let path = app
        .files
        .resolve(required_path(&query.path, "path")?.as_os_str())?;
    let recursive = flag(&query.recursive, "recursive")?;
    let files = app.files.clone();
    blocking(move || files.delete(&path, recursive)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves a file or tree, across filesystems too; 409 when the destination exists.
///
/// A symlink moves as a link, also as `link/`. A cross-filesystem move whose source cannot be
/// removed answers the error (403, 409) and leaves no copy.
#[utoipa::path(post, path = "/files/move", tag = "files", params(MoveQuery),
    responses((status = 200, description = "moved (empty body)"),
        (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn move_file(
    State(app): State<AppState>,
    Query(query): Query<MoveQuery>,
) -> Result<StatusCode> {
    let source = app
        .files
        .resolve(required_path(&query.source, "source")?.as_os_str())?;
    let destination = app
        .files
        .resolve(required_path(&query.destination, "destination")?.as_os_str())?;
    let files = app.files.clone();
    blocking(move || files.move_path(&source, &destination)).await?;
    Ok(StatusCode::OK)
}

/// Sets mode, owner and group.
#[utoipa::path(post, path = "/files/permissions", tag = "files", params(PermissionsQuery),
    responses((status = 200), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn set_permissions(
    State(app): State<AppState>,
    Query(query): Query<PermissionsQuery>,
) -> Result<StatusCode> {
    let path = app
        .files
        .resolve(required_path(&query.path, "path")?.as_os_str())?;
    let change = PermissionsChange {
        mode: query.mode,
        owner: query.owner,
        group: query.group,
    };
    if change.mode.as_deref().unwrap_or("").is_empty()
        && change.owner.as_deref().unwrap_or("").is_empty()
        && change.group.as_deref().unwrap_or("").is_empty()
    {
        return Err(Error::bad_request(
            "nothing to change: give at least one of mode, owner, group",
        ));
    }
    let files = app.files.clone();
    blocking(move || files.set_permissions(&path, &change)).await?;
    Ok(StatusCode::OK)
}
