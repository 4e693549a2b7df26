//! Downloads: `GET /files/download` (Range/206, conditional GET, HEAD) and
//! `POST /files/bulk-download` (a streamed multipart body, one part per requested path, in order,
//! under a fresh random boundary). File bytes are streamed in fixed-size chunks, each filled by
//! one read: memory does not grow with file size.

use std::fmt::Write as _;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::extract::{blocking, required_path, Json, Query};
use super::files::PathQuery;
use super::wire;
use crate::error::{Error, ErrorKind, Result};
use crate::files::{Chunks, Extent, Files};
use crate::state::AppState;

/// Bytes read from disk per chunk (one `read` each).
const CHUNK: usize = 512 * 1024;

/// What every bulk-download boundary starts with; 32 random hex digits follow.
const BOUNDARY_PREFIX: &str = "toolboxd-";

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files/download", get(download_file))
        .route("/files/bulk-download", post(bulk_download))
}

/// `{paths}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct FilesDownloadRequest {
    /// Files to send, in this order.
    #[schema(min_items = 1)]
    pub paths: Vec<String>,
}

/// A file's bytes, as they are on disk (documented as a binary string, so generated clients
/// hand back bytes rather than parse a body).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBytes(#[allow(dead_code)] Vec<u8>);

/// Sends one file. Honours `Range` (one range; 206/416), `If-None-Match`, `If-Modified-Since`,
/// `If-Match`, `If-Unmodified-Since` and `If-Range`. `expires` and `signature` (signed URLs) are
/// accepted and ignored: the platform's proxy checks them.
///
/// A file whose size the kernel does not report (in `/proc`, `/sys`) is read to its
/// end: with a `Content-Length` when it ended within the first chunk (ranges work on it as on
/// any file), else streamed without one and whole (a `Range` is ignored: 200). Such a file has
/// no `ETag` or `Last-Modified`, since its content changes without its metadata.
#[utoipa::path(get, path = "/files/download", tag = "files", params(PathQuery),
    responses((status = 200, content_type = "application/octet-stream", body = FileBytes),
        (status = 206, content_type = "application/octet-stream", body = FileBytes, description = "the requested range"), (status = 304), (status = 412),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 416, body = ErrorBody)))]
pub async fn download_file(
    State(app): State<AppState>,
    Query(query): Query<PathQuery>,
    request_headers: HeaderMap,
) -> Result<Response> {
    let requested = required_path(&query.path, "path")?.clone();
    let path = app.files.resolve(requested.as_os_str())?;
    let files = app.files.clone();
    let (file, metadata, extent) = blocking(move || files.open_download(&path, CHUNK)).await?;
    let shown = requested.lossy();

    let mut headers = HeaderMap::new();
    // Validators only where the metadata tells when the content changed.
    let validators = match extent {
        Extent::Sized(size) => {
            let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let etag = format!(
                "\"{:x}-{:x}-{:x}\"",
                metadata.ino(),
                size,
                metadata.mtime_nsec() as u64 ^ metadata.mtime() as u64
            );
            let last_modified = httpdate::fmt_http_date(truncate_to_second(modified));
            headers.insert(header::LAST_MODIFIED, header_value(&last_modified));
            headers.insert(header::ETAG, header_value(&etag));
            Some((etag, modified))
        }
        Extent::Whole(_) | Extent::Open(_) => None,
    };
    if !matches!(extent, Extent::Open(_)) {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }

    match check_preconditions(&request_headers, validators.as_ref()) {
        Precondition::Proceed => {}
        Precondition::NotModified => return Ok((StatusCode::NOT_MODIFIED, headers).into_response()),
        Precondition::Failed => {
            return Ok((StatusCode::PRECONDITION_FAILED, headers).into_response())
        }
    }

    let name = std::path::Path::new(requested.as_os_str())
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        "content-description",
        HeaderValue::from_static("File Transfer"),
    );
    headers.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("binary"),
    );
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("public"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(&format!(
            "attachment; {}",
            wire::disposition_filenames(&name)
        )),
    );

    let (size, whole) = match extent {
        Extent::Sized(size) => (size, None),
        Extent::Whole(bytes) => (bytes.len() as u64, Some(Bytes::from(bytes))),
        Extent::Open(head) => {
            // Its size is known only at its end: the whole file, chunked.
            let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(4);
            super::observe::spawn_blocking(move || {
                if sender.blocking_send(Ok(Bytes::from(head))).is_ok() {
                    send_to_end(&sender, file, &shown);
                }
            });
            return Ok((StatusCode::OK, headers, channel_body(receiver)).into_response());
        }
    };
    let range_allowed = if_range_allows(&request_headers, validators.as_ref());
    let range_text = request_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let range = match range_text {
        Some(text) if range_allowed => parse_range(text, size),
        _ => RangeRequest::Full,
    };
    let (status, start, len) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{size}")),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            let mut response = Error::new(
                ErrorKind::RangeNotSatisfiable,
                format!(
                    "range {} is outside the file ({size} bytes)",
                    range_text.unwrap_or_default()
                ),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            );
            return Ok(response);
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(bytes) = whole {
        let bytes = bytes.slice(start as usize..(start + len) as usize);
        return Ok((status, headers, Body::from(bytes)).into_response());
    }
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(4);
    super::observe::spawn_blocking(move || {
        let mut file = file;
        if start > 0 {
            if let Err(err) = file.seek(SeekFrom::Start(start)) {
                let _ = sender.blocking_send(Err(err));
                return;
            }
        }
        send_file_bytes(&sender, file, len, &shown);
    });
    Ok((status, headers, channel_body(receiver)).into_response())
}

/// A response body fed by a blocking producer through `receiver`.
fn channel_body(receiver: mpsc::Receiver<std::io::Result<Bytes>>) -> Body {
    Body::from_stream(stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    }))
}

/// Sends exactly `len` bytes of `file` (from its offset) in `CHUNK`-sized pieces. A file that
/// ends early or fails sends an error, which cuts the response. False when the response is gone
/// or was cut.
fn send_file_bytes(
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
    file: std::fs::File,
    len: u64,
    shown: &str,
) -> bool {
    for chunk in Chunks::new(file, len, CHUNK) {
        let failed = chunk.is_err();
        if let Err(err) = &chunk {
            tracing::warn!(path = %shown, "download cut: {err}");
        }
        if sender.blocking_send(chunk.map(Bytes::from)).is_err() || failed {
            return false;
        }
    }
    true
}

/// Sends the rest of `file` (from its offset) until EOF, for a file whose size was not known.
/// A failed read sends an error, which cuts the response. False when the response is gone or
/// was cut.
fn send_to_end(
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
    file: std::fs::File,
    shown: &str,
) -> bool {
    for chunk in Chunks::to_end(file, CHUNK) {
        let failed = chunk.is_err();
        if let Err(err) = &chunk {
            tracing::warn!(path = %shown, "download cut: {err}");
        }
        if matches!(&chunk, Ok(bytes) if bytes.is_empty()) {
            continue;
        }
        if sender.blocking_send(chunk.map(Bytes::from)).is_err() || failed {
            return false;
        }
    }
    true
}

/// A fresh boundary for one multipart response: `toolboxd-` and 128 random bits as 32 hex
/// digits (41 characters of RFC 2046's bchars, also an HTTP token, so it needs no quotes). A
/// fixed boundary cut short any file that contained it; a random one per response, as RFC 2046
/// §5.1.1 advises, is one no file can be expected to hold. Both SDKs read it from Content-Type.
fn fresh_boundary() -> Result<String> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|err| {
        Error::internal(format!(
            "cannot make a multipart boundary: the system gave no random bytes ({err})"
        ))
    })?;
    let mut boundary = String::with_capacity(BOUNDARY_PREFIX.len() + 2 * random.len());
    boundary.push_str(BOUNDARY_PREFIX);
    for byte in random {
        let _ = write!(boundary, "{byte:02x}");
    }
    Ok(boundary)
}

/// Streams the requested files as `multipart/form-data` parts named `file` (with per-part
/// Content-Length) or `error` (JSON error body), in request order, then the closing boundary.
/// The boundary is random, fresh for every response (read it from Content-Type). A file that
/// fails mid-stream cuts the response before the closing boundary, so clients see the
/// truncation.
#[utoipa::path(post, path = "/files/bulk-download", tag = "files", request_body = FilesDownloadRequest,
    responses((status = 200, content_type = "multipart/form-data", description = "one part per path"),
        (status = 400, body = ErrorBody)))]
pub async fn bulk_download(
    State(app): State<AppState>,
    Json(request): Json<FilesDownloadRequest>,
) -> Result<Response> {
    if request.paths.is_empty() {
        return Err(Error::invalid_body(
            "request body must be {\"paths\": [ ... ]} and non-empty",
        ));
    }
    let boundary = fresh_boundary()?;
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(4);
    // One blocking thread produces the whole body: opens, stats and reads are all blocking.
    super::observe::spawn_blocking(move || {
        write_parts(&app.files, request.paths, &boundary, &sender)
    });
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        channel_body(receiver),
    )
        .into_response())
}

fn write_parts(
    files: &Files,
    paths: Vec<String>,
    boundary: &str,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
) {
    let send = |bytes: Bytes| sender.blocking_send(Ok(bytes)).is_ok();
    for (idx, requested) in paths.into_iter().enumerate() {
        let lead = if idx == 0 { "" } else { "\r\n" };
        let opened = files
            .resolve(&requested)
            .and_then(|path| files.open_download(&path, CHUNK));
        let (file, _, extent) = match opened {
            Ok(opened) => opened,
            Err(err) => {
                let body = ErrorBody::new(&err, &requested, "POST").to_json();
                let head = format!(
                    "{lead}--{boundary}\r\nContent-Disposition: form-data; name=\"error\"; {}\r\n\
                     Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                    wire::disposition_filenames(&requested),
                    body.len()
                );
                if !send(Bytes::from(head)) || !send(Bytes::from(body)) {
                    return;
                }
                continue;
            }
        };
        let mime = mime_guess::from_path(&requested).first_or_octet_stream();
        // A part whose size is not known before its end has no Content-Length: the boundary,
        // random and fresh, ends it (both SDKs read parts that way).
        let length = match &extent {
            Extent::Sized(size) => format!("Content-Length: {size}\r\n"),
            Extent::Whole(bytes) => format!("Content-Length: {}\r\n", bytes.len()),
            Extent::Open(_) => String::new(),
        };
        let head = format!(
            "{lead}--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; {}\r\n\
             Content-Type: {mime}\r\n{length}\r\n",
            wire::disposition_filenames(&requested),
        );
        if !send(Bytes::from(head)) {
            return;
        }
        let sent = match extent {
            Extent::Sized(size) => send_file_bytes(sender, file, size, &requested),
            Extent::Whole(bytes) => send(Bytes::from(bytes)),
            Extent::Open(head) => send(Bytes::from(head)) && send_to_end(sender, file, &requested),
        };
        if !sent {
            return;
        }
    }
    send(Bytes::from(format!("\r\n--{boundary}--\r\n")));
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No usable range: send everything.
    Full,
    /// Bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// A syntactically valid range wholly outside the file.
    Unsatisfiable,
}

/// Parses a single `bytes=` range. Several ranges or a malformed header mean "send it all",
/// which RFC 9110 allows.
fn parse_range(text: &str, size: u64) -> RangeRequest {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else {
            return RangeRequest::Full;
        };
        if suffix == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        let start = size.saturating_sub(suffix);
        return RangeRequest::Partial {
            start,
            end: size - 1,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        size.saturating_sub(1)
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end.min(size.saturating_sub(1)),
            _ => return RangeRequest::Full,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial { start, end }
}

enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// The conditional headers against the file's validators (`None`: a file without any, whose
/// content changes without its metadata; then only `*` matches).
fn check_preconditions(
    headers: &HeaderMap,
    validators: Option<&(String, SystemTime)>,
) -> Precondition {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let etag = validators.map_or("", |(etag, _)| etag.as_str());
    let modified = validators.map(|(_, modified)| truncate_to_second(*modified));
    if let Some(wanted) = text(header::IF_MATCH) {
        if !etag_listed_strong(wanted, etag) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) = (
        text(header::IF_UNMODIFIED_SINCE).and_then(|t| httpdate::parse_http_date(t).ok()),
        modified,
    ) {
        if modified > since {
            return Precondition::Failed;
        }
    }
    if let Some(wanted) = text(header::IF_NONE_MATCH) {
        if etag_listed(wanted, etag) {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(modified)) = (
        text(header::IF_MODIFIED_SINCE).and_then(|t| httpdate::parse_http_date(t).ok()),
        modified,
    ) {
        if modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// RFC 9110 §13.1.5: the range applies only if the validator matches exactly (a strong ETag,
/// or the Last-Modified date itself); a file without validators never matches.
fn if_range_allows(headers: &HeaderMap, validators: Option<&(String, SystemTime)>) -> bool {
    let Some(value) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some((etag, modified)) = validators else {
        return false;
    };
    if value.starts_with('"') || value.starts_with("W/") {
        return value == etag;
    }
    httpdate::parse_http_date(value).is_ok_and(|date| truncate_to_second(*modified) == date)
}

/// Weak comparison (If-None-Match): `W/` prefixes are ignored.
fn etag_listed(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || (!etag.is_empty() && tag.trim_start_matches("W/") == etag))
}

/// Strong comparison (If-Match): a weak tag never matches.
fn etag_listed_strong(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || (!etag.is_empty() && tag == etag))
}

/// Second precision (HTTP dates have no more), clamped to what an HTTP date can express.
fn truncate_to_second(time: SystemTime) -> SystemTime {
    const YEAR_9999_END: u64 = 253_402_300_799;
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .min(YEAR_9999_END);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_per_rfc() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            RangeRequest::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            RangeRequest::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            RangeRequest::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            RangeRequest::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=50-500", 100),
            RangeRequest::Partial { start: 50, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Full);
        assert_eq!(parse_range("bytes=9-3", 100), RangeRequest::Full);
    }
}
