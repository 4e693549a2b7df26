//! `GET /metrics`: the Prometheus metrics (`crate::metrics`) in the OpenMetrics text format.
//! Behind the token (`--token`) like every route but `/version` and `/healthz`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Live;
use crate::state::AppState;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus metrics: requests by route template, method and status
/// (`toolboxd_http_requests_total`), latency per route
/// (`toolboxd_http_request_duration_seconds`), bytes in and out, child processes started and
/// reaped, and live sessions, PTYs, language servers, interpreter contexts, watched directories
/// and SSH connections.
#[utoipa::path(get, path = "/metrics", tag = "info", operation_id = "prometheus_metrics",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let live = Live {
        sessions: app.sessions.count(),
        ptys: app.ptys.list().len(),
        lsp_servers: app.lsp.server_pids().len(),
        interpreter_contexts: app.interpreters.list().len(),
        watched_dirs: app.watch.watched_dirs(),
    };
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        app.metrics.render(live),
    )
}
