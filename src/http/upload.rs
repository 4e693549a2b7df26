//! Uploads: `POST /files/bulk-upload` (multipart `files[i].path` + `files[i].file`, paired by
//! index, streamed), `POST /files/upload-v2` (multipart `file` or a raw body) and the legacy
//! `POST /files/upload`. Every file streams through a bounded channel to a blocking writer that
//! owns an `AtomicFile`: memory stays flat whatever the size, and a cut connection leaves the old
//! content and no temp file.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::body::{Body, Bytes};
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
use super::extract::{blocking, required, Query};
use crate::error::{Error, ErrorKind, Result};
use crate::files::Files;
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
    pub path: Option<String>,
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
    /// Files stored before or despite the failure.
    pub files: Vec<UploadedFile>,
    /// One message per failure.
    pub errors: Vec<String>,
}

/// Streams each `files[i].file` part to the path given in `files[i].path` (which must come
/// first; pairs may be interleaved or all paths first). Parent directories are created.
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
    let mut multipart = match multipart_of(request) {
        Ok(multipart) => multipart,
        Err(err) => return report.fail(err),
    };
    let mut paths: HashMap<String, String> = HashMap::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                report.error(Error::invalid_body(format!("reading part: {err}")));
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
                    report.error(Error::invalid_body(format!(
                        "more than {MAX_PENDING_PATHS} files[i].path parts without their files[i].file parts"
                    )));
                    break;
                }
                Ok(text) => {
                    paths.insert(idx.to_string(), text.trim().to_string());
                }
                Err(StoreError::Write(err)) => report.error(err),
                Err(StoreError::Body(err)) => {
                    report.error(Error::invalid_body(format!("reading part: {err}")));
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
            match store(&app.files, &destination, chunks).await {
                Ok(bytes) => report.files.push(UploadedFile {
                    path: destination,
                    bytes,
                }),
                Err(StoreError::Body(err)) => {
                    report.error(Error::invalid_body(format!(
                        "{destination}: reading part: {err}"
                    )));
                    break;
                }
                Err(StoreError::Write(err)) => report.error(prefixed(&destination, err)),
            }
        }
    }
    let mut unpaired: Vec<_> = paths.into_iter().collect();
    unpaired.sort();
    for (idx, destination) in unpaired {
        report.error(Error::invalid_body(format!(
            "files[{idx}].path ({destination}) has no files[{idx}].file part"
        )));
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
    let destination = match required(&query.path, "path") {
        Ok(path) => path.to_string(),
        Err(err) => {
            drain(request.into_body().into_data_stream()).await;
            return report.fail(err);
        }
    };
    match store_single(&app.files, &destination, request).await {
        Ok(bytes) => report.files.push(UploadedFile {
            path: destination,
            bytes,
        }),
        Err(err) => report.error(err),
    }
    report.finish()
}

/// The legacy single upload (multipart field `file`); answers 200 with an empty body.
#[utoipa::path(post, path = "/files/upload", tag = "files", params(UploadQuery),
    request_body(content_type = "multipart/form-data", description = "field `file`"),
    responses((status = 200), (status = 400, body = ErrorBody)))]
pub async fn upload_legacy(
    State(app): State<AppState>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<StatusCode> {
    let destination = required(&query.path, "path")?.to_string();
    store_single(&app.files, &destination, request).await?;
    Ok(StatusCode::OK)
}

/// Stores a single-file upload: multipart field `file`, or the raw body.
async fn store_single(files: &Files, destination: &str, request: Request) -> Result<u64> {
    if !is_multipart(request.headers()) {
        let chunks = request.into_body().into_data_stream();
        return store(files, destination, chunks)
            .await
            .map_err(StoreError::into_error);
    }
    let mut multipart = multipart_of(request)?;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|err| Error::invalid_body(format!("reading part: {err}")))?
    {
        if field.name() == Some("file") {
            let chunks = futures_util::stream::poll_fn(|cx| field.poll_next_unpin(cx));
            return store(files, destination, chunks)
                .await
                .map_err(StoreError::into_error);
        }
    }
    Err(Error::invalid_body("multipart body has no `file` field"))
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

/// Streams `chunks` into `destination` through an atomic writer on a blocking thread.
async fn store<S, E>(files: &Files, destination: &str, chunks: S) -> Result<u64, StoreError>
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
    E: std::fmt::Display,
{
    if destination.ends_with('/') {
        return Err(StoreError::Write(Error::invalid_path(format!(
            "invalid file path: {destination} names a directory, not a file"
        ))));
    }
    let mut chunks = std::pin::pin!(chunks);
    let started = match files.resolve(destination) {
        Ok(target) => BackgroundWriter::start(files, target).await,
        Err(err) => Err(err),
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
            // Dropping the writer discards the temp file: the old content stays.
            Err(err) => return Err(StoreError::Body(err.to_string())),
        }
    }
    writer.commit().await.map_err(StoreError::Write)
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
    Commit,
}

/// An `AtomicFile` owned by a blocking task, fed through a bounded channel so network reads and
/// disk writes overlap. Dropped without `commit`, the temp file is removed.
struct BackgroundWriter {
    sender: mpsc::Sender<WriteMessage>,
    task: JoinHandle<Result<u64>>,
}

impl BackgroundWriter {
    async fn start(files: &Files, target: PathBuf) -> Result<BackgroundWriter> {
        let files = files.clone();
        let mut atomic = blocking(move || files.create_atomic(&target)).await?;
        let (sender, mut receiver) = mpsc::channel::<WriteMessage>(16);
        let task = tokio::task::spawn_blocking(move || {
            while let Some(message) = receiver.blocking_recv() {
                match message {
                    WriteMessage::Data(bytes) => atomic.write_all(&bytes)?,
                    WriteMessage::Commit => return atomic.commit(),
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

    async fn commit(mut self) -> Result<u64> {
        let _ = self.sender.send(WriteMessage::Commit).await;
        self.outcome().await
    }

    async fn outcome(&mut self) -> Result<u64> {
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
}

impl Report {
    fn new(method: Method, uri: Uri) -> Report {
        Report {
            method,
            uri,
            files: Vec::new(),
            errors: Vec::new(),
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

fn multipart_of(request: Request) -> Result<multer::Multipart<'static>> {
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
    Ok(multer::Multipart::new(body.into_data_stream(), boundary))
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
