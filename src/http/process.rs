//! Process routes: `POST /process/execute` and `POST /process/code-run`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use super::output::{OutputJson, Text};
use crate::code::{CodeRunRequest, Language};
use crate::error::Result;
use crate::process::{ExecRequest, Stream};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/process/execute", post(execute))
        .route("/process/code-run", post(code_run))
}

/// `{command, cwd?, envs?, timeout?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExecuteRequest {
    /// Shell command text (run by bash, or sh).
    pub command: String,
    /// Working directory, relative to the work dir unless absolute.
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[schema(schema_with = super::extract::env_map)]
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
        (status = 408, description = "timeout: the tree was killed", body = super::error::ErrorBody),
        (status = 503, description = "SHUTTING_DOWN: toolboxd is stopping and stopped the command; SERVICE_UNAVAILABLE: no process could start (out of processes, memory or descriptors)", body = super::error::ErrorBody)))]
pub async fn execute(
    State(app): State<AppState>,
    Json(request): Json<ExecuteRequest>,
) -> Result<OutputJson> {
    let outcome = app
        .process
        .execute(ExecRequest {
            command: request.command,
            cwd: request.cwd,
            envs: request.envs.unwrap_or_default(),
            timeout: request.timeout.filter(|t| *t > 0).map(Duration::from_secs),
            cancel: None,
        })
        .await?;
    // `ExecuteResponse`, written from the output held once.
    let truncated = outcome.output.truncated();
    Ok(OutputJson::new(outcome.output)
        .field("exitCode", &outcome.exit_code)
        .text("result", Text::Interleaved)
        .text("stdout", Text::Of(Stream::Stdout))
        .text("stderr", Text::Of(Stream::Stderr))
        .field("truncated", &truncated))
}

/// `{code, language, argv?, envs?, cwd?, timeout?}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeRunBody {
    /// The program text.
    pub code: String,
    /// python (default), javascript or typescript.
    pub language: Option<String>,
    /// Arguments, each passed as one argument.
    pub argv: Option<Vec<String>>,
    /// Extra environment variables.
    #[schema(schema_with = super::extract::env_map)]
    pub envs: Option<BTreeMap<String, String>>,
    /// Working directory (relative to the work dir); default the work dir. JavaScript and
    /// TypeScript resolve `require`/`import()` of relative paths and packages from it.
    pub cwd: Option<String>,
    /// Seconds before the program's whole process tree is killed (408); 0 or absent: no limit.
    pub timeout: Option<u64>,
}

/// `{charts}`
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeRunArtifacts {
    /// Every matplotlib figure shown (or left open), in order: snake_case chart objects, with a
    /// value the chart lacks (`title`, `x_label`, an element's `group`, …) left out, never null.
    #[schema(value_type = Vec<Object>)]
    pub charts: Vec<serde_json::Value>,
}

/// `{exitCode, result, artifacts?, stdout, stderr, truncated}`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeRunResponse {
    /// Exit code.
    pub exit_code: i32,
    /// stdout and stderr interleaved (never any chart data).
    pub result: String,
    /// Present when the program produced charts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<CodeRunArtifacts>,
    /// stdout alone.
    pub stdout: String,
    /// stderr alone.
    pub stderr: String,
    /// True when the output cap cut the output (a marker line says where), as in
    /// `/process/execute`.
    pub truncated: bool,
}

/// Runs Python, JavaScript or TypeScript as a program with real argv; matplotlib figures come
/// back as `artifacts.charts`.
#[utoipa::path(post, path = "/process/code-run", tag = "process", request_body = CodeRunBody,
    responses((status = 200, body = CodeRunResponse), (status = 400, body = super::error::ErrorBody),
        (status = 408, description = "timeout: the tree was killed", body = super::error::ErrorBody),
        (status = 503, description = "SHUTTING_DOWN: toolboxd is stopping and stopped the program; SERVICE_UNAVAILABLE: no process could start", body = super::error::ErrorBody)))]
pub async fn code_run(
    State(app): State<AppState>,
    Json(request): Json<CodeRunBody>,
) -> Result<OutputJson> {
    let language = Language::parse(request.language.as_deref().unwrap_or(""))?;
    let outcome = app
        .code
        .run(
            language,
            CodeRunRequest {
                code: request.code,
                argv: request.argv.unwrap_or_default(),
                envs: request.envs.unwrap_or_default(),
                cwd: request.cwd,
                timeout: request.timeout.filter(|t| *t > 0).map(Duration::from_secs),
                cancel: None,
            },
        )
        .await?;
    // `CodeRunResponse`, written from the output held once.
    let exec = outcome.exec;
    let truncated = exec.output.truncated();
    let mut json = OutputJson::new(exec.output)
        .field("exitCode", &exec.exit_code)
        .text("result", Text::Interleaved);
    if !outcome.charts.is_empty() {
        json = json.field(
            "artifacts",
            &CodeRunArtifacts {
                charts: outcome.charts,
            },
        );
    }
    Ok(json
        .text("stdout", Text::Of(Stream::Stdout))
        .text("stderr", Text::Of(Stream::Stderr))
        .field("truncated", &truncated))
}
