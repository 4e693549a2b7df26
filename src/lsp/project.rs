//! One (language, project root): its server (started on `start`, restarted on the next request
//! after a crash, with the open documents reopened), the open documents, the latest diagnostics
//! per file, and the relay clients sharing the server.
//!
//! Document sync: toolboxd keeps each open document's text and version. Before any request that
//! touches a document, the file is read again; if it differs from what the server has, the server
//! gets `didChange` (full text, next version) first. A document a relay client opened is that
//! client's: its own `didChange`s are forwarded (with versions renumbered) and the disk is not
//! consulted until it closes the document.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use lsp_types::Url;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::server::Server;
use super::transport::{Connection, Inbound, RpcError, METHOD_NOT_FOUND};
use crate::error::{Error, ErrorKind, Result};
use crate::process::Process;

/// How long an editor on the relay gets to answer `workspace/applyEdit`.
const APPLY_EDIT_DEADLINE: Duration = Duration::from_secs(30);

/// What a relay client's socket is sent.
#[derive(Debug)]
pub enum RelayOut {
    /// One JSON-RPC message.
    Message(String),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

/// An open document.
#[derive(Debug)]
struct Doc {
    uri: Url,
    language_id: String,
    version: i32,
    text: String,
    /// Opened through the REST routes (or implicitly by one of their requests).
    rest_open: bool,
    /// The relay client whose editor owns the text, if any.
    relay_owner: Option<u64>,
    /// The project generation at the last open or change.
    synced: u64,
}

/// The latest `publishDiagnostics` for a file.
#[derive(Debug, Clone)]
pub struct Published {
    /// The document version it is for, when the server says.
    pub version: Option<i32>,
    /// The diagnostics, as the server sent them.
    pub diagnostics: Value,
    generation: u64,
}

/// A (language, root) with its server.
#[derive(Debug)]
pub struct Project {
    /// `python`, `typescript` or `javascript`.
    pub language: String,
    /// The project root.
    pub root: PathBuf,
    /// The root as a URI.
    pub root_uri: Url,
    command: Vec<String>,
    process: Process,
    server: tokio::sync::Mutex<Option<Arc<Server>>>,
    stopped: AtomicBool,
    docs: Mutex<HashMap<PathBuf, Doc>>,
    generation: AtomicU64,
    diagnostics: Mutex<HashMap<PathBuf, Published>>,
    diagnostics_changed: watch::Sender<u64>,
    relays: Mutex<HashMap<u64, mpsc::UnboundedSender<RelayOut>>>,
    relay_waiters: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    next_forward: AtomicU64,
}

impl Project {
    /// A project that has no server yet.
    pub fn new(language: &str, root: PathBuf, command: Vec<String>, process: Process) -> Project {
        let root_uri = Url::from_directory_path(&root)
            .unwrap_or_else(|_| Url::parse("file:///").expect("a valid URL"));
        Project {
            language: language.to_string(),
            root,
            root_uri,
            command,
            process,
            server: tokio::sync::Mutex::new(None),
            stopped: AtomicBool::new(false),
            docs: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            diagnostics: Mutex::new(HashMap::new()),
            diagnostics_changed: watch::channel(0).0,
            relays: Mutex::new(HashMap::new()),
            relay_waiters: Mutex::new(HashMap::new()),
            next_forward: AtomicU64::new(1),
        }
    }

    /// The running server: started if there is none, restarted (documents reopened) if it died.
    pub async fn server(self: &Arc<Self>) -> Result<Arc<Server>> {
        let mut slot = self.server.lock().await;
        if self.stopped.load(Ordering::SeqCst) {
            return Err(not_initialized(&self.language, &self.root));
        }
        if let Some(server) = slot.as_ref() {
            if server.alive() {
                return Ok(server.clone());
            }
            tracing::warn!(
                server = %server.program,
                root = %self.root.display(),
                "language server exited; restarting it"
            );
            let dead = slot.take();
            if let Some(dead) = dead {
                dead.stop().await;
            }
        }
        let (server, inbound) =
            Server::launch(&self.process, &self.command, &self.root, &self.root_uri).await?;
        tokio::spawn(dispatch(Arc::downgrade(self), server.conn.clone(), inbound));
        self.reopen(&server).await;
        *slot = Some(server.clone());
        Ok(server)
    }

    /// Stops the server for good (relay clients are closed); later requests are refused.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let server = self.server.lock().await.take();
        self.close_relays(1001, "the language server was stopped");
        if let Some(server) = server {
            server.stop().await;
        }
    }

    /// Reopens every tracked document on a fresh server, from disk.
    async fn reopen(&self, server: &Server) {
        let paths: Vec<PathBuf> = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if paths.is_empty() {
            return;
        }
        let texts = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|path| {
                    let text = std::fs::read(&path)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).into_owned());
                    (path, text)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        for (path, text) in texts {
            let Some(text) = text else {
                docs.remove(&path);
                continue;
            };
            if let Some(doc) = docs.get_mut(&path) {
                doc.version += 1;
                doc.text = text;
                doc.relay_owner = None;
                doc.synced = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                server.conn.notify("textDocument/didOpen", did_open(doc));
            }
        }
    }

    /// Makes sure the server has `path` open with what is on disk now (`didOpen` the first time,
    /// `didChange` when the file changed); `rest` marks it opened through the REST routes.
    pub async fn sync(&self, server: &Server, path: &Path, rest: bool) -> Result<Url> {
        // A document a relay client owns has the editor's text, not the disk's: nothing to read.
        if let Some(doc) = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(path)
            .filter(|doc| doc.relay_owner.is_some())
        {
            doc.rest_open |= rest;
            return Ok(doc.uri.clone());
        }
        let owned = path.to_path_buf();
        let text = tokio::task::spawn_blocking(move || {
            std::fs::read(&owned)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|err| Error::io("read", &owned, &err))
        })
        .await
        .map_err(|err| Error::internal(format!("read task failed: {err}")))??;
        let uri = Url::from_file_path(path).map_err(|()| {
            Error::invalid_path(format!("not an absolute path: {}", path.display()))
        })?;
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        match docs.get_mut(path) {
            None => {
                let doc = Doc {
                    uri: uri.clone(),
                    language_id: language_id_of(path, &self.language),
                    version: 1,
                    text,
                    rest_open: rest,
                    relay_owner: None,
                    synced: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
                };
                server.conn.notify("textDocument/didOpen", did_open(&doc));
                docs.insert(path.to_path_buf(), doc);
            }
            Some(doc) => {
                doc.rest_open |= rest;
                if doc.relay_owner.is_none() && doc.text != text {
                    doc.version += 1;
                    doc.text = text;
                    doc.synced = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                    server.conn.notify(
                        "textDocument/didChange",
                        json!({
                            "textDocument": {"uri": doc.uri, "version": doc.version},
                            "contentChanges": [{"text": doc.text}],
                        }),
                    );
                }
            }
        }
        Ok(uri)
    }

    /// Brings every open document up to date (before a workspace-wide request).
    pub async fn sync_all(&self, server: &Server) {
        let paths: Vec<PathBuf> = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, doc)| doc.relay_owner.is_none())
            .map(|(path, _)| path.clone())
            .collect();
        for path in paths {
            let _ = self.sync(server, &path, false).await;
        }
    }

    /// The REST `did-close`: the server forgets the document unless a relay editor has it.
    pub fn close(&self, server: &Server, path: &Path) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(doc) = docs.get_mut(path) else {
            return;
        };
        doc.rest_open = false;
        if doc.relay_owner.is_none() {
            server.conn.notify(
                "textDocument/didClose",
                json!({"textDocument": {"uri": doc.uri}}),
            );
            docs.remove(path);
        }
    }

    /// Whether `path` is open on the server.
    pub fn is_open(&self, path: &Path) -> bool {
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(path)
    }

    /// The latest diagnostics for `path`, waiting up to `wait` for ones published after the
    /// document's last open or change.
    pub async fn diagnostics(&self, path: &Path, wait: Duration) -> Option<Published> {
        let (synced, version) = {
            let docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
            docs.get(path)
                .map(|doc| (doc.synced, doc.version))
                .unwrap_or((0, 0))
        };
        let mut changed = self.diagnostics_changed.subscribe();
        let fresh = |published: &Published| {
            published.generation >= synced && published.version.is_none_or(|v| v >= version)
        };
        let _ = tokio::time::timeout(wait, async {
            loop {
                let current = self
                    .diagnostics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(path)
                    .cloned();
                if current.as_ref().is_some_and(fresh) {
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        self.diagnostics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned()
    }

    fn publish_diagnostics(&self, params: &Value) {
        let Some(path) = params
            .get("uri")
            .and_then(Value::as_str)
            .and_then(|uri| Url::parse(uri).ok())
            .and_then(|uri| uri.to_file_path().ok())
        else {
            return;
        };
        let published = Published {
            version: params
                .get("version")
                .and_then(Value::as_i64)
                .map(|v| v as i32),
            diagnostics: params
                .get("diagnostics")
                .cloned()
                .filter(Value::is_array)
                .unwrap_or_else(|| json!([])),
            generation: self.generation.load(Ordering::SeqCst),
        };
        self.diagnostics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path, published);
        self.diagnostics_changed.send_modify(|n| *n += 1);
    }

    // ---- relay clients ----

    /// Registers a relay client's outgoing channel.
    pub fn add_relay(&self, id: u64, sender: mpsc::UnboundedSender<RelayOut>) {
        self.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, sender);
    }

    /// A relay client left: the documents its editor owned go back to disk content, or are
    /// closed when nobody else has them open.
    pub async fn remove_relay(&self, id: u64) {
        self.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let owned: Vec<PathBuf> = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, doc)| doc.relay_owner == Some(id))
            .map(|(path, _)| path.clone())
            .collect();
        let server = self.current();
        for path in owned {
            self.relay_close(server.as_deref(), id, &path).await;
        }
    }

    /// The server if one is running (never starts one).
    pub fn current(&self) -> Option<Arc<Server>> {
        self.server.try_lock().ok().and_then(|slot| slot.clone())
    }

    /// A relay editor opened `path` with `text`.
    pub fn relay_open(&self, server: &Server, id: u64, path: &Path, uri: &Url, params: &Value) {
        let text = params["textDocument"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let language_id = params["textDocument"]["languageId"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| language_id_of(path, &self.language));
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let synced = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        match docs.get_mut(path) {
            Some(doc) => {
                doc.version += 1;
                doc.text = text;
                doc.relay_owner = Some(id);
                doc.synced = synced;
                server.conn.notify(
                    "textDocument/didChange",
                    json!({
                        "textDocument": {"uri": doc.uri, "version": doc.version},
                        "contentChanges": [{"text": doc.text}],
                    }),
                );
            }
            None => {
                let doc = Doc {
                    uri: uri.clone(),
                    language_id,
                    version: 1,
                    text,
                    rest_open: false,
                    relay_owner: Some(id),
                    synced,
                };
                server.conn.notify("textDocument/didOpen", did_open(&doc));
                docs.insert(path.to_path_buf(), doc);
            }
        }
    }

    /// A relay editor changed `path`: forwarded with the version renumbered.
    pub fn relay_change(&self, server: &Server, id: u64, path: &Path, mut params: Value) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(doc) = docs.get_mut(path) else {
            return;
        };
        doc.relay_owner = Some(id);
        doc.version += 1;
        doc.synced = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(changes) = params["contentChanges"].as_array() {
            // Only a full-text change tells us the text; ranges are the editor's business.
            if let Some(full) = changes
                .iter()
                .rev()
                .find(|c| c.get("range").is_none())
                .and_then(|c| c["text"].as_str())
            {
                doc.text = full.to_string();
            }
        }
        params["textDocument"]["uri"] = json!(doc.uri);
        params["textDocument"]["version"] = json!(doc.version);
        server.conn.notify("textDocument/didChange", params);
    }

    /// A relay editor closed `path` (or left): back to disk content if the REST side has it
    /// open, else closed on the server.
    pub async fn relay_close(&self, server: Option<&Server>, id: u64, path: &Path) {
        let rest_open = {
            let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
            let Some(doc) = docs.get_mut(path) else {
                return;
            };
            if doc.relay_owner.is_some_and(|owner| owner != id) {
                return;
            }
            doc.relay_owner = None;
            if !doc.rest_open {
                if let Some(server) = server {
                    server.conn.notify(
                        "textDocument/didClose",
                        json!({"textDocument": {"uri": doc.uri}}),
                    );
                }
                docs.remove(path);
                false
            } else {
                true
            }
        };
        if let (true, Some(server)) = (rest_open, server) {
            let _ = self.sync(server, path, false).await;
        }
    }

    /// Sends `message` to every relay client.
    fn broadcast(&self, message: &Value) {
        let text = message.to_string();
        for sender in self
            .relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            let _ = sender.send(RelayOut::Message(text.clone()));
        }
    }

    /// Closes every relay client's socket.
    fn close_relays(&self, code: u16, reason: &str) {
        for sender in self
            .relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            let _ = sender.send(RelayOut::Close(code, reason.to_string()));
        }
    }

    /// A relay client answered a request the server sent it through toolboxd.
    pub fn relay_answer(&self, message: Value) {
        let Some(key) = message.get("id").map(Value::to_string) else {
            return;
        };
        let waiter = self
            .relay_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        if let Some(waiter) = waiter {
            let _ = waiter.send(message);
        }
    }

    /// Forwards a server request to one relay client (the most recent); `None` if there is none
    /// or it did not answer in time.
    async fn ask_relay(&self, method: &str, params: &Value) -> Option<Value> {
        let sender = {
            let relays = self.relays.lock().unwrap_or_else(|e| e.into_inner());
            relays
                .iter()
                .max_by_key(|(id, _)| **id)
                .map(|(_, s)| s.clone())
        }?;
        let id = format!(
            "toolboxd-{}",
            self.next_forward.fetch_add(1, Ordering::SeqCst)
        );
        let (waiter, answer) = oneshot::channel();
        self.relay_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(json!(id).to_string(), waiter);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        sender.send(RelayOut::Message(request.to_string())).ok()?;
        let answer = tokio::time::timeout(APPLY_EDIT_DEADLINE, answer).await;
        self.relay_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&json!(id).to_string());
        answer.ok()?.ok()
    }
}

/// The error for a project that was not started.
pub fn not_initialized(language: &str, root: &Path) -> Error {
    Error::new(
        ErrorKind::LspServerNotInitialized,
        format!(
            "no {language} language server is running for {}: call /lsp/start first",
            root.display()
        ),
    )
}

fn did_open(doc: &Doc) -> Value {
    json!({"textDocument": {
        "uri": doc.uri,
        "languageId": doc.language_id,
        "version": doc.version,
        "text": doc.text,
    }})
}

/// The LSP language id of a file: by extension for the TypeScript server, else the project's.
fn language_id_of(path: &Path, project: &str) -> String {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let id = match extension.as_str() {
        "py" | "pyi" => "python",
        "ts" | "mts" | "cts" => "typescript",
        "tsx" => "typescriptreact",
        "js" | "mjs" | "cjs" => "javascript",
        "jsx" => "javascriptreact",
        _ => project,
    };
    id.to_string()
}

/// Handles what a server sends on its own until its output ends.
async fn dispatch(
    project: Weak<Project>,
    conn: Arc<Connection>,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
) {
    while let Some(message) = inbound.recv().await {
        let Some(project) = project.upgrade() else {
            return;
        };
        match message {
            Inbound::Notification { method, message } => {
                if method == "textDocument/publishDiagnostics" {
                    project.publish_diagnostics(&message["params"]);
                }
                project.broadcast(&message);
            }
            Inbound::Request { id, method, params } => {
                let conn = conn.clone();
                tokio::spawn(async move {
                    let reply = answer(&project, &method, &params).await;
                    conn.respond(id, reply);
                });
            }
            Inbound::Closed => {
                project.close_relays(1011, "the language server exited");
                return;
            }
        }
    }
}

/// toolboxd's answer to a request from the server.
async fn answer(
    project: &Project,
    method: &str,
    params: &Value,
) -> std::result::Result<Value, RpcError> {
    match method {
        "workspace/configuration" => {
            let items = params["items"].as_array().map(Vec::len).unwrap_or(0);
            Ok(Value::Array(vec![Value::Null; items]))
        }
        "client/registerCapability"
        | "client/unregisterCapability"
        | "window/workDoneProgress/create"
        | "window/showMessageRequest"
        | "workspace/semanticTokens/refresh"
        | "workspace/inlayHint/refresh"
        | "workspace/inlineValue/refresh"
        | "workspace/codeLens/refresh"
        | "workspace/diagnostic/refresh" => Ok(Value::Null),
        "workspace/workspaceFolders" => Ok(json!([{
            "uri": project.root_uri,
            "name": project.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        }])),
        "window/showDocument" => Ok(json!({"success": false})),
        "workspace/applyEdit" => match project.ask_relay(method, params).await {
            Some(answer) => match answer.get("error") {
                Some(error) if !error.is_null() => Ok(json!({
                    "applied": false,
                    "failureReason": error["message"].as_str().unwrap_or("the editor refused the edit"),
                })),
                _ => Ok(answer
                    .get("result")
                    .cloned()
                    .unwrap_or(json!({"applied": false}))),
            },
            None => Ok(json!({
                "applied": false,
                "failureReason": "no editor is connected to toolboxd's LSP relay to apply the edit",
            })),
        },
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("toolboxd does not handle {method}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Arc<Project> {
        let process = Process::start("/bin/sh".into(), "/".into(), 1024, 0);
        Arc::new(Project::new(
            "python",
            PathBuf::from("/proj"),
            vec!["pylsp".into()],
            process,
        ))
    }

    #[tokio::test]
    async fn server_requests_get_sensible_answers() {
        let project = project();
        let config = answer(
            &project,
            "workspace/configuration",
            &json!({"items": [{"section": "pylsp"}, {}]}),
        )
        .await;
        assert_eq!(config, Ok(json!([null, null])));
        for method in [
            "client/registerCapability",
            "window/workDoneProgress/create",
        ] {
            assert_eq!(answer(&project, method, &json!({})).await, Ok(Value::Null));
        }
        let folders = answer(&project, "workspace/workspaceFolders", &Value::Null)
            .await
            .unwrap();
        assert_eq!(folders[0]["uri"], "file:///proj/");
        let unknown = answer(&project, "x/unknown", &Value::Null).await;
        assert_eq!(unknown.unwrap_err().code, METHOD_NOT_FOUND);
        let alone = answer(&project, "workspace/applyEdit", &json!({"edit": {}}))
            .await
            .unwrap();
        assert_eq!(alone["applied"], false);
    }

    #[tokio::test]
    async fn apply_edit_goes_to_a_relay_client_and_back() {
        let project = project();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        project.add_relay(7, sender);
        let asking = {
            let project = project.clone();
            tokio::spawn(async move {
                answer(
                    &project,
                    "workspace/applyEdit",
                    &json!({"edit": {"changes": {}}}),
                )
                .await
            })
        };
        let Some(RelayOut::Message(text)) = receiver.recv().await else {
            panic!("no request reached the relay client");
        };
        let request: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(request["method"], "workspace/applyEdit");
        project.relay_answer(
            json!({"jsonrpc": "2.0", "id": request["id"], "result": {"applied": true}}),
        );
        assert_eq!(asking.await.unwrap(), Ok(json!({"applied": true})));
    }
}
