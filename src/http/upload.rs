//! Uploads: `POST /files/bulk-upload` (multipart `files[i].path` + `files[i].file`, paired by
//! index, streamed), `POST /files/upload-v2` (multipart `file` or a raw body) and the legacy
//! `POST /files/upload`. Every file streams through a bounded channel to a blocking writer that
//! owns an `AtomicFile`: memory stays flat whatever the size, and a cut connection leaves the old
//! content and no temp file. A written file is staged and renamed into place only once the whole
//! request body has arrived, so a body that ends early commits nothing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::extract::{blocking, required_path, Query, QueryPath};
use crate::error::{Error, ErrorKind, Result};
use crate::files::{Files, StagedFile};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files/bulk-upload", post(bulk_upload))
        .route("/files/upload-v2", post(upload_v2))
        .route("/files/upload", post(upload_legacy))
}

/// `?path=` plus the signed-URL parameters, which are accepted and ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Destination file.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: Option<QueryPath>,
    /// Signed-URL expiry (checked by the platform's proxy, ignored here).
    #[allow(dead_code)]
    pub expires: Option<String>,
    /// Signed-URL signature (checked by the platform's proxy, ignored here).
    #[allow(dead_code)]
    pub signature: Option<String>,
}

/// One stored file.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedFile {
    /// The destination as given.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
}

/// `{files, errors}`: what was stored and what was not.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadFilesResponse {
    /// Files stored.
    pub files: Vec<UploadedFile>,
    /// One message per failure.
    pub errors: Vec<String>,
}

/// The 4xx/5xx body of a partial upload: the wire error plus `files` and `errors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadFailureBody {
    /// The wire error (status from the first failure).
    #[serde(flatten)]
    pub error: ErrorBody,
    /// Files stored: empty, as a failed upload stores nothing, unless renaming the staged files
    /// into place failed part way.
    pub files: Vec<UploadedFile>,
    /// One message per failure.
    pub errors: Vec<String>,
}

/// Streams each `files[i].file` part to the path given in `files[i].path` (which must come
/// first; pairs may be interleaved or all paths first). Parent directories are created.
///
/// Every file is staged beside its target and renamed into place only once the whole body has
/// arrived (its closing delimiter, then the end its Content-Length or chunked encoding
/// announces): a body that is cut or malformed stores nothing, and neither does a body with a
/// file that cannot be written or a part that is wrong (all or nothing).
#[utoipa::path(post, path = "/files/bulk-upload", tag = "files",
    request_body(content_type = "multipart/form-data", description = "fields files[i].path then files[i].file"),
    responses((status = 200, body = UploadFilesResponse), (status = 400, body = UploadFailureBody),
        (status = 507, body = UploadFailureBody)))]
pub async fn bulk_upload(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    request: Request,
) -> Response {
    let mut report = Report::new(method, uri);
    let (mut multipart, body) = match multipart_of(request) {
        Ok(parts) => parts,
        Err(err) => return report.fail(err),
    };
    let mut staging = Staging::default();
    // Why the body is not a whole multipart body (then nothing is stored).
    let mut broken: Option<String> = None;
    let mut paths: HashMap<String, String> = HashMap::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                broken = Some(format!("reading part: {err}"));
                break;
            }
        };
        let name = field.name().unwrap_or("").to_string();
        if let Some(idx) = index_of(&name, ".path") {
            match read_path_part(&mut field, idx).await {
                Ok(text) if text.trim().is_empty() => {
                    report.error(Error::invalid_path(format!("path[{idx}]: empty path")))
                }
                Ok(_) if paths.len() >= MAX_PENDING_PATHS => {
                    broken = Some(format!(
                        "more than {MAX_PENDING_PATHS} files[i].path parts without their files[i].file parts"
                    ));
                    break;
                }
                Ok(text) => {
                    paths.insert(idx.to_string(), text.trim().to_string());
                }
                Err(StoreError::Write(err)) => report.error(err),
                Err(StoreError::Body(err)) => {
                    broken = Some(format!("reading part: {err}"));
                    break;
                }
            }
        } else if let Some(idx) = index_of(&name, ".file") {
            let Some(destination) = paths.remove(idx) else {
                report.error(Error::invalid_body(format!(
                    "file[{idx}]: missing .path metadata (send files[{idx}].path before files[{idx}].file)"
                )));
                continue;
            };
            let chunks = futures_util::stream::poll_fn(|cx| field.poll_next_unpin(cx));
            match store(&app.files, OsStr::new(&destination), chunks).await {
                Ok(staged) => staging.push(destination, staged),
                Err(StoreError::Body(err)) => {
                    broken = Some(format!("{destination}: reading part: {err}"));
                    break;
                }
                Err(StoreError::Write(err)) => report.error(prefixed(&destination, err)),
            }
        }
    }
    drop(multipart);
    // Read to the end even after a malformed part, so the client gets the answer, not a reset.
    // A body cut short is the reason, whatever the parser made of it.
    let ended = body.finish().await;
    if let Some(reason) = ended.err().or(broken) {
        staging.discard().await;
        report.error(Error::invalid_body(format!(
            "{reason}; the body did not arrive whole, so nothing was stored"
        )));
        return report.finish();
    }
    let mut unpaired: Vec<_> = paths.into_iter().collect();
    unpaired.sort();
    for (idx, destination) in unpaired {
        report.error(Error::invalid_body(format!(
            "files[{idx}].path ({destination}) has no files[{idx}].file part"
        )));
    }
    // All or nothing: an upload that failed for one file stores none of them.
    if !report.errors.is_empty() {
        staging.discard().await;
        report.nothing_stored = true;
        return report.finish();
    }
    for (destination, committed) in staging.commit().await {
        match committed {
            Ok(bytes) => report.files.push(UploadedFile {
                path: destination,
                bytes,
            }),
            Err(err) => report.error(prefixed(&destination, err)),
        }
    }
    report.finish()
}

/// Stores the body (a raw body, or multipart field `file`) at `path`. Used by signed upload URLs.
#[utoipa::path(post, path = "/files/upload-v2", tag = "files", params(UploadQuery),
    request_body(content_type = "application/octet-stream", description = "raw bytes, or multipart field `file`"),
    responses((status = 200, body = UploadFilesResponse), (status = 400, body = UploadFailureBody),
        (status = 507, body = UploadFailureBody)))]
pub async fn upload_v2(
    State(app): State<AppState>,
    Query(query): Query<UploadQuery>,
    method: Method,
    uri: Uri,
    request: Request,
) -> Response {
    let mut report = Report::new(method, uri);
    let destination = match required_path(&query.path, "path") {
        Ok(path) => path.clone(),
        Err(err) => {
            drain(request.into_body().into_data_stream()).await;
            return report.fail(err);
        }
    };
    match store_single(&app.files, destination.as_os_str(), request).await {
        Ok(bytes) => report.files.push(UploadedFile {
            path: destination.lossy(),
            bytes,
        }),
        Err(err) => report.error(err),
    }
    report.finish()
}

/// The form of the legacy single upload: one part, `file`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file's bytes.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The legacy single upload (multipart field `file`); answers 200 with an empty body.
#[utoipa::path(post, path = "/files/upload", tag = "files", params(UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data", description = "field `file`"),
    responses((status = 200), (status = 400, body = ErrorBody)))]
pub async fn upload_legacy(
    State(app): State<AppState>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<StatusCode> {
    let destination = required_path(&query.path, "path")?.clone();
    store_single(&app.files, destination.as_os_str(), request).await?;
    Ok(StatusCode::OK)
}

/// Stores a single-file upload: multipart field `file`, or the raw body. The file is renamed
/// into place only once the whole body has arrived.
async fn store_single(files: &Files, destination: &OsStr, request: Request) -> Result<u64> {
    if !is_multipart(request.headers()) {
        // The stream ends (rather than failing) only once the body arrived whole.
        let chunks = request.into_body().into_data_stream();
        let staged = store(files, destination, chunks)
            .await
            .map_err(StoreError::into_error)?;
        return commit_one(staged).await;
    }
    let (mut multipart, body) = multipart_of(request)?;
    let mut staged = None;
    let mut failure = None;
    // Every part is read, up to the closing delimiter; the first `file` is stored.
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                failure = Some(Error::invalid_body(format!(
                    "reading part: {err}; the body did not arrive whole, so nothing was stored"
                )));
                break;
            }
        };
        if field.name() != Some("file") || staged.is_some() {
            continue;
        }
        let chunks = futures_util::stream::poll_fn(|cx| field.poll_next_unpin(cx));
        match store(files, destination, chunks).await {
            Ok(file) => staged = Some(Staging::of(file)),
            Err(StoreError::Write(err)) => {
                failure = Some(err);
                break;
            }
            Err(StoreError::Body(err)) => {
                failure = Some(Error::invalid_body(format!(
                    "reading body: {err}; the body did not arrive whole, so nothing was stored"
                )));
                break;
            }
        }
    }
    drop(multipart);
    // A body cut short is the reason, whatever the parser made of it.
    let failure = match body.finish().await {
        Err(reason) => Some(Error::invalid_body(format!(
            "{reason}; the body did not arrive whole, so nothing was stored"
        ))),
        Ok(()) => failure,
    };
    match (staged, failure) {
        (Some(staged), None) => staged.commit_one().await,
        (None, None) => Err(Error::invalid_body("multipart body has no `file` field")),
        (staged, Some(err)) => {
            if let Some(staged) = staged {
                staged.discard().await;
            }
            Err(err)
        }
    }
}

/// Publishes one staged file (off the async workers).
async fn commit_one(staged: StagedFile) -> Result<u64> {
    Staging::of(staged).commit_one().await
}

/// Files written whole and waiting for the request to end well (see [`StagedFile`]). Dropped
/// uncommitted, their temp files are removed, on a blocking thread.
#[derive(Default)]
struct Staging {
    files: Vec<(String, StagedFile)>,
}

impl Staging {
    fn of(file: StagedFile) -> Staging {
        let shown = file.target().to_string_lossy().into_owned();
        Staging {
            files: vec![(shown, file)],
        }
    }

    fn push(&mut self, destination: String, file: StagedFile) {
        self.files.push((destination, file));
    }

    /// Renames every staged file into place, in the order they arrived; each one's outcome.
    async fn commit(mut self) -> Vec<(String, Result<u64>)> {
        let files = std::mem::take(&mut self.files);
        let committed = blocking(move || {
            Ok(files
                .into_iter()
                .map(|(destination, file)| (destination, file.commit()))
                .collect::<Vec<_>>())
        })
        .await;
        committed.unwrap_or_else(|err| vec![(String::new(), Err(err))])
    }

    /// Removes the staged files (before the answer that says nothing was stored).
    async fn discard(mut self) {
        let files = std::mem::take(&mut self.files);
        let _ = blocking(move || {
            drop(files);
            Ok(())
        })
        .await;
    }

    /// [`Staging::commit`] for a staging of one file.
    async fn commit_one(self) -> Result<u64> {
        match self.commit().await.pop() {
            Some((_, committed)) => committed,
            None => Err(Error::internal("nothing was staged")),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let files = std::mem::take(&mut self.files);
        if files.is_empty() {
            return;
        }
        // Removing the temp files is file IO: not on an async worker.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(files))),
            Err(_) => drop(files),
        }
    }
}

/// Why a store failed: the request body broke (stop reading) or the file could not be written.
enum StoreError {
    Body(String),
    Write(Error),
}

impl StoreError {
    fn into_error(self) -> Error {
        match self {
            StoreError::Body(err) => Error::invalid_body(format!("reading body: {err}")),
            StoreError::Write(err) => err,
        }
    }
}

/// Streams `chunks` into a temp file beside `destination` through an atomic writer on a blocking
/// thread, and stages it (see [`StagedFile`]): the caller publishes it once the request is whole.
async fn store<S, E>(
    files: &Files,
    destination: &OsStr,
    chunks: S,
) -> Result<StagedFile, StoreError>
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut chunks = std::pin::pin!(chunks);
    let started = if destination.as_bytes().ends_with(b"/") {
        Err(Error::invalid_path(format!(
            "invalid file path: {} names a directory, not a file",
            destination.to_string_lossy()
        )))
    } else {
        match files.resolve(destination) {
            Ok(target) => BackgroundWriter::start(files, target).await,
            Err(err) => Err(err),
        }
    };
    let mut writer = match started {
        Ok(writer) => writer,
        Err(err) => {
            // Read the rest of the body so the client gets this answer, not a reset.
            drain(chunks).await;
            return Err(StoreError::Write(err));
        }
    };
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => {
                if let Err(err) = writer.write(bytes).await {
                    drain(chunks).await;
                    return Err(StoreError::Write(err));
                }
            }
            // The temp file goes (the old content stays) before the answer.
            Err(err) => {
                writer.abandon().await;
                return Err(StoreError::Body(err.to_string()));
            }
        }
    }
    writer.finish().await.map_err(StoreError::Write)
}

/// Reads and discards what is left of a body.
async fn drain<S, E>(chunks: S)
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
{
    let mut chunks = std::pin::pin!(chunks);
    while let Some(Ok(_)) = chunks.next().await {}
}

/// A destination path longer than this is refused (Linux's PATH_MAX is 4096).
const MAX_PATH_PART_BYTES: usize = 64 * 1024;

/// At most this many `.path` parts may wait for their `.file` part.
const MAX_PENDING_PATHS: usize = 100_000;

/// Reads a `files[i].path` part, refusing one longer than `MAX_PATH_PART_BYTES`.
async fn read_path_part(
    field: &mut multer::Field<'static>,
    idx: &str,
) -> Result<String, StoreError> {
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_PATH_PART_BYTES {
                    while let Ok(Some(_)) = field.chunk().await {}
                    return Err(StoreError::Write(Error::invalid_path(format!(
                        "path[{idx}]: longer than {MAX_PATH_PART_BYTES} bytes"
                    ))));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(err) => return Err(StoreError::Body(err.to_string())),
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        StoreError::Write(Error::invalid_path(format!("path[{idx}]: not valid UTF-8")))
    })
}

enum WriteMessage {
    Data(Bytes),
    Finish,
}

/// An `AtomicFile` owned by a blocking task, fed through a bounded channel so network reads and
/// disk writes overlap. Dropped without `finish`, the temp file is removed.
struct BackgroundWriter {
    sender: mpsc::Sender<WriteMessage>,
    task: JoinHandle<Result<StagedFile>>,
}

impl BackgroundWriter {
    async fn start(files: &Files, target: PathBuf) -> Result<BackgroundWriter> {
        let files = files.clone();
        let mut atomic = blocking(move || files.create_atomic(&target)).await?;
        let (sender, mut receiver) = mpsc::channel::<WriteMessage>(16);
        let task = super::observe::spawn_blocking(move || {
            while let Some(message) = receiver.blocking_recv() {
                match message {
                    WriteMessage::Data(bytes) => atomic.write_all(&bytes)?,
                    WriteMessage::Finish => return atomic.stage(),
                }
            }
            Err(Error::invalid_body("upload ended before it was complete"))
        });
        Ok(BackgroundWriter { sender, task })
    }

    async fn write(&mut self, bytes: Bytes) -> Result<()> {
        if self.sender.send(WriteMessage::Data(bytes)).await.is_err() {
            // The writer stopped early: its result says why.
            return Err(self
                .outcome()
                .await
                .err()
                .unwrap_or_else(|| Error::internal("writer stopped")));
        }
        Ok(())
    }

    /// Stops the write and waits until the temp file is gone.
    async fn abandon(self) {
        let BackgroundWriter { sender, task } = self;
        drop(sender);
        let _ = task.await;
    }

    /// Ends the content and stages the file.
    async fn finish(mut self) -> Result<StagedFile> {
        let _ = self.sender.send(WriteMessage::Finish).await;
        self.outcome().await
    }

    async fn outcome(&mut self) -> Result<StagedFile> {
        (&mut self.task)
            .await
            .map_err(|err| Error::internal(format!("writer task failed: {err}")))?
    }
}

/// Collects stored files and errors, and renders the response.
struct Report {
    method: Method,
    uri: Uri,
    files: Vec<UploadedFile>,
    errors: Vec<Error>,
    /// Files were staged and discarded because another part of the request failed.
    nothing_stored: bool,
}

impl Report {
    fn new(method: Method, uri: Uri) -> Report {
        Report {
            method,
            uri,
            files: Vec::new(),
            errors: Vec::new(),
            nothing_stored: false,
        }
    }

    fn error(&mut self, err: Error) {
        self.errors.push(err);
    }

    fn fail(mut self, err: Error) -> Response {
        self.errors.push(err);
        self.finish()
    }

    fn finish(self) -> Response {
        let Some(first) = self.errors.first() else {
            return Json(UploadFilesResponse {
                files: self.files,
                errors: Vec::new(),
            })
            .into_response();
        };
        let status = StatusCode::from_u16(first.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let messages: Vec<String> = self.errors.iter().map(|err| err.message.clone()).collect();
        let mut error = ErrorBody::new(first, self.uri.path(), self.method.as_str());
        if messages.len() > 1 {
            error.message = messages.join("; ");
        }
        if self.nothing_stored {
            error.message.push_str("; nothing was stored");
        }
        (
            status,
            Json(UploadFailureBody {
                error,
                files: self.files,
                errors: messages,
            }),
        )
            .into_response()
    }
}

fn prefixed(destination: &str, err: Error) -> Error {
    if err.kind == ErrorKind::InsufficientStorage || err.message.contains(destination) {
        return err;
    }
    Error::new(err.kind, format!("{destination}: {}", err.message))
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/"))
}

fn multipart_of(request: Request) -> Result<(multer::Multipart<'static>, SharedBody)> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        Error::invalid_body(format!(
            "invalid multipart form: expected Content-Type multipart/form-data with a boundary, got {content_type:?}"
        ))
    })?;
    let body: Body = request.into_body();
    let shared = SharedBody(Arc::new(Mutex::new(BodyState {
        stream: body.into_data_stream(),
        end: None,
    })));
    Ok((multer::Multipart::new(shared.clone(), boundary), shared))
}

/// The request body, shared by the multipart parser and the handler: once the parser is done
/// (at the closing delimiter, or at an error), the handler reads what is left, to learn whether
/// the body ended as its Content-Length or chunked encoding says (hyper reports a body cut short
/// as an error) and so that the client gets an answer rather than a reset.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<BodyState>>);

struct BodyState {
    stream: BodyDataStream,
    /// How the stream ended, once it did: `Err` with hyper's reason when cut short.
    end: Option<std::result::Result<(), String>>,
}

impl Stream for SharedBody {
    type Item = std::result::Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if state.end.is_some() {
            return Poll::Ready(None);
        }
        let polled = state.stream.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(None) => state.end = Some(Ok(())),
            Poll::Ready(Some(Err(err))) => {
                state.end = Some(Err(format!("the request body was cut short ({err})")))
            }
            _ => {}
        }
        polled
    }
}

impl SharedBody {
    /// Reads the rest of the body (the parser must be dropped first); `Ok` when it arrived
    /// whole, else why not.
    async fn finish(mut self) -> std::result::Result<(), String> {
        while let Some(Ok(_)) = self.next().await {}
        let state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.end.clone().unwrap_or(Ok(()))
    }
}

/// `files[<idx>]<suffix>` → `idx`.
fn index_of<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    name.strip_prefix("files[")?
        .strip_suffix(suffix)?
        .strip_suffix(']')
}

#[cfg(test)]
mod tests {
    use super::index_of;

    #[test]
    fn part_names_pair_by_index() {
        assert_eq!(index_of("files[0].path", ".path"), Some("0"));
        assert_eq!(index_of("files[abc].file", ".file"), Some("abc"));
        assert_eq!(index_of("files[0].file", ".path"), None);
        assert_eq!(index_of("file", ".file"), None);
    }
}

/// Property tests of the multipart parsing an upload goes through (`multipart_of`, the shared
/// body, `read_path_part`); `PROPTEST_CASES` sets how many cases run (256 by default).
#[cfg(test)]
mod proptests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::testing::chunked;

    /// Parses `chunks` (one body) as the upload handler does: every part's name and bytes, and
    /// whether the body ended whole; `Err` with the reason the parser or the body gave.
    fn parse(
        boundary: &str,
        chunks: Vec<Vec<u8>>,
    ) -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let stream = futures_util::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
            );
            let request = Request::builder()
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from_stream(stream))
                .unwrap();
            let (mut multipart, body) = multipart_of(request).map_err(|e| e.message)?;
            let mut parts = Vec::new();
            let failed = loop {
                let mut field = match multipart.next_field().await {
                    Ok(Some(field)) => field,
                    Ok(None) => break None,
                    Err(err) => break Some(err.to_string()),
                };
                let name = field.name().unwrap_or("").to_string();
                let mut data = Vec::new();
                if let Some(idx) = index_of(&name, ".path") {
                    match read_path_part(&mut field, idx).await {
                        Ok(text) => data = text.into_bytes(),
                        Err(StoreError::Body(err)) => break Some(err),
                        Err(StoreError::Write(err)) => break Some(err.message),
                    }
                } else {
                    loop {
                        match field.chunk().await {
                            Ok(Some(chunk)) => data.extend_from_slice(&chunk),
                            Ok(None) => break,
                            Err(err) => return Err(err.to_string()),
                        }
                    }
                }
                parts.push((name, data));
            };
            drop(multipart);
            let ended = body.finish().await;
            match failed.or(ended.err()) {
                Some(reason) => Err(reason),
                None => Ok(parts),
            }
        })
    }

    /// File contents rich in what a multipart body is made of: CRs, LFs, dashes and pieces of
    /// the boundary.
    fn content(boundary: &str) -> impl Strategy<Value = Vec<u8>> {
        let boundary = boundary.as_bytes().to_vec();
        let pieces = prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"--".to_vec()),
            Just(b"\r\n--".to_vec()),
            (0..boundary.len()).prop_map(move |end| boundary[..end].to_vec()),
            vec(any::<u8>(), 0..8),
        ];
        vec(pieces, 0..12).prop_map(|pieces| pieces.concat())
    }

    /// `bytes` with every occurrence of `boundary` broken (a client picks a boundary its
    /// content does not hold), keeping the length.
    fn without(mut bytes: Vec<u8>, boundary: &str) -> Vec<u8> {
        let b = boundary.as_bytes();
        while let Some(at) = bytes.windows(b.len()).position(|w| w == b) {
            let last = &mut bytes[at + b.len() - 1];
            *last = if *last == b'#' { b'%' } else { b'#' };
        }
        bytes
    }

    fn boundary() -> impl Strategy<Value = String> {
        vec(
            prop_oneof![Just('a'), Just('Z'), Just('0'), Just('-'), Just('_')],
            1..12,
        )
        .prop_map(|chars| format!("b{}", chars.into_iter().collect::<String>()))
    }

    /// An upload body with `files` (path, content), as the SDKs send it.
    fn body(boundary: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (path, content)) in files.iter().enumerate() {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files[{i}].path\"\r\n\r\n{path}\r\n").as_bytes(),
            );
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files[{i}].file\"; filename=\"f{i}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    }

    fn upload() -> impl Strategy<Value = (String, Vec<(String, Vec<u8>)>)> {
        boundary()
            .prop_flat_map(|boundary| {
                let files = vec(("[a-z/. ]{1,12}", content(&boundary)), 0..4);
                (Just(boundary), files)
            })
            .prop_map(|(boundary, files)| {
                let files = files
                    .into_iter()
                    .map(|(path, content)| {
                        let path =
                            String::from_utf8(without(path.into_bytes(), &boundary)).unwrap();
                        (path, without(content, &boundary))
                    })
                    .collect();
                (boundary, files)
            })
    }

    fn expected(files: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        files
            .iter()
            .enumerate()
            .flat_map(|(i, (path, content))| {
                [
                    (format!("files[{i}].path"), path.clone().into_bytes()),
                    (format!("files[{i}].file"), content.clone()),
                ]
            })
            .collect()
    }

    proptest! {
        /// Any contents (boundary-like bytes and CRLFs included), any chunking: the same parts.
        #[test]
        fn uploads_parse_back_to_their_files((boundary, files) in upload(), cuts in vec(any::<usize>(), 0..10)) {
            let whole = body(&boundary, &files);
            let parsed = parse(&boundary, chunked(&whole, &cuts));
            prop_assert_eq!(parsed, Ok(expected(&files)));
        }

        /// A body cut anywhere before its closing delimiter is an error, whatever the chunking.
        #[test]
        fn a_body_cut_short_is_an_error((boundary, files) in upload(), cut in any::<usize>(), cuts in vec(any::<usize>(), 0..4)) {
            let whole = body(&boundary, &files);
            // `--boundary--` must arrive whole; the CRLF after it is optional.
            let cut = cut % (whole.len() - 2);
            let parsed = parse(&boundary, chunked(&whole[..cut], &cuts));
            prop_assert!(parsed.is_err(), "cut at {} of {}: {:?}", cut, whole.len(), parsed);
        }

        /// Any bytes at all: an answer, never a panic.
        #[test]
        fn any_body_is_parsed_or_refused(boundary in boundary(), junk in vec(any::<u8>(), 0..200), (_, files) in upload(), at in any::<usize>()) {
            let _ = parse(&boundary, vec![junk.clone()]);
            // A valid body with junk spliced in.
            let mut whole = body(&boundary, &files);
            let at = at % (whole.len() + 1);
            whole.splice(at..at, junk);
            let _ = parse(&boundary, vec![whole]);
        }
    }
}
