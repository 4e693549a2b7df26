//! Request ids and request metrics, the outermost layer of every router.
//!
//! Each request gets an id: the client's `X-Request-Id` when it sends a sane one (1–128
//! characters of `A-Z a-z 0-9 - _ . : / + =`), else a fresh UUID. It is put back on the request
//! (so the preview proxy and local SDK mode's in-process hop pass it on), sent back in the
//! answer's `X-Request-Id`, and is the `id` field of the `request` span every log line of the
//! request is written in, also where the request's work moves to another thread or task
//! (`spawn`, `spawn_blocking`, `in_request` and `http::extract::blocking` carry the span there).
//! On every HTTP listener (toolbox, web terminal, local SDK mode's control plane) the answer is
//! also counted in `Metrics` by listener, route template (axum's `MatchedPath`; `unmatched` when
//! no route serves the path), method and status.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::header;
use http_body::{Body as _, Frame, SizeHint};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::Metrics;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest client-given request id kept.
const MAX_ID_LEN: usize = 128;

/// Where a listener's requests are counted, and the listener's name in the metrics' labels.
#[derive(Clone)]
pub struct Counted {
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// `toolbox`, `terminal` or `sdk_api`.
    pub listener: &'static str,
}

/// Middleware: the request id, its span and (with `metrics`) the request's metrics.
pub async fn observe(
    State(counted): State<Option<Counted>>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| sane(id))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&id).ok();
    if let Some(value) = &header {
        request.headers_mut().insert(REQUEST_ID, value.clone());
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let method = method_label(request.method());
    let span = tracing::info_span!("request", id = %id);
    let started = Instant::now();
    let (request, read) = track_body(request);
    let mut response = next.run(request).instrument(span).await;
    if !read.load(Ordering::SeqCst) {
        // Answered before the request's body was read to its end (a refusal, or an answer
        // that did not need it): hyper closes the connection after this answer, so say so,
        // or a keep-alive client sends its next request into a closing socket.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(Counted { metrics, listener }) = counted {
        metrics.observe(
            listener,
            &route,
            method,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    if let Some(value) = header {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// `tokio::spawn` in the current span: the task's log lines carry the request's id.
pub(crate) fn spawn<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(task.in_current_span())
}

/// `tokio::task::spawn_blocking` in the current span.
pub(crate) fn spawn_blocking<F, T>(work: F) -> tokio::task::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}

/// Wraps a WebSocket's `on_upgrade` callback so that the connection, which axum serves in a
/// task of its own, stays in the span of the request that opened it.
pub(crate) fn in_request<A, F, Fut>(
    callback: F,
) -> impl FnOnce(A) -> tracing::instrument::Instrumented<Fut>
where
    F: FnOnce(A) -> Fut,
    Fut: std::future::Future,
{
    let span = tracing::Span::current();
    move |argument| callback(argument).instrument(span)
}

/// The request with its body wrapped to note when it has been read to its end, and that flag
/// (set at once for a request without a body).
fn track_body(request: Request) -> (Request, Arc<AtomicBool>) {
    let read = Arc::new(AtomicBool::new(request.body().is_end_stream()));
    let flag = read.clone();
    let request = request.map(|body| Body::new(TrackedBody { body, read: flag }));
    (request, read)
}

/// A request body that sets `read` once it has ended.
struct TrackedBody {
    body: Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.body.is_end_stream() {
            self.read.store(true, Ordering::SeqCst);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether a client's request id may be kept (and logged) as it is.
fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
}

/// The method as a metric label: the standard ones by name, any other as `OTHER` (a client must
/// not be able to make new series at will).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_kept() {
        assert!(sane("abc-123_4.5:6/7+8="));
        assert!(sane(&"a".repeat(128)));
        assert!(!sane(&"a".repeat(129)));
        assert!(!sane(""));
        assert!(!sane("a b"));
        assert!(!sane("a\"b"));
        assert!(!sane("é"));
    }
}
