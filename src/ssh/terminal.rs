//! A program on a terminal (`ssh host`, `ssh -t host cmd`): an unlisted, exclusive PTY of the PTY
//! registry (`crate::pty`) whose output goes to the channel as data and whose input comes from
//! it. Window changes resize it, signals reach its tree, the exit is reported as `exit-status`.
//! A channel that closes hangs the terminal up (SIGHUP to its tree, SIGKILL after the grace),
//! and when the program exits the PTY kills what is left of its tree, as every PTY does.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::channel::{Inbox, Output};
use crate::pty::{Attachment, Pty, PtyEvent};

/// Output joined into one send at most (several kernel reads of the master).
const MAX_SEND: usize = 256 * 1024;

/// Runs the terminal until its program exits or the channel ends.
pub async fn run(
    pty: Arc<Pty>,
    mut attachment: Attachment,
    output: Output,
    inbox: Arc<Inbox>,
    ended: CancellationToken,
) {
    let input = attachment.input();
    let typing = tokio::spawn(async move {
        while let Some(chunk) = inbox.recv().await {
            if !input.write(chunk).await {
                return;
            }
        }
    });
    let replay = std::mem::take(&mut attachment.replay);
    if !replay.is_empty() {
        output.data(replay.into()).await;
    }
    loop {
        let event = tokio::select! {
            event = attachment.next(MAX_SEND) => event,
            () = ended.cancelled() => {
                typing.abort();
                output.close().await;
                drop(attachment);
                pty.hang_up(super::exec::HANG_UP_GRACE).await;
                return;
            }
        };
        match event {
            PtyEvent::Output(bytes) => {
                if !output.data(bytes).await {
                    typing.abort();
                    drop(attachment);
                    pty.hang_up(super::exec::HANG_UP_GRACE).await;
                    return;
                }
            }
            PtyEvent::Exited(exit) => {
                typing.abort();
                output.exit_status(exit.code as u32).await;
                output.finish().await;
                return;
            }
            // An exclusive PTY never drops its client; end the channel if it did anyway.
            PtyEvent::Dropped => {
                typing.abort();
                output.finish().await;
                drop(attachment);
                pty.hang_up(super::exec::HANG_UP_GRACE).await;
                return;
            }
        }
    }
}
