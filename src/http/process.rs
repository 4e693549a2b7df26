//! Process routes: `POST /process/execute`. Sessions, code-run and PTYs join here later.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use crate::error::Result;
use crate::process::ExecRequest;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/process/execute", post(execute))
}

/// `{command, cwd?, envs?, timeout?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExecuteRequest {
    /// Shell command text (run by bash, or sh).
    pub command: String,
    /// Working directory, relative to the work dir unless absolute.
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub envs: Option<BTreeMap<String, String>>,
    /// Seconds before the command's whole process tree is killed (408); 0 or absent: no limit.
    pub timeout: Option<u64>,
}

/// `{exitCode, result, stdout, stderr}`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteResponse {
    /// Exit code (128 + signal number when killed by a signal).
    pub exit_code: i32,
    /// stdout and stderr interleaved in arrival order (what the SDKs read).
    pub result: String,
    /// stdout alone.
    pub stdout: String,
    /// stderr alone.
    pub stderr: String,
    /// True when the output cap cut the output (a marker line says where).
    pub truncated: bool,
}

/// Runs a command to completion. Bytes that are not UTF-8 become U+FFFD.
#[utoipa::path(post, path = "/process/execute", tag = "process", request_body = ExecuteRequest,
    responses((status = 200, body = ExecuteResponse), (status = 400, body = super::error::ErrorBody),
        (status = 408, description = "timeout: the tree was killed", body = super::error::ErrorBody)))]
pub async fn execute(
    State(app): State<AppState>,
    Json(request): Json<ExecuteRequest>,
) -> Result<axum::Json<ExecuteResponse>> {
    let outcome = app
        .process
        .execute(ExecRequest {
            command: request.command,
            cwd: request.cwd,
            envs: request.envs.unwrap_or_default(),
            timeout: request.timeout.filter(|t| *t > 0).map(Duration::from_secs),
        })
        .await?;
    Ok(axum::Json(ExecuteResponse {
        exit_code: outcome.exit_code,
        result: String::from_utf8_lossy(&outcome.output).into_owned(),
        stdout: String::from_utf8_lossy(&outcome.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&outcome.stderr).into_owned(),
        truncated: outcome.truncated,
    }))
}
