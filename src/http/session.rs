//! Session routes: `/process/session…` (create, list, get, delete, exec, command, logs, input),
//! the log WebSocket (`follow=true`), and the entrypoint's `/process/session/entrypoint/logs`.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{blocking, flag, Flag, Json, Query};
use super::observe::in_request;
use super::ws;
use crate::error::{Error, Result};
use crate::process::{
    strip_markers, CommandInfo, ExecOptions, LogFollower, LogFormat, MarkerStripper, SessionInfo,
    ENTRYPOINT_COMMAND, ENTRYPOINT_SESSION,
};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/process/session", post(create_session).get(list_sessions))
        .route(
            "/process/session/{session_id}",
            get(get_session).delete(delete_session),
        )
        .route("/process/session/entrypoint/logs", get(entrypoint_logs))
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

/// A WebSocket upgrade, or the plain HTTP request it is not.
type MaybeUpgrade =
    std::result::Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// `?follow=&offset=` of the logs routes.
#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    follow: Option<String>,
    offset: Option<String>,
}

/// `{sessionId}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionRequest {
    /// The new session's id (`entrypoint` is reserved).
    #[schema(
        pattern = r"^(?!\s*$)(?!\.\.?$)(?!entrypoint$)[^/\x00-\x1f\x7f-\x9f]+$",
        max_length = 255
    )]
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
    /// Why it ended (`exited`, `signal`, `killed`, `timeout`, `shell_unusable`); absent while
    /// running. Beyond Daytona. `shell_unusable`: the command ended (with its own exit code)
    /// leaving its session shell unable to run commands (e.g. `ulimit -n 3`), so the shell was
    /// replaced and shell state is lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_cause: Option<String>,
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
    /// Seconds (absent or 0: none), from when the shell begins the command. Beyond Daytona: a
    /// command still running then ends with exit code 124 and `exitCause: "timeout"`; its
    /// session shell is killed (shell state is lost, commands queued behind it end as killed,
    /// the next command starts a new shell). A sync exec answers 408 `PROCESS_EXECUTION_TIMEOUT`.
    pub timeout: Option<u64>,
}

/// `{cmdId, output, stdout, stderr, exitCode}`: every key present; async → only `cmdId` set.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionExecuteResponse {
    /// The command id.
    pub cmd_id: String,
    /// Both streams interleaved in arrival order, without stream markers. Beyond Daytona, which
    /// keeps its 3-byte markers here; SDKs 0.27–0.166 (by `X-Daytona-SDK-Version`) still get them
    /// (`\u0001\u0001\u0001` / `\u0002\u0002\u0002`), since they demux `output` themselves.
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
    /// Both streams interleaved in arrival order, without stream markers (beyond Daytona, which
    /// keeps its 3-byte markers here).
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
    #[schema(min_length = 1)]
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
        exit_cause: info.exit_cause.map(|cause| cause.as_str().to_string()),
    }
}

/// A log as text (invalid UTF-8 becomes U+FFFD), without a copy when it is valid.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
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
pub async fn list_sessions(State(app): State<AppState>) -> Result<axum::Json<Vec<Session>>> {
    let sessions = blocking(move || Ok(app.sessions.list())).await?;
    Ok(axum::Json(sessions.into_iter().map(session_dto).collect()))
}

/// One session with its commands.
#[utoipa::path(get, path = "/process/session/{session_id}", tag = "process",
    params(("session_id" = String, Path)),
    responses((status = 200, body = Session), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_session(
    State(app): State<AppState>,
    Path(SessionPath { session_id }): Path<SessionPath>,
) -> Result<axum::Json<Session>> {
    let session = blocking(move || app.sessions.get(&session_id)).await?;
    Ok(axum::Json(session_dto(session)))
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
        (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 408, description = "sync exec ran past its `timeout`: the session shell was killed", body = super::error::ErrorBody),
        (status = 507, description = "sync exec ended (its exit code is in the message) but its log could not be written whole: the disk is full", body = super::error::ErrorBody),
        (status = 503, description = "SHUTTING_DOWN: toolboxd is stopping; the command was stopped or not started", body = super::error::ErrorBody)))]
pub async fn execute_command(
    State(app): State<AppState>,
    Path(SessionPath { session_id }): Path<SessionPath>,
    headers: HeaderMap,
    Json(request): Json<SessionExecuteRequest>,
) -> Result<Response> {
    let run_async = request.run_async.or(request.var_async).unwrap_or(false);
    let (cmd_id, outcome) = app
        .sessions
        .exec(
            &session_id,
            &request.command,
            ExecOptions {
                run_async,
                suppress_echo: request.suppress_input_echo.unwrap_or(false),
                timeout: request
                    .timeout
                    .filter(|t| *t > 0)
                    .map(std::time::Duration::from_secs),
            },
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
    // `output` is the interleaved text without markers, except for SDKs 0.27–0.166, which get
    // the shape they parse (daytona-wire §4.2): the raw log, which they demux themselves, and no
    // `stdout`/`stderr`. Before 0.27 there are no demuxed streams either.
    let logs = outcome.logs;
    let (output, split) = match client_version(&headers).format(false) {
        LogFormat::Combined => (strip_markers(logs.output), false),
        LogFormat::Raw => (logs.output, false),
        LogFormat::Split => (strip_markers(logs.output), true),
    };
    let body = SessionExecuteResponse {
        cmd_id: outcome.cmd_id,
        output: Some(text(output)),
        stdout: split.then(|| text(logs.stdout)),
        stderr: split.then(|| text(logs.stderr)),
        exit_code: Some(outcome.exit_code),
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// One command (`exitCode` absent while it runs). A command evicted from the session's bounded
/// history (`--max-history`, `--max-history-bytes`) is a 404 whose message says so.
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
    let command = blocking(move || app.sessions.command(&session_id, &command_id)).await?;
    Ok(axum::Json(command_dto(command)))
}

/// A command's logs: JSON `{output, stdout, stderr}` over plain HTTP; over a WebSocket the raw
/// bytes of the log (markers included) in binary frames, live with `follow=true`, then close 1000.
/// Clients older than SDK 0.167 (by `X-Daytona-SDK-Version`), and clients without a version,
/// get `text/plain` as Daytona's daemon gives them (see the README).
#[utoipa::path(get, path = "/process/session/{session_id}/command/{command_id}/logs", tag = "process",
    params(("session_id" = String, Path), ("command_id" = String, Path),
        ("follow" = Option<Flag>, Query, description = "WebSocket only: stream until the command ends"),
        ("offset" = Option<u64>, Query, description = "WebSocket only: start at this byte of the log")),
    responses((status = 200, body = SessionCommandLogsResponse),
        (status = 101, description = "WebSocket: binary frames of the marker-framed log, close 1000 at the end"),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn command_logs(
    State(app): State<AppState>,
    Path(CommandPath {
        session_id,
        command_id,
    }): Path<CommandPath>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
    upgrade: MaybeUpgrade,
) -> Result<Response> {
    logs_response(app, &session_id, &command_id, query, &headers, upgrade).await
}

/// The entrypoint command's logs (as `…/command/entrypoint_command/logs`).
#[utoipa::path(get, path = "/process/session/entrypoint/logs", tag = "process",
    params(("follow" = Option<Flag>, Query, description = "WebSocket only: stream until the entrypoint ends"),
        ("offset" = Option<u64>, Query, description = "WebSocket only: start at this byte of the log")),
    responses((status = 200, body = SessionCommandLogsResponse),
        (status = 101, description = "WebSocket: binary frames of the marker-framed log, close 1000 at the end"),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn entrypoint_logs(
    State(app): State<AppState>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
    upgrade: MaybeUpgrade,
) -> Result<Response> {
    logs_response(
        app,
        ENTRYPOINT_SESSION,
        ENTRYPOINT_COMMAND,
        query,
        &headers,
        upgrade,
    )
    .await
}

async fn logs_response(
    app: AppState,
    session_id: &str,
    command_id: &str,
    query: LogsQuery,
    headers: &HeaderMap,
    upgrade: MaybeUpgrade,
) -> Result<Response> {
    let follow = flag(&query.follow, "follow")?;
    let offset = match query.offset.as_deref() {
        None | Some("") => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            Error::bad_request(format!(
                "invalid value {text:?} for `offset`: expected a byte count"
            ))
        })?,
    };
    let client = client_version(headers);
    let format = client.format(session_id == ENTRYPOINT_SESSION);
    let Ok(upgrade) = upgrade else {
        let logs = app.sessions.logs(session_id, command_id).await?;
        let plain = |body: Vec<u8>| {
            let headers = [(CONTENT_TYPE, "text/plain; charset=utf-8")];
            (headers, text(body)).into_response()
        };
        // A client without a version may still ask for JSON explicitly (our extension).
        let wants_json = client.version.is_none() && accepts_json(headers);
        return Ok(match format {
            LogFormat::Combined if !wants_json => plain(strip_markers(logs.output)),
            LogFormat::Raw if !wants_json => plain(logs.output),
            _ => axum::Json(SessionCommandLogsResponse {
                output: text(strip_markers(logs.output)),
                stdout: text(logs.stdout),
                stderr: text(logs.stderr),
            })
            .into_response(),
        });
    };
    let follower = app
        .sessions
        .follow(session_id, command_id, offset, follow)?;
    // Echo the SDK-version subprotocol if one was offered, and select nothing otherwise: the TS
    // `ws` client aborts on a subprotocol it did not offer.
    let upgrade = match client.protocol {
        Some(protocol) => upgrade.protocols([protocol]),
        None => upgrade,
    };
    let stripper = (format == LogFormat::Combined).then(MarkerStripper::default);
    let upgrade = ws::limited(upgrade, ws::MAX_LISTENER_MESSAGE);
    Ok(upgrade.on_upgrade(in_request(move |socket| {
        stream_log(socket, follower, stripper)
    })))
}

/// The SDK version a client announced, and the WebSocket subprotocol it announced it in.
struct ClientVersion {
    version: Option<String>,
    protocol: Option<String>,
    split_output: bool,
}

impl ClientVersion {
    fn format(&self, entrypoint: bool) -> LogFormat {
        LogFormat::for_client(self.version.as_deref(), self.split_output, entrypoint)
    }
}

const VERSION_PROTOCOL: &str = "X-Daytona-SDK-Version~";

/// `X-Daytona-SDK-Version`, or failing that a `X-Daytona-SDK-Version~<v>` subprotocol (browsers
/// cannot set headers on a WebSocket), and `X-Daytona-Split-Output`.
fn client_version(headers: &HeaderMap) -> ClientVersion {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let protocol = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find(|protocol| protocol.starts_with(VERSION_PROTOCOL))
        .map(str::to_string);
    let version = header("x-daytona-sdk-version")
        .map(str::to_string)
        .or_else(|| Some(protocol.as_deref()?[VERSION_PROTOCOL.len()..].to_string()))
        .filter(|version| !version.trim().is_empty());
    ClientVersion {
        version,
        protocol,
        split_output: header("x-daytona-split-output")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true")),
    }
}

/// Whether `Accept` names `application/json` (a bare `*/*` does not count).
fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            item.split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// Sends the log in binary frames; reads (and drops) client frames so pings are answered and a
/// close is noticed.
async fn stream_log(
    socket: WebSocket,
    mut follower: LogFollower,
    mut stripper: Option<MarkerStripper>,
) {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut incoming) = socket.split();
    let mut reader = super::observe::spawn(async move {
        while let Some(message) = incoming.next().await {
            match message {
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(err) => return ws::refusal(&err),
            }
        }
        None
    });
    let code = loop {
        tokio::select! {
            chunk = follower.next_chunk() => match chunk {
                Ok(Some(bytes)) => {
                    let bytes = match stripper.as_mut() {
                        Some(stripper) => stripper.feed(&bytes),
                        None => bytes,
                    };
                    if bytes.is_empty() {
                        continue;
                    }
                    if sink.send(Message::Binary(bytes.into())).await.is_err() {
                        ws::finish(&mut sink).await;
                        reader.abort();
                        return;
                    }
                }
                Ok(None) => {
                    let rest = stripper.as_mut().map(MarkerStripper::finish).unwrap_or_default();
                    if !rest.is_empty() && sink.send(Message::Binary(rest.into())).await.is_err() {
                        ws::finish(&mut sink).await;
                        reader.abort();
                        return;
                    }
                    break 1000;
                }
                Err(err) => {
                    tracing::warn!("reading a command log failed: {err}");
                    break 1011;
                }
            },
            // The client closed, went away or sent too much.
            refusal = &mut reader => {
                ws::close_sink_after(&mut sink, refusal.ok().flatten()).await;
                return;
            }
        }
    };
    ws::close_split(&mut sink, &mut reader, ws::close_frame(code, "")).await;
}

/// Queues input for a running async command's stdin (410 once it completed). The answer comes
/// once the bytes are queued, not when the command reads them; up to 1 MiB waits per command
/// (one larger input alone), and past that the request waits for the command to read, or ends
/// with 410 when the command ends first.
#[utoipa::path(post, path = "/process/session/{session_id}/command/{command_id}/input", tag = "process",
    params(("session_id" = String, Path), ("command_id" = String, Path)),
    request_body = SessionSendInputRequest,
    responses((status = 204, description = "queued for the command's stdin"), (status = 400, body = super::error::ErrorBody),
        (status = 404, description = "no such session or command, or the command was evicted from the session's history", body = super::error::ErrorBody),
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
