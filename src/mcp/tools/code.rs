//! `run_code`: Python, JavaScript or TypeScript through `Code::run`, as
//! `POST /process/code-run` runs it. Every matplotlib figure comes back twice: as an image the
//! agent can look at, and as chart data (type, title, labels, elements) in the structured
//! content.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Parameters;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::output;
use super::super::progress::Progress;
use super::super::Toolbox;
use super::process::CommandOutput;
use crate::code::{CodeRunRequest, Language};
use crate::process::Stream;

/// `run_code`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunCodeArgs {
    /// The program.
    pub code: String,
    /// `python` (the default), `javascript` or `typescript`.
    pub language: Option<String>,
    /// Arguments for the program, each passed as one argument.
    pub argv: Option<Vec<String>>,
    /// Extra environment variables.
    pub envs: Option<BTreeMap<String, String>>,
    /// Seconds before the program's whole process tree is killed (default: no limit).
    pub timeout: Option<u64>,
    /// Working directory, relative to the work dir (default: the work dir); JavaScript and
    /// TypeScript resolve modules from it.
    pub cwd: Option<String>,
}

/// How a program ended, with its charts.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CodeOutput {
    /// Exit code (128 + the signal number when killed by a signal).
    pub exit_code: i32,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// True when output was cut to fit the result.
    pub truncated: bool,
    /// Every matplotlib figure it showed (or left open), in order, as chart data: `type`
    /// (line, scatter, bar, pie, box_and_whisker, composite_chart, unknown), `title`, axis
    /// labels and `elements`. Each is also an image in the result's content, in the same order.
    pub charts: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[rmcp::tool_router(router = code_router, vis = "pub(crate)")]
impl Toolbox {
    /// Runs Python, JavaScript or TypeScript as a program and returns exit code, stdout and
    /// stderr (cut to fit 100 KiB). Python figures drawn with matplotlib come back as PNG images
    /// plus their chart data. Cancelling the request kills the program's process tree.
    #[rmcp::tool(
        annotations(
            title = "Run code",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        ),
        output_schema = schema_for_output::<CodeOutput>()
    )]
    async fn run_code(
        &self,
        Parameters(args): Parameters<RunCodeArgs>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let language = match Language::parse(args.language.as_deref().unwrap_or("")) {
            Ok(language) => language,
            Err(err) => return Ok(output::failure(&err)),
        };
        let mut progress = Progress::of(&context);
        let run = self.app.code.run(
            language,
            CodeRunRequest {
                code: args.code,
                argv: args.argv.unwrap_or_default(),
                envs: args.envs.unwrap_or_default(),
                timeout: args.timeout.filter(|t| *t > 0).map(Duration::from_secs),
                cwd: args.cwd.filter(|cwd| !cwd.is_empty()),
                cancel: Some(context.ct.clone()),
            },
        );
        let outcome = match progress.heartbeat("program", run).await {
            Ok(outcome) => outcome,
            Err(err) => return Ok(output::failure(&err)),
        };
        let exec = CommandOutput::new(
            outcome.exec.exit_code,
            &outcome.exec.output.to_vec(Stream::Stdout),
            &outcome.exec.output.to_vec(Stream::Stderr),
            outcome.exec.output.truncated(),
        );
        let mut images = Vec::new();
        let mut charts = Vec::new();
        for chart in outcome.charts {
            let serde_json::Value::Object(mut chart) = chart else {
                continue;
            };
            if let Some(serde_json::Value::String(png)) = chart.remove("png") {
                images.push(ContentBlock::image(png, "image/png"));
            }
            charts.push(chart);
        }
        let mut result = output::data(&CodeOutput {
            exit_code: exec.exit_code,
            stdout: exec.stdout,
            stderr: exec.stderr,
            truncated: exec.truncated,
            charts,
        });
        result.content.extend(images);
        Ok(result)
    }
}
