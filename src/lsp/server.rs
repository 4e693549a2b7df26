//! One running language server: the child (through `Process::spawn_stdio`, in its own cgroup
//! leaf), its connection, the `initialize` handshake, and the stop sequence (shutdown request,
//! exit notification, grace, then the tree is killed and the exit awaited from the reaper).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lsp_types::{
    ClientCapabilities, ClientInfo, CompletionClientCapabilities, CompletionItemCapability,
    DocumentSymbolClientCapabilities, GeneralClientCapabilities, HoverClientCapabilities,
    InitializeParams, MarkupKind, PublishDiagnosticsClientCapabilities,
    TextDocumentClientCapabilities, TextDocumentSyncClientCapabilities, Url,
    WindowClientCapabilities, WorkspaceClientCapabilities, WorkspaceFolder,
    WorkspaceSymbolClientCapabilities,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::transport::{Connection, Inbound, RequestError};
use crate::error::{Error, ErrorKind, Result};
use crate::process::{ExitStatus, Process, StdioChild};

/// How long a server may take to answer `initialize`.
pub const INITIALIZE_DEADLINE: Duration = Duration::from_secs(60);
/// How long `shutdown` may take before the exit notification is sent anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(2);
/// How long a server gets to exit after `exit` before its tree is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How much of the server's stderr is kept for error messages.
const STDERR_TAIL: usize = 2048;

/// A started, initialized server.
#[derive(Debug)]
pub struct Server {
    /// The JSON-RPC connection.
    pub conn: Arc<Connection>,
    /// The `initialize` result (capabilities), as the server sent it.
    pub init: Value,
    /// The program, for messages.
    pub program: String,
    /// Its pid.
    pub pid: i32,
    child: Mutex<Option<StdioChild>>,
    exited: watch::Receiver<Option<ExitStatus>>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
}

impl Server {
    /// Starts `command` in `root` and runs the `initialize` handshake. Everything the server sends
    /// on its own arrives on the returned channel.
    pub async fn launch(
        process: &Process,
        command: &[String],
        root: &Path,
        root_uri: &Url,
    ) -> Result<(Arc<Server>, mpsc::UnboundedReceiver<Inbound>)> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| Error::bad_request("the language server command is empty"))?;
        let spawn_process = process.clone();
        let (program_path, args_owned, root_owned) =
            (program.clone(), args.to_vec(), root.to_path_buf());
        let mut child = tokio::task::spawn_blocking(move || {
            spawn_process.spawn_stdio(Path::new(&program_path), &args_owned, &root_owned)
        })
        .await
        .map_err(|err| Error::internal(format!("spawn task failed: {err}")))?
        .map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                Error::bad_request(format!(
                    "cannot start the language server `{program}`: not found on PATH"
                ))
            } else {
                Error::bad_request(format!(
                    "cannot start the language server `{program}`: {err}"
                ))
            }
        })?;
        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::internal("the language server's pipes are missing"));
        };
        let name = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.clone());
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        drain_stderr(stderr_pipe, stderr.clone(), &name);
        let (conn, inbound) = Connection::start(stdin, stdout, &name)
            .map_err(|err| Error::internal(format!("cannot start IO threads: {err}")))?;
        let (exit_sender, exited) = watch::channel(None);
        if let Some(exit) = child.exit.take() {
            tokio::spawn(async move {
                let status = exit.wait().await;
                let _ = exit_sender.send(Some(status));
            });
        }
        let server = Arc::new(Server {
            conn,
            init: Value::Null,
            program: name,
            pid: child.pid,
            child: Mutex::new(Some(child)),
            exited,
            stderr,
        });
        let params = initialize_params(root_uri);
        let init = match server
            .conn
            .request("initialize", params, INITIALIZE_DEADLINE)
            .await
        {
            Ok(init) => init,
            Err(err) => {
                let message = server.failure("initialize", &err);
                server.stop().await;
                return Err(message);
            }
        };
        server.conn.notify("initialized", serde_json::json!({}));
        // `init` is set once, before anyone else sees the server.
        let mut server = Arc::try_unwrap(server).map_err(|_| Error::internal("server shared"))?;
        server.init = init;
        Ok((Arc::new(server), inbound))
    }

    /// Whether the server is still running and talking.
    pub fn alive(&self) -> bool {
        self.exited.borrow().is_none() && !self.conn.is_closed()
    }

    /// The error for a failed request `method`.
    pub fn failure(&self, method: &str, err: &RequestError) -> Error {
        let program = &self.program;
        match err {
            RequestError::Rpc(rpc) => Error::new(
                ErrorKind::LspServerFailed,
                format!(
                    "the language server `{program}` failed {method}: {} (code {})",
                    rpc.message, rpc.code
                ),
            ),
            RequestError::Timeout(deadline) => Error::new(
                ErrorKind::RequestTimeout,
                format!(
                    "the language server `{program}` did not answer {method} within {} s",
                    deadline.as_secs()
                ),
            ),
            RequestError::Closed => {
                let tail = self.stderr_tail();
                let tail = if tail.is_empty() {
                    String::new()
                } else {
                    format!("; its last output: {tail}")
                };
                Error::new(
                    ErrorKind::LspServerFailed,
                    format!(
                        "the language server `{program}` exited during {method} (it is restarted on the next request){tail}"
                    ),
                )
            }
        }
    }

    /// The end of what the server wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let bytes: Vec<u8> = tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// Stops the server: `shutdown` (if it still talks), `exit`, up to `STOP_GRACE` to exit, then
    /// its tree is killed; returns once the reaper reported the exit.
    pub async fn stop(&self) {
        if self.alive() {
            let _ = self
                .conn
                .request("shutdown", Value::Null, SHUTDOWN_DEADLINE)
                .await;
            self.conn.notify("exit", Value::Null);
        }
        let mut exited = self.exited.clone();
        let gone = tokio::time::timeout(STOP_GRACE, exited.wait_for(Option::is_some))
            .await
            .map(|_| ());
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(child) = child {
            // Whatever the server started (tsserver, plugins) goes with it.
            child.signal(Signal::SIGKILL);
            if gone.is_err() {
                let _ = tokio::time::timeout(STOP_GRACE, exited.wait_for(Option::is_some)).await;
            }
            // Dropping kills the cgroup leaf and removes it once empty.
            let _ = tokio::task::spawn_blocking(move || drop(child)).await;
        }
    }
}

/// Keeps the last `STDERR_TAIL` bytes of the server's stderr and logs it at debug level.
fn drain_stderr(pipe: File, tail: Arc<Mutex<VecDeque<u8>>>, name: &str) {
    let name = name.to_string();
    let _ = std::thread::Builder::new()
        .name(format!("lsp-stderr-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        tracing::debug!(server = %name, "{}", String::from_utf8_lossy(&line).trim_end());
                        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                        tail.extend(line.iter().copied());
                        while tail.len() > STDERR_TAIL {
                            tail.pop_front();
                        }
                    }
                }
            }
        });
}

/// What toolboxd tells a server about itself: enough for the SDK routes and for an editor on the
/// relay (hover, definition, references, rename, formatting, code actions work with these).
#[allow(deprecated)] // root_uri: older servers read it instead of workspace_folders
fn initialize_params(root_uri: &Url) -> Value {
    let markup = vec![MarkupKind::Markdown, MarkupKind::PlainText];
    let capabilities = ClientCapabilities {
        workspace: Some(WorkspaceClientCapabilities {
            apply_edit: Some(true),
            configuration: Some(true),
            workspace_folders: Some(true),
            symbol: Some(WorkspaceSymbolClientCapabilities::default()),
            ..Default::default()
        }),
        text_document: Some(TextDocumentClientCapabilities {
            synchronization: Some(TextDocumentSyncClientCapabilities {
                did_save: Some(true),
                ..Default::default()
            }),
            completion: Some(CompletionClientCapabilities {
                completion_item: Some(CompletionItemCapability {
                    snippet_support: Some(false),
                    documentation_format: Some(markup.clone()),
                    ..Default::default()
                }),
                context_support: Some(true),
                ..Default::default()
            }),
            hover: Some(HoverClientCapabilities {
                content_format: Some(markup),
                ..Default::default()
            }),
            document_symbol: Some(DocumentSymbolClientCapabilities {
                hierarchical_document_symbol_support: Some(false),
                ..Default::default()
            }),
            publish_diagnostics: Some(PublishDiagnosticsClientCapabilities {
                version_support: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }),
        window: Some(WindowClientCapabilities {
            work_done_progress: Some(true),
            ..Default::default()
        }),
        general: Some(GeneralClientCapabilities::default()),
        ..Default::default()
    };
    let name = root_uri
        .path_segments()
        .and_then(|mut segments| segments.next_back().map(str::to_string))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "root".to_string());
    let params = InitializeParams {
        process_id: Some(std::process::id()),
        root_uri: Some(root_uri.clone()),
        workspace_folders: Some(vec![WorkspaceFolder {
            uri: root_uri.clone(),
            name,
        }]),
        capabilities,
        client_info: Some(ClientInfo {
            name: "toolboxd".to_string(),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
        }),
        ..Default::default()
    };
    serde_json::to_value(params).unwrap_or(Value::Null)
}
