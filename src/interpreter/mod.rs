//! Stateful interpreter contexts: one long-lived Python or Node worker per context, jobs run one
//! at a time in arrival order, frames (`stdout`, `stderr`, `error`, `chart`, `control`) streamed
//! as they come. A timeout interrupts the job (SIGINT) and the context survives when the worker
//! answers; otherwise the worker is killed and restarts on next use, saying its state was lost.
//! A job that timed out ends without a `control` frame: only its end (`JobEnd::TimedOut`) says so.
//! A worker whose stdout or stderr is no longer the pipe toolboxd reads (the code closed it, and
//! the worker could not put it back) is replaced after its job, and the next job is told its
//! state is gone.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::code::{Code, Language};
use crate::error::{Error, Result};
use crate::process::{shutting_down, Process, Worker};

/// The id of the context used when a job names none.
pub const DEFAULT_CONTEXT: &str = "default";
/// How long an interrupted job may take to stop before its worker is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// What a client sees of a context.
#[derive(Debug, Clone)]
pub struct ContextInfo {
    /// Its id (a UUID, or `default`).
    pub id: String,
    /// Working directory of its worker.
    pub cwd: String,
    /// `python` or `javascript`.
    pub language: &'static str,
    /// When it was created.
    pub created_at: SystemTime,
    /// Whether its worker is running.
    pub active: bool,
}

/// One job.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// The code.
    pub code: String,
    /// Environment for this job only.
    pub envs: BTreeMap<String, String>,
    /// Interrupt after this long.
    pub timeout: Option<Duration>,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// It ran to the end (errors included: they were sent as frames).
    Completed,
    /// The timeout interrupted it (no `control` frame was sent).
    TimedOut,
    /// The worker died or could not start.
    WorkerEnded,
    /// The context was deleted meanwhile.
    Deleted,
    /// toolboxd began shutting down before the job ended (an error frame said so); the worker is
    /// being terminated with every other tree.
    ShuttingDown,
}

/// The interpreter capability.
#[derive(Debug, Clone)]
pub struct Interpreters {
    process: Process,
    code: Code,
    contexts: Arc<Mutex<HashMap<String, Arc<Context>>>>,
}

/// A context: its worker and the lock that orders its jobs.
#[derive(Debug)]
pub struct Context {
    id: String,
    cwd: PathBuf,
    language: Language,
    created_at: SystemTime,
    /// Held for the whole of a job (tokio's mutex is fair: jobs run in arrival order).
    slot: tokio::sync::Mutex<Slot>,
    active: AtomicBool,
    deleted: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Slot {
    worker: Option<Worker>,
    /// Why the worker of this context is gone, when it was lost with its state: the next job is
    /// told so.
    lost: Option<Lost>,
}

/// Why a context lost its worker (and its state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// It died, was killed after ignoring an interrupt, or failed.
    Ended,
    /// Its code closed the worker's stdout or stderr for good.
    Stdio,
}

impl Lost {
    fn notice(self) -> &'static str {
        match self {
            Lost::Ended => {
                "[toolboxd] the interpreter restarted: its state (variables and imports from \
                 earlier runs) is gone\n"
            }
            Lost::Stdio => {
                "[toolboxd] the interpreter restarted because earlier code closed its stdout or \
                 stderr: its state (variables and imports from earlier runs) is gone\n"
            }
        }
    }
}

impl Context {
    fn info(&self) -> ContextInfo {
        ContextInfo {
            id: self.id.clone(),
            cwd: self.cwd.display().to_string(),
            language: match self.language {
                Language::JavaScript => "javascript",
                _ => "python",
            },
            created_at: self.created_at,
            active: self.active.load(Ordering::SeqCst),
        }
    }
}

impl Interpreters {
    /// The capability, spawning through `process`, with workers from `code`.
    pub fn new(process: Process, code: Code) -> Interpreters {
        Interpreters {
            process,
            code,
            contexts: Arc::default(),
        }
    }

    /// Creates a context and starts its worker.
    pub async fn create(&self, cwd: Option<&str>, language: Option<&str>) -> Result<ContextInfo> {
        let language = match Language::parse(language.unwrap_or(""))? {
            Language::TypeScript => {
                return Err(Error::bad_request(
                    "unsupported language: typescript (contexts support python and javascript)",
                ))
            }
            other => other,
        };
        let id = uuid::Uuid::new_v4().to_string();
        let context = self.new_context(&id, cwd, language)?;
        {
            let mut slot = context.slot.lock().await;
            slot.worker = Some(self.start_worker(&context)?);
        }
        let info = context.info();
        self.lock().insert(id, context);
        Ok(info)
    }

    /// Every context but the default one.
    pub fn list(&self) -> Vec<ContextInfo> {
        let mut list: Vec<ContextInfo> = self
            .lock()
            .values()
            .filter(|c| c.id != DEFAULT_CONTEXT)
            .map(|c| c.info())
            .collect();
        list.sort_by_key(|c| c.created_at);
        list
    }

    /// Deletes a context, killing its worker (a running job ends with `Deleted`).
    pub fn delete(&self, id: &str) -> Result<()> {
        if id == DEFAULT_CONTEXT {
            return Err(Error::bad_request("the default context cannot be deleted"));
        }
        let context = self
            .lock()
            .remove(id)
            .ok_or_else(|| Error::not_found(format!("context not found: {id}")))?;
        context.deleted.store(true, Ordering::SeqCst);
        context.active.store(false, Ordering::SeqCst);
        if let Ok(mut slot) = context.slot.try_lock() {
            slot.worker = None; // dropping the worker kills its tree
        }
        Ok(())
    }

    /// The context `id`, or the default one (created on first use).
    pub fn context(&self, id: Option<&str>) -> Result<Arc<Context>> {
        let id = id.filter(|i| !i.is_empty()).unwrap_or(DEFAULT_CONTEXT);
        let mut contexts = self.lock();
        if let Some(context) = contexts.get(id) {
            return Ok(context.clone());
        }
        if id != DEFAULT_CONTEXT {
            return Err(Error::not_found(format!("context not found: {id}")));
        }
        let context = self.new_context(DEFAULT_CONTEXT, None, Language::Python)?;
        contexts.insert(DEFAULT_CONTEXT.to_string(), context.clone());
        Ok(context)
    }

    /// Runs `job` in `context` once the jobs before it are done, sending frames to `frames`.
    pub async fn execute(
        &self,
        context: Arc<Context>,
        job: Job,
        frames: mpsc::Sender<Value>,
    ) -> JobEnd {
        // Shutdown answers a job at once, whether it waits for its turn or runs.
        let closing = self.process.trees().closing();
        tokio::pin!(closing);
        let stopped = |frames: mpsc::Sender<Value>| async move {
            let _ = frames
                .send(error_frame("SHUTTING_DOWN", &shutting_down().message))
                .await;
            JobEnd::ShuttingDown
        };
        let mut slot = tokio::select! {
            biased;
            () = &mut closing => return stopped(frames).await,
            slot = context.slot.lock() => slot,
        };
        if context.deleted.load(Ordering::SeqCst) {
            return JobEnd::Deleted;
        }
        // A worker that died between jobs is replaced now, rather than failing this job.
        if let Some(worker) = slot.worker.as_mut() {
            if worker.exit.has_exited() {
                slot.worker = None;
                slot.lost = Some(Lost::Ended);
            }
        }
        let mut worker = match slot.worker.take() {
            Some(worker) => RunningWorker::from(worker),
            None => {
                if let Some(lost) = slot.lost {
                    let _ = frames.send(frame("stderr", lost.notice())).await;
                }
                match self.start_worker(&context) {
                    Ok(worker) => RunningWorker::from(worker),
                    Err(err) => {
                        let _ = frames.send(error_frame("WorkerError", &err.message)).await;
                        return JobEnd::WorkerEnded;
                    }
                }
            }
        };
        context.active.store(true, Ordering::SeqCst);
        let deleted = context.deleted.clone();
        // The job's frames come through here, so that once shutdown has answered the job
        // nothing the dying worker still prints follows the answer.
        let (job_frames, mut forwarded) = mpsc::channel(FRAMES_AHEAD);
        let running = tokio::task::spawn_blocking(move || {
            let end = run_job(&mut worker, &job, &job_frames, &deleted);
            (worker, end)
        });
        tokio::pin!(running);
        let outcome = loop {
            tokio::select! {
                biased;
                () = &mut closing => {
                    // The job's thread keeps the worker until shutdown has ended it.
                    slot.lost = Some(Lost::Ended);
                    context.active.store(false, Ordering::SeqCst);
                    return stopped(frames).await;
                }
                Some(frame) = forwarded.recv() => {
                    let _ = frames.send(frame).await;
                }
                outcome = &mut running => {
                    while let Ok(frame) = forwarded.try_recv() {
                        let _ = frames.send(frame).await;
                    }
                    break outcome;
                }
            }
        };
        let Ok((worker, end)) = outcome else {
            slot.lost = Some(Lost::Ended);
            context.active.store(false, Ordering::SeqCst);
            return JobEnd::WorkerEnded;
        };
        let alive = matches!(end, JobEnd::Completed)
            || (end == JobEnd::TimedOut && !worker.gone.load(Ordering::SeqCst));
        if alive && !worker.stdio_lost && !context.deleted.load(Ordering::SeqCst) {
            slot.worker = Some(worker.inner);
            slot.lost = None;
        } else {
            slot.lost = match end {
                JobEnd::Deleted => None,
                _ if worker.stdio_lost => Some(Lost::Stdio),
                _ => Some(Lost::Ended),
            };
            drop(worker);
            context.active.store(false, Ordering::SeqCst);
        }
        end
    }

    fn new_context(&self, id: &str, cwd: Option<&str>, language: Language) -> Result<Arc<Context>> {
        Ok(Arc::new(Context {
            id: id.to_string(),
            cwd: self.process.directory(cwd)?,
            language,
            created_at: SystemTime::now(),
            slot: tokio::sync::Mutex::new(Slot::default()),
            active: AtomicBool::new(false),
            deleted: Arc::new(AtomicBool::new(false)),
        }))
    }

    fn start_worker(&self, context: &Context) -> Result<Worker> {
        let (program, args) = self.code.worker_command(context.language)?;
        let worker = self
            .process
            .spawn_worker(&program, &args, &context.cwd, &BTreeMap::new())?;
        for file in [&worker.stdout, &worker.stderr, &worker.frames] {
            set_nonblocking(file);
        }
        context.active.store(true, Ordering::SeqCst);
        Ok(worker)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Context>>> {
        self.contexts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frames a job's thread may queue before it waits for them to be forwarded.
const FRAMES_AHEAD: usize = 256;

/// A worker and whether it is gone (this job had to kill it, or it died after the interrupt),
/// or can no longer print (its stdout or stderr is not the pipe toolboxd reads).
#[derive(Debug)]
struct RunningWorker {
    inner: Worker,
    gone: AtomicBool,
    stdio_lost: bool,
}

impl From<Worker> for RunningWorker {
    fn from(inner: Worker) -> RunningWorker {
        RunningWorker {
            inner,
            gone: AtomicBool::new(false),
            stdio_lost: false,
        }
    }
}

/// Whether the worker's fds 1 and 2 are still the pipes toolboxd reads (`/proc/<pid>/fd/N` names
/// the same pipe inode as our read end). True when it cannot be told (no /proc, no permission,
/// the worker already gone: its end is noticed elsewhere).
fn stdio_intact(worker: &Worker) -> bool {
    use std::os::unix::fs::MetadataExt;
    [(1, &worker.stdout), (2, &worker.stderr)]
        .into_iter()
        .all(|(fd, ours)| {
            let Ok(pipe) = ours.metadata() else {
                return true;
            };
            match std::fs::read_link(format!("/proc/{}/fd/{fd}", worker.pid)) {
                Ok(target) => target.as_os_str() == format!("pipe:[{}]", pipe.ino()).as_str(),
                // Closed, if the process is there to ask.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    !std::path::Path::new(&format!("/proc/{}/fd", worker.pid)).is_dir()
                }
                Err(_) => true,
            }
        })
}

const STDIO_LOST: &str = "[toolboxd] this code closed the interpreter's stdout or stderr: the \
    interpreter restarts before the next run, and its state (variables and imports) is lost\n";

fn set_nonblocking(file: &std::fs::File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags));
    }
}

/// A frame with all five keys.
fn frame(kind: &str, text: &str) -> Value {
    json!({"type": kind, "text": text, "name": "", "value": "", "traceback": ""})
}

fn error_frame(name: &str, value: &str) -> Value {
    json!({"type": "error", "text": "", "name": name, "value": value, "traceback": ""})
}

/// Streams one job: raw output becomes stdout/stderr frames (always drained before a protocol
/// frame, so the order is the order the worker wrote in), protocol frames pass through. A chart
/// is acknowledged with a newline on the job stream: the worker waits for it before going on, so
/// the output printed after a chart is never in the pipes when the chart is read.
fn run_job(
    worker: &mut RunningWorker,
    job: &Job,
    frames: &mpsc::Sender<Value>,
    deleted: &AtomicBool,
) -> JobEnd {
    let line = json!({"code": job.code, "envs": job.envs}).to_string() + "\n";
    if write_all(&mut worker.inner.jobs, line.as_bytes()).is_err() {
        return JobEnd::WorkerEnded;
    }
    let deadline = job.timeout.map(|t| Instant::now() + t);
    let mut interrupted_at: Option<Instant> = None;
    let mut text = [Utf8Carry::default(), Utf8Carry::default()];
    // A raw pipe at EOF (every write end closed: the worker's fd 1 or 2 is gone) is polled no
    // more, or poll would report it at once, again and again.
    let mut raw_open = [true, true];
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let send = |value: Value| {
        let _ = frames.blocking_send(value);
    };
    loop {
        let w = &mut worker.inner;
        let mut fds = [
            w.frames.as_raw_fd(),
            if raw_open[0] {
                w.stdout.as_raw_fd()
            } else {
                -1
            },
            if raw_open[1] {
                w.stderr.as_raw_fd()
            } else {
                -1
            },
        ]
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: three valid pollfds for descriptors the worker keeps open.
        unsafe { libc::poll(fds.as_mut_ptr(), 3, 100) };
        let mut ended = false;
        loop {
            match w.frames.read(&mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        // Raw output next, after the frames were read: whatever the worker printed before a
        // frame was in the pipes before the frame was, so it is read now and sent first.
        for (index, kind) in [(0usize, "stdout"), (1, "stderr")] {
            if !raw_open[index] {
                continue;
            }
            let pipe = if index == 0 {
                &mut w.stdout
            } else {
                &mut w.stderr
            };
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    raw_open[index] = false;
                    break;
                }
                let decoded = text[index].decode(&buf[..n]);
                if !decoded.is_empty() {
                    send(frame(kind, &decoded));
                }
            }
        }
        while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            let Ok(mut value) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if value["type"] == "chart" {
                // The worker waits after a chart for this ack, so the raw output it prints next
                // cannot overtake the chart: everything read so far was written before it.
                if let Some(chart) = crate::code::wire_chart(value["value"].take()) {
                    send(json!({"type": "chart", "value": chart}));
                } // else: the SDKs' strict models would reject it
                if write_all(&mut w.jobs, b"\n").is_err() {
                    return JobEnd::WorkerEnded;
                }
                continue;
            }
            if value["type"] == "control" {
                // After the timeout's interrupt the job ended by timing out, whatever the worker
                // says: no `interrupted` (or `completed`) frame then, since the TS SDK settles on
                // that frame as a success before it sees the 4008 close. An `interrupted` without
                // our interrupt (the code raised KeyboardInterrupt itself) is passed on.
                if interrupted_at.is_some() {
                    return JobEnd::TimedOut;
                }
                // The worker puts back a stdout or stderr the code closed (Python does); if it
                // is still gone, later jobs could print nothing: the worker is replaced.
                if raw_open != [true, true] || !stdio_intact(w) {
                    worker.stdio_lost = true;
                    send(frame("stderr", STDIO_LOST));
                }
                send(value);
                return JobEnd::Completed;
            }
            send(value);
        }
        if ended {
            send(frame("stderr", "[toolboxd] the interpreter worker ended\n"));
            if interrupted_at.is_some() {
                // It died of the interrupt: still a timeout, and the worker is gone.
                worker.gone.store(true, Ordering::SeqCst);
                return JobEnd::TimedOut;
            }
            return JobEnd::WorkerEnded;
        }
        if deleted.load(Ordering::SeqCst) {
            w.kill();
            return JobEnd::Deleted;
        }
        let now = Instant::now();
        match (deadline, interrupted_at) {
            (Some(deadline), None) if now >= deadline => {
                w.interrupt();
                interrupted_at = Some(now);
            }
            (_, Some(at)) if now >= at + INTERRUPT_GRACE => {
                w.kill();
                worker.gone.store(true, Ordering::SeqCst);
                send(frame(
                    "stderr",
                    "[toolboxd] the job ignored the interrupt: the interpreter was restarted \
                     and its state is lost\n",
                ));
                return JobEnd::TimedOut;
            }
            _ => {}
        }
    }
}

fn write_all(file: &mut std::fs::File, data: &[u8]) -> std::io::Result<()> {
    file.write_all(data)?;
    file.flush()
}

/// Decodes UTF-8 across chunk boundaries (a split character waits for its rest; invalid bytes
/// become U+FFFD).
#[derive(Debug, Default)]
struct Utf8Carry {
    held: Vec<u8>,
}

impl Utf8Carry {
    fn decode(&mut self, chunk: &[u8]) -> String {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(chunk);
        let mut out = String::with_capacity(data.len());
        let mut rest = &data[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    break;
                }
                Err(err) => {
                    let (valid, after) = rest.split_at(err.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match err.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            rest = &after[bad..];
                        }
                        None => {
                            self.held = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_joined() {
        let text = "héllo ✓";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut carry = Utf8Carry::default();
            let mut out = carry.decode(&bytes[..cut]);
            out += &carry.decode(&bytes[cut..]);
            assert_eq!(out, text, "cut at {cut}");
        }
        assert_eq!(Utf8Carry::default().decode(b"a\xffb"), "a\u{FFFD}b");
    }
}
