//! Server info routes: version, init, home, work dir.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract;
use crate::error::Result;
use crate::state::AppState;

/// The daemon's version string.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/version", get(version))
        .route("/init", post(init))
        .route("/user-home-dir", get(user_home_dir))
        .route("/project-dir", get(project_dir))
        .route("/work-dir", get(work_dir))
}

/// `{version}`
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionResponse {
    /// `v` + the toolboxd release.
    pub version: String,
}

/// `{token}` from the control plane.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InitializeRequest {
    /// The sandbox auth token (accepted; toolboxd exports no telemetry).
    #[allow(dead_code)]
    pub token: Option<String>,
}

/// `{message}`
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    /// What happened.
    pub message: String,
}

/// `{dir}`
#[derive(Debug, Serialize, ToSchema)]
pub struct DirResponse {
    /// An absolute directory.
    pub dir: String,
}

/// The version; the runner polls it for readiness.
#[utoipa::path(get, path = "/version", tag = "info",
    responses((status = 200, body = VersionResponse)))]
pub async fn version() -> Json<VersionResponse> {
    Json(VersionResponse {
        version: VERSION.to_string(),
    })
}

/// Accepts the sandbox token.
#[utoipa::path(post, path = "/init", tag = "info", request_body = InitializeRequest,
    responses((status = 200, body = MessageResponse), (status = 400, body = super::error::ErrorBody)))]
pub async fn init(
    extract::Json(_request): extract::Json<InitializeRequest>,
) -> Result<Json<MessageResponse>> {
    Ok(Json(MessageResponse {
        message: "Auth token set and telemetry initialized successfully".to_string(),
    }))
}

/// `$HOME`.
#[utoipa::path(get, path = "/user-home-dir", tag = "info",
    responses((status = 200, body = DirResponse)))]
pub async fn user_home_dir(State(app): State<AppState>) -> Json<DirResponse> {
    Json(DirResponse {
        dir: app.config.home.to_string_lossy().into_owned(),
    })
}

/// Same as `/user-home-dir` (kept for older clients).
#[utoipa::path(get, path = "/project-dir", tag = "info",
    responses((status = 200, body = DirResponse)))]
pub async fn project_dir(state: State<AppState>) -> Json<DirResponse> {
    user_home_dir(state).await
}

/// The directory relative paths resolve against.
#[utoipa::path(get, path = "/work-dir", tag = "info",
    responses((status = 200, body = DirResponse)))]
pub async fn work_dir(State(app): State<AppState>) -> Json<DirResponse> {
    Json(DirResponse {
        dir: app.config.workdir.to_string_lossy().into_owned(),
    })
}
