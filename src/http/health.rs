//! `GET /healthz`: a liveness probe that, like `GET /version`, needs no token.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

/// `{status}`
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the daemon is serving.
    pub status: &'static str,
}

/// Liveness: answers while the daemon serves. Open without the token (`--token`), like
/// `GET /version`.
#[utoipa::path(get, path = "/healthz", tag = "info",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}
