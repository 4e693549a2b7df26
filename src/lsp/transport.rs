//! JSON-RPC 2.0 over a language server's stdio, the client side: `Content-Length` framing, a
//! pending-request map of oneshot senders, a deadline per request, and everything the server
//! sends on its own (notifications, requests to the client) handed to one channel.
//!
//! The pipes are blocking files, so a writer thread (fed by an unbounded channel: sending never
//! blocks a caller) and a reader thread do the IO; the async side only touches channels.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// The largest message toolboxd accepts from a server (a bigger one ends the connection).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error code (-32601: method not found, …).
    pub code: i64,
    /// The server's message.
    pub message: String,
    /// Extra data, if any.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with no data.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The wire object.
    pub fn to_value(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }

    fn from_value(value: &Value) -> RpcError {
        RpcError {
            code: value.get("code").and_then(Value::as_i64).unwrap_or(-32603),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error without a message")
                .to_string(),
            data: value.get("data").cloned(),
        }
    }
}

/// JSON-RPC's "method not found".
pub const METHOD_NOT_FOUND: i64 = -32601;
/// LSP's "request failed".
pub const REQUEST_FAILED: i64 = -32803;

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// The server answered with an error.
    Rpc(RpcError),
    /// No answer before the deadline (the request was cancelled).
    Timeout(Duration),
    /// The server's output ended (it exited or closed stdout).
    Closed,
}

/// What the server sent on its own.
#[derive(Debug)]
pub enum Inbound {
    /// A request to the client: must be answered with `Connection::respond`.
    Request {
        /// Its id, as the server sent it.
        id: Value,
        /// The method.
        method: String,
        /// The params (null when absent).
        params: Value,
    },
    /// A notification.
    Notification {
        /// The method.
        method: String,
        /// The whole message, as it can be relayed unchanged.
        message: Value,
    },
    /// The server's output ended; nothing more comes.
    Closed,
}

type Reply = std::result::Result<Value, RpcError>;

/// One server connection.
#[derive(Debug)]
pub struct Connection {
    next_id: AtomicI64,
    pending: Mutex<HashMap<i64, oneshot::Sender<Reply>>>,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    closed: AtomicBool,
}

/// A request sent and not yet answered.
#[derive(Debug)]
pub struct Pending {
    /// The id toolboxd gave it.
    pub id: i64,
    reply: oneshot::Receiver<Reply>,
}

impl Connection {
    /// Starts the IO threads on the server's stdin and stdout. Everything the server sends on its
    /// own arrives on the returned channel, which ends with `Inbound::Closed`.
    pub fn start(
        stdin: File,
        stdout: File,
        name: &str,
    ) -> std::io::Result<(Arc<Connection>, mpsc::UnboundedReceiver<Inbound>)> {
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
        let (inbound, receiver) = mpsc::unbounded_channel();
        let connection = Arc::new(Connection {
            next_id: AtomicI64::new(1),
            pending: Mutex::new(HashMap::new()),
            outgoing,
            closed: AtomicBool::new(false),
        });
        std::thread::Builder::new()
            .name(format!("lsp-write-{name}"))
            .spawn(move || {
                let mut stdin = stdin;
                while let Some(frame) = queue.blocking_recv() {
                    if stdin.write_all(&frame).is_err() {
                        break;
                    }
                }
                // Dropping stdin closes the server's input: it sees EOF.
            })?;
        let reader = connection.clone();
        std::thread::Builder::new()
            .name(format!("lsp-read-{name}"))
            .spawn(move || {
                let mut stdout = BufReader::with_capacity(64 * 1024, stdout);
                while let Some(message) = read_message(&mut stdout) {
                    reader.dispatch(message, &inbound);
                }
                reader.closed.store(true, Ordering::SeqCst);
                let waiting: Vec<_> = reader
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain()
                    .collect();
                drop(waiting); // each receiver sees a closed channel: `RequestError::Closed`
                let _ = inbound.send(Inbound::Closed);
            })?;
        Ok((connection, receiver))
    }

    /// Whether the server's output has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn dispatch(&self, message: Value, inbound: &mpsc::UnboundedSender<Inbound>) {
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = message.get("id").cloned().filter(|id| !id.is_null());
        match (method, id) {
            (Some(method), Some(id)) => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                let _ = inbound.send(Inbound::Request { id, method, params });
            }
            (Some(method), None) => {
                let _ = inbound.send(Inbound::Notification { method, message });
            }
            (None, Some(id)) => {
                let Some(id) = id.as_i64() else { return };
                let waiter = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(waiter) = waiter {
                    let reply = match message.get("error") {
                        Some(error) if !error.is_null() => Err(RpcError::from_value(error)),
                        _ => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    let _ = waiter.send(reply);
                }
            }
            (None, None) => tracing::debug!("language server sent a message without id or method"),
        }
    }

    /// Sends a request and returns its handle; `finish` waits for the answer.
    pub fn start_request(&self, method: &str, params: Value) -> Pending {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (sender, reply) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, sender);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        if self.is_closed() {
            // The reader may have drained the map before this request was in it.
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
        Pending { id, reply }
    }

    /// Waits for `pending`'s answer up to `deadline`; past it the request is cancelled
    /// (`$/cancelRequest`) and forgotten.
    pub async fn finish(
        &self,
        pending: Pending,
        deadline: Duration,
    ) -> std::result::Result<Value, RequestError> {
        match tokio::time::timeout(deadline, pending.reply).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(RequestError::Rpc(error)),
            Ok(Err(_)) => Err(RequestError::Closed),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&pending.id);
                self.notify("$/cancelRequest", json!({"id": pending.id}));
                Err(RequestError::Timeout(deadline))
            }
        }
    }

    /// Sends a request and waits for its answer up to `deadline`.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        deadline: Duration,
    ) -> std::result::Result<Value, RequestError> {
        let pending = self.start_request(method, params);
        self.finish(pending, deadline).await
    }

    /// Sends a notification.
    pub fn notify(&self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Answers a request the server sent.
    pub fn respond(&self, id: Value, reply: Reply) {
        let message = match reply {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error.to_value()}),
        };
        self.send(&message);
    }

    /// Sends one message as it is.
    pub fn send(&self, message: &Value) {
        let body = message.to_string();
        let mut frame = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        frame.extend_from_slice(body.as_bytes());
        let _ = self.outgoing.send(frame);
    }
}

/// Reads one framed message; `None` at EOF or on a stream that is not LSP framing.
fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    loop {
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let header = line.trim_end_matches(['\r', '\n']);
            if header.is_empty() {
                if length.is_some() {
                    break;
                }
                // Stray blank line between messages.
                continue;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length?;
        if length > MAX_MESSAGE {
            tracing::warn!("language server sent a {length}-byte message; closing");
            return None;
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        match serde_json::from_slice(&body) {
            Ok(value) => return Some(value),
            Err(err) => tracing::warn!("language server sent invalid JSON ({err}); skipped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_by_content_length() {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"a":"é"}}"#;
        let stream = format!(
            "Content-Length: {}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{body}\r\n\r\nContent-Length: 2\r\n\r\n{{}}",
            body.len()
        );
        let mut reader = std::io::Cursor::new(stream.into_bytes());
        let first = read_message(&mut reader).unwrap();
        assert_eq!(first["result"]["a"], "é");
        assert_eq!(read_message(&mut reader).unwrap(), json!({}));
        assert_eq!(read_message(&mut reader), None);
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    /// A "server" that reads everything and answers nothing: the request times out, is
    /// cancelled, and the caller gets `Timeout` instead of a hang.
    #[tokio::test]
    async fn a_request_past_its_deadline_is_cancelled_not_hung() {
        let (to_server_read, to_server_write) = nix::unistd::pipe().unwrap();
        let (from_server_read, from_server_write) = nix::unistd::pipe().unwrap();
        let (conn, _inbound) = Connection::start(
            File::from(to_server_write),
            File::from(from_server_read),
            "test",
        )
        .unwrap();
        let err = conn
            .request(
                "textDocument/completion",
                json!({}),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert_eq!(err, RequestError::Timeout(Duration::from_millis(100)));
        let mut reader = BufReader::new(File::from(to_server_read));
        let request = read_message(&mut reader).unwrap();
        assert_eq!(request["method"], "textDocument/completion");
        let cancel = read_message(&mut reader).unwrap();
        assert_eq!(cancel["method"], "$/cancelRequest");
        assert_eq!(cancel["params"]["id"], request["id"]);
        // The server's output ends: pending and later requests fail as closed.
        drop(from_server_write);
        let err = conn
            .request("shutdown", Value::Null, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err, RequestError::Closed);
    }
}
