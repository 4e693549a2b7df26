//! File watching routes: the WebSocket `GET /files/watch` and the long-poll form
//! (`POST /files/watch`, `GET /files/watch/{id}/events`, `DELETE /files/watch/{id}`).
//! Events are `{type, path, isDir, timestamp, oldPath?, coalesced?}`.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{blocking, flag, required_path, Flag, Json, Query, QueryPath};
use super::observe::in_request;
use super::wire::rfc3339_nano;
use super::ws;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::watch::{EndReason, Subscription, WatchEvent};

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files/watch", get(watch_socket).post(create_watcher))
        .route("/files/watch/{id}", delete(delete_watcher))
        .route("/files/watch/{id}/events", get(poll_events))
}

/// A WebSocket upgrade, or the plain HTTP request it is not.
type MaybeUpgrade =
    std::result::Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// `?path=&recursive=&includeGit=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct WatchQuery {
    /// The file or directory to watch; relative to the work dir unless absolute.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: Option<QueryPath>,
    /// Watch subdirectories too (default false).
    #[param(value_type = Option<Flag>)]
    pub recursive: Option<String>,
    /// Report changes inside `.git` directories too (default false).
    #[param(value_type = Option<Flag>)]
    pub include_git: Option<String>,
}

/// `{path, recursive?, includeGit?}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWatcherRequest {
    /// The file or directory to watch.
    #[schema(min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: String,
    /// Watch subdirectories too.
    #[serde(default)]
    pub recursive: bool,
    /// Report changes inside `.git` directories too.
    #[serde(default)]
    pub include_git: bool,
}

/// `{id}`
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateWatcherResponse {
    /// The watcher; poll `/files/watch/{id}/events`.
    pub id: String,
}

/// One event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchEventDto {
    /// `create`, `modify`, `remove`, `rename`, or `overflow` (events were lost, or a burst was
    /// summed up: rescan the subtree at `path`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The path (the new one for a rename; for an overflow, the directory to rescan).
    pub path: String,
    /// The old path of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// Whether the path is a directory.
    pub is_dir: bool,
    /// When toolboxd saw it (RFC 3339).
    pub timestamp: String,
    /// On an overflow that sums up a burst (more than 256 events in a second): how many events
    /// it stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coalesced: Option<u64>,
}

impl WatchEventDto {
    fn from_event(event: WatchEvent) -> WatchEventDto {
        WatchEventDto {
            kind: event.change.as_str().to_string(),
            path: event.path.to_string_lossy().into_owned(),
            old_path: event.old_path.map(|p| p.to_string_lossy().into_owned()),
            is_dir: event.is_dir,
            timestamp: rfc3339_nano(event.timestamp),
            coalesced: event.coalesced,
        }
    }
}

/// How a watcher ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchEndDto {
    /// `removed` (the watched path went away) or `failed`.
    pub reason: String,
    /// What happened.
    pub message: String,
}

impl WatchEndDto {
    fn from_reason(reason: EndReason) -> WatchEndDto {
        match reason {
            EndReason::Removed(path) => WatchEndDto {
                reason: "removed".to_string(),
                message: format!("the watched path was removed: {}", path.display()),
            },
            EndReason::Failed(err) => WatchEndDto {
                reason: "failed".to_string(),
                message: err.message,
            },
        }
    }
}

/// `?cursor=&timeout=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// The `cursor` of the previous answer (absent: from the oldest event kept).
    pub cursor: Option<u64>,
    /// Seconds to wait for an event when there is none (default 30, most 60).
    #[param(minimum = 0)]
    pub timeout: Option<f64>,
}

/// Events since the cursor.
#[derive(Debug, Serialize, ToSchema)]
pub struct PollResponse {
    /// The events, oldest first.
    pub events: Vec<WatchEventDto>,
    /// Pass this as `cursor` next time.
    pub cursor: u64,
    /// Events before the oldest kept were dropped (the watcher was not polled for a while).
    pub dropped: bool,
    /// Set once the watcher has ended; nothing more will come.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<WatchEndDto>,
}

async fn subscribe(
    app: &AppState,
    path: &std::ffi::OsStr,
    recursive: bool,
    include_git: bool,
) -> Result<Subscription> {
    let path = app.files.resolve(path)?;
    let watch = app.watch.clone();
    blocking(move || watch.subscribe(&path, recursive, include_git)).await
}

/// WebSocket: one JSON event per text frame. The socket closes 1000 when the watched path is
/// removed, 1011 when the watcher fails (e.g. out of inotify watches); closing it releases the
/// watch. Errors before the upgrade (missing path, 507 out of watches) are plain HTTP errors.
#[utoipa::path(get, path = "/files/watch", tag = "files", params(WatchQuery),
    responses((status = 101, description = "WebSocket: JSON events"),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 507, description = "out of inotify watches", body = super::error::ErrorBody)))]
pub async fn watch_socket(
    State(app): State<AppState>,
    Query(query): Query<WatchQuery>,
    upgrade: MaybeUpgrade,
) -> Result<Response> {
    let path = required_path(&query.path, "path")?.as_os_str();
    let recursive = flag(&query.recursive, "recursive")?;
    let include_git = flag(&query.include_git, "includeGit")?;
    let Ok(upgrade) = upgrade else {
        return Err(Error::bad_request(
            "GET /files/watch is a WebSocket; without one, use POST /files/watch and poll",
        ));
    };
    let subscription = subscribe(&app, path, recursive, include_git).await?;
    Ok(ws::limited(upgrade, ws::MAX_LISTENER_MESSAGE)
        .on_upgrade(in_request(move |socket| stream(subscription, socket)))
        .into_response())
}

async fn stream(mut subscription: Subscription, mut socket: WebSocket) {
    let close = loop {
        tokio::select! {
            event = subscription.events.recv() => match event {
                Some(event) => {
                    let text = serde_json::to_string(&WatchEventDto::from_event(event))
                        .unwrap_or_default();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                None => break Some(match subscription.end_reason() {
                    Some(EndReason::Removed(path)) => {
                        (1000, format!("watched path removed: {}", path.display()))
                    }
                    Some(EndReason::Failed(err)) => (1011, err.message),
                    None => (1011, "the watcher stopped".to_string()),
                }),
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(err)) => break ws::refusal(&err).map(|frame| (frame.code, frame.reason.to_string())),
                Some(Ok(_)) => {}
            },
        }
    };
    // Release the kernel watches before anything else (off the async workers: the hub's lock
    // may be held while it walks a new directory tree).
    let _ = super::observe::spawn_blocking(move || drop(subscription)).await;
    match close {
        Some((code, reason)) => ws::close(&mut socket, ws::close_frame(code, &reason)).await,
        None => ws::finish(&mut socket).await,
    }
}

/// Creates a long-poll watcher; it ends when deleted, when its path is removed, or when it is
/// not polled for 5 minutes.
#[utoipa::path(post, path = "/files/watch", tag = "files", request_body = CreateWatcherRequest,
    responses((status = 201, body = CreateWatcherResponse),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 507, description = "out of inotify watches", body = super::error::ErrorBody)))]
pub async fn create_watcher(
    State(app): State<AppState>,
    Json(body): Json<CreateWatcherRequest>,
) -> Result<Response> {
    let path = app.files.resolve(&body.path)?;
    let watch = app.watch.clone();
    let handle = tokio::runtime::Handle::current();
    let id =
        blocking(move || watch.create_poller(&handle, &path, body.recursive, body.include_git))
            .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreateWatcherResponse { id }),
    )
        .into_response())
}

/// Events since `cursor`, waiting up to `timeout` seconds when there are none yet.
#[utoipa::path(get, path = "/files/watch/{id}/events", tag = "files",
    params(("id" = String, Path, description = "The watcher"), PollQuery),
    responses((status = 200, body = PollResponse),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn poll_events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PollQuery>,
) -> Result<axum::Json<PollResponse>> {
    let wait = match query.timeout {
        None => Duration::from_secs(30),
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::from_secs_f64(seconds.min(60.0))
        }
        Some(_) => {
            return Err(Error::bad_request(
                "timeout must be a number of seconds >= 0",
            ))
        }
    };
    let poll = app.watch.poll(&id, query.cursor, wait).await?;
    Ok(axum::Json(PollResponse {
        events: poll
            .events
            .into_iter()
            .map(WatchEventDto::from_event)
            .collect(),
        cursor: poll.cursor,
        dropped: poll.dropped,
        ended: poll.ended.map(WatchEndDto::from_reason),
    }))
}

/// Ends a long-poll watcher.
#[utoipa::path(delete, path = "/files/watch/{id}", tag = "files",
    params(("id" = String, Path, description = "The watcher")),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_watcher(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    app.watch.delete_poller(&id)?;
    Ok(StatusCode::NO_CONTENT)
}
