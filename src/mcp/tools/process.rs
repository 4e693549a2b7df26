//! `execute_command`: a one-shot command through `Process::execute`, as `POST /process/execute`
//! runs it, with progress while it runs and its process tree killed when the request is
//! cancelled.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Parameters;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::output::{self, head_and_tail, MAX_TEXT};
use super::super::progress::Progress;
use super::super::Toolbox;
use crate::process::{ExecRequest, Stream};

/// `execute_command`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecuteArgs {
    /// Shell command text, run by bash (or sh) with stdin from /dev/null.
    pub command: String,
    /// Working directory, relative to the work dir unless absolute (default: the work dir).
    pub cwd: Option<String>,
    /// Seconds before the command's whole process tree is killed (default: no limit).
    pub timeout: Option<u64>,
    /// Extra environment variables.
    pub envs: Option<BTreeMap<String, String>>,
}

/// How a command ended.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CommandOutput {
    /// Exit code (128 + the signal number when killed by a signal).
    pub exit_code: i32,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// True when output was cut to fit the result (a notice in the text says where).
    pub truncated: bool,
}

impl CommandOutput {
    /// The outcome's streams, within `MAX_TEXT` together: stderr gets up to a quarter of it when
    /// both are long, stdout the rest.
    pub fn new(exit_code: i32, stdout: &[u8], stderr: &[u8], cut_before: bool) -> CommandOutput {
        let stderr_room = if stdout.len() + stderr.len() <= MAX_TEXT {
            stderr.len()
        } else {
            stderr
                .len()
                .min((MAX_TEXT / 4).max(MAX_TEXT.saturating_sub(stdout.len())))
        };
        let stdout_room = MAX_TEXT - stderr_room.min(MAX_TEXT);
        let (stdout, out_cut) = head_and_tail(stdout, stdout_room, "stdout");
        let (stderr, err_cut) = head_and_tail(stderr, stderr_room.max(1), "stderr");
        CommandOutput {
            exit_code,
            stdout,
            stderr,
            truncated: cut_before || out_cut || err_cut,
        }
    }
}

#[rmcp::tool_router(router = process_router, vis = "pub(crate)")]
impl Toolbox {
    /// Runs a shell command to completion and returns its exit code, stdout and stderr apart
    /// (each cut to fit 100 KiB together, head and tail kept). Reports progress while it runs;
    /// cancelling the request kills the command's whole process tree. For a command that should
    /// outlive the request, use session_exec.
    #[rmcp::tool(
        annotations(
            title = "Execute command",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        ),
        output_schema = schema_for_output::<CommandOutput>()
    )]
    async fn execute_command(
        &self,
        Parameters(args): Parameters<ExecuteArgs>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let mut progress = Progress::of(&context);
        let run = self.app.process.execute(ExecRequest {
            command: args.command,
            cwd: args.cwd,
            envs: args.envs.unwrap_or_default(),
            timeout: args.timeout.filter(|t| *t > 0).map(Duration::from_secs),
            cancel: Some(context.ct.clone()),
        });
        let outcome = progress.heartbeat("command", run).await;
        Ok(output::outcome(outcome.map(|done| {
            CommandOutput::new(
                done.exit_code,
                &done.output.to_vec(Stream::Stdout),
                &done.output.to_vec(Stream::Stderr),
                done.output.truncated(),
            )
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_share_the_cap() {
        let small = CommandOutput::new(0, b"out", b"err", false);
        assert_eq!(
            (small.stdout.as_str(), small.stderr.as_str()),
            ("out", "err")
        );
        assert!(!small.truncated);
        let big = vec![b'o'; 4 * MAX_TEXT];
        let some = vec![b'e'; 1000];
        let mixed = CommandOutput::new(1, &big, &some, false);
        assert!(mixed.truncated);
        assert_eq!(mixed.stderr.len(), 1000);
        assert!(mixed.stdout.len() < MAX_TEXT + 300);
        let both = CommandOutput::new(1, &big, &big, false);
        assert!(both.stdout.len() + both.stderr.len() < MAX_TEXT + 600);
        assert!(both.stderr.len() > MAX_TEXT / 4 - 10);
    }
}
