//! `POST /env` (the environment of future children) and `GET /system/metrics`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{blocking, Json};
use super::wire;
use crate::error::Result;
use crate::process::EnvUpdate;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/env", post(update_env))
        .route("/system/metrics", get(metrics))
}

/// `{set?, unset?, unsetValuePrefix?}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEnvRequest {
    /// Variables to set.
    #[schema(schema_with = super::extract::env_map)]
    pub set: Option<BTreeMap<String, String>>,
    /// Variables to remove (before `set`).
    pub unset: Option<Vec<String>>,
    /// Remove every variable whose value starts with this and whose name is not in `set`.
    pub unset_value_prefix: Option<String>,
}

/// Daytona's `SystemMetrics`; sizes in bytes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemMetrics {
    /// CPUs available (cgroup quota aware).
    pub cpu_count: u64,
    /// CPU busy percentage since the previous sample.
    pub cpu_used_pct: f64,
    /// Memory limit (cgroup) or RAM.
    pub mem_total: u64,
    /// Memory in use, page cache excluded.
    pub mem_used: u64,
    /// Page cache.
    pub mem_cache: u64,
    /// Work dir filesystem size.
    pub disk_total: u64,
    /// Used on it.
    pub disk_used: u64,
    /// Free on it.
    pub disk_free: u64,
    /// RFC 3339.
    pub timestamp: String,
    /// Unix seconds.
    pub timestamp_unix: u64,
}

/// Changes what new children inherit. Answers the changes: set variables with their values,
/// removed ones with `""`. A variable no process could be started with is a 400 and changes
/// nothing: a name that is not a shell identifier, a NUL byte, a `NAME=value` over 128 KiB (the
/// kernel's limit per string), or an environment that would grow past 1 MiB.
#[utoipa::path(post, path = "/env", tag = "process", request_body = UpdateEnvRequest,
    responses((status = 200, body = BTreeMap<String, String>), (status = 400, body = super::error::ErrorBody)))]
pub async fn update_env(
    State(app): State<AppState>,
    Json(request): Json<UpdateEnvRequest>,
) -> Result<axum::Json<BTreeMap<String, String>>> {
    let changes = app.process.update_env(EnvUpdate {
        set: request.set.unwrap_or_default(),
        unset: request.unset.unwrap_or_default(),
        unset_value_prefix: request.unset_value_prefix,
    })?;
    Ok(axum::Json(changes))
}

/// CPU, memory (cgroup limits when inside one) and disk of the work dir's filesystem.
#[utoipa::path(get, path = "/system/metrics", tag = "process",
    responses((status = 200, body = SystemMetrics)))]
pub async fn metrics(State(app): State<AppState>) -> Result<axum::Json<SystemMetrics>> {
    let system = app.system.clone();
    let workdir = app.config.workdir.clone();
    let sample = blocking(move || Ok(system.sample(&workdir))).await?;
    let unix = sample
        .timestamp
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(axum::Json(SystemMetrics {
        cpu_count: sample.cpu_count,
        cpu_used_pct: sample.cpu_used_pct,
        mem_total: sample.mem_total,
        mem_used: sample.mem_used,
        mem_cache: sample.mem_cache,
        disk_total: sample.disk_total,
        disk_used: sample.disk_used,
        disk_free: sample.disk_free,
        timestamp: wire::rfc3339_nano(sample.timestamp),
        timestamp_unix: unix,
    }))
}
