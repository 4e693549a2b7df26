//! Ending a WebSocket cleanly, the same way on every socket the daemon serves.
//!
//! tungstenite answers a client's close frame by queueing the reply until the next write; a
//! handler that stops writing as soon as the client leaves (or whose next write fails because
//! the client closed) must still send it, or the client sees the connection drop "without
//! closing handshake". Every wait here is bounded: a client that stops reading cannot hold a
//! task.
//!
//! Every socket also bounds what it reads from its client ([`limited`]): a frame or message over
//! the socket's limit is refused before its payload is read, and the socket closes with 1009
//! ([`refusal`]).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use futures_util::{Sink, SinkExt};

/// How long a closing handshake may take, either way.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The most bytes a close reason may hold (RFC 6455 §5.5: a 125-byte payload, 2 for the code).
const MAX_REASON_BYTES: usize = 123;

/// The largest message a socket that carries typed input reads (PTY and web terminal sockets:
/// keystrokes and pastes).
pub(crate) const MAX_INPUT_MESSAGE: usize = 1024 * 1024;

/// The largest message a socket that carries requests reads (the interpreter's code, an LSP
/// message with a document's text): the same as a JSON body, so what a route takes in a body the
/// socket takes in a message.
pub(crate) const MAX_REQUEST_MESSAGE: usize = super::extract::MAX_JSON_BODY;

/// The largest message a socket whose client only listens reads (session logs, watch): what it
/// sends is read and dropped, so anything but a short frame is a mistake.
pub(crate) const MAX_LISTENER_MESSAGE: usize = 64 * 1024;

/// `upgrade`, reading at most `max` bytes per message and per frame from the client (axum's
/// defaults are 64 MiB and 16 MiB).
pub(crate) fn limited(upgrade: WebSocketUpgrade, max: usize) -> WebSocketUpgrade {
    upgrade.max_message_size(max).max_frame_size(max)
}

/// The close frame that answers a failed read: 1009 for a message or frame over the socket's
/// limit, 1002 for a protocol error; `None` when the connection is gone (nothing can be sent).
pub(crate) fn refusal(err: &axum::Error) -> Option<CloseFrame> {
    use tungstenite::error::{CapacityError, Error as WsError};
    let err = std::error::Error::source(err)?.downcast_ref::<WsError>()?;
    match err {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => Some(close_frame(
            1009,
            &format!("message too big: {size} bytes, this socket takes at most {max_size}"),
        )),
        WsError::Capacity(_) => Some(close_frame(1009, "message too big")),
        WsError::Protocol(err) => Some(close_frame(1002, &err.to_string())),
        WsError::Utf8(_) => Some(close_frame(1007, "text frame is not UTF-8")),
        _ => None,
    }
}

/// Ends the connection after a failed read: the [`refusal`] when there is one, else only what
/// the connection still owes.
pub(crate) async fn close_after(socket: &mut WebSocket, err: &axum::Error) {
    match refusal(err) {
        Some(frame) => close(socket, frame).await,
        None => finish(socket).await,
    }
}

/// [`close_after`] for a socket split in two: the refusal, if any, then what the connection still
/// owes.
pub(crate) async fn close_sink_after<S>(sink: &mut S, refusal: Option<CloseFrame>)
where
    S: Sink<Message> + Unpin,
{
    if let Some(frame) = refusal {
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
    }
    finish(sink).await;
}

/// Sends what the connection still owes a client that closed or went away (the reply to its
/// close frame) and closes the sink, within [`CLOSE_GRACE`].
pub(crate) async fn finish<S>(sink: &mut S)
where
    S: Sink<Message> + Unpin,
{
    tracing::debug!("the client left; closing the WebSocket");
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

/// A close frame whose reason is cut, at a character boundary, to what a close frame can hold.
pub(crate) fn close_frame(code: u16, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code,
        reason: reason[..end].into(),
    }
}

/// Closes from the server's side: sends `frame`, then reads on (within [`CLOSE_GRACE`]) until the
/// client answers, so that the connection does not drop before the client has read the close.
pub(crate) async fn close(socket: &mut WebSocket, frame: CloseFrame) {
    tracing::debug!(code = frame.code, reason = %frame.reason, "closing the WebSocket");
    let sent = tokio::time::timeout(CLOSE_GRACE, socket.send(Message::Close(Some(frame)))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Closes a split socket from the server's side: sends `frame` through `sink`, then gives the
/// task reading the other half (`reader`, which ends at the client's close frame) [`CLOSE_GRACE`]
/// to see the answer, and ends it: a client that never answers holds nothing.
pub(crate) async fn close_split<S, T>(
    sink: &mut S,
    reader: &mut tokio::task::JoinHandle<T>,
    frame: CloseFrame,
) where
    S: Sink<Message> + Unpin,
{
    tracing::debug!(code = frame.code, reason = %frame.reason, "closing the WebSocket");
    let sent = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = tokio::time::timeout(CLOSE_GRACE, &mut *reader).await;
    }
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(close_frame(1000, "short").reason.as_str(), "short");
        let long = "é".repeat(100);
        let frame = close_frame(1011, &long);
        assert_eq!(frame.code, 1011);
        assert_eq!(frame.reason.len(), 122);
        assert!(frame.reason.chars().all(|c| c == 'é'));
        assert_eq!(close_frame(1000, &"a".repeat(200)).reason.len(), 123);
    }
}
