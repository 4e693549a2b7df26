//! Extractors whose rejection is our `Error`, so bad input gets the same wire body as everything
//! else. Queries follow form-urlencoded rules: `+` is a space.
//!
//! A query value is percent-decoded to bytes, not to text: a [`QueryPath`] field keeps them as
//! they are, so `?path=bad%FF.txt` names the file whose name holds the byte 0xFF (Linux names are
//! bytes, not text). Every other text field must be valid UTF-8, or the request is a 400 naming
//! the parameter.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStringExt;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use futures_util::StreamExt;
use serde::de::value::{Error as DeError, MapDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};

mod strict;

/// A query string decoded into `T`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        decode_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Decodes a form-urlencoded query string into `T` (see the module comment for how values
/// that are not UTF-8 are treated).
pub fn decode_query<T: DeserializeOwned>(query: &str) -> Result<T> {
    let pairs = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = String::from_utf8_lossy(&form_decode(key)).into_owned();
            let value = QueryValue {
                key: key.clone(),
                bytes: form_decode(value),
            };
            (key, value)
        });
    T::deserialize(MapDeserializer::<_, DeError>::new(pairs))
        .map_err(|err| Error::bad_request(format!("invalid query string: {err}")))
}

/// `+` as a space, then `%XX` escapes, into bytes (a `%` without two hex digits stays as is).
fn form_decode(text: &str) -> Vec<u8> {
    let spaced: Vec<u8> = text
        .bytes()
        .map(|byte| if byte == b'+' { b' ' } else { byte })
        .collect();
    percent_encoding::percent_decode(&spaced).collect()
}

/// A path given in the query, as the bytes it percent-decodes to (any bytes but NUL, which
/// `Files::resolve` refuses). Deserializes from text and from bytes alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPath(pub OsString);

impl QueryPath {
    /// The path as an `OsStr`.
    pub fn as_os_str(&self) -> &OsStr {
        &self.0
    }

    /// The path for messages and headers (bytes that are not UTF-8 become U+FFFD).
    pub fn lossy(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl<'de> Deserialize<'de> for QueryPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct PathVisitor;
        impl Visitor<'_> for PathVisitor {
            type Value = QueryPath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<QueryPath, E> {
                Ok(QueryPath(OsString::from(text)))
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> std::result::Result<QueryPath, E> {
                Ok(QueryPath(OsString::from_vec(bytes.to_vec())))
            }
            fn visit_byte_buf<E: de::Error>(
                self,
                bytes: Vec<u8>,
            ) -> std::result::Result<QueryPath, E> {
                Ok(QueryPath(OsString::from_vec(bytes)))
            }
        }
        deserializer.deserialize_byte_buf(PathVisitor)
    }
}

/// One decoded query value and the name of its parameter (for messages).
struct QueryValue {
    key: String,
    bytes: Vec<u8>,
}

impl QueryValue {
    fn text(&self) -> std::result::Result<&str, DeError> {
        std::str::from_utf8(&self.bytes).map_err(|_| {
            de::Error::custom(format!(
                "`{}` is not valid UTF-8 (only path parameters may hold other bytes)",
                self.key
            ))
        })
    }

    fn parse<T: std::str::FromStr>(&self) -> std::result::Result<T, DeError>
    where
        T::Err: fmt::Display,
    {
        let text = self.text()?;
        text.parse::<T>().map_err(|err| {
            de::Error::custom(format!("invalid value {text:?} for `{}`: {err}", self.key))
        })
    }
}

impl<'de> IntoDeserializer<'de, DeError> for QueryValue {
    type Deserializer = QueryValue;

    fn into_deserializer(self) -> QueryValue {
        self
    }
}

/// Numbers and booleans parse from the text, as serde_urlencoded does.
macro_rules! parse_value {
    ($($method:ident => $visit:ident,)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> std::result::Result<V::Value, DeError> {
            visitor.$visit(self.parse()?)
        }
    )*};
}

impl<'de> Deserializer<'de> for QueryValue {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        match String::from_utf8(self.bytes) {
            Ok(text) => visitor.visit_string(text),
            Err(err) => visitor.visit_byte_buf(err.into_bytes()),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        self.text()?;
        self.deserialize_any(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        let text = self.text()?.to_string();
        visitor.visit_enum(text.into_deserializer())
    }

    parse_value! {
        deserialize_bool => visit_bool,
        deserialize_i8 => visit_i8,
        deserialize_i16 => visit_i16,
        deserialize_i32 => visit_i32,
        deserialize_i64 => visit_i64,
        deserialize_u8 => visit_u8,
        deserialize_u16 => visit_u16,
        deserialize_u32 => visit_u32,
        deserialize_u64 => visit_u64,
        deserialize_f32 => visit_f32,
        deserialize_f64 => visit_f64,
        deserialize_char => visit_char,
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
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
    let (parts, body) = request.into_parts();
    read_limited(&parts.headers, body, limit).await
}

/// `request` with its body read whole, or 413 as for a JSON body once it passes `limit` (for
/// services that read bodies themselves: `/mcp`).
pub async fn buffered(request: Request, limit: usize) -> Result<Request> {
    let (parts, body) = request.into_parts();
    let bytes = read_limited(&parts.headers, body, limit).await?;
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

async fn read_limited(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Vec<u8>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    let waits_for_continue = headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut chunks = body.into_data_stream();
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

/// Decodes a whole JSON document into `T`; objects are objects only (see [`strict`]). A failure says where: the field path when serde
/// knows it (field `files[0]`), "the body" when the top-level value is of the wrong type, and
/// otherwise the line and column serde_json reports (syntax errors, a body cut short, trailing
/// characters).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(strict::Strict(&mut deserializer)).map_err(|err| {
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

/// The value of a required path parameter, or a 400 naming it.
pub fn required_path<'a>(value: &'a Option<QueryPath>, name: &str) -> Result<&'a QueryPath> {
    match value {
        Some(path) if !path.0.is_empty() => Ok(path),
        _ => Err(Error::missing(name)),
    }
}

/// A boolean query flag: `true` or `false` (any case), `1` or `0`; empty is false.
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)?$")]
#[allow(dead_code)]
pub struct Flag(String);

/// Text without NUL bytes (`value_type = Vec<NoNul>` for lists of paths).
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^[^\x00]*$")]
#[allow(dead_code)]
pub struct NoNul(String);

/// The schema of environment variables given as a map (`schema_with = env_map`): names of
/// letters, digits and `_`, not starting with a digit; values without NUL.
pub fn env_map() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::SchemaType;
    use utoipa::openapi::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z_][A-Za-z0-9_]*$")),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[^\\x00]*$")),
        ))
        .build()
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

/// Runs blocking work (filesystem walks, greps) off the async workers, in the request's span.
pub async fn blocking<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    super::observe::spawn_blocking(work)
        .await
        .map_err(|err| Error::internal(format!("background task failed: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        path: Option<QueryPath>,
        pattern: Option<String>,
        limit: Option<usize>,
        timeout: Option<f64>,
        case_insensitive: Option<bool>,
    }

    #[test]
    fn values_decode_like_forms_and_paths_keep_their_bytes() {
        let sample: Sample =
            decode_query("path=a%20b+c%FF%FE.txt&pattern=x+y%2B&limit=5&timeout=1.5&caseInsensitive=true&other=%FF")
                .unwrap();
        assert_eq!(
            sample.path.unwrap().0.as_encoded_bytes(),
            b"a b c\xff\xfe.txt"
        );
        assert_eq!(sample.pattern.as_deref(), Some("x y+"));
        assert_eq!(sample.limit, Some(5));
        assert_eq!(sample.timeout, Some(1.5));
        assert_eq!(sample.case_insensitive, Some(true));
        let empty: Sample = decode_query("").unwrap();
        assert!(empty.path.is_none() && empty.pattern.is_none() && empty.limit.is_none());
        let bare: Sample = decode_query("path&&pattern=").unwrap();
        assert_eq!(bare.path, Some(QueryPath(OsString::new())));
        assert_eq!(bare.pattern.as_deref(), Some(""));
    }

    #[test]
    fn bad_values_are_400s_naming_the_parameter() {
        let err = decode_query::<Sample>("pattern=%FF").unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert!(
            err.message.contains("`pattern` is not valid UTF-8"),
            "{err}"
        );
        let err = decode_query::<Sample>("limit=ten").unwrap_err();
        assert!(
            err.message.contains("invalid value \"ten\" for `limit`"),
            "{err}"
        );
        let err = decode_query::<Sample>("path=a&path=b").unwrap_err();
        assert!(err.message.contains("duplicate field `path`"), "{err}");
    }
}
