//! Interpreter routes: contexts (`/process/interpreter/context…`) and the execute WebSocket
//! (`/process/interpreter/execute`, daytona-wire §5.2).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use super::observe::in_request;
use super::{wire, ws};
use crate::error::{Error, Result};
use crate::interpreter::{ContextInfo, Job, JobEnd};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/process/interpreter/context",
            get(list_contexts).post(create_context),
        )
        .route("/process/interpreter/context/{id}", delete(delete_context))
        .route("/process/interpreter/execute", get(execute))
}

/// Path parameters by name (the routes are also nested under `/toolbox/{id}`).
#[derive(Debug, Deserialize)]
pub struct ContextPath {
    id: String,
}

/// `{cwd?, language?}`
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateContextRequest {
    /// Working directory (default: the work dir).
    pub cwd: Option<String>,
    /// python (default) or javascript.
    pub language: Option<String>,
}

/// `InterpreterContext`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterpreterContext {
    /// Context id.
    pub id: String,
    /// Working directory.
    pub cwd: String,
    /// RFC 3339.
    pub created_at: String,
    /// The worker is running.
    pub active: bool,
    /// python or javascript.
    pub language: String,
}

/// `{contexts}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ListContextsResponse {
    /// Every context but the default one.
    pub contexts: Vec<InterpreterContext>,
}

/// `{message}`
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    /// What happened.
    pub message: String,
}

fn context_dto(info: ContextInfo) -> InterpreterContext {
    InterpreterContext {
        id: info.id,
        cwd: info.cwd,
        created_at: wire::rfc3339_nano(info.created_at),
        active: info.active,
        language: info.language.to_string(),
    }
}

/// Creates a context and starts its worker.
#[utoipa::path(post, path = "/process/interpreter/context", tag = "process",
    request_body = CreateContextRequest,
    responses((status = 200, body = InterpreterContext), (status = 400, body = super::error::ErrorBody)))]
pub async fn create_context(
    State(app): State<AppState>,
    Json(request): Json<CreateContextRequest>,
) -> Result<axum::Json<InterpreterContext>> {
    let info = app
        .interpreters
        .create(request.cwd.as_deref(), request.language.as_deref())
        .await?;
    Ok(axum::Json(context_dto(info)))
}

/// Every context but the default one.
#[utoipa::path(get, path = "/process/interpreter/context", tag = "process",
    responses((status = 200, body = ListContextsResponse)))]
pub async fn list_contexts(State(app): State<AppState>) -> axum::Json<ListContextsResponse> {
    axum::Json(ListContextsResponse {
        contexts: app
            .interpreters
            .list()
            .into_iter()
            .map(context_dto)
            .collect(),
    })
}

/// Deletes a context and kills its worker.
#[utoipa::path(delete, path = "/process/interpreter/context/{id}", tag = "process",
    params(("id" = String, Path)),
    responses((status = 200, body = MessageResponse), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_context(
    State(app): State<AppState>,
    Path(ContextPath { id }): Path<ContextPath>,
) -> Result<axum::Json<MessageResponse>> {
    app.interpreters.delete(&id)?;
    Ok(axum::Json(MessageResponse {
        message: "Context deleted successfully".to_string(),
    }))
}

/// The first client message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteRequest {
    code: String,
    context_id: Option<String>,
    timeout: Option<i64>,
    envs: Option<BTreeMap<String, String>>,
}

/// Default job timeout when the request names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// WebSocket: send `{code, contextId?, timeout?, envs?}`, receive JSON frames
/// `{type: stdout|stderr|error|chart|control, text, name, value, traceback}`; a `control` frame
/// (`completed`, or `interrupted` when the code interrupted itself) and close 1000 at the end;
/// on timeout no `control` frame, close 4008; at shutdown an `error` frame named `SHUTTING_DOWN`
/// and close 1011.
#[utoipa::path(get, path = "/process/interpreter/execute", tag = "process", operation_id = "interpreter_execute",
    responses((status = 101, description = "WebSocket: JSON frames, close 1000 (done, after a `control` frame), 4008 (timeout, no `control` frame), 1008 (bad request), 1011 (worker failed; or toolboxd is shutting down, after an `error` frame named `SHUTTING_DOWN`)")))]
pub async fn execute(
    State(app): State<AppState>,
    upgrade: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response> {
    let upgrade = upgrade.map_err(|_| {
        Error::bad_request("this route is a WebSocket: send an Upgrade: websocket request")
    })?;
    Ok(ws::limited(upgrade, ws::MAX_REQUEST_MESSAGE)
        .on_upgrade(in_request(move |socket| run(app, socket))))
}

async fn run(app: AppState, mut socket: WebSocket) {
    let request = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => break serde_json::from_str::<ExecuteRequest>(&text),
            Some(Ok(Message::Binary(bytes))) => break serde_json::from_slice(&bytes),
            Some(Ok(Message::Close(_))) | None => return ws::finish(&mut socket).await,
            Some(Err(err)) => return ws::close_after(&mut socket, &err).await,
            Some(Ok(_)) => continue,
        }
    };
    let request = match request {
        Ok(request) => request,
        Err(err) => return close(socket, 1002, &format!("invalid request: {err}")).await,
    };
    if request.code.trim().is_empty() {
        return close(socket, 1008, "code cannot be empty").await;
    }
    let timeout = match request.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(0) => None,
        Some(seconds) if seconds > 0 => Some(Duration::from_secs(seconds as u64)),
        Some(_) => return close(socket, 1008, "timeout cannot be negative").await,
    };
    let context = match app.interpreters.context(request.context_id.as_deref()) {
        Ok(context) => context,
        Err(err) => return close(socket, 1008, &err.message).await,
    };
    let (sender, mut frames) = tokio::sync::mpsc::channel(1024);
    let interpreters = app.interpreters.clone();
    let job = Job {
        code: request.code,
        envs: request.envs.unwrap_or_default(),
        timeout,
    };
    let mut running =
        super::observe::spawn(async move { interpreters.execute(context, job, sender).await });
    let mut connected = true;
    let end = loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if connected
                        && socket.send(Message::Text(frame.to_string().into())).await.is_err()
                    {
                        // The job keeps running to its end; nobody is listening any more.
                        connected = false;
                    }
                }
                None => break running.await.unwrap_or(JobEnd::WorkerEnded),
            },
            incoming = socket.recv(), if connected => match incoming {
                None | Some(Ok(Message::Close(_))) => connected = false,
                // The job keeps running to its end, as when the client goes away.
                Some(Err(err)) => {
                    ws::close_after(&mut socket, &err).await;
                    connected = false;
                }
                Some(Ok(_)) => {}
            },
            end = &mut running => {
                // Frames sent before the end are still queued: deliver them first.
                while let Ok(frame) = frames.try_recv() {
                    if connected && socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                        connected = false;
                    }
                }
                break end.unwrap_or(JobEnd::WorkerEnded);
            }
        }
    };
    if !connected {
        return ws::finish(&mut socket).await;
    }
    // A timeout is the 4008 close alone, never a `control` frame before it: the TS SDK settles
    // on `interrupted` as a success and would not see the close.
    let (code, reason) = match end {
        JobEnd::Completed => (1000, String::new()),
        JobEnd::TimedOut => (
            4008,
            format!(
                "execution timed out after {} s",
                timeout.map_or(0, |t| t.as_secs())
            ),
        ),
        JobEnd::WorkerEnded => (1011, "worker process ended".to_string()),
        JobEnd::Deleted => (1001, "context shutdown".to_string()),
        // An error for both SDKs (the TypeScript one takes 1001 for a success).
        JobEnd::ShuttingDown => (
            1011,
            "SHUTTING_DOWN: toolboxd is shutting down; retry once the sandbox is back".to_string(),
        ),
    };
    close(socket, code, &reason).await;
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    ws::close(&mut socket, ws::close_frame(code, reason)).await;
}
