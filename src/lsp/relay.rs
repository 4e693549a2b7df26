//! The LSP relay: an editor speaks JSON-RPC (one message per WebSocket text frame) to the server
//! toolboxd shares between all relay clients and the REST routes.
//!
//! - Requests get fresh ids from the connection; the answer goes back with the client's own id
//!   (`$/cancelRequest` is translated the same way).
//! - The server is already initialized: `initialize` is answered with its capabilities,
//!   `initialized` is dropped, `shutdown` is answered locally and `exit` ends the relay.
//! - Document notifications go through the project's document table (versions renumbered, so
//!   several clients never send the server a version twice).
//! - The server's notifications reach every client; its requests are answered by the project
//!   (`workspace/applyEdit` is forwarded to a relay client).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lsp_types::Url;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::project::{Project, RelayOut};
use super::server::Server;
use super::transport::{RequestError, REQUEST_FAILED};

/// How long a relayed request may wait for the server.
pub const RELAY_DEADLINE: Duration = Duration::from_secs(120);

/// One relay client.
#[derive(Debug)]
pub struct Relay {
    id: u64,
    project: Arc<Project>,
    server: Arc<Server>,
    out: mpsc::UnboundedSender<RelayOut>,
    /// Client request id (as JSON text) → the id the server saw.
    requests: Arc<Mutex<HashMap<String, i64>>>,
}

impl Relay {
    /// Joins `project`'s running `server` as client `id`.
    pub fn new(
        id: u64,
        project: Arc<Project>,
        server: Arc<Server>,
    ) -> (Relay, mpsc::UnboundedReceiver<RelayOut>) {
        let (out, receiver) = mpsc::unbounded_channel();
        project.add_relay(id, out.clone());
        let relay = Relay {
            id,
            project,
            server,
            out,
            requests: Arc::new(Mutex::new(HashMap::new())),
        };
        (relay, receiver)
    }

    fn reply(&self, id: &Value, result: std::result::Result<Value, Value>) {
        let message = match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
        };
        let _ = self.out.send(RelayOut::Message(message.to_string()));
    }

    /// Handles one message from the client. `false`: the client sent `exit`, the relay ends.
    pub async fn handle(&self, text: &str) -> bool {
        let message: Value = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(err) => {
                self.reply(
                    &Value::Null,
                    Err(json!({"code": -32700, "message": format!("parse error: {err}")})),
                );
                return true;
            }
        };
        if !message.is_object() {
            self.reply(
                &Value::Null,
                Err(json!({"code": -32600, "message": "one JSON-RPC message per frame (no batches)"})),
            );
            return true;
        }
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = message.get("id").cloned().filter(|id| !id.is_null());
        match (method, id) {
            (Some(method), Some(id)) => self.request(id, &method, message).await,
            (Some(method), None) => return self.notification(&method, message).await,
            (None, Some(_)) => self.project.relay_answer(message),
            (None, None) => {}
        }
        true
    }

    async fn request(&self, id: Value, method: &str, message: Value) {
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        match method {
            "initialize" => {
                let init = &self.server.init;
                let mut result =
                    json!({"capabilities": init.get("capabilities").cloned().unwrap_or(json!({}))});
                if let Some(info) = init.get("serverInfo") {
                    result["serverInfo"] = info.clone();
                }
                return self.reply(&id, Ok(result));
            }
            "shutdown" => return self.reply(&id, Ok(Value::Null)),
            _ => {}
        }
        // A request about a document the REST side owns sees the file as it is on disk now.
        if let Some(path) = document_path(&params) {
            if self.project.is_open(&path) {
                let _ = self.project.sync(&self.server, &path, false).await;
            }
        }
        let pending = self.server.conn.start_request(method, params);
        let key = id.to_string();
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), pending.id);
        let server = self.server.clone();
        let out = self.out.clone();
        let requests = self.requests.clone();
        let method = method.to_string();
        tokio::spawn(async move {
            let result = server.conn.finish(pending, RELAY_DEADLINE).await;
            requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            let message = match result {
                Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                Err(RequestError::Rpc(error)) => {
                    json!({"jsonrpc": "2.0", "id": id, "error": error.to_value()})
                }
                Err(RequestError::Timeout(deadline)) => {
                    json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": REQUEST_FAILED,
                        "message": format!("the language server did not answer {method} within {} s", deadline.as_secs()),
                    }})
                }
                Err(RequestError::Closed) => json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": REQUEST_FAILED,
                    "message": format!("the language server exited during {method}"),
                }}),
            };
            let _ = out.send(RelayOut::Message(message.to_string()));
        });
    }

    async fn notification(&self, method: &str, message: Value) -> bool {
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let uri = params["textDocument"]["uri"]
            .as_str()
            .and_then(|uri| Url::parse(uri).ok());
        let path = uri.as_ref().and_then(|uri| uri.to_file_path().ok());
        match (method, uri, path) {
            ("initialized", _, _) => {}
            ("exit", _, _) => return false,
            ("textDocument/didOpen", Some(uri), Some(path)) => {
                self.project
                    .relay_open(&self.server, self.id, &path, &uri, &params)
            }
            ("textDocument/didChange", _, Some(path)) => {
                self.project
                    .relay_change(&self.server, self.id, &path, params)
            }
            ("textDocument/didClose", _, Some(path)) => {
                self.project
                    .relay_close(Some(&self.server), self.id, &path)
                    .await
            }
            ("$/cancelRequest", _, _) => {
                let key = params.get("id").map(Value::to_string).unwrap_or_default();
                let ours = self
                    .requests
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .copied();
                if let Some(ours) = ours {
                    self.server
                        .conn
                        .notify("$/cancelRequest", json!({"id": ours}));
                }
            }
            _ => self.server.conn.send(&message),
        }
        true
    }

    /// Leaves the project: documents this client's editor owned go back to disk content.
    pub async fn close(self) {
        self.project.remove_relay(self.id).await;
    }
}

/// The file a request's `textDocument.uri` names.
fn document_path(params: &Value) -> Option<PathBuf> {
    params["textDocument"]["uri"]
        .as_str()
        .and_then(|uri| Url::parse(uri).ok())
        .and_then(|uri| uri.to_file_path().ok())
}
