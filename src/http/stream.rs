//! JSON arrays written item by item on a blocking thread (listings, find matches).
//!
//! [`json_array`] sends the array as it is written: a chunked body fed through a bounded
//! channel, so memory stays flat whatever the number of items, a slow reader holds the producer
//! back (it blocks on the full channel), and a reader that goes away stops it (the producer
//! sees the closed channel at its next item). [`held_json_array`] is for answers whose head
//! depends on the whole array (a header saying it was cut): it keeps the array, in memory up to
//! [`HOLD_IN_MEMORY`] and beyond that in an unlinked temp file, and answers once it is complete.
//!
//! A streamed array can end with trailer fields ([`JsonArrayWriter::trailer`]), for what is known
//! only at the end (hyper sends them to clients that asked with `TE: trailers`, when the
//! response's `Trailer` header names them).
//!
//! Either way the producer's `prepare` step (open the directory, compile the pattern) runs
//! first, on the same thread, and its error is an ordinary error response: nothing has been
//! sent yet.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use hyper::body::Frame;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::error::{io_kind, Error, ErrorKind, Result};

/// Bytes gathered before a chunk is sent.
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks in flight between the producer and the connection.
const CHANNEL_CHUNKS: usize = 4;

/// A held array stays in memory up to this size; the rest goes to an unlinked temp file.
pub const HOLD_IN_MEMORY: usize = 1024 * 1024;

/// Writes one JSON array, item by item: `[`, the items separated by `,`, `]`, the bytes
/// `serde_json` gives for a `Vec` of the same items.
pub struct JsonArrayWriter {
    buf: Vec<u8>,
    items: usize,
    out: Out,
    /// Why the array cannot be completed (an item that would not encode, a full disk).
    error: Option<Error>,
    finished: bool,
    /// Sent after the array when streaming.
    trailers: HeaderMap,
}

enum Out {
    /// Chunks go to the response body as they fill.
    Stream(mpsc::Sender<std::io::Result<Frame<Bytes>>>),
    /// Everything is kept until the array is complete.
    Hold {
        /// Set when the request is gone.
        cancelled: Arc<AtomicBool>,
        /// Where the array went once it outgrew `HOLD_IN_MEMORY`.
        spill: Option<File>,
        spilled: u64,
    },
}

impl JsonArrayWriter {
    fn new(out: Out) -> JsonArrayWriter {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 1024);
        buf.push(b'[');
        JsonArrayWriter {
            buf,
            items: 0,
            out,
            error: None,
            finished: false,
            trailers: HeaderMap::new(),
        }
    }

    /// A trailer field sent after a streamed array (a held one has none: its head is sent
    /// last, so the caller puts the field there).
    pub fn trailer(&mut self, name: HeaderName, value: HeaderValue) {
        self.trailers.insert(name, value);
    }

    /// Appends one item. False when the producer should stop: the reader went away or the
    /// array cannot be completed.
    pub fn push<T: Serialize>(&mut self, item: &T) -> bool {
        if self.error.is_some() {
            return false;
        }
        let mark = self.buf.len();
        if self.items > 0 {
            self.buf.push(b',');
        }
        if let Err(err) = serde_json::to_writer(&mut self.buf, item) {
            self.buf.truncate(mark);
            self.error = Some(Error::internal(format!("encoding an item: {err}")));
            return false;
        }
        self.items += 1;
        if self.buf.len() >= CHUNK_BYTES && !self.flush() {
            return false;
        }
        !self.closed()
    }

    /// True once the reader went away (the response was dropped).
    pub fn closed(&self) -> bool {
        match &self.out {
            Out::Stream(sender) => sender.is_closed(),
            Out::Hold { cancelled, .. } => cancelled.load(Ordering::Relaxed),
        }
    }

    /// Passes the gathered bytes on: to the connection (waiting while the channel is full), or,
    /// when holding, to the temp file once memory holds enough. False when they cannot go on.
    fn flush(&mut self) -> bool {
        match &mut self.out {
            Out::Stream(sender) => {
                let chunk =
                    std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + 1024));
                sender
                    .blocking_send(Ok(Frame::data(Bytes::from(chunk))))
                    .is_ok()
            }
            Out::Hold { spill, spilled, .. } => {
                if spill.is_none() && self.buf.len() < HOLD_IN_MEMORY {
                    return true;
                }
                let written = match spill {
                    Some(file) => file.write_all(&self.buf),
                    None => tempfile::tempfile().and_then(|mut file| {
                        file.write_all(&self.buf)?;
                        *spill = Some(file);
                        Ok(())
                    }),
                };
                match written {
                    Ok(()) => {
                        *spilled += self.buf.len() as u64;
                        self.buf.clear();
                        true
                    }
                    Err(err) => {
                        self.error = Some(spill_error(&err));
                        false
                    }
                }
            }
        }
    }

    /// Closes the array and sends the rest; on `failed` (or an earlier error) cuts the response
    /// instead, so the reader sees an incomplete body rather than a short array.
    fn finish_stream(mut self, failed: Option<Error>) {
        if let Some(err) = failed.or_else(|| self.error.take()) {
            self.cut(&err);
            return;
        }
        self.buf.push(b']');
        if self.flush() && !self.trailers.is_empty() {
            if let Out::Stream(sender) = &self.out {
                let trailers = std::mem::take(&mut self.trailers);
                let _ = sender.blocking_send(Ok(Frame::trailers(trailers)));
            }
        }
        self.finished = true;
    }

    /// Closes a held array and gives the whole body.
    fn finish_hold(mut self) -> Result<HeldBody> {
        self.finished = true;
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        self.buf.push(b']');
        let buf = std::mem::take(&mut self.buf);
        let Out::Hold { spill, spilled, .. } = &mut self.out else {
            return Err(Error::internal("a streamed array cannot be held"));
        };
        match spill.take() {
            None => Ok(HeldBody::Memory(buf)),
            Some(mut file) => {
                file.write_all(&buf)
                    .and_then(|()| file.seek(SeekFrom::Start(0)))
                    .map_err(|err| spill_error(&err))?;
                Ok(HeldBody::File(file, *spilled + buf.len() as u64))
            }
        }
    }

    fn cut(&mut self, err: &Error) {
        self.finished = true;
        if let Out::Stream(sender) = &self.out {
            tracing::warn!("JSON array cut after {} items: {err}", self.items);
            let _ = sender.blocking_send(Err(std::io::Error::other(err.message.clone())));
        }
    }
}

impl Drop for JsonArrayWriter {
    fn drop(&mut self) {
        // A producer that panicked: the reader must not take what it got for the whole array.
        if !self.finished {
            self.cut(&Error::internal("the producer stopped before the end"));
        }
    }
}

fn spill_error(err: &std::io::Error) -> Error {
    let dir = std::env::temp_dir();
    let kind = match io_kind(err) {
        ErrorKind::InsufficientStorage => ErrorKind::InsufficientStorage,
        _ => ErrorKind::Internal,
    };
    Error::new(
        kind,
        format!(
            "cannot hold the result in a temp file in {}: {err}",
            dir.display()
        ),
    )
}

/// A complete held array.
enum HeldBody {
    Memory(Vec<u8>),
    /// An unlinked temp file, rewound, and its length.
    File(File, u64),
}

/// Answers 200 `application/json` with the array `produce` writes. `prepare` runs first on the
/// same blocking thread; its error is the answer. An error from `produce` (after the first
/// byte may have gone) cuts the body.
pub async fn json_array<P, F, G>(prepare: F, produce: G) -> Result<Response>
where
    F: FnOnce() -> Result<P> + Send + 'static,
    G: FnOnce(P, &mut JsonArrayWriter) -> Result<()> + Send + 'static,
    P: 'static,
{
    let (ready, is_ready) = oneshot::channel::<Result<()>>();
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    super::observe::spawn_blocking(move || {
        let prepared = match prepare() {
            Ok(prepared) => prepared,
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        if ready.send(Ok(())).is_err() {
            // The request went away while we prepared.
            return;
        }
        let mut writer = JsonArrayWriter::new(Out::Stream(sender));
        let failed = produce(prepared, &mut writer).err();
        writer.finish_stream(failed);
    });
    match is_ready.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(err),
        Err(_) => return Err(Error::internal("background task failed")),
    }
    Ok(json_response(Body::new(FrameBody(receiver))))
}

/// A response body fed by a blocking producer with frames: data, then perhaps trailers.
struct FrameBody(mpsc::Receiver<std::io::Result<Frame<Bytes>>>);

impl hyper::body::Body for FrameBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::io::Result<Frame<Bytes>>>> {
        self.0.poll_recv(cx)
    }
}

/// Like [`json_array`], but the array is complete before the answer starts, so `produce` can
/// return what the head needs (`T`). The reader going away stops the producer
/// ([`JsonArrayWriter::closed`]).
pub async fn held_json_array<P, T, F, G>(prepare: F, produce: G) -> Result<(Response, T)>
where
    F: FnOnce() -> Result<P> + Send + 'static,
    G: FnOnce(P, &mut JsonArrayWriter) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = SetOnDrop(cancelled.clone());
    let (body, value) = super::extract::blocking(move || {
        let prepared = prepare()?;
        let mut writer = JsonArrayWriter::new(Out::Hold {
            cancelled,
            spill: None,
            spilled: 0,
        });
        let value = produce(prepared, &mut writer)?;
        Ok((writer.finish_hold()?, value))
    })
    .await?;
    let response = match body {
        HeldBody::Memory(bytes) => json_response(Body::from(bytes)),
        HeldBody::File(file, len) => {
            let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
            super::observe::spawn_blocking(move || send_file(file, &sender));
            let mut response = json_response(channel_body(receiver));
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            response
        }
    };
    Ok((response, value))
}

/// Sets the flag when dropped: the handler's future was dropped (or finished).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn json_response(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A response body fed by a blocking producer through `receiver`.
fn channel_body(receiver: mpsc::Receiver<std::io::Result<Bytes>>) -> Body {
    Body::from_stream(stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    }))
}

/// Sends a held temp file in chunks; a read error cuts the body.
fn send_file(mut file: File, sender: &mpsc::Sender<std::io::Result<Bytes>>) {
    loop {
        let mut chunk = vec![0u8; 4 * CHUNK_BYTES];
        let item = match file.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                chunk.truncate(n);
                Ok(Bytes::from(chunk))
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => Err(err),
        };
        let failed = item.is_err();
        if sender.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(items: usize, item_len: usize) -> (Vec<u8>, bool) {
        let mut writer = JsonArrayWriter::new(Out::Hold {
            cancelled: Arc::new(AtomicBool::new(false)),
            spill: None,
            spilled: 0,
        });
        let item = "x".repeat(item_len);
        for _ in 0..items {
            assert!(writer.push(&item));
        }
        match writer.finish_hold().unwrap() {
            HeldBody::Memory(bytes) => (bytes, false),
            HeldBody::File(mut file, len) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).unwrap();
                assert_eq!(bytes.len() as u64, len);
                (bytes, true)
            }
        }
    }

    #[test]
    fn held_arrays_are_the_bytes_serde_gives_in_memory_or_spilled() {
        for (items, item_len, spilled) in [(0, 0, false), (3, 10, false), (40, 100_000, true)] {
            let (bytes, was_spilled) = held(items, item_len);
            let expected = serde_json::to_vec(&vec!["x".repeat(item_len); items]).unwrap();
            assert!(bytes == expected, "{items} items of {item_len}");
            assert_eq!(was_spilled, spilled);
        }
    }
}
