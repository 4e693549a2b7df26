//! The HTTP edge: one router per capability merged here, plus the layers every route shares
//! (request ids and metrics, token auth, error rendering, panic catching, request tracing). Handlers extract, call a capability,
//! convert; only this folder knows axum and the wire shapes.

pub mod auth;
pub mod download;
pub mod error;
pub mod extract;
pub mod files;
pub mod git;
pub mod health;
pub mod info;
pub mod interpreter;
pub mod lsp;
pub mod mcp;
pub mod observe;
pub mod openapi;
pub mod output;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod pty;
pub mod sdk_api;
pub mod search;
pub mod serve;
pub mod session;
pub mod stream;
pub mod system;
pub mod terminal;
pub mod upload;
pub mod watch;
pub mod wire;
pub mod ws;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use axum::{middleware, Router};
use http_body::{Frame, SizeHint};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::memory::Busy;
use crate::state::AppState;

/// The toolbox API (port 2280).
pub fn router(state: AppState) -> Router {
    let signing = state
        .config
        .signing_key
        .is_some()
        .then(|| state.signing_key.clone());
    let guard = auth::Guard::toolbox(state.config.token.clone(), signing);
    let metrics = Some(observe::Counted {
        metrics: state.metrics.clone(),
        listener: "toolbox",
    });
    Router::new()
        .merge(mcp::router(&state))
        .merge(info::router())
        .merge(health::router())
        .merge(prometheus::router())
        .merge(files::router())
        .merge(download::router())
        .merge(upload::router())
        .merge(search::router())
        .merge(git::router())
        .merge(interpreter::router())
        .merge(process::router())
        .merge(session::router())
        .merge(pty::router())
        .merge(system::router())
        .merge(lsp::router())
        .merge(watch::router())
        .merge(ports::router())
        .merge(proxy::router())
        .merge(openapi::router())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .with_state(state)
        .layer(middleware::from_fn_with_state(guard, auth::require))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(middleware::from_fn(error::render_errors))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(metrics, observe::observe))
        .layer(middleware::from_fn(busy))
}

/// Marks the request busy for the memory trimmer (`crate::memory`) until its response body is
/// sent or dropped.
async fn busy(request: Request, next: axum::middleware::Next) -> Response {
    let busy = Busy::start();
    next.run(request)
        .await
        .map(|body| Body::new(BusyBody { body, _busy: busy }))
}

/// A response body holding the request's `Busy` guard.
struct BusyBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
