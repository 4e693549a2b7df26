//! LSP routes (`/lsp/…`) as the SDKs call them, the diagnostics route and the relay WebSocket.
//! Answers are shaped for the SDKs' strict models: `items` is always a list, `documentation`
//! always an object, `kind` a number.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use lsp_types::{
    CompletionContext, CompletionItem, CompletionResponse, CompletionTriggerKind, Documentation,
    MarkupKind, SymbolInformation,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{blocking, required, Json, Query};
use super::observe::in_request;
use super::ws;
use crate::error::{Error, Result};
use crate::lsp::{position, Language, RelayOut};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/lsp/start", post(start))
        .route("/lsp/stop", post(stop))
        .route("/lsp/did-open", post(did_open))
        .route("/lsp/did-close", post(did_close))
        .route("/lsp/completions", post(completions))
        .route("/lsp/document-symbols", get(document_symbols))
        .route("/lsp/workspacesymbols", get(workspace_symbols))
        .route("/lsp/diagnostics", get(diagnostics))
        .route("/lsp/ws", get(relay))
}

/// `{languageId, pathToProject}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LspServerRequest {
    /// `python`, `typescript` or `javascript`.
    #[schema(pattern = "^(python|typescript|javascript)$")]
    pub language_id: String,
    /// The project root: absolute, or relative to the work dir.
    #[schema(min_length = 1)]
    pub path_to_project: String,
}

/// `{languageId, pathToProject, uri}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LspDocumentRequest {
    /// `python`, `typescript` or `javascript`.
    #[schema(pattern = "^(python|typescript|javascript)$")]
    pub language_id: String,
    /// The project root.
    #[schema(min_length = 1)]
    pub path_to_project: String,
    /// `file://` + the path (absolute, or relative to the project).
    #[schema(min_length = 1)]
    pub uri: String,
}

/// A position; 0-based, so 0 is valid.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct LspPosition {
    /// Line, from 0.
    pub line: u32,
    /// Character (UTF-16 code unit) in the line, from 0.
    pub character: u32,
}

/// How completion was triggered.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LspCompletionContext {
    /// 1 invoked, 2 trigger character, 3 re-trigger of an incomplete list.
    pub trigger_kind: i32,
    /// The character that triggered it.
    pub trigger_character: Option<String>,
}

/// `{languageId, pathToProject, uri, position, context?}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LspCompletionParams {
    /// `python`, `typescript` or `javascript`.
    #[schema(pattern = "^(python|typescript|javascript)$")]
    pub language_id: String,
    /// The project root.
    #[schema(min_length = 1)]
    pub path_to_project: String,
    /// `file://` + the path.
    #[schema(min_length = 1)]
    pub uri: String,
    /// Where to complete.
    pub position: LspPosition,
    /// How completion was triggered.
    pub context: Option<LspCompletionContext>,
}

/// Markup, as the SDKs want `documentation`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkupDto {
    /// `markdown` or `plaintext`.
    pub kind: String,
    /// The text.
    pub value: String,
}

/// One completion.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletionItemDto {
    /// What is shown.
    pub label: String,
    /// LSP `CompletionItemKind` (a number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<i32>,
    /// Type or signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Always an object: plain strings from the server become `plaintext` markup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation: Option<MarkupDto>,
    /// Sort key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort_text: Option<String>,
    /// Filter key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_text: Option<String>,
    /// What is inserted (the text edit's text when the server sent only an edit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insert_text: Option<String>,
}

/// `{isIncomplete, items}`; `items` is never null.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletionListDto {
    /// More items exist; typing further re-asks.
    pub is_incomplete: bool,
    /// The completions.
    pub items: Vec<CompletionItemDto>,
}

/// `{line, character}` pair of a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct LspRangeDto {
    /// Start.
    pub start: LspPosition,
    /// End (exclusive).
    pub end: LspPosition,
}

/// `{uri, range}`
#[derive(Debug, Serialize, ToSchema)]
pub struct LspLocationDto {
    /// The file's URI.
    #[schema(min_length = 1)]
    pub uri: String,
    /// Where in it.
    pub range: LspRangeDto,
}

/// One symbol.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LspSymbolDto {
    /// LSP `SymbolKind` (a number).
    pub kind: i32,
    /// The name.
    pub name: String,
    /// Where it is.
    pub location: LspLocationDto,
    /// The enclosing symbol, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}

/// `?languageId=&pathToProject=&uri=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DocumentQuery {
    /// `python`, `typescript` or `javascript`.
    #[param(value_type = String, pattern = "^(python|typescript|javascript)$")]
    pub language_id: Option<String>,
    /// The project root.
    #[param(value_type = String, min_length = 1)]
    pub path_to_project: Option<String>,
    /// `file://` + the path.
    #[param(value_type = String, min_length = 1)]
    pub uri: Option<String>,
}

/// `?query=&languageId=&pathToProject=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceQuery {
    /// What to look for (empty: everything the server lists).
    pub query: Option<String>,
    /// `python`, `typescript` or `javascript`.
    #[param(value_type = String, pattern = "^(python|typescript|javascript)$")]
    pub language_id: Option<String>,
    /// The project root.
    #[param(value_type = String, min_length = 1)]
    pub path_to_project: Option<String>,
}

/// `?languageId=&pathToProject=&uri=&timeout=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticsQuery {
    /// `python`, `typescript` or `javascript`.
    #[param(value_type = String, pattern = "^(python|typescript|javascript)$")]
    pub language_id: Option<String>,
    /// The project root.
    #[param(value_type = String, min_length = 1)]
    pub path_to_project: Option<String>,
    /// `file://` + the path.
    #[param(value_type = String, min_length = 1)]
    pub uri: Option<String>,
    /// Seconds to wait for diagnostics newer than the file's last change (default 5, most 60).
    pub timeout: Option<f64>,
}

/// The latest diagnostics of a file.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticsDto {
    /// The file's URI.
    #[schema(min_length = 1)]
    pub uri: String,
    /// The document version they are for, when the server said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    /// False when none were published yet (the server may still be working).
    pub published: bool,
    /// LSP `Diagnostic` objects as the server sent them.
    #[schema(value_type = Vec<Object>)]
    pub diagnostics: Value,
}

/// `?languageId=&pathToProject=` of the relay.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct RelayQuery {
    /// `python`, `typescript` or `javascript`.
    #[param(value_type = String, pattern = "^(python|typescript|javascript)$")]
    pub language_id: Option<String>,
    /// The project root.
    #[param(value_type = String, min_length = 1)]
    pub path_to_project: Option<String>,
}

async fn target(
    app: &AppState,
    language: Option<&str>,
    root: Option<&str>,
) -> Result<(Language, std::path::PathBuf)> {
    let language = Language::parse(language.unwrap_or(""))?;
    let lsp = app.lsp.clone();
    let root = root.unwrap_or("").to_string();
    let root = blocking(move || lsp.root(&root)).await?;
    Ok((language, root))
}

/// Starts the language server for a project (idempotent). 400 names a missing server and how to
/// install it.
#[utoipa::path(post, path = "/lsp/start", tag = "lsp", request_body = LspServerRequest,
    responses((status = 200, description = "started (empty body)"),
        (status = 400, body = super::error::ErrorBody)))]
pub async fn start(
    State(app): State<AppState>,
    Json(body): Json<LspServerRequest>,
) -> Result<StatusCode> {
    let (language, root) =
        target(&app, Some(&body.language_id), Some(&body.path_to_project)).await?;
    app.lsp.start(language, &root).await?;
    Ok(StatusCode::OK)
}

/// Stops it: shutdown, exit, a 2 s grace, then the process tree is killed and reaped.
#[utoipa::path(post, path = "/lsp/stop", tag = "lsp", request_body = LspServerRequest,
    responses((status = 200, description = "stopped, or was not running (empty body)"),
        (status = 400, body = super::error::ErrorBody)))]
pub async fn stop(
    State(app): State<AppState>,
    Json(body): Json<LspServerRequest>,
) -> Result<StatusCode> {
    let (language, root) =
        target(&app, Some(&body.language_id), Some(&body.path_to_project)).await?;
    app.lsp.stop(language, &root).await?;
    Ok(StatusCode::OK)
}

/// Opens a document with its content on disk.
#[utoipa::path(post, path = "/lsp/did-open", tag = "lsp", request_body = LspDocumentRequest,
    responses((status = 200, description = "opened (empty body)"),
        (status = 400, description = "LSP_SERVER_NOT_INITIALIZED and other bad input", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn did_open(
    State(app): State<AppState>,
    Json(body): Json<LspDocumentRequest>,
) -> Result<StatusCode> {
    let (language, root) =
        target(&app, Some(&body.language_id), Some(&body.path_to_project)).await?;
    app.lsp.did_open(language, &root, &body.uri).await?;
    Ok(StatusCode::OK)
}

/// Closes a document.
#[utoipa::path(post, path = "/lsp/did-close", tag = "lsp", request_body = LspDocumentRequest,
    responses((status = 200, description = "closed (empty body)"),
        (status = 400, body = super::error::ErrorBody)))]
pub async fn did_close(
    State(app): State<AppState>,
    Json(body): Json<LspDocumentRequest>,
) -> Result<StatusCode> {
    let (language, root) =
        target(&app, Some(&body.language_id), Some(&body.path_to_project)).await?;
    app.lsp.did_close(language, &root, &body.uri).await?;
    Ok(StatusCode::OK)
}

/// Completions at a position (line and character from 0); the file is synced from disk first.
#[utoipa::path(post, path = "/lsp/completions", tag = "lsp", request_body = LspCompletionParams,
    responses((status = 200, body = CompletionListDto),
        (status = 400, body = super::error::ErrorBody),
        (status = 408, description = "the server did not answer in 30 s", body = super::error::ErrorBody),
        (status = 502, description = "the server failed or exited", body = super::error::ErrorBody)))]
pub async fn completions(
    State(app): State<AppState>,
    Json(body): Json<LspCompletionParams>,
) -> Result<axum::Json<CompletionListDto>> {
    let (language, root) =
        target(&app, Some(&body.language_id), Some(&body.path_to_project)).await?;
    let context = match body.context {
        None => None,
        Some(context) => Some(CompletionContext {
            trigger_kind: match context.trigger_kind {
                1 => CompletionTriggerKind::INVOKED,
                2 => CompletionTriggerKind::TRIGGER_CHARACTER,
                3 => CompletionTriggerKind::TRIGGER_FOR_INCOMPLETE_COMPLETIONS,
                other => {
                    return Err(Error::invalid_body(format!(
                        "invalid JSON body: field `context.triggerKind`: {other} is not 1, 2 or 3"
                    )))
                }
            },
            trigger_character: context.trigger_character,
        }),
    };
    let response = app
        .lsp
        .completions(
            language,
            &root,
            &body.uri,
            position(body.position.line, body.position.character),
            context,
        )
        .await?;
    let (is_incomplete, items) = match response {
        None => (false, Vec::new()),
        Some(CompletionResponse::Array(items)) => (false, items),
        Some(CompletionResponse::List(list)) => (list.is_incomplete, list.items),
    };
    Ok(axum::Json(CompletionListDto {
        is_incomplete,
        items: items.into_iter().map(completion_item).collect(),
    }))
}

fn completion_item(item: CompletionItem) -> CompletionItemDto {
    let documentation = item.documentation.map(|doc| match doc {
        Documentation::String(value) => MarkupDto {
            kind: "plaintext".to_string(),
            value,
        },
        Documentation::MarkupContent(markup) => MarkupDto {
            kind: match markup.kind {
                MarkupKind::Markdown => "markdown",
                MarkupKind::PlainText => "plaintext",
            }
            .to_string(),
            value: markup.value,
        },
    });
    let edit_text = item.text_edit.map(|edit| match edit {
        lsp_types::CompletionTextEdit::Edit(edit) => edit.new_text,
        lsp_types::CompletionTextEdit::InsertAndReplace(edit) => edit.new_text,
    });
    CompletionItemDto {
        label: item.label,
        kind: item
            .kind
            .and_then(|kind| serde_json::to_value(kind).ok())
            .and_then(|v| v.as_i64())
            .map(|v| v as i32),
        detail: item.detail,
        documentation,
        sort_text: item.sort_text,
        filter_text: item.filter_text,
        insert_text: item.insert_text.or(edit_text),
    }
}

fn symbol(symbol: SymbolInformation) -> LspSymbolDto {
    let range = symbol.location.range;
    LspSymbolDto {
        kind: serde_json::to_value(symbol.kind)
            .ok()
            .and_then(|v| v.as_i64())
            .unwrap_or(0) as i32,
        name: symbol.name,
        location: LspLocationDto {
            uri: symbol.location.uri.to_string(),
            range: LspRangeDto {
                start: LspPosition {
                    line: range.start.line,
                    character: range.start.character,
                },
                end: LspPosition {
                    line: range.end.line,
                    character: range.end.character,
                },
            },
        },
        container_name: symbol.container_name,
    }
}

/// The symbols of a document, flattened.
#[utoipa::path(get, path = "/lsp/document-symbols", tag = "lsp", params(DocumentQuery),
    responses((status = 200, body = Vec<LspSymbolDto>),
        (status = 400, body = super::error::ErrorBody)))]
pub async fn document_symbols(
    State(app): State<AppState>,
    Query(query): Query<DocumentQuery>,
) -> Result<axum::Json<Vec<LspSymbolDto>>> {
    let (language, root) = target(
        &app,
        query.language_id.as_deref(),
        query.path_to_project.as_deref(),
    )
    .await?;
    let uri = required(&query.uri, "uri")?;
    let symbols = app.lsp.document_symbols(language, &root, uri).await?;
    Ok(axum::Json(symbols.into_iter().map(symbol).collect()))
}

/// Symbols across the project (`[]` from a server without `workspace/symbol`, such as pylsp).
#[utoipa::path(get, path = "/lsp/workspacesymbols", tag = "lsp", params(WorkspaceQuery),
    responses((status = 200, body = Vec<LspSymbolDto>),
        (status = 400, body = super::error::ErrorBody)))]
pub async fn workspace_symbols(
    State(app): State<AppState>,
    Query(query): Query<WorkspaceQuery>,
) -> Result<axum::Json<Vec<LspSymbolDto>>> {
    let (language, root) = target(
        &app,
        query.language_id.as_deref(),
        query.path_to_project.as_deref(),
    )
    .await?;
    let symbols = app
        .lsp
        .workspace_symbols(language, &root, query.query.as_deref().unwrap_or(""))
        .await?;
    Ok(axum::Json(symbols.into_iter().map(symbol).collect()))
}

/// The latest `publishDiagnostics` of a file (opened if it was not), waiting up to `timeout`
/// seconds for ones newer than its last change.
#[utoipa::path(get, path = "/lsp/diagnostics", tag = "lsp", params(DiagnosticsQuery),
    responses((status = 200, body = DiagnosticsDto),
        (status = 400, body = super::error::ErrorBody)))]
pub async fn diagnostics(
    State(app): State<AppState>,
    Query(query): Query<DiagnosticsQuery>,
) -> Result<axum::Json<DiagnosticsDto>> {
    let (language, root) = target(
        &app,
        query.language_id.as_deref(),
        query.path_to_project.as_deref(),
    )
    .await?;
    let uri = required(&query.uri, "uri")?;
    let wait = match query.timeout {
        None => Duration::from_secs(5),
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::from_secs_f64(seconds.min(60.0))
        }
        Some(_) => {
            return Err(Error::bad_request(
                "timeout must be a number of seconds >= 0",
            ))
        }
    };
    let (uri, published) = app.lsp.diagnostics(language, &root, uri, wait).await?;
    Ok(axum::Json(match published {
        Some(published) => DiagnosticsDto {
            uri: uri.to_string(),
            version: published.version,
            published: true,
            diagnostics: published.diagnostics,
        },
        None => DiagnosticsDto {
            uri: uri.to_string(),
            version: None,
            published: false,
            diagnostics: Value::Array(Vec::new()),
        },
    }))
}

/// WebSocket relay to the project's server (started if needed): one JSON-RPC message per text
/// frame, no Content-Length. Shared with other relay clients and the REST routes; `initialize`
/// is answered with the running server's capabilities.
#[utoipa::path(get, path = "/lsp/ws", tag = "lsp", params(RelayQuery),
    responses((status = 101, description = "WebSocket: JSON-RPC text frames; close 1000 after `exit`, 1001 when the server is stopped, 1011 when it exits"),
        (status = 400, body = super::error::ErrorBody)))]
pub async fn relay(
    State(app): State<AppState>,
    Query(query): Query<RelayQuery>,
    upgrade: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response> {
    let (language, root) = target(
        &app,
        query.language_id.as_deref(),
        query.path_to_project.as_deref(),
    )
    .await?;
    let Ok(upgrade) = upgrade else {
        return Err(Error::bad_request(
            "GET /lsp/ws is a WebSocket: connect with a WebSocket client",
        ));
    };
    let (relay, outgoing) = app.lsp.relay(language, &root).await?;
    Ok(ws::limited(upgrade, ws::MAX_REQUEST_MESSAGE)
        .on_upgrade(in_request(move |socket| run_relay(relay, outgoing, socket)))
        .into_response())
}

async fn run_relay(
    relay: crate::lsp::Relay,
    mut outgoing: tokio::sync::mpsc::UnboundedReceiver<RelayOut>,
    mut socket: WebSocket,
) {
    let close = loop {
        tokio::select! {
            out = outgoing.recv() => match out {
                Some(RelayOut::Message(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                Some(RelayOut::Close(code, reason)) => break Some((code, reason)),
                None => break Some((1011, "relay ended".to_string())),
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if !relay.handle(text.as_str()).await {
                        break Some((1000, "exit".to_string()));
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if !relay.handle(&text).await {
                        break Some((1000, "exit".to_string()));
                    }
                }
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(err)) => break ws::refusal(&err).map(|frame| (frame.code, frame.reason.to_string())),
                Some(Ok(_)) => {}
            },
        }
    };
    relay.close().await;
    match close {
        Some((code, reason)) => ws::close(&mut socket, ws::close_frame(code, &reason)).await,
        None => ws::finish(&mut socket).await,
    }
}
