//! Progress notifications for tools that take time, sent only when the client asked for them
//! (a `progressToken` in the request's `_meta`). They are sent from the tool's own task, so over
//! Streamable HTTP they travel on the request's SSE stream.

use std::future::Future;
use std::time::{Duration, Instant};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext};
use rmcp::RoleServer;

/// How often a running command reports that it still runs.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The progress reporter of one request.
pub struct Progress {
    peer: Peer<RoleServer>,
    token: Option<ProgressToken>,
    /// The last value sent: MCP wants each report above the one before.
    last: Option<f64>,
}

impl Progress {
    /// The reporter of `context`'s request (silent when it carries no progress token).
    pub fn of(context: &RequestContext<RoleServer>) -> Progress {
        Progress {
            peer: context.peer.clone(),
            token: context.meta.get_progress_token(),
            last: None,
        }
    }

    /// True when the client asked for progress.
    pub fn wanted(&self) -> bool {
        self.token.is_some()
    }

    /// Sends `progress` (of `total`, when known) with `message`, unless it is not above the
    /// last report. A client that went away is not an error of the tool.
    pub async fn report(&mut self, progress: f64, total: Option<f64>, message: String) {
        let Some(token) = self.token.clone() else {
            return;
        };
        if self.last.is_some_and(|last| progress <= last) {
            return;
        }
        self.last = Some(progress);
        let mut param = ProgressNotificationParam::new(token, progress).with_message(message);
        if let Some(total) = total {
            param = param.with_total(total);
        }
        if let Err(err) = self.peer.notify_progress(param).await {
            tracing::debug!("progress notification not sent: {err}");
        }
    }

    /// Awaits `work`; with a progress token, reports at once that it started and then every
    /// `HEARTBEAT` how long it has run (the total is unknown).
    pub async fn heartbeat<T>(&mut self, what: &str, work: impl Future<Output = T>) -> T {
        if !self.wanted() {
            return work.await;
        }
        tokio::pin!(work);
        let started = Instant::now();
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                done = &mut work => return done,
                _ = tick.tick() => {
                    let seconds = started.elapsed().as_secs();
                    let message = if seconds == 0 {
                        format!("{what} started")
                    } else {
                        format!("{what} running for {seconds} s")
                    };
                    self.report(seconds as f64, None, message).await;
                }
            }
        }
    }
}
