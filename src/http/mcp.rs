//! `/mcp`: the MCP Streamable HTTP service (`crate::mcp`) on the toolbox listener, behind the
//! checks every browser-reachable route needs. `Origin` is validated (DNS rebinding: a page on
//! a foreign origin must not drive the sandbox's tools); authentication goes through
//! `authorize`, the one place the toolbox's token check will plug in. What rmcp answers with a
//! plain-text error (406 without `Accept: text/event-stream`, 415, 413, an unknown session's 404,
//! 405) is given the wire error body like every other route; JSON-RPC errors stay JSON-RPC.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::sdk_api::{is_ip_host, is_local_host};
use crate::error::{Error, ErrorKind, Result};
use crate::state::AppState;

/// The path the service is mounted at.
pub const PATH: &str = "/mcp";

/// The most of a plain-text error body from rmcp that is kept as the message.
const MAX_MESSAGE: usize = 4096;

/// The `/mcp` route.
pub fn router(state: &AppState) -> Router<AppState> {
    let service = crate::mcp::http_service(state.clone(), state.shutdown.child_token());
    Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
}

// The MCP service is a tower service (`route_service`); these three functions only carry its
// OpenAPI description.

/// MCP Streamable HTTP: one JSON-RPC message from the client (`initialize` first; then requests
/// and notifications with the `Mcp-Session-Id` it answered). Requests are answered with a
/// `text/event-stream` of JSON-RPC messages (progress notifications, then the response; event
/// ids can be resumed with `Last-Event-ID`), notifications and responses with 202. `Accept` must
/// name both `application/json` and `text/event-stream`. A browser `Origin` must be loopback, the
/// toolbox's own IP address, or `--public-url`'s (else 403). Revision 2026-07-28 requests (no
/// session, `_meta` per request) are served too.
#[utoipa::path(post, path = "/mcp", tag = "mcp",
    request_body(content = Object, content_type = "application/json", description = "A JSON-RPC 2.0 message"),
    params(("Mcp-Session-Id" = Option<String>, Header, description = "The session (from `initialize`)"),
        ("MCP-Protocol-Version" = Option<String>, Header, description = "The negotiated revision")),
    responses((status = 200, description = "text/event-stream of JSON-RPC messages (JSON-RPC errors of a malformed request: application/json)"),
        (status = 202, description = "a notification or response was accepted"),
        (status = 403, description = "foreign web origin", body = super::error::ErrorBody),
        (status = 404, description = "unknown session: initialize again", body = super::error::ErrorBody),
        (status = 406, description = "Accept lacks text/event-stream or application/json", body = super::error::ErrorBody),
        (status = 413, description = "the body holds more than 16 MiB", body = super::error::ErrorBody),
        (status = 415, body = super::error::ErrorBody)))]
pub async fn post_doc() {}

/// MCP Streamable HTTP: the session's standalone `text/event-stream` (server notifications
/// such as `notifications/resources/updated`), or with `Last-Event-ID` the rest of a stream
/// that was cut.
#[utoipa::path(get, path = "/mcp", tag = "mcp",
    params(("Mcp-Session-Id" = String, Header, description = "The session"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of JSON-RPC notifications"),
        (status = 404, description = "unknown session", body = super::error::ErrorBody)))]
pub async fn get_doc() {}

/// MCP Streamable HTTP: ends the session (its resource subscriptions end with it; what its tools
/// started in the sandbox, such as sessions, does not).
#[utoipa::path(delete, path = "/mcp", tag = "mcp",
    params(("Mcp-Session-Id" = String, Header, description = "The session")),
    responses((status = 204, description = "ended"),
        (status = 404, description = "unknown session", body = super::error::ErrorBody)))]
pub async fn delete_doc() {}

/// Origin and authentication first, then the service; plain-text errors get the wire body.
async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Result<Response> {
    check_origin(request.headers(), app.config.public_url.as_deref())?;
    authorize(request.headers())?;
    let delete = request.method() == axum::http::Method::DELETE;
    // rmcp bounds a body too, but answers before reading the rest (the client, still sending,
    // may see a reset) and in plain text.
    let request = match request.method() == axum::http::Method::POST {
        true => super::extract::buffered(request, crate::mcp::stdio::MAX_MESSAGE).await?,
        false => request,
    };
    let mut response = next.run(request).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        // A session ended by DELETE is gone at once: say so as the Python SDK expects (200 or
        // 204; it warns on rmcp's 202).
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    wire_error(response).await
}

/// A browser's request is served only from an origin that cannot be a rebinding page: no
/// `Origin` (not a browser), a loopback origin (`localhost`, 127.0.0.0/8, `[::1]`, any port),
/// the toolbox's own address when it is an IP literal (a name could be rebound to it; an IP
/// cannot), or the host of `--public-url`.
pub fn check_origin(headers: &HeaderMap, public_url: Option<&str>) -> Result<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let origin_host = authority(origin);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let public_host = public_url.map(authority);
    let allowed = !origin_host.is_empty()
        && (is_local_host(origin_host)
            || (is_ip_host(host) && origin_host.eq_ignore_ascii_case(host))
            || public_host.is_some_and(|public| public.eq_ignore_ascii_case(origin_host)));
    if allowed {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Forbidden,
        format!(
            "requests to /mcp from web origin {origin:?} are refused (DNS rebinding protection): \
             call it from a non-browser client, a loopback origin, or the origin of \
             --public-url"
        ),
    ))
}

/// The `host[:port]` of a URL (`scheme://authority/...`); empty when it has none.
fn authority(url: &str) -> &str {
    let Some((_, rest)) = url.split_once("://") else {
        return "";
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Userinfo is not part of an origin, but a URL may carry it.
    authority.rsplit('@').next().unwrap_or(authority)
}

/// A hook for MCP-specific authorization: every request to `/mcp` passes here. The token
/// (`--token`) is checked before, by `http::auth` in front of every toolbox route, so nothing
/// more is checked here.
fn authorize(_headers: &HeaderMap) -> Result<()> {
    Ok(())
}

/// rmcp's HTTP-level errors are plain text; give them the wire error body (JSON-RPC error
/// bodies and event streams pass as they are).
async fn wire_error(response: Response) -> Result<Response> {
    let status = response.status();
    if status.as_u16() < 400 {
        return Ok(response);
    }
    let is_json_or_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    let Some(kind) = kind_of(status).filter(|_| !is_json_or_stream) else {
        return Ok(response);
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let body = axum::body::to_bytes(response.into_body(), MAX_MESSAGE)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        text => text.to_lowercase(),
    };
    let mut response = Error::new(kind, message).into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(response)
}

/// The error kind whose status is `status`, for the statuses rmcp answers with.
fn kind_of(status: StatusCode) -> Option<ErrorKind> {
    Some(match status.as_u16() {
        400 => ErrorKind::BadRequest,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        405 => ErrorKind::MethodNotAllowed,
        406 => ErrorKind::NotAcceptable,
        413 => ErrorKind::PayloadTooLarge,
        415 => ErrorKind::UnsupportedMediaType,
        500 => ErrorKind::Internal,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().expect("host"));
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().expect("origin"));
        }
        headers
    }

    #[test]
    fn origins_that_cannot_rebind_are_allowed() {
        let ok = |origin: Option<&str>, host: &str, public: Option<&str>| {
            check_origin(&headers(origin, host), public).is_ok()
        };
        assert!(ok(None, "evil.example:2280", None));
        assert!(ok(Some("http://localhost:6274"), "127.0.0.1:2280", None));
        assert!(ok(Some("http://127.0.0.1:3000"), "sandbox:2280", None));
        assert!(ok(Some("http://[::1]:5173"), "127.0.0.1:2280", None));
        assert!(ok(Some("http://10.1.2.3:2280"), "10.1.2.3:2280", None));
        assert!(ok(
            Some("https://2280-x.proxy.example"),
            "2280-x.proxy.example",
            Some("https://2280-x.proxy.example/")
        ));
        // A rebinding page: its origin and the Host are the attacker's name.
        assert!(!ok(
            Some("http://evil.example:2280"),
            "evil.example:2280",
            None
        ));
        assert!(!ok(Some("https://app.example"), "127.0.0.1:2280", None));
        assert!(!ok(Some("null"), "127.0.0.1:2280", None));
        assert!(!ok(
            Some("http://localhost.evil.example"),
            "127.0.0.1:2280",
            None
        ));
    }

    #[test]
    fn authorities_of_urls() {
        assert_eq!(authority("https://a.example:8443/x?y"), "a.example:8443");
        assert_eq!(authority("http://u:p@h:1"), "h:1");
        assert_eq!(authority("null"), "");
    }
}
