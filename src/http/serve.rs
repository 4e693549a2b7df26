//! Serving a listener: the accept loop and one hyper HTTP/1.1 connection per client, in place
//! of `axum::serve`, so that a request hyper refuses before the router sees it (a URI over
//! 65534 bytes, too many headers, a request line or header that does not parse) still gets the
//! JSON error body.
//!
//! hyper answers such a request by itself: it writes a head with `content-length: 0`
//! (`400`, `414` or `431`, plus `connection: close`), shuts the socket and returns the parse error
//! from the connection. It has no hook for the body, so `EdgeIo`, the socket under hyper, holds
//! back a write that is exactly such a head and decides when the connection is dropped: if the
//! connection ended with a parse error, the head goes out with the wire error body; otherwise
//! it was not hyper's answer (a body chunk that only looks like one) and goes out unchanged. A
//! held write is also let go, unchanged, before any later read or write, so nothing the router
//! sends is ever lost or reordered.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::error::{Error, ErrorKind};
use crate::http::error::ErrorBody;

/// Header fields a request may have (hyper's default, set here so the 431 message can say it).
pub const MAX_HEADERS: usize = 100;
/// Bytes hyper buffers while reading a request head (its default, 8 KiB + 100 × 4 KiB); a head
/// that does not end within them is a 431.
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// The longest request URI hyper accepts (its fixed limit); a longer one is a 414.
pub const MAX_URI_BYTES: usize = 65534;

/// How long a held-back answer may take to reach a client that stopped reading, including the
/// wait for the client to close.
const FINAL_WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// What the client may still send after such an answer before the connection is closed anyway.
const LINGER_BYTES: usize = 1024 * 1024;
/// Bytes of a connection's first request kept to name its method and path in an error body.
const HEAD_SAMPLE: usize = 2048;

/// Serves `router` on `listener` until `token` is cancelled; then stops accepting, asks every
/// connection to finish its request in flight and close, and returns once they have.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    token: CancellationToken,
) -> io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(&err, &token).await;
                    continue;
                }
            },
            () = token.cancelled() => break,
        };
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            token.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A failed accept: the client's own failure is skipped; anything else (out of descriptors) is
/// logged and retried after a second, as axum does, rather than ending the listener.
pub(crate) async fn accept_failed(err: &io::Error, token: &CancellationToken) {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("cannot accept a connection: {err}");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        () = token.cancelled() => {}
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    token: CancellationToken,
) {
    // No Nagle: a WebSocket's small close frame after its last frame must not wait for the
    // client's delayed ACK (40 ms per interpreter run without this).
    let _ = stream.set_nodelay(true);
    let io = EdgeIo::new(stream);
    let verdict = io.verdict.clone();
    // The client's address as axum's `ConnectInfo`: the preview proxy appends it to
    // X-Forwarded-For.
    let service = TowerToHyperService::new(router.map_request(
        move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut connection = Box::pin(
        builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades(),
    );
    let mut draining = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = token.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(err) = result {
        if err.is_parse() {
            tracing::debug!("refused a request hyper could not parse: {err}");
            let _ = verdict.set(err.to_string());
        } else {
            tracing::trace!("connection ended: {err}");
        }
    }
    // Dropping the connection drops `EdgeIo`, which sends what it held back.
    drop(connection);
}

/// The client socket under hyper: passes everything through, except that it holds back a
/// write that is exactly hyper's own error head until it knows whether it is one (see the module
/// docs).
struct EdgeIo {
    /// `None` only once `Drop` has taken it.
    stream: Option<TcpStream>,
    /// A write held back: a whole `400`/`414`/`431` head with `content-length: 0`.
    held: Option<Vec<u8>>,
    /// The first bytes the client sent, while nothing was written yet: the request line of the
    /// first request, which is the one that failed if hyper answers before anything else.
    sample: Vec<u8>,
    /// Whether any byte was written to the client before.
    wrote: bool,
    /// hyper's parse error (its message), set by the connection task when hyper gave up.
    verdict: Arc<OnceLock<String>>,
}

impl EdgeIo {
    fn new(stream: TcpStream) -> EdgeIo {
        EdgeIo {
            stream: Some(stream),
            held: None,
            sample: Vec::new(),
            wrote: false,
            verdict: Arc::new(OnceLock::new()),
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection closed"))
    }

    /// Sends the held write, unchanged, before anything else happens on the socket.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(held) = self.held.as_mut() {
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection closed"))?;
            let written = ready!(Pin::new(stream).poll_write(cx, held))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            held.drain(..written);
            if held.is_empty() {
                self.held = None;
            }
            self.note_written();
        }
        Poll::Ready(Ok(()))
    }

    fn note_written(&mut self) {
        if !self.wrote {
            self.wrote = true;
            self.sample = Vec::new();
        }
    }

    /// What goes out instead of the held head once the connection is over.
    fn final_answer(&self, head: Vec<u8>) -> Vec<u8> {
        let Some(reason) = self.verdict.get() else {
            return head;
        };
        let Some(status) = refusal_status(&head) else {
            return head;
        };
        let (method, path) = if self.wrote {
            (String::new(), String::new())
        } else {
            request_line(&self.sample)
        };
        let err = refusal_error(status, reason);
        with_body(&head, &ErrorBody::new(&err, &path, &method).to_json()).unwrap_or(head)
    }
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        let before = buf.filled().len();
        ready!(Pin::new(this.stream()?).poll_read(cx, buf))?;
        crate::metrics::BYTES_IN.inc_by((buf.filled().len() - before) as u64);
        if !this.wrote && this.sample.len() < HEAD_SAMPLE {
            let fresh = &buf.filled()[before..];
            let room = HEAD_SAMPLE - this.sample.len();
            this.sample
                .extend_from_slice(&fresh[..fresh.len().min(room)]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        let buf = match refusal_start(buf) {
            Some(0) => {
                tracing::trace!("holding back a write that looks like hyper's error head");
                this.held = Some(buf.to_vec());
                return Poll::Ready(Ok(buf.len()));
            }
            // What precedes the head goes now; hyper hands over the head alone next.
            Some(start) => &buf[..start],
            None => buf,
        };
        let written = ready!(Pin::new(this.stream()?).poll_write(cx, buf))?;
        crate::metrics::BYTES_OUT.inc_by(written as u64);
        this.note_written();
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|slice| !slice.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            return self.poll_write(cx, only);
        }
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        let last = bufs.iter().rposition(|slice| !slice.is_empty());
        let bufs = match last {
            // The slices before the one that ends in the head go first.
            Some(last) if refusal_start(&bufs[last]).is_some() => &bufs[..last],
            _ => bufs,
        };
        let written = ready!(Pin::new(this.stream()?).poll_write_vectored(cx, bufs))?;
        crate::metrics::BYTES_OUT.inc_by(written as u64);
        this.note_written();
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A held head stays held: hyper flushes it before it reports the error.
        Pin::new(this.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_some() {
            // hyper closes right after its error head; the answer and the close come on drop.
            return Poll::Ready(Ok(()));
        }
        Pin::new(this.stream()?).poll_shutdown(cx)
    }
}

impl Drop for EdgeIo {
    fn drop(&mut self) {
        let Some(head) = self.held.take() else {
            return;
        };
        let Some(stream) = self.stream.take() else {
            return;
        };
        let answer = self.final_answer(head);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::time::timeout(FINAL_WRITE_DEADLINE, async {
                        stream.write_all(&answer).await?;
                        stream.shutdown().await?;
                        // Read on (a bounded amount) until the client closes: closing with
                        // unread bytes would reset the connection, which can cost the client
                        // the answer it has not read yet.
                        let mut sink = [0u8; 8192];
                        let mut budget = LINGER_BYTES;
                        while budget > 0 {
                            match stream.read(&mut sink).await? {
                                0 => break,
                                read => budget = budget.saturating_sub(read),
                            }
                        }
                        io::Result::Ok(())
                    })
                    .await;
                });
            }
            // No runtime (the daemon is exiting): what fits in the socket buffer.
            Err(_) => {
                let _ = stream.try_write(&answer);
            }
        }
    }
}

/// Where hyper's own error head starts in `bytes`, if `bytes` ends with one: a complete
/// `HTTP/1.1 400|414|431` head whose only fields are `connection: close`,
/// `content-length: 0` and `date`.
fn refusal_start(bytes: &[u8]) -> Option<usize> {
    const LONGEST: usize = 256;
    if !bytes.ends_with(b"\r\n\r\n") {
        return None;
    }
    let tail_start = bytes.len().saturating_sub(LONGEST);
    let tail = &bytes[tail_start..];
    let start = tail.windows(9).rposition(|w| w == b"HTTP/1.1 ")?;
    refusal_status(&tail[start..]).map(|_| tail_start + start)
}

/// The status of `head` if it is exactly one of hyper's error heads.
fn refusal_status(head: &[u8]) -> Option<u16> {
    let mut fields = [httparse::EMPTY_HEADER; 4];
    let mut response = httparse::Response::new(&mut fields);
    match response.parse(head) {
        Ok(httparse::Status::Complete(length)) if length == head.len() => {}
        _ => return None,
    }
    let status = response.code?;
    if !matches!(status, 400 | 414 | 431) || response.version != Some(1) {
        return None;
    }
    let mut close = false;
    let mut empty = false;
    for field in response.headers.iter() {
        let value = field.value;
        if field.name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if field.name.eq_ignore_ascii_case("content-length") && value == b"0" {
            empty = true;
        } else if !field.name.eq_ignore_ascii_case("date") {
            return None;
        }
    }
    (close && empty).then_some(status)
}

/// The error toolboxd gives for a request hyper refused with `status`, from hyper's `reason`.
fn refusal_error(status: u16, reason: &str) -> Error {
    match status {
        414 => Error::new(
            ErrorKind::UriTooLong,
            format!(
                "request URI is too long: at most {MAX_URI_BYTES} bytes; send long data in \
                 the request body"
            ),
        ),
        431 => Error::new(
            ErrorKind::HeadersTooLarge,
            format!(
                "request header fields are too large: at most {MAX_HEADERS} fields, and at most \
                 {MAX_HEAD_BYTES} bytes for the request line and headers together"
            ),
        ),
        _ => Error::bad_request(malformed_message(reason)),
    }
}

/// hyper's parse error put in terms of what the client sent.
fn malformed_message(reason: &str) -> String {
    let detail = match reason {
        "invalid HTTP method parsed" => {
            "the request line does not start with a valid method (`METHOD target HTTP/1.1`)"
        }
        "invalid HTTP version parsed" => "the version is not HTTP/1.0 or HTTP/1.1",
        "invalid URI" => "the request target is not a valid URI",
        // httparse reports a bad request line and a bad header line alike.
        "invalid HTTP header parsed" => {
            "the request line or a header line is not valid HTTP/1.1 (`METHOD target \
             HTTP/1.1`, then `Name: value` lines)"
        }
        "invalid content-length parsed" => {
            "Content-Length must be one decimal number (repeated only with the same value)"
        }
        "invalid transfer-encoding parsed" => "Transfer-Encoding must end with `chunked`",
        "unexpected transfer-encoding parsed" => {
            "Transfer-Encoding is not allowed in an HTTP/1.0 request"
        }
        other => return format!("malformed HTTP request: {other}"),
    };
    format!("malformed HTTP request: {detail}")
}

/// The method and path of the request line at the start of `sample`, or empty strings when it
/// is not one; a path longer than 1 KiB is cut with `...`.
fn request_line(sample: &[u8]) -> (String, String) {
    const LONGEST_PATH: usize = 1024;
    let start = sample
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(sample.len());
    let line = &sample[start..];
    let line = &line[..line
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(line.len())];
    let mut words = line.split(|b| *b == b' ');
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return (String::new(), String::new());
    };
    let is_token = !method.is_empty()
        && method.len() <= 32
        && method
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b));
    if !is_token || target.is_empty() {
        return (String::new(), String::new());
    }
    let path = &target[..target
        .iter()
        .position(|b| *b == b'?')
        .unwrap_or(target.len())];
    let mut path = String::from_utf8_lossy(path).into_owned();
    if path.len() > LONGEST_PATH {
        let mut cut = LONGEST_PATH;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push_str("...");
    }
    (String::from_utf8_lossy(method).into_owned(), path)
}

/// `head` (hyper's, with `content-length: 0`) carrying `body` as JSON instead.
fn with_body(head: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let mut answer = Vec::with_capacity(head.len() + body.len() + 64);
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            answer.extend_from_slice(b"content-type: application/json\r\n");
            answer.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        } else {
            answer.extend_from_slice(line.as_bytes());
            answer.extend_from_slice(b"\r\n");
        }
    }
    answer.extend_from_slice(b"\r\n");
    answer.extend_from_slice(body);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD_414: &[u8] = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\n\
        content-length: 0\r\ndate: Sat, 05 Dec 2026 12:36:49 GMT\r\n\r\n";

    #[test]
    fn only_hypers_error_heads_are_recognised() {
        assert_eq!(refusal_start(HEAD_414), Some(0));
        let mut after_body = b"{\"version\":\"v0.1.0\"}".to_vec();
        after_body.extend_from_slice(HEAD_414);
        assert_eq!(refusal_start(&after_body), Some(20));
        // A head of ours: a body follows, or other fields.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
            content-length: 2\r\n\r\n{}";
        assert_eq!(refusal_start(ours), None);
        let other_field = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\
            content-length: 0\r\nx-a: b\r\n\r\n";
        assert_eq!(refusal_start(other_field), None);
        let not_an_error = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(refusal_start(not_an_error), None);
    }

    #[test]
    fn the_answer_keeps_hypers_status_and_date_and_adds_the_body() {
        let answer = with_body(HEAD_414, b"{\"a\":1}").unwrap();
        assert_eq!(
            String::from_utf8(answer).unwrap(),
            "HTTP/1.1 414 URI Too Long\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: 7\r\n\
             date: Sat, 05 Dec 2026 12:36:49 GMT\r\n\r\n{\"a\":1}"
        );
    }

    #[test]
    fn request_lines_name_method_and_path() {
        assert_eq!(
            request_line(b"\r\nGET /files/info?path=x HTTP/1.1\r\nHost: a\r\n"),
            ("GET".to_string(), "/files/info".to_string())
        );
        assert_eq!(
            request_line(b"garbage\r\n\r\n"),
            (String::new(), String::new())
        );
        let long = format!("GET /{} HTTP/1.1", "a".repeat(5000));
        let (method, path) = request_line(&long.as_bytes()[..HEAD_SAMPLE]);
        assert_eq!(method, "GET");
        assert_eq!(path.len(), 1024 + 3);
        assert!(path.ends_with("..."));
    }
}
