//! A command on pipes (`ssh host cmd`, `rsync --server`, a shell without a terminal): stdin
//! streamed from the channel, stdout as channel data and stderr as extended data, kept apart;
//! then `exit-status`, or `exit-signal` when a signal killed it.
//!
//! The channel and the command end together: a client that closes the channel (or a connection
//! that drops) while the command runs hangs its whole tree up (SIGHUP, then SIGKILL after
//! `HANG_UP_GRACE`). A command that exits by itself ends the channel once its output is drained;
//! as with OpenSSH, what it deliberately left running in the background (`nohup server &` with
//! its output elsewhere) stays, and daemon shutdown still ends it.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::channel::{sig_of, Inbox, Output};
use crate::process::{ExitStatus, PipedChild, PipedControl};

/// How long a hung-up tree gets before SIGKILL.
pub const HANG_UP_GRACE: Duration = Duration::from_secs(2);
/// After the command exits, how long its output may stay silent before the channel ends anyway
/// (a background job that keeps the pipe open without writing).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Runs `child` to its end on the channel.
pub async fn run(
    mut child: PipedChild,
    output: Output,
    inbox: Arc<Inbox>,
    ended: CancellationToken,
) {
    let control = child.control();
    let Some(exit) = child.exit.take() else {
        output.finish().await;
        return;
    };
    let output = Arc::new(output);
    let exited = CancellationToken::new();
    let stdin = child
        .stdin
        .take()
        .map(|file| tokio::spawn(feed(file, inbox.clone())));
    let stdout = child
        .stdout
        .take()
        .map(|file| tokio::spawn(drain(file, output.clone(), false, exited.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|file| tokio::spawn(drain(file, output.clone(), true, exited.clone())));
    let status = tokio::select! {
        status = exit.wait() => status,
        () = ended.cancelled() => {
            // The client closed the channel, the connection dropped, or the channel was given
            // up (then the client is told; otherwise this changes nothing).
            if let Some(task) = stdin {
                task.abort();
            }
            output.close().await;
            hang_up(control).await;
            drop(child);
            return;
        }
    };
    exited.cancel();
    for task in [stdout, stderr].into_iter().flatten() {
        tokio::select! {
            _ = task => {}
            () = ended.cancelled() => break,
        }
    }
    if let Some(task) = stdin {
        task.abort();
    }
    drop(child);
    if ended.is_cancelled() {
        output.close().await;
        return;
    }
    match status {
        ExitStatus::Exited(code) => output.exit_status(code as u32).await,
        ExitStatus::Signaled(signal) => output.exit_signal(sig_of(signal)).await,
    }
    output.finish().await;
}

/// SIGHUP to the tree, SIGKILL to what is left after `HANG_UP_GRACE`.
pub async fn hang_up(control: PipedControl) {
    let _ = tokio::task::spawn_blocking(move || {
        control.signal_tree(Signal::SIGHUP);
        let deadline = std::time::Instant::now() + HANG_UP_GRACE;
        while std::time::Instant::now() < deadline && control.tree_alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
        control.signal_tree(Signal::SIGKILL);
    })
    .await;
}

/// Writes the channel's input into the command's stdin until EOF, then closes it.
async fn feed(file: File, inbox: Arc<Inbox>) {
    let Ok(mut pipe) = pipe::Sender::from_file(file) else {
        return;
    };
    while let Some(chunk) = inbox.recv().await {
        if pipe.write_all(&chunk).await.is_err() {
            // The command closed its stdin: the rest is dropped, as a pipe would.
            return;
        }
    }
}

/// Sends a pipe's content to the channel (as stderr when `stderr`) until EOF, or, once the
/// command has exited (`exited`), until the pipe stays silent for `OUTPUT_GRACE`.
async fn drain(file: File, output: Arc<Output>, stderr: bool, exited: CancellationToken) {
    let Ok(mut pipe) = pipe::Receiver::from_file(file) else {
        return;
    };
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    loop {
        buffer.reserve(READ_CHUNK);
        let read = if exited.is_cancelled() {
            match tokio::time::timeout(OUTPUT_GRACE, pipe.read_buf(&mut buffer)).await {
                Ok(read) => read,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                read = pipe.read_buf(&mut buffer) => read,
                // Re-enter with the grace once the command has exited.
                () = exited.cancelled() => continue,
            }
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let chunk: Bytes = buffer.split().freeze();
                let sent = if stderr {
                    output.stderr(chunk).await
                } else {
                    output.data(chunk).await
                };
                if !sent {
                    return;
                }
            }
        }
    }
}
