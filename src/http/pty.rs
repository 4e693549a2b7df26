//! PTY routes: `/process/pty…` (create, list, get, kill, resize) and the two WebSockets,
//! `/process/pty/{id}/connect` and `/process/pty/create-connect`.
//!
//! The socket: `{"type":"control","status":"connected"}` first, then the scrollback as binary
//! frames, then live output as binary frames; every client frame, text or binary, is typed. At
//! the end, `{"type":"control","status":"exited","exitCode":N[,"exitReason"]}` (only for a client
//! that offered `X-Daytona-Pty-Exit-Control`), then a close frame, 1000 for exit 0 and 1011
//! otherwise, whose reason is `{"exitCode":N[,"exitReason"]}`. A client that falls too far
//! behind is closed with 1008 `slow consumer`.

use std::collections::BTreeMap;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::extract::{blocking, Json, Query};
use super::observe::in_request;
use super::{wire, ws};
use crate::error::{Error, Result};
use crate::pty::{Attachment, PtyEvent, PtyExit, PtyInfo, PtyOptions};
use crate::state::AppState;

/// Offered by clients that want the `exited` control frame; selected when offered (the TS SDK's
/// `ws` client aborts unless it is).
pub const EXIT_CONTROL_PROTOCOL: &str = "X-Daytona-Pty-Exit-Control";
/// `X-Daytona-Pty-Envs~<base64url(JSON object)>`: create-connect's environment.
const ENVS_PROTOCOL: &str = "X-Daytona-Pty-Envs~";
/// What a browser SDK offers besides (it cannot set headers on a WebSocket).
const VERSION_PROTOCOL: &str = "X-Daytona-SDK-Version~";
/// Largest output frame sent (queued chunks are joined up to this).
pub const MAX_OUTPUT_FRAME: usize = 256 * 1024;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/process/pty", post(create_pty).get(list_ptys))
        .route("/process/pty/create-connect", get(create_connect))
        .route("/process/pty/{session_id}", get(get_pty).delete(delete_pty))
        .route("/process/pty/{session_id}/resize", post(resize_pty))
        .route("/process/pty/{session_id}/connect", get(connect_pty))
}

/// Path parameters by name (the routes are also nested under `/toolbox/{id}`).
#[derive(Debug, Deserialize)]
pub struct PtyPath {
    session_id: String,
}

/// A WebSocket upgrade, or the plain HTTP request it is not.
type MaybeUpgrade =
    std::result::Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// `PtyCreateRequest`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PtyCreateRequest {
    /// The id, unique among PTYs; not empty, no `/`.
    #[schema(
        pattern = r"^(?!create-connect$)[^/\x00-\x1f\x7f-\x9f]+$",
        max_length = 256
    )]
    pub id: String,
    /// Working directory (relative to the work dir); default the work dir.
    pub cwd: Option<String>,
    /// Environment on top of the sandbox's; `TERM` defaults to xterm-256color.
    #[schema(schema_with = super::extract::env_map)]
    pub envs: Option<BTreeMap<String, String>>,
    /// Columns, 1–1000 (default 80).
    #[schema(minimum = 1, maximum = 1000)]
    pub cols: Option<u16>,
    /// Rows, 1–1000 (default 24).
    #[schema(minimum = 1, maximum = 1000)]
    pub rows: Option<u16>,
    /// Start the shell on the first connect instead of now.
    pub lazy_start: Option<bool>,
}

/// `{sessionId}`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PtyCreateResponse {
    /// The new PTY's id.
    pub session_id: String,
}

/// `PtySessionInfo`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PtySessionInfo {
    /// The id.
    pub id: String,
    /// Absolute working directory.
    pub cwd: String,
    /// The environment it was given, with `TERM`.
    pub envs: BTreeMap<String, String>,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Whether its shell runs.
    pub active: bool,
    /// Whether it starts on the first connect.
    pub lazy_start: bool,
}

impl From<PtyInfo> for PtySessionInfo {
    fn from(info: PtyInfo) -> Self {
        PtySessionInfo {
            id: info.id,
            cwd: info.cwd.to_string_lossy().into_owned(),
            envs: info.envs,
            cols: info.cols,
            rows: info.rows,
            created_at: wire::rfc3339_nano(info.created_at),
            active: info.active,
            lazy_start: info.lazy_start,
        }
    }
}

/// `{sessions}`
#[derive(Debug, Serialize, ToSchema)]
pub struct PtyListResponse {
    /// Every PTY, oldest first.
    pub sessions: Vec<PtySessionInfo>,
}

/// `{cols, rows}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct PtyResizeRequest {
    /// Columns, 1–1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub cols: u16,
    /// Rows, 1–1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub rows: u16,
}

/// `{message}`
#[derive(Debug, Serialize, ToSchema)]
pub struct PtyDeleteResponse {
    /// `PTY session deleted`.
    pub message: String,
}

/// `?id=&cols=&rows=&cwd=` of create-connect.
#[derive(Debug, Default, Deserialize)]
pub struct CreateConnectQuery {
    id: Option<String>,
    cols: Option<String>,
    rows: Option<String>,
    cwd: Option<String>,
}

/// Creates a PTY; its shell starts now unless `lazyStart`.
#[utoipa::path(post, path = "/process/pty", tag = "process",
    request_body = PtyCreateRequest,
    responses((status = 201, body = PtyCreateResponse),
        (status = 400, description = "bad id, size, cwd or environment", body = super::error::ErrorBody),
        (status = 409, description = "the id is taken", body = super::error::ErrorBody)))]
pub async fn create_pty(
    State(app): State<AppState>,
    Json(request): Json<PtyCreateRequest>,
) -> Result<Response> {
    let options = PtyOptions {
        id: request.id,
        cwd: request.cwd,
        envs: request.envs.unwrap_or_default(),
        cols: request.cols,
        rows: request.rows,
        lazy_start: request.lazy_start.unwrap_or(false),
        ..PtyOptions::default()
    };
    let ptys = app.ptys.clone();
    let pty = blocking(move || ptys.create(options)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PtyCreateResponse {
            session_id: pty.id().to_string(),
        }),
    )
        .into_response())
}

/// Every PTY.
#[utoipa::path(get, path = "/process/pty", tag = "process",
    responses((status = 200, body = PtyListResponse)))]
pub async fn list_ptys(State(app): State<AppState>) -> Result<axum::Json<PtyListResponse>> {
    // (Blocking: a PTY that is starting holds its lock while it spawns.)
    let list = blocking(move || Ok(app.ptys.list())).await?;
    Ok(axum::Json(PtyListResponse {
        sessions: list.into_iter().map(Into::into).collect(),
    }))
}

/// One PTY.
#[utoipa::path(get, path = "/process/pty/{session_id}", tag = "process",
    params(("session_id" = String, Path)),
    responses((status = 200, body = PtySessionInfo),
        (status = 404, body = super::error::ErrorBody),
        (status = 410, description = "GONE: the PTY's shell has ended", body = super::error::ErrorBody)))]
pub async fn get_pty(
    State(app): State<AppState>,
    Path(path): Path<PtyPath>,
) -> Result<axum::Json<PtySessionInfo>> {
    let info = blocking(move || app.ptys.get(&path.session_id)).await?;
    Ok(axum::Json(info.into()))
}

/// Kills a PTY's whole tree (SIGKILL); its clients get exit code 137 (`SIGKILL`). A PTY whose
/// shell has ended is only forgotten (200).
#[utoipa::path(delete, path = "/process/pty/{session_id}", tag = "process",
    params(("session_id" = String, Path)),
    responses((status = 200, body = PtyDeleteResponse),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_pty(
    State(app): State<AppState>,
    Path(path): Path<PtyPath>,
) -> Result<axum::Json<PtyDeleteResponse>> {
    app.ptys.kill(&path.session_id).await?;
    Ok(axum::Json(PtyDeleteResponse {
        message: "PTY session deleted".to_string(),
    }))
}

/// Sets a PTY's size (the program gets SIGWINCH).
#[utoipa::path(post, path = "/process/pty/{session_id}/resize", tag = "process",
    params(("session_id" = String, Path)),
    request_body = PtyResizeRequest,
    responses((status = 200, body = PtySessionInfo),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 410, description = "GONE: the PTY's shell has ended", body = super::error::ErrorBody)))]
pub async fn resize_pty(
    State(app): State<AppState>,
    Path(path): Path<PtyPath>,
    Json(request): Json<PtyResizeRequest>,
) -> Result<axum::Json<PtySessionInfo>> {
    let info = blocking(move || {
        app.ptys
            .resize(&path.session_id, request.cols, request.rows)
    })
    .await?;
    Ok(axum::Json(info.into()))
}

/// WebSocket to an existing PTY (a lazy one starts now). A missing or ended PTY is reported in
/// band: `{"type":"control","status":"error","error":…}`, then close 1008 with `{"error":…}`.
#[utoipa::path(get, path = "/process/pty/{session_id}/connect", tag = "process",
    params(("session_id" = String, Path)),
    responses((status = 101, description = "WebSocket: control frames as JSON text, output as binary frames, any client frame is input; close 1000 (exit 0) or 1011 with reason {exitCode, exitReason?}"),
        (status = 400, description = "not a WebSocket request", body = super::error::ErrorBody)))]
pub async fn connect_pty(
    State(app): State<AppState>,
    Path(path): Path<PtyPath>,
    headers: HeaderMap,
    upgrade: MaybeUpgrade,
) -> Result<Response> {
    let upgrade = upgrade.map_err(|_| not_a_websocket())?;
    let offered = Offered::from_headers(&headers);
    let ptys = app.ptys.clone();
    let id = path.session_id;
    let attached = blocking(move || Ok(ptys.attach(&id))).await?;
    let exit_control = offered.exit_control;
    Ok(offered
        .select(upgrade)
        .on_upgrade(in_request(move |socket| async move {
            match attached {
                Ok(attachment) => serve(socket, attachment, exit_control).await,
                Err(err) => refuse(socket, &err.message).await,
            }
        })))
}

/// Creates a PTY and attaches in one WebSocket upgrade (`?id=&cols=&rows=&cwd=`, envs in the
/// `X-Daytona-Pty-Envs~<base64url JSON>` subprotocol). Bad input is a 400 and a taken id a 409,
/// before the upgrade.
#[utoipa::path(get, path = "/process/pty/create-connect", tag = "process",
    params(("id" = String, Query, pattern = r"^(?!create-connect$)[^/\x00-\x1f\x7f-\x9f]+$", max_length = 256),
        ("cols" = Option<u16>, Query, minimum = 1, maximum = 1000),
        ("rows" = Option<u16>, Query, minimum = 1, maximum = 1000),
        ("cwd" = Option<String>, Query)),
    responses((status = 101, description = "WebSocket, as /process/pty/{session_id}/connect"),
        (status = 400, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn create_connect(
    State(app): State<AppState>,
    Query(query): Query<CreateConnectQuery>,
    headers: HeaderMap,
    upgrade: MaybeUpgrade,
) -> Result<Response> {
    let upgrade = upgrade.map_err(|_| not_a_websocket())?;
    let offered = Offered::from_headers(&headers);
    let options = PtyOptions {
        id: query.id.unwrap_or_default(),
        cwd: query.cwd,
        envs: offered.envs()?,
        cols: size_param(query.cols.as_deref(), "cols")?,
        rows: size_param(query.rows.as_deref(), "rows")?,
        ..PtyOptions::default()
    };
    let ptys = app.ptys.clone();
    let attachment = blocking(move || ptys.create_and_attach(options)).await?;
    let exit_control = offered.exit_control;
    Ok(offered
        .select(upgrade)
        .on_upgrade(in_request(move |socket| {
            serve(socket, attachment, exit_control)
        })))
}

fn not_a_websocket() -> Error {
    Error::bad_request("this route is a WebSocket: send an Upgrade: websocket request")
}

/// A `cols`/`rows` query value.
fn size_param(value: Option<&str>, name: &str) -> Result<Option<u16>> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => text.trim().parse().map(Some).map_err(|_| {
            Error::bad_request(format!(
                "invalid value for {name}: {text:?} (must be between 1 and 1000)"
            ))
        }),
    }
}

/// The subprotocols a client offered.
#[derive(Debug, Default)]
struct Offered {
    exit_control: bool,
    version: Option<String>,
    envs: Option<String>,
}

impl Offered {
    fn from_headers(headers: &HeaderMap) -> Offered {
        let mut offered = Offered::default();
        let protocols = headers
            .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim);
        for protocol in protocols {
            if protocol == EXIT_CONTROL_PROTOCOL {
                offered.exit_control = true;
            } else if protocol.starts_with(VERSION_PROTOCOL) {
                offered.version.get_or_insert_with(|| protocol.to_string());
            } else if let Some(encoded) = protocol.strip_prefix(ENVS_PROTOCOL) {
                offered.envs.get_or_insert_with(|| encoded.to_string());
            }
        }
        offered
    }

    /// The one subprotocol to echo: exit control, else the SDK version, else none (a client
    /// that offered none must get none).
    fn select(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
        let upgrade = ws::limited(upgrade, ws::MAX_INPUT_MESSAGE);
        if self.exit_control {
            upgrade.protocols([EXIT_CONTROL_PROTOCOL])
        } else if let Some(version) = &self.version {
            upgrade.protocols([version.clone()])
        } else {
            upgrade
        }
    }

    /// The environment in `X-Daytona-Pty-Envs~…`: a JSON object of strings, base64url (padding
    /// optional).
    fn envs(&self) -> Result<BTreeMap<String, String>> {
        let Some(encoded) = &self.envs else {
            return Ok(BTreeMap::new());
        };
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let bad = |why: String| {
            Error::bad_request(format!(
                "invalid {ENVS_PROTOCOL}… subprotocol: {why} (expected base64url of a JSON object of strings)"
            ))
        };
        let json = engine
            .decode(encoded.trim_end_matches('='))
            .map_err(|err| bad(err.to_string()))?;
        serde_json::from_slice(&json).map_err(|err| bad(err.to_string()))
    }
}

/// Sends `connected`, the scrollback and then the output until the PTY ends (or this client
/// leaves, or falls behind); types every client frame.
async fn serve(socket: WebSocket, mut attachment: Attachment, exit_control: bool) {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut incoming) = socket.split();
    let connected = json!({"type": "control", "status": "connected"}).to_string();
    if sink.send(Message::Text(connected.into())).await.is_err() {
        ws::finish(&mut sink).await;
        return;
    }
    let replay = std::mem::take(&mut attachment.replay);
    for chunk in replay.chunks(MAX_OUTPUT_FRAME) {
        if sink
            .send(Message::Binary(chunk.to_vec().into()))
            .await
            .is_err()
        {
            ws::finish(&mut sink).await;
            return;
        }
    }
    let input = attachment.input();
    // Ends with the refusal of a message over the limit, if that is what ended it.
    let mut typing = super::observe::spawn(async move {
        while let Some(message) = incoming.next().await {
            let data = match message {
                Ok(Message::Text(text)) => axum::body::Bytes::from(text),
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) => break,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Err(err) => return ws::refusal(&err),
            };
            if !input.write(data).await {
                // The PTY is gone; keep reading until the close arrives.
                continue;
            }
        }
        None
    });
    let close = loop {
        tokio::select! {
            event = attachment.next(MAX_OUTPUT_FRAME) => match event {
                PtyEvent::Output(bytes) => {
                    if sink.send(Message::Binary(bytes)).await.is_err() {
                        ws::finish(&mut sink).await;
                        typing.abort();
                        return;
                    }
                }
                PtyEvent::Exited(exit) => {
                    if exit_control {
                        let frame = exited_frame(exit).to_string();
                        if sink.send(Message::Text(frame.into())).await.is_err() {
                            ws::finish(&mut sink).await;
                            typing.abort();
                            return;
                        }
                    }
                    break exit_close(exit);
                }
                PtyEvent::Dropped => break CloseFrame { code: 1008, reason: "slow consumer".into() },
            },
            // The client closed, went away or sent too much: it detaches, the PTY goes on.
            refusal = &mut typing => {
                ws::close_sink_after(&mut sink, refusal.ok().flatten()).await;
                return;
            }
        }
    };
    ws::close_split(&mut sink, &mut typing, close).await;
}

/// `{"type":"control","status":"exited","exitCode":N[,"exitReason":…]}`
fn exited_frame(exit: PtyExit) -> serde_json::Value {
    let mut frame = json!({"type": "control", "status": "exited", "exitCode": exit.code});
    if let Some(reason) = exit.reason() {
        frame["exitReason"] = reason.into();
    }
    frame
}

/// 1000 for exit 0, 1011 otherwise, with `{"exitCode":N[,"exitReason":…]}` as the reason.
fn exit_close(exit: PtyExit) -> CloseFrame {
    let mut reason = json!({"exitCode": exit.code});
    if let Some(why) = exit.reason() {
        reason["exitReason"] = why.into();
    }
    CloseFrame {
        code: if exit.code == 0 { 1000 } else { 1011 },
        reason: reason.to_string().into(),
    }
}

/// Reports a failed connect in band, as Daytona does (its SDKs read the message from there).
/// `{"error":…}` as a close reason: the message is shortened (with `…`) until the JSON fits the
/// 123 bytes a close reason holds, so it stays valid JSON.
fn error_reason(message: &str) -> String {
    let mut keep = message.chars().count();
    let mut reason = json!({ "error": message }).to_string();
    while reason.len() > 123 && keep > 0 {
        keep -= 1;
        let short: String = message.chars().take(keep).chain(['…']).collect();
        reason = json!({ "error": short }).to_string();
    }
    reason
}

async fn refuse(mut socket: WebSocket, message: &str) {
    let frame = json!({"type": "control", "status": "error", "error": message}).to_string();
    if socket.send(Message::Text(frame.into())).await.is_err() {
        ws::finish(&mut socket).await;
        return;
    }
    ws::close(&mut socket, ws::close_frame(1008, &error_reason(message))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_refusals_stay_valid_json_within_a_close_reason() {
        let reason = error_reason(&"ü".repeat(200));
        assert!(reason.len() <= 123, "{}", reason.len());
        let value: serde_json::Value = serde_json::from_str(&reason).unwrap();
        assert!(value["error"].as_str().unwrap().ends_with('…'));
        assert_eq!(error_reason("no such pty"), r#"{"error":"no such pty"}"#);
    }

    #[test]
    fn exit_frames_and_close_reasons() {
        assert_eq!(
            exited_frame(PtyExit { code: 0 }).to_string(),
            r#"{"exitCode":0,"status":"exited","type":"control"}"#
        );
        let close = exit_close(PtyExit { code: 3 });
        assert_eq!(close.code, 1011);
        assert_eq!(
            close.reason.as_str(),
            r#"{"exitCode":3,"exitReason":"non-zero exit"}"#
        );
        assert_eq!(exit_close(PtyExit { code: 0 }).code, 1000);
    }

    #[test]
    fn envs_come_from_base64url_json_with_or_without_padding() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(br#"{"A":"1","B":"x y"}"#);
        headers.insert(
            "sec-websocket-protocol",
            format!("{ENVS_PROTOCOL}{encoded}, {EXIT_CONTROL_PROTOCOL}")
                .parse()
                .unwrap(),
        );
        let offered = Offered::from_headers(&headers);
        assert!(offered.exit_control);
        let envs = offered.envs().unwrap();
        assert_eq!(envs["B"], "x y");
        let bad = Offered {
            envs: Some("!!".into()),
            ..Offered::default()
        };
        assert_eq!(bad.envs().unwrap_err().kind.status(), 400);
    }
}
