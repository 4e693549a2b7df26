//! Ending a WebSocket cleanly, the same way on every socket the daemon serves.
//!
//! tungstenite answers a client's close frame by queueing the reply until the next write; a
//! handler that stops writing as soon as the client leaves (or whose next write fails because
//! the client closed) must still send it, or the client sees the connection drop "without
//! closing handshake". Every wait here is bounded: a client that stops reading cannot hold a
//! task.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{Sink, SinkExt};

/// How long a closing handshake may take, either way.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The most bytes a close reason may hold (RFC 6455 §5.5: a 125-byte payload, 2 for the code).
const MAX_REASON_BYTES: usize = 123;

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
    if socket.send(Message::Close(Some(frame))).await.is_err() {
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
pub(crate) async fn close_split<S>(
    sink: &mut S,
    reader: &mut tokio::task::JoinHandle<()>,
    frame: CloseFrame,
) where
    S: Sink<Message> + Unpin,
{
    tracing::debug!(code = frame.code, reason = %frame.reason, "closing the WebSocket");
    if sink.send(Message::Close(Some(frame))).await.is_ok() {
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
