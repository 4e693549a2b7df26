//! Long-running commands in sessions: `session_start`, `session_exec` (always async) and
//! `session_logs` (the log read from an offset, so an agent polls on from where it stopped).
//! The sessions are the sandbox's own (`/process/session`): they outlive the MCP session and
//! end with `DELETE /process/session/{id}` or the daemon.

use std::time::Duration;

use super::Parameters;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::CallToolResult;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::output::{self, MAX_TEXT};
use super::super::{blocking, Toolbox};
use crate::process::ExecOptions;

/// `session_start`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StartArgs {
    /// The new session's id (letters, digits, `-`, `_`; default: a new UUID).
    pub session_id: Option<String>,
}

/// A session.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Started {
    /// Its id, for session_exec.
    pub session_id: String,
}

/// `session_exec`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecArgs {
    /// The session (from session_start).
    pub session_id: String,
    /// Shell text, run in the session's bash: `cd`, variables and functions persist between
    /// commands. Commands run one after another.
    pub command: String,
    /// Seconds after it began before the command (and the session's shell) is killed; it then
    /// ends with exit code 124 (default: no limit).
    pub timeout: Option<u64>,
}

/// A command started in a session.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Launched {
    /// The session.
    pub session_id: String,
    /// The command's id, for session_logs.
    pub command_id: String,
}

/// `session_logs`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct LogsArgs {
    /// The session.
    pub session_id: String,
    /// The command (from session_exec).
    pub command_id: String,
    /// Where to read from: 0 (the default) for the start, else the `next_offset` of the previous
    /// call.
    pub offset: Option<u64>,
}

/// A piece of a command's output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LogPiece {
    /// stdout and stderr as they arrived, from `offset` on (at most 100 KiB per call).
    pub output: String,
    /// The offset to pass next time.
    pub next_offset: u64,
    /// True when more output is already there: call again with `next_offset`.
    pub more: bool,
    /// True while the command runs.
    pub running: bool,
    /// The exit code once it ended (128 + signal when killed, 124 after its timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it ended: exited, signal, killed, timeout or shell_unusable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_cause: Option<String>,
}

#[rmcp::tool_router(router = session_router, vis = "pub(crate)")]
impl Toolbox {
    /// Starts a session: a long-lived bash in which commands run in the background
    /// (session_exec) while their output is read with session_logs.
    #[rmcp::tool(
        annotations(
            title = "Start session",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<Started>()
    )]
    async fn session_start(
        &self,
        Parameters(args): Parameters<StartArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let id = args
            .session_id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let started = self
            .app
            .sessions
            .create(&id)
            .map(|()| Started { session_id: id });
        Ok(output::outcome(started))
    }

    /// Starts a command in a session and returns at once with its id; read its output and exit
    /// code with session_logs.
    #[rmcp::tool(
        annotations(
            title = "Run in session",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        ),
        output_schema = schema_for_output::<Launched>()
    )]
    async fn session_exec(
        &self,
        Parameters(args): Parameters<ExecArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let options = ExecOptions {
            run_async: true,
            suppress_echo: false,
            timeout: args.timeout.filter(|t| *t > 0).map(Duration::from_secs),
        };
        let launched = self
            .app
            .sessions
            .exec(&args.session_id, &args.command, options)
            .await
            .map(|(command_id, _)| Launched {
                session_id: args.session_id,
                command_id,
            });
        Ok(output::outcome(launched))
    }

    /// Reads a session command's output from `offset` (at most 100 KiB per call) and says
    /// whether it still runs or how it ended.
    #[rmcp::tool(
        annotations(
            title = "Session command logs",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<LogPiece>()
    )]
    async fn session_logs(
        &self,
        Parameters(args): Parameters<LogsArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let sessions = self.app.sessions.clone();
        let offset = args.offset.unwrap_or(0);
        let read = blocking(move || {
            sessions.read_log(&args.session_id, &args.command_id, offset, MAX_TEXT)
        })
        .await
        .map(|slice| LogPiece {
            output: String::from_utf8_lossy(&slice.output).into_owned(),
            next_offset: slice.next_offset,
            more: slice.more,
            running: slice.exit_code.is_none(),
            exit_code: slice.exit_code,
            exit_cause: slice.exit_cause.map(|c| c.as_str().to_string()),
        });
        Ok(output::outcome(read))
    }
}
