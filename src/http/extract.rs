//! Extractors whose rejection is our `Error`, so bad input gets the same wire body as everything
//! else. Queries follow form-urlencoded rules: `+` is a space.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

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

/// A JSON body decoded into `T`. The content type is not checked (clients differ); an empty or
/// malformed body is `INVALID_REQUEST_BODY` with serde's explanation.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|err| Error::invalid_body(format!("cannot read request body: {err}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid_body(
                "request body is empty: expected a JSON object",
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut deserializer)
            .map(Json)
            .map_err(|err| {
                let field = err.path().to_string();
                if field == "." {
                    Error::invalid_body(format!("invalid JSON body: {}", err.inner()))
                } else {
                    Error::invalid_body(format!(
                        "invalid JSON body: field `{field}`: {}",
                        err.inner()
                    ))
                }
            })
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
