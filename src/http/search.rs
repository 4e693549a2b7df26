//! Search routes: `/files/find` (content), `/files/search` (names), `/files/replace`.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{blocking, flag, required, required_path, Flag, Json, Query, QueryPath};
use super::stream::{self, JsonArrayWriter};
use super::wire;
use crate::error::{Error, Result};
use crate::search::{self, FindOptions, FindSink, Finder, GlobOptions, ReplaceOptions};
use crate::state::AppState;

/// Set to `true` when a result is not the whole answer: `maxResults` cut it, or (find) a file
/// could not be searched to its end. A streamed find sends it as a trailer field.
pub const TRUNCATED_HEADER: &str = "x-toolboxd-truncated";

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files/find", get(find_in_files))
        .route("/files/search", get(search_files))
        .route("/files/replace", post(replace_in_files))
}

/// `?path=&pattern=` plus opt-ins.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct FindQuery {
    /// Directory (or file) to search.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: Option<QueryPath>,
    /// Text to find (literal unless `regex=true`).
    #[param(value_type = String, min_length = 1)]
    pub pattern: Option<String>,
    /// Treat `pattern` as a regular expression.
    #[param(value_type = Option<Flag>)]
    pub regex: Option<String>,
    /// Ignore case.
    #[param(value_type = Option<Flag>)]
    pub case_insensitive: Option<String>,
    /// Honour .gitignore/.ignore files and skip `.git`.
    #[param(value_type = Option<Flag>)]
    pub gitignore: Option<String>,
    /// Stop after N matches (then `X-Toolboxd-Truncated: true`).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub max_results: Option<String>,
}

/// `?path=&pattern=&maxResults=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    /// Directory to walk.
    #[param(value_type = String, min_length = 1, pattern = r"^[^\x00]+$")]
    pub path: Option<QueryPath>,
    /// Glob: without `/` it matches base names; with `/` or `**` the path relative to `path`.
    #[param(value_type = String, min_length = 1)]
    pub pattern: Option<String>,
    /// Stop after N results (then `X-Toolboxd-Truncated: true`).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub max_results: Option<String>,
}

/// One matching line.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchDto {
    /// The file.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// The line.
    pub content: String,
    /// Beyond Daytona, only for a path that is not valid UTF-8 (`file` then shows U+FFFD for
    /// its other bytes): the path's bytes percent-encoded, to be put in a query as they are.
    #[serde(rename = "rawFile", skip_serializing_if = "Option::is_none")]
    pub raw_file: Option<String>,
}

/// `{files}`
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchFilesResponse {
    /// Matching paths, sorted.
    pub files: Vec<String>,
}

/// `{files, pattern, newValue, regex?}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplaceRequest {
    /// Files to rewrite.
    #[schema(min_items = 1)]
    pub files: Vec<String>,
    /// Text to replace (literal unless `regex`).
    #[schema(min_length = 1)]
    pub pattern: String,
    /// Replacement (`""` allowed; `$1` refers to groups when `regex`).
    #[schema(value_type = String, required = true)]
    pub new_value: Option<String>,
    /// Treat `pattern` as a regular expression.
    #[serde(default)]
    pub regex: bool,
}

/// What happened to one file.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplaceResultDto {
    /// The file as given.
    pub file: String,
    /// True when the file was processed.
    pub success: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Occurrences replaced.
    pub replacements: usize,
}

/// Content search: literal substring by default, 1-based lines, binary files skipped. Matches
/// come in walk order (files by path, lines ascending) and are streamed as they are found.
/// With `maxResults` the answer is held until complete (memory up to 1 MiB, then an unlinked
/// temp file), because `X-Toolboxd-Truncated` is a header and must be known before the body.
///
/// A file with a line longer than 64 MiB (or one whose read fails) cannot be searched to its
/// end; its later matches are missing and the answer says so: `X-Toolboxd-Truncated: true` as a
/// header with `maxResults`, else as a trailer field to a client that sent `TE: trailers`.
#[utoipa::path(get, path = "/files/find", tag = "search", params(FindQuery),
    responses((status = 200, body = [MatchDto], headers(("x-toolboxd-truncated" = String, description = "true when maxResults cut the result or a file could not be searched to its end (without maxResults: a trailer field, sent when the request has TE: trailers)"))),
        (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn find_in_files(
    State(app): State<AppState>,
    Query(query): Query<FindQuery>,
    request_headers: HeaderMap,
) -> Result<Response> {
    let shown = required_path(&query.path, "path")?.clone();
    let pattern = required(&query.pattern, "pattern")?.to_string();
    let options = FindOptions {
        regex: flag(&query.regex, "regex")?,
        case_insensitive: flag(&query.case_insensitive, "caseInsensitive")?,
        gitignore: flag(&query.gitignore, "gitignore")?,
        max_results: max_results(&query.max_results)?,
    };
    let root = app.files.resolve(shown.as_os_str())?;
    let limited = options.max_results.is_some();
    // The root is stat'ed and opened, and the pattern compiled, before the first byte.
    let prepare = move || Finder::new(&root, Path::new(shown.as_os_str()), &pattern, options);
    if limited {
        let (response, summary) =
            stream::held_json_array(prepare, |finder, out| finder.run(&mut MatchWriter(out)))
                .await?;
        Ok(with_truncation(
            response,
            summary.truncated || summary.incomplete,
        ))
    } else {
        let mut response = stream::json_array(prepare, |finder, out| {
            let summary = finder.run(&mut MatchWriter(out))?;
            if summary.incomplete {
                out.trailer(
                    HeaderName::from_static(TRUNCATED_HEADER),
                    HeaderValue::from_static("true"),
                );
            }
            Ok(())
        })
        .await?;
        if accepts_trailers(&request_headers) {
            response
                .headers_mut()
                .insert(header::TRAILER, HeaderValue::from_static(TRUNCATED_HEADER));
        }
        Ok(response)
    }
}

/// True when the request says `TE: trailers` (hyper sends trailer fields only then).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            item.split(';')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Writes each match as a `MatchDto`, without building one.
struct MatchWriter<'a>(&'a mut JsonArrayWriter);

impl FindSink for MatchWriter<'_> {
    fn found(&mut self, file: &Path, line: u64, content: &str) -> bool {
        #[derive(Serialize)]
        struct MatchRef<'a> {
            file: &'a str,
            line: u64,
            content: &'a str,
            #[serde(rename = "rawFile", skip_serializing_if = "Option::is_none")]
            raw_file: Option<String>,
        }
        self.0.push(&MatchRef {
            file: &file.to_string_lossy(),
            line,
            content,
            raw_file: wire::raw_path(file),
        })
    }

    fn cancelled(&mut self) -> bool {
        self.0.closed()
    }
}

/// Name search with a glob; sorted results.
#[utoipa::path(get, path = "/files/search", tag = "search", params(SearchQuery),
    responses((status = 200, body = SearchFilesResponse), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn search_files(
    State(app): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> Result<Response> {
    let shown = required_path(&query.path, "path")?.clone();
    let pattern = required(&query.pattern, "pattern")?.to_string();
    let options = GlobOptions {
        max_results: max_results(&query.max_results)?,
    };
    let root = app.files.resolve(shown.as_os_str())?;
    let outcome =
        blocking(move || search::glob(&root, &PathBuf::from(shown.0), &pattern, &options)).await?;
    let files = outcome
        .paths
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    Ok(with_truncation(
        axum::Json(SearchFilesResponse { files }),
        outcome.truncated,
    ))
}

/// Replaces text in files; always 200 with one result per file once the request is valid.
#[utoipa::path(post, path = "/files/replace", tag = "search", request_body = ReplaceRequest,
    responses((status = 200, body = [ReplaceResultDto]), (status = 400, body = super::error::ErrorBody)))]
pub async fn replace_in_files(
    State(app): State<AppState>,
    Json(request): Json<ReplaceRequest>,
) -> Result<axum::Json<Vec<ReplaceResultDto>>> {
    let Some(new_value) = request.new_value else {
        return Err(Error::invalid_body(
            "missing field `newValue` (use \"\" to delete matches)",
        ));
    };
    if request.files.is_empty() {
        return Err(Error::invalid_body("`files` must list at least one file"));
    }
    let files = app.files.clone();
    let options = ReplaceOptions {
        regex: request.regex,
    };
    let results = blocking(move || {
        search::replace(
            &files,
            &request.files,
            &request.pattern,
            &new_value,
            &options,
        )
    })
    .await?;
    Ok(axum::Json(
        results
            .into_iter()
            .map(|result| ReplaceResultDto {
                file: result.file,
                success: result.success,
                error: result.error,
                replacements: result.replacements,
            })
            .collect(),
    ))
}

fn max_results(value: &Option<String>) -> Result<Option<usize>> {
    match value.as_deref() {
        None => Ok(None),
        Some(text) => text.parse::<u32>().map(|n| Some(n as usize)).map_err(|_| {
            Error::bad_request(format!(
                "invalid maxResults {text:?}: expected a non-negative integer"
            ))
        }),
    }
}

fn with_truncation(body: impl IntoResponse, truncated: bool) -> Response {
    let mut response = body.into_response();
    if truncated {
        response.headers_mut().insert(
            HeaderName::from_static(TRUNCATED_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    response
}
