//! Extractors whose rejection is our `Error`, so bad input gets the same wire body as everything
//! else. Queries follow form-urlencoded rules: `+` is a space.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// A query string decoded into `T`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|err| Error::bad_request(format!("invalid query string: {err}")))
    }
}

/// The largest JSON body toolboxd reads. Daytona's daemon sets none; code-run programs and
/// session commands may carry data inline, so this is well above axum's 2 MiB default, and it
/// still bounds what one request can make the daemon hold (the body, then the decoded copy).
pub const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// A JSON body decoded into `T`. The content type is not checked (clients differ); an empty or
/// malformed body is `INVALID_REQUEST_BODY` saying where it broke, a body over `MAX_JSON_BODY` is
/// 413 `PAYLOAD_TOO_LARGE`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(request: Request, _state: &S) -> Result<Self> {
        let bytes = read_json_body(request, MAX_JSON_BODY).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid_body(
                "request body is empty: expected a JSON object",
            ));
        }
        decode_json(&bytes).map(Json)
    }
}

/// The whole body, or 413 once it passes `limit`. A body over the limit is still read to the
/// end (and thrown away) so the client, which is usually still sending, reads the 413 instead of
/// a connection reset; unless it declared its size and waits for `100 Continue`, which is then
/// never sent.
async fn read_json_body(request: Request, limit: usize) -> Result<Vec<u8>> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    let waits_for_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut chunks = request.into_body().into_data_stream();
    if declared.is_some_and(|size| size > limit as u64) {
        if !waits_for_continue {
            drain(&mut chunks).await;
        }
        return Err(too_large(limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|err| Error::invalid_body(format!("cannot read request body: {err}")))?;
        if body.len() + chunk.len() > limit {
            drain(&mut chunks).await;
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads and discards what is left of a body.
async fn drain(chunks: &mut axum::body::BodyDataStream) {
    while let Some(Ok(_)) = chunks.next().await {}
}

fn too_large(limit: usize) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!(
            "request body is too large: a JSON body may have at most {} MiB ({limit} bytes); \
             send large data as a file upload",
            limit / (1024 * 1024)
        ),
    )
}

/// Decodes a whole JSON document into `T`. A failure says where: the field path when serde
/// knows it (field `files[0]`), "the body" when the top-level value is of the wrong type, and
/// otherwise the line and column serde_json reports (syntax errors, a body cut short, trailing
/// characters).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = known_path(err.path());
        let inner = err.into_inner();
        let detail = plain_json_error(&inner);
        let message = match (path, inner.classify()) {
            (Some(path), _) => format!("invalid JSON body: field `{path}`: {detail}"),
            (None, serde_json::error::Category::Data) => {
                format!("invalid JSON body: the body: {detail}")
            }
            (None, _) => format!("invalid JSON body: {detail}"),
        };
        Error::invalid_body(message)
    })?;
    deserializer.end().map_err(|err| {
        Error::invalid_body(format!(
            "invalid JSON body: {}: only one JSON value is expected",
            plain_json_error(&err)
        ))
    })?;
    Ok(value)
}

/// The path of fields serde reached, cut before the first segment it could not name (a key
/// not yet read); `None` at the top level.
fn known_path(path: &serde_path_to_error::Path) -> Option<String> {
    let mut known = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => known.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } => {
                if !known.is_empty() {
                    known.push('.');
                }
                known.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                if !known.is_empty() {
                    known.push('.');
                }
                known.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => break,
        }
    }
    (!known.is_empty()).then_some(known)
}

/// serde_json's message with Rust type names (`expected struct ReplaceRequest`) put in JSON
/// terms.
fn plain_json_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.find("expected struct ") {
        Some(start) => {
            let name_end = text[start + "expected struct ".len()..]
                .find(' ')
                .map_or(text.len(), |end| start + "expected struct ".len() + end);
            format!(
                "{}expected a JSON object{}",
                &text[..start],
                &text[name_end..]
            )
        }
        None => text,
    }
}

/// The value of a required parameter, or a 400 naming it.
pub fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str> {
    match value.as_deref() {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(Error::missing(name)),
    }
}

/// A boolean query flag: `true`/`1` (any case) is true, absent/`false`/`0` false, else 400.
pub fn flag(value: &Option<String>, name: &str) -> Result<bool> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(Error::bad_request(format!(
            "invalid value {other:?} for `{name}`: expected true or false"
        ))),
    }
}

/// Runs blocking work (filesystem walks, greps) off the async workers.
pub async fn blocking<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::internal(format!("background task failed: {err}")))?
}
