//! The only place an `Error` becomes a wire body. Handlers return `Error`; its `IntoResponse`
//! leaves the error in the response extensions and `render_errors` (which knows the request's
//! path and method) writes `{statusCode, message, code, source, timestamp, path, method}`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, ErrorKind};

/// The `source` every daemon error carries, so the SDKs pick their typed errors.
pub const ERROR_SOURCE: &str = "DAYTONA_DAEMON";

/// Daytona's `ErrorResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The HTTP status.
    pub status_code: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// Machine-readable code (`FILE_NOT_FOUND`, `BAD_REQUEST`, …).
    pub code: String,
    /// Always `DAYTONA_DAEMON`.
    pub source: String,
    /// RFC 3339 time of the error.
    pub timestamp: String,
    /// The request path (or, in a bulk-download error part, the file path).
    pub path: String,
    /// The request method.
    pub method: String,
}

impl ErrorBody {
    /// The body for `err` met while serving `method path`.
    pub fn new(err: &Error, path: &str, method: &str) -> ErrorBody {
        ErrorBody {
            status_code: err.kind.status(),
            message: err.message.clone(),
            code: err.kind.code().to_string(),
            source: ERROR_SOURCE.to_string(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            path: path.to_string(),
            method: method.to_string(),
        }
    }

    /// Serialized JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Middleware: writes the wire body of any `Error` a handler returned and logs server faults.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let Some(err) = response.extensions_mut().remove::<Error>() else {
        return response;
    };
    if err.kind.status() >= 500 {
        tracing::error!(%method, %path, code = err.kind.code(), "{}", err.message);
    } else {
        tracing::debug!(%method, %path, code = err.kind.code(), "{}", err.message);
    }
    let body = ErrorBody::new(&err, &path, &method).to_json();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = Body::from(body);
    response
}

/// A panic in a handler becomes a 500 with the wire body; the daemon keeps serving.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string());
    Error::new(ErrorKind::Internal, format!("internal error: {detail}")).into_response()
}

/// The fallback for paths no route serves.
pub async fn no_route(request: Request) -> Error {
    Error::not_found(format!(
        "no such route: {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// The fallback for a known path with the wrong method.
pub async fn wrong_method(request: Request) -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "method {} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}
