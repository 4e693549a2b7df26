//! `ANY /proxy/{port}/{*path}` (also `/proxy/{port}` and `/proxy/{port}/`): the preview proxy's
//! edge. Reads the port and the raw path from the request line (percent-encoding untouched),
//! then hands the request to `proxy::Proxy`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http_body_util::BodyExt;

use crate::error::Result;
use crate::ports::parse_port;
use crate::proxy::{BoxError, Credentials, Target};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/proxy/{port}", any(forward))
        .route("/proxy/{port}/", any(forward))
        .route("/proxy/{port}/{*path}", any(forward))
}

/// The preview proxy: the request goes to an app on this machine's loopback.
///
/// Forwarded to `http://localhost:{port}/{path}` (127.0.0.1, then ::1) with the
/// path and query byte for byte, bodies streamed both ways and upgrades (WebSocket) passed
/// through. `X-Forwarded-For/Proto/Host/Prefix` are set (`Prefix` is `/proxy/{port}`, after
/// any prefix a proxy in front gave); hop-by-hop headers are dropped; the upstream sees
/// `Host: localhost:{port}`. Redirects are passed on unchanged. A browser opening
/// `/proxy/{port}` itself (a navigation, `Sec-Fetch-Mode: navigate`) is redirected to
/// `/proxy/{port}/` with a relative `Location`, so the app's relative links resolve under the
/// prefix; every other client is forwarded to `/`.
#[utoipa::path(method(get, post, put, patch, delete, head, options), path = "/proxy/{port}/{path}",
    tag = "ports",
    params(("port" = u16, Path, description = "1-65535, on 127.0.0.1 or ::1"),
        ("path" = String, Path, description = "the upstream path, raw; the query is kept too")),
    responses((status = 200, description = "whatever the upstream answers, streamed"),
        (status = 101, description = "the upstream accepted an upgrade (WebSocket)"),
        (status = 400, description = "not a port number", body = super::error::ErrorBody),
        (status = 502, description = "nothing listens on the port, or it failed before answering",
            body = super::error::ErrorBody)))]
pub async fn forward(State(app): State<AppState>, request: Request) -> Result<Response> {
    let raw_path = request.uri().path();
    let rest = raw_path.strip_prefix("/proxy/").unwrap_or("");
    let (port_text, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    let port = parse_port(port_text)?;
    if path.is_empty() && is_navigation(&request) {
        return Ok(to_slash(port, request.uri().query()));
    }
    let path = if path.is_empty() { "/" } else { path };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let target = Target {
        port,
        path_and_query,
        prefix: format!("/proxy/{port}"),
        client,
        credentials: app.config.token.clone().map(|token| Credentials {
            token,
            headers: &[super::auth::TOKEN_HEADER],
            cookies: &[super::auth::TOOLBOX_COOKIE, super::auth::TERMINAL_COOKIE],
            param: super::auth::TOKEN_PARAM,
        }),
    };
    let request = request.map(|body| body.map_err(BoxError::from).boxed_unsync());
    let response = app.proxy.forward(target, request).await?;
    Ok(response.map(Body::new))
}

/// A browser's top-level navigation (not a script's fetch, not curl or an SDK).
fn is_navigation(request: &Request) -> bool {
    let method = request.method();
    (method == Method::GET || method == Method::HEAD)
        && request
            .headers()
            .get("sec-fetch-mode")
            .is_some_and(|mode| mode == "navigate")
}

/// `307` to `{port}/`: relative, so it also lands right behind a proxy that strips a prefix
/// (local SDK mode's `/toolbox/{id}`).
fn to_slash(port: u16, query: Option<&str>) -> Response {
    let location = match query {
        Some(query) => format!("{port}/?{query}"),
        None => format!("{port}/"),
    };
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
