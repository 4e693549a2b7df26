//! `toolboxd mcp`'s framing: one JSON-RPC message per line, each at most [`MAX_MESSAGE`] bytes.
//!
//! rmcp's stdio transport also bounds a line, but drops one over its limit with nothing but a
//! log line, so the client waits for an answer that never comes. Here stdin is read first by
//! [`read_lines`], which hands whole lines within the limit to rmcp (through a pipe in memory)
//! and answers a longer one itself, as soon as its end arrives, with a JSON-RPC `-32600` error
//! carrying the request's id when it can be found in the line's first or last bytes; the line is
//! discarded as it arrives, never held. [`write_lines`] puts rmcp's messages and those refusals
//! on stdout, a whole line at a time, so they never interleave.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The largest message (line, without its newline) read from stdin; the same as `/mcp`'s body
/// limit and the toolbox's JSON bodies.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// How much of the start of a line over the limit is kept to find its id.
const HEAD: usize = 64 * 1024;
/// How much of its end is kept (clients that put `id` last).
const TAIL: usize = 256;

/// Copies whole lines of at most `max` bytes from `input` to `service`, and sends the refusal of
/// each longer line to `refusals`. Ends at EOF (a last line without a newline is dropped, as
/// rmcp does), when `input` fails, or when the service stops reading.
pub async fn read_lines<R, W>(input: R, mut service: W, refusals: mpsc::Sender<Vec<u8>>, max: usize)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::new();
    // Set while a line over the limit is being discarded: its first and last bytes, its size.
    let mut over: Option<Oversized> = None;
    loop {
        let available = match input.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(available) => available,
        };
        let (chunk, ends) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let taken = chunk.len();
        let content = &chunk[..taken - usize::from(ends)];
        // A `\r` before the newline is not counted (rmcp drops it); until the newline arrives,
        // the last byte may be one.
        let last = content.last().or(line.last());
        let allowed = match ends {
            true => max + usize::from(last == Some(&b'\r')),
            false => max + 1,
        };
        if over.is_none() && line.len() + content.len() > allowed {
            let mut oversized = Oversized::default();
            oversized.push(&line);
            line.clear();
            over = Some(oversized);
        }
        match over.as_mut() {
            Some(oversized) => oversized.push(content),
            None => line.extend_from_slice(chunk),
        }
        input.consume(taken);
        if !ends {
            continue;
        }
        if let Some(oversized) = over.take() {
            if refusals.send(oversized.refusal(max)).await.is_err() {
                break;
            }
            continue;
        }
        if service.write_all(&line).await.is_err() || service.flush().await.is_err() {
            break;
        }
        line.clear();
    }
    let _ = service.shutdown().await;
}

/// Writes each line rmcp writes to `service` and each refusal to `output`, whole, until rmcp's
/// side ends (refusals still queued then are written too).
pub async fn write_lines<R, W>(service: R, mut refusals: mpsc::Receiver<Vec<u8>>, mut output: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut service = BufReader::new(service);
    let mut line = Vec::new();
    let mut refusing = true;
    loop {
        tokio::select! {
            // Cancel-safe: what a cancelled read took stays in `line`, and the next read goes on.
            read = service.read_until(b'\n', &mut line) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) if line.ends_with(b"\n") => {
                    if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                        return;
                    }
                    line.clear();
                }
                Ok(_) => {}
            },
            refusal = refusals.recv(), if refusing => match refusal {
                Some(refusal) => {
                    if output.write_all(&refusal).await.is_err() || output.flush().await.is_err() {
                        return;
                    }
                }
                None => refusing = false,
            },
        }
    }
    let _ = output.write_all(&line).await;
    while let Ok(refusal) = refusals.try_recv() {
        let _ = output.write_all(&refusal).await;
    }
    let _ = output.flush().await;
}

/// A line over the limit, as it is discarded.
#[derive(Default)]
struct Oversized {
    head: Vec<u8>,
    tail: Vec<u8>,
    size: usize,
}

impl Oversized {
    fn push(&mut self, bytes: &[u8]) {
        self.size += bytes.len();
        let room = HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.tail
            .extend_from_slice(&bytes[bytes.len().saturating_sub(TAIL)..]);
        let excess = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..excess);
    }

    /// The JSON-RPC error line answering it.
    fn refusal(&self, max: usize) -> Vec<u8> {
        let id = request_id(&self.head, &self.tail).unwrap_or(Value::Null);
        let message = format!(
            "message too large: a line on stdin may hold at most {} MiB ({max} bytes), this one \
             held {} bytes; it was not read",
            max / (1024 * 1024),
            self.size
        );
        let mut line = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32600, "message": message},
        })
        .to_string()
        .into_bytes();
        line.push(b'\n');
        line
    }
}

/// The id of the JSON-RPC request whose line starts with `head` and ends with `tail`: a
/// top-level `id` member before the line was cut (read with serde_json, which stops where the
/// head ends), else a last member `"id": …}` (clients that put it last).
pub fn request_id(head: &[u8], tail: &[u8]) -> Option<Value> {
    leading_id(head)
        .or_else(|| trailing_id(tail))
        .filter(|id| id.is_string() || id.is_number())
}

fn leading_id(head: &[u8]) -> Option<Value> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct FindId<'a>(&'a mut Option<Value>);
    impl<'de> Visitor<'de> for FindId<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON-RPC message")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "id" {
                    *self.0 = Some(map.next_value()?);
                    return Ok(());
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let mut found = None;
    // The head is cut mid-message, so this ends in an error once past what it holds (or at the
    // members after `id`); what it found before is what counts.
    let _ = serde_json::Deserializer::from_slice(head).deserialize_map(FindId(&mut found));
    found
}

fn trailing_id(tail: &[u8]) -> Option<Value> {
    // The tail may start inside a character: that one is replaced, the end is what counts.
    let text = String::from_utf8_lossy(tail);
    let body = text.trim_end().strip_suffix('}')?;
    let at = body.rfind("\"id\"")?;
    // The value must run to the closing brace: a nested `"id"` is followed by more braces.
    let value = body[at + 4..].trim_start().strip_prefix(':')?;
    serde_json::from_str(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_at_either_end() {
        let head = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"aaaa"#;
        assert_eq!(request_id(head, b""), Some(json!(7)));
        let head = br#"{"method":"tools/call","params":{"id":3,"x":"aaaa"#;
        let tail = br#"aaaa"}},"jsonrpc":"2.0","id":"r-9"}"#;
        assert_eq!(request_id(head, tail), Some(json!("r-9")));
        let tail = br#"aaa"}},"id": 12 }"#;
        assert_eq!(request_id(head, tail), Some(json!(12)));
        // A nested `id` at the end of a member is not the request's.
        assert_eq!(request_id(head, br#"aaa","id":5}}"#), None);
        // A notification, or an id that is no id.
        assert_eq!(
            request_id(br#"{"method":"x","params":{"a":"b"#, b"b\"}}"),
            None
        );
        assert_eq!(request_id(br#"{"id":null,"m"#, b""), None);
        assert_eq!(request_id(br#"{"id":[1],"m"#, b""), None);
    }

    /// What the service would read, and what goes out (refusals only: the service says nothing).
    async fn run(input: &[u8], max: usize) -> (Vec<u8>, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let (mut service_in, feed) = tokio::io::duplex(1024);
        let (service_out, from_service) = tokio::io::duplex(1024);
        let (output, mut written) = tokio::io::duplex(1 << 20);
        let (refusals, refused) = mpsc::channel(4);
        let reader = tokio::spawn(read_lines(
            std::io::Cursor::new(input.to_vec()),
            feed,
            refusals,
            max,
        ));
        let writer = tokio::spawn(write_lines(from_service, refused, output));
        let mut passed = Vec::new();
        service_in.read_to_end(&mut passed).await.unwrap();
        reader.await.unwrap();
        drop(service_out);
        writer.await.unwrap();
        let mut out = Vec::new();
        written.read_to_end(&mut out).await.unwrap();
        (passed, out)
    }

    #[tokio::test]
    async fn lines_up_to_the_limit_pass_and_longer_ones_are_answered() {
        let at = format!("{{\"id\":1,\"p\":\"{}\"}}", "a".repeat(20));
        let max = at.len();
        let over = format!("{{\"id\":2,\"p\":\"{}\"}}", "a".repeat(21));
        let input = format!("{at}\n{over}\n{at}\r\ntail-without-newline");
        let (passed, out) = run(input.as_bytes(), max).await;
        assert_eq!(passed, format!("{at}\n{at}\r\n").into_bytes());
        let refusal: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(refusal["id"], 2);
        assert_eq!(refusal["error"]["code"], -32600);
        let message = refusal["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("at most 0 MiB ({max} bytes)")),
            "{message}"
        );
        assert!(
            message.contains(&format!("held {} bytes", over.len())),
            "{message}"
        );
    }
}
