//! The web terminal's own router (served on `--terminal-addr`): `GET /` (the page), its
//! embedded files, and the `GET /ws` WebSocket (one login shell per connection, hung up when the
//! connection ends). See `crate::terminal` for the socket's frames.
//!
//! In local SDK mode (a developer's machine) it answers only requests addressed to this machine
//! by IP or `localhost` from pages on a local origin, like the control plane: a WebSocket is not
//! subject to CORS, and any web page could otherwise open a shell. In a sandbox, the platform's
//! proxy in front of it authenticates, as for Daytona's. With `--token`, every request (page,
//! files, socket) needs the token (`http::auth`; a browser opens `/?token=…` once and keeps a
//! cookie).

use std::sync::{Arc, OnceLock};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sha2::Digest;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use super::error;
use super::extract::{blocking, Query};
use super::observe::in_request;
use super::pty::MAX_OUTPUT_FRAME;
use super::sdk_api::{is_ip_host, is_local_host};
use super::ws;
use crate::error::{Error, ErrorKind, Result};
use crate::pty::{Pty, PtyEvent};
use crate::state::AppState;
use crate::terminal::{self, Frame, HANG_UP_GRACE};

/// The terminal listener's router. `local`: local SDK mode (see the module docs).
pub fn router(state: AppState, local: bool) -> Router {
    let token_guard = super::auth::Guard::terminal(state.config.token.clone());
    let counted = super::observe::Counted {
        metrics: state.metrics.clone(),
        listener: "terminal",
    };
    Router::new()
        .route("/", get(file))
        .route("/ws", get(socket))
        .route("/{*path}", get(file))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            token_guard,
            super::auth::require,
        ))
        .layer(middleware::from_fn_with_state(local, guard))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(middleware::from_fn(error::render_errors))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(
            Some(counted),
            super::observe::observe,
        ))
}

/// In local SDK mode: a request for another host name (DNS rebinding) or from a page on a
/// foreign origin is refused.
async fn guard(State(local): State<bool>, request: Request, next: Next) -> Result<Response> {
    if local {
        let headers = request.headers();
        let value = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        if let Some(host) = value(header::HOST) {
            if !is_local_host(host) && !is_ip_host(host) {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!("host {host:?} is not served: use an IP address or localhost"),
                ));
            }
        }
        if let Some(origin) = value(header::ORIGIN) {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if !is_local_host(origin_host) {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!("requests from web origin {origin:?} are refused"),
                ));
            }
        }
    }
    Ok(next.run(request).await)
}

/// The page or one of its files, revalidated by ETag.
async fn file(request: Request) -> Result<Response> {
    let path = request.uri().path().trim_start_matches('/');
    let index = terminal::assets()
        .iter()
        .position(|asset| asset.path == path)
        .ok_or_else(|| Error::not_found(format!("no such file: /{path}")))?;
    let asset = &terminal::assets()[index];
    let etag = &etags()[index];
    let fresh = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}

/// One strong ETag per embedded file (a hash of its bytes), computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        terminal::assets()
            .iter()
            .map(|asset| {
                let digest = sha2::Sha256::digest(asset.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// `?cols=&rows=`: the page's size at connect time (optional; a resize frame follows anyway).
#[derive(Debug, Default, Deserialize)]
struct SizeQuery {
    cols: Option<String>,
    rows: Option<String>,
}

/// The socket: a new login shell for this connection.
async fn socket(
    State(app): State<AppState>,
    Query(query): Query<SizeQuery>,
    upgrade: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response> {
    let upgrade = upgrade.map_err(|_| {
        Error::bad_request("this route is a WebSocket: send an Upgrade: websocket request")
    })?;
    let size = |value: &Option<String>| value.as_deref().and_then(|v| v.trim().parse().ok());
    let (cols, rows) = (size(&query.cols), size(&query.rows));
    // The shell starts once the connection is a WebSocket, so a failed upgrade leaves nothing.
    Ok(ws::limited(upgrade, ws::MAX_INPUT_MESSAGE)
        .on_upgrade(in_request(move |socket| serve(app, socket, cols, rows))))
}

/// Hangs the shell up when the connection's task ends, however it ends.
struct HangUp(Arc<Pty>);

impl Drop for HangUp {
    fn drop(&mut self) {
        let pty = self.0.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { pty.hang_up(HANG_UP_GRACE).await });
        }
    }
}

async fn serve(app: AppState, mut socket: WebSocket, cols: Option<u16>, rows: Option<u16>) {
    use futures_util::{SinkExt, StreamExt};
    let ptys = app.ptys.clone();
    let session = match blocking(move || terminal::open(&ptys, cols, rows)).await {
        Ok(session) => session,
        Err(err) => {
            let text = format!("\r\ntoolboxd: cannot start a shell: {}\r\n", err.message);
            let _ = socket.send(Message::Binary(text.into_bytes().into())).await;
            ws::close(&mut socket, ws::close_frame(1011, "cannot start a shell")).await;
            return;
        }
    };
    let _hang_up = HangUp(session.pty.clone());
    let terminal::Session {
        pty,
        mut attachment,
    } = session;
    let (mut sink, mut incoming) = socket.split();
    let replay = std::mem::take(&mut attachment.replay);
    if !replay.is_empty() && sink.send(Message::Binary(replay.into())).await.is_err() {
        ws::finish(&mut sink).await;
        return;
    }
    let input = attachment.input();
    // Ends with the refusal of a message over the limit, if that is what ended it.
    let mut typing = super::observe::spawn(async move {
        while let Some(message) = incoming.next().await {
            let data = match message {
                Ok(Message::Text(text)) => match terminal::classify(&text) {
                    Frame::Resize { cols, rows } => {
                        let _ = pty.resize(cols, rows);
                        continue;
                    }
                    Frame::Input => axum::body::Bytes::from(text),
                },
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) => break,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Err(err) => return ws::refusal(&err),
            };
            input.write(data).await;
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
                PtyEvent::Exited(exit) => break CloseFrame {
                    code: if exit.code == 0 { 1000 } else { 1011 },
                    reason: serde_json::json!({"exitCode": exit.code}).to_string().into(),
                },
                PtyEvent::Dropped => break CloseFrame { code: 1008, reason: "slow consumer".into() },
            },
            // The page closed, went away or sent too much.
            refusal = &mut typing => {
                ws::close_sink_after(&mut sink, refusal.ok().flatten()).await;
                return;
            }
        }
    };
    ws::close_split(&mut sink, &mut typing, close).await;
}
