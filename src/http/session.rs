//! Session routes: `/process/session…` (create, list, get, delete, exec, command, logs, input).
//! The WebSocket follow of logs and the entrypoint come later.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use crate::error::{Error, Result};
use crate::process::{CommandInfo, SessionInfo};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/process/session", post(create_session).get(list_sessions))
        .route(
            "/process/session/{session_id}",
            get(get_session).delete(delete_session),
        )
        .route("/process/session/{session_id}/exec", post(execute_command))
        .route(
            "/process/session/{session_id}/command/{command_id}",
            get(get_command),
        )
        .route(
            "/process/session/{session_id}/command/{command_id}/logs",
            get(command_logs),
        )
        .route(
            "/process/session/{session_id}/command/{command_id}/input",
            post(send_input),
        )
}

/// Path parameters by name (the routes are also nested under `/toolbox/{id}`).
#[derive(Debug, Deserialize)]
pub struct SessionPath {
    session_id: String,
}

/// Path parameters by name.
#[derive(Debug, Deserialize)]
pub struct CommandPath {
    session_id: String,
    command_id: String,
}

/// `{sessionId}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionRequest {
    /// The new session's id (`entrypoint` is reserved).
    pub session_id: String,
}

/// `{sessionId, commands}`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The id.
    pub session_id: String,
    /// Commands, oldest first (always an array).
    pub commands: Vec<Command>,
}

/// `{id, command, exitCode?}`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    /// The command id.
    pub id: String,
    /// The command text.
    pub command: String,
    /// Exit code once complete (128 + signal when killed); absent while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// `{command, runAsync?, async?, suppressInputEcho?}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionExecuteRequest {
    /// Shell text, sourced in the session shell (state persists).
    pub command: String,
    /// Answer 202 at once with the command id.
    pub run_async: Option<bool>,
    /// Deprecated alias of `runAsync`.
    #[serde(rename = "async")]
    pub var_async: Option<bool>,
    /// Do not echo input sent to the command into its stdout log.
    pub suppress_input_echo: Option<bool>,
}

/// `{cmdId, output, stdout, stderr, exitCode}`: every key present; async → only `cmdId` set.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionExecuteResponse {
    /// The command id.
    pub cmd_id: String,
    /// Both streams with the 3-byte markers `\u0001\u0001\u0001` / `\u0002\u0002\u0002`.
    pub output: Option<String>,
    /// stdout alone.
    pub stdout: Option<String>,
    /// stderr alone.
    pub stderr: Option<String>,
    /// Exit code.
    pub exit_code: Option<i32>,
}

/// `{output, stdout, stderr}`
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCommandLogsResponse {
    /// Both streams with the 3-byte markers.
    pub output: String,
    /// stdout alone (no markers).
    pub stdout: String,
    /// stderr alone (no markers).
    pub stderr: String,
}

/// `{data}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct SessionSendInputRequest {
    /// Text for the command's stdin (a newline is added if missing).
    pub data: String,
}

fn session_dto(info: SessionInfo) -> Session {
    Session {
        session_id: info.id,
        commands: info.commands.into_iter().map(command_dto).collect(),
    }
}

fn command_dto(info: CommandInfo) -> Command {
    Command {
        id: info.id,
        command: info.command,
        exit_code: info.exit_code,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts a session (a long-lived shell).
#[utoipa::path(post, path = "/process/session", tag = "process", request_body = CreateSessionRequest,
    responses((status = 201, description = "created"), (status = 400, body = super::error::ErrorBody),
        (status = 409, description = "the id exists", body = super::error::ErrorBody)))]
pub async fn create_session(
    State(app): State<AppState>,
    Json(request): Json<CreateSessionRequest>,
) -> Result<StatusCode> {
    app.sessions.create(&request.session_id)?;
    Ok(StatusCode::CREATED)
}

/// Every session (the entrypoint excluded).
#[utoipa::path(get, path = "/process/session", tag = "process",
    responses((status = 200, body = [Session])))]
pub async fn list_sessions(State(app): State<AppState>) -> axum::Json<Vec<Session>> {
    axum::Json(app.sessions.list().into_iter().map(session_dto).collect())
}

/// One session with its commands.
#[utoipa::path(get, path = "/process/session/{session_id}", tag = "process",
    params(("session_id" = String, Path)),
    responses((status = 200, body = Session), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_session(
    State(app): State<AppState>,
    Path(SessionPath { session_id }): Path<SessionPath>,
) -> Result<axum::Json<Session>> {
    Ok(axum::Json(session_dto(app.sessions.get(&session_id)?)))
}

/// Kills the session's process tree (SIGTERM, up to 5 s, SIGKILL) and forgets it.
#[utoipa::path(delete, path = "/process/session/{session_id}", tag = "process",
    params(("session_id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_session(
    State(app): State<AppState>,
    Path(SessionPath { session_id }): Path<SessionPath>,
) -> Result<StatusCode> {
    app.sessions.delete(&session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs a command in the session: to completion (200) or in the background (202).
#[utoipa::path(post, path = "/process/session/{session_id}/exec", tag = "process",
    params(("session_id" = String, Path)), request_body = SessionExecuteRequest,
    responses((status = 200, body = SessionExecuteResponse),
        (status = 202, description = "started; only cmdId is set", body = SessionExecuteResponse),
        (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn execute_command(
    State(app): State<AppState>,
    Path(SessionPath { session_id }): Path<SessionPath>,
    Json(request): Json<SessionExecuteRequest>,
) -> Result<Response> {
    let run_async = request.run_async.or(request.var_async).unwrap_or(false);
    let (cmd_id, outcome) = app
        .sessions
        .exec(
            &session_id,
            &request.command,
            run_async,
            request.suppress_input_echo.unwrap_or(false),
        )
        .await?;
    let Some(outcome) = outcome else {
        let body = SessionExecuteResponse {
            cmd_id,
            output: None,
            stdout: None,
            stderr: None,
            exit_code: None,
        };
        return Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response());
    };
    let body = SessionExecuteResponse {
        cmd_id: outcome.cmd_id,
        output: Some(text(&outcome.logs.output)),
        stdout: Some(text(&outcome.logs.stdout)),
        stderr: Some(text(&outcome.logs.stderr)),
        exit_code: Some(outcome.exit_code),
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// One command (`exitCode` absent while it runs).
#[utoipa::path(get, path = "/process/session/{session_id}/command/{command_id}", tag = "process",
    params(("session_id" = String, Path), ("command_id" = String, Path)),
    responses((status = 200, body = Command), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_command(
    State(app): State<AppState>,
    Path(CommandPath {
        session_id,
        command_id,
    }): Path<CommandPath>,
) -> Result<axum::Json<Command>> {
    Ok(axum::Json(command_dto(
        app.sessions.command(&session_id, &command_id)?,
    )))
}

/// A snapshot of a command's logs as JSON (the WebSocket follow is not served yet).
#[utoipa::path(get, path = "/process/session/{session_id}/command/{command_id}/logs", tag = "process",
    params(("session_id" = String, Path), ("command_id" = String, Path)),
    responses((status = 200, body = SessionCommandLogsResponse), (status = 404, body = super::error::ErrorBody)))]
pub async fn command_logs(
    State(app): State<AppState>,
    Path(CommandPath {
        session_id,
        command_id,
    }): Path<CommandPath>,
) -> Result<axum::Json<SessionCommandLogsResponse>> {
    let logs = app.sessions.logs(&session_id, &command_id).await?;
    Ok(axum::Json(SessionCommandLogsResponse {
        output: text(&logs.output),
        stdout: text(&logs.stdout),
        stderr: text(&logs.stderr),
    }))
}

/// Writes to a running async command's stdin (410 once it completed).
#[utoipa::path(post, path = "/process/session/{session_id}/command/{command_id}/input", tag = "process",
    params(("session_id" = String, Path), ("command_id" = String, Path)),
    request_body = SessionSendInputRequest,
    responses((status = 204, description = "written"), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 410, description = "COMMAND_ALREADY_COMPLETED", body = super::error::ErrorBody)))]
pub async fn send_input(
    State(app): State<AppState>,
    Path(CommandPath {
        session_id,
        command_id,
    }): Path<CommandPath>,
    Json(request): Json<SessionSendInputRequest>,
) -> Result<StatusCode> {
    if request.data.is_empty() {
        return Err(Error::invalid_body("field `data` cannot be empty"));
    }
    app.sessions
        .input(&session_id, &command_id, &request.data)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
