//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `GET /openapi.json`. `openapi/toolbox.json` is this document checked in; a test keeps them equal.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use super::auth::Documented as TokenAuth;
use super::{
    download, files, git, health, info, interpreter, lsp, mcp, ports, process, prometheus, proxy,
    pty, search, session, system, upload, watch,
};
use crate::state::AppState;

/// The toolbox API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "toolboxd toolbox API",
        description = "Daytona-compatible in-sandbox toolbox API served by toolboxd. Errors use \
                       ErrorBody everywhere; `source` is always DAYTONA_DAEMON.",
        license(name = "Apache-2.0")
    ),
    paths(
        info::version, health::healthz, prometheus::metrics, info::init, info::user_home_dir, info::project_dir, info::work_dir,
        files::list_files, files::file_info, files::create_folder, files::delete_file,
        files::move_file, files::set_permissions,
        download::download_file, download::bulk_download,
        upload::bulk_upload, upload::upload_v2, upload::upload_legacy,
        search::find_in_files, search::search_files, search::replace_in_files,
        process::execute, process::code_run, system::update_env, system::metrics,
        session::create_session, session::list_sessions, session::get_session,
        session::delete_session, session::execute_command, session::get_command,
        session::command_logs, session::entrypoint_logs, session::send_input,
        pty::create_pty, pty::list_ptys, pty::get_pty, pty::delete_pty, pty::resize_pty,
        pty::connect_pty, pty::create_connect,
        git::clone, git::status, git::list_branches, git::create_branch, git::delete_branch,
        git::checkout, git::add, git::commit, git::push, git::pull, git::history, git::init,
        git::reset, git::restore, git::list_remotes, git::add_remote, git::get_config,
        git::set_config, git::configure_user, git::credentials,
        interpreter::create_context, interpreter::list_contexts, interpreter::delete_context,
        interpreter::execute,
        lsp::start, lsp::stop, lsp::did_open, lsp::did_close, lsp::completions,
        lsp::document_symbols, lsp::workspace_symbols, lsp::diagnostics, lsp::relay,
        watch::watch_socket, watch::create_watcher, watch::poll_events, watch::delete_watcher,
        mcp::post_doc, mcp::get_doc, mcp::delete_doc,
        ports::list_ports, ports::port_in_use, proxy::forward,
        openapi_json,
    ),
    components(schemas(super::extract::Flag, super::extract::NoNul)),
    tags(
        (name = "info", description = "Version, init, directories"),
        (name = "files", description = "File system"),
        (name = "search", description = "Find, search and replace"),
        (name = "process", description = "Commands, environment, metrics"),
        (name = "git", description = "Git on libgit2 (no git CLI)"),
        (name = "lsp", description = "Language servers (python, typescript, javascript) and the LSP relay"),
        (name = "mcp", description = "The sandbox's tools over the Model Context Protocol (Streamable HTTP)"),
        (name = "ports", description = "Listening ports and the preview proxy"),
    ),
    modifiers(&Statuses, &TokenAuth)
)]
pub struct ApiDoc;

/// Adds the error statuses the annotations leave out, so every operation lists every status it
/// can answer, each with the `ErrorBody` schema: those of every route (500; 503 while shutting
/// down or out of descriptors), 400 and 413 where there are parameters or a body, and those of a
/// family of routes (`route_statuses`). An empty description gets the status's standard one.
/// It also marks the single uploads' bodies optional (no body stores an empty file).
struct Statuses;

impl Modify for Statuses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // One handler for several methods (the preview proxy) gives them one operationId;
        // generated clients need one per operation, so those get the method appended.
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for item in openapi.paths.paths.values() {
            for operation in [
                &item.get,
                &item.put,
                &item.post,
                &item.delete,
                &item.options,
                &item.head,
                &item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(id) = &operation.operation_id {
                    *seen.entry(id.clone()).or_default() += 1;
                }
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("options", &mut item.options),
                ("head", &mut item.head),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    if let Some(id) = operation.operation_id.as_mut() {
                        if seen.get(id.as_str()).is_some_and(|count| *count > 1) {
                            *id = format!("{id}_{method}");
                        }
                    }
                    add_statuses(method, path, operation);
                }
            }
        }
    }
}

fn add_statuses(method: &str, path: &str, operation: &mut Operation) {
    if path == "/openapi.json" {
        return;
    }
    describe_websocket(path, operation);
    // A single upload may be empty: no body stores an empty file.
    if matches!(path, "/files/upload" | "/files/upload-v2") {
        if let Some(body) = operation.request_body.as_mut() {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
    let mut statuses = vec![500, 503];
    let has_parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    let upgrade = operation.responses.responses.contains_key("101");
    if has_parameters || operation.request_body.is_some() || upgrade {
        statuses.push(400);
    }
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/json"));
    if json_body {
        statuses.push(413);
    }
    statuses.extend(route_statuses(method, path));
    let responses = &mut operation.responses.responses;
    for status in statuses {
        let response = responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Response::new("")));
        if let RefOr::T(response) = response {
            if response.description.is_empty() {
                response.description = standard_description(status).to_string();
            }
            response
                .content
                .entry("application/json".to_string())
                .or_insert_with(|| Content::new(Some(Ref::from_schema_name("ErrorBody"))));
        }
    }
    for (status, response) in responses.iter_mut() {
        if let (Ok(code @ 400..=599), RefOr::T(response)) = (status.parse::<u16>(), response) {
            if response.description.is_empty() {
                response.description = standard_description(code).to_string();
            }
        }
    }
}

/// A WebSocket route (one that answers 101): the 101 says how to ask for the upgrade, and the
/// operation gets `x-websocket` with the subprotocols and the frames each side sends, so a
/// reader (or a tool) can tell it from a plain route. The proxy passes any upgrade through.
fn describe_websocket(path: &str, operation: &mut Operation) {
    let Some(RefOr::T(upgrade)) = operation.responses.responses.get_mut("101") else {
        return;
    };
    const HOW: &str = "Switching Protocols: a WebSocket (RFC 6455). Ask with `Connection: Upgrade`, \
                       `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`; \
                       a plain request is a 400 with the error body. ";
    if !upgrade.description.starts_with("Switching Protocols") {
        upgrade.description = format!("{HOW}{}", upgrade.description);
    }
    let sdk_version = serde_json::json!({
        "name": "X-Daytona-SDK-Version~<version>",
        "meaning": "the SDK's version; echoed when offered (and, on a PTY, when exit control is not)",
    });
    let spec = match path {
        "/process/pty/{session_id}/connect" | "/process/pty/create-connect" => {
            let mut subprotocols = vec![
                serde_json::json!({
                    "name": super::pty::EXIT_CONTROL_PROTOCOL,
                    "meaning": "send an `exited` control frame before the close; echoed when offered",
                }),
                sdk_version,
            ];
            if path.ends_with("create-connect") {
                subprotocols.push(serde_json::json!({
                    "name": "X-Daytona-Pty-Envs~<base64url of a JSON object of strings>",
                    "meaning": "the environment of the new PTY; never echoed",
                }));
            }
            serde_json::json!({
                "subprotocols": subprotocols,
                "client": "any frame, text or binary: input to the terminal",
                "server": [
                    "text {\"type\":\"control\",\"status\":\"connected\"} first",
                    "binary frames: the scrollback, then live output",
                    "text {\"type\":\"control\",\"status\":\"exited\",\"exitCode\":N,\"exitReason\"?} at the end (exit control only)",
                    "text {\"type\":\"control\",\"status\":\"error\",\"error\":…} for a missing or ended PTY",
                ],
                "close": "1000 exit 0; 1011 otherwise, reason {\"exitCode\":N,\"exitReason\"?}; 1008 slow consumer",
            })
        }
        "/process/interpreter/execute" => serde_json::json!({
            "subprotocols": [],
            "client": "one text frame {code, contextId?, timeout?, envs?}",
            "server": "text frames {type: stdout|stderr|error|chart|control, text?, name?, value?, traceback?}",
            "close": "1000 after a `control` frame; 4008 timeout; 1008 bad request; 1002 not JSON; 1011 worker failed or shutting down",
        }),
        "/process/session/{session_id}/command/{command_id}/logs"
        | "/process/session/entrypoint/logs" => serde_json::json!({
            "subprotocols": [sdk_version],
            "client": "nothing (frames are ignored)",
            "server": "binary frames: the log's bytes with Daytona's stdout/stderr markers, from `offset`; live while `follow=true`",
            "close": "1000 at the end",
        }),
        "/files/watch" => serde_json::json!({
            "subprotocols": [],
            "client": "nothing (frames are ignored)",
            "server": "text frames, one JSON event each (as `GET /files/watch/{id}/events` lists them)",
            "close": "1000 when the watched path is removed; 1011 when the watcher fails",
        }),
        "/lsp/ws" => serde_json::json!({
            "subprotocols": [],
            "client": "text frames, one JSON-RPC message each (no Content-Length header)",
            "server": "text frames, one JSON-RPC message each",
            "close": "1000 after `exit`; 1001 when the server is stopped; 1011 when it exits",
        }),
        _ => serde_json::json!({
            "subprotocols": "passed through",
            "client": "passed through to the upstream",
            "server": "passed through from the upstream",
        }),
    };
    let extensions = operation.extensions.get_or_insert_with(Default::default);
    extensions.merge(
        utoipa::openapi::extensions::ExtensionsBuilder::new()
            .add("x-websocket", spec)
            .build(),
    );
}

/// The statuses a family of routes can answer beyond those of every route, from the
/// `ErrorKind`s its capability returns (`crate::error::ErrorKind::status`).
fn route_statuses(method: &str, path: &str) -> Vec<u16> {
    let writes = method != "get";
    let mut statuses = Vec::new();
    if path.starts_with("/files/watch") {
        // The watched path: missing, unreadable; inotify out of watches.
        statuses.extend([403, 404, 507]);
    } else if path == "/files/bulk-download" {
        // Per-file errors are parts of the 200 answer.
    } else if path.starts_with("/files") {
        // Paths: unreadable, missing; writes: in the way, disk full.
        statuses.extend([403, 404]);
        if writes {
            statuses.extend([409, 507]);
        }
    } else if path.starts_with("/git") {
        // The repository's files (a damaged repository is a 409, reads included); writes: a full
        // disk; the network routes (and adding a remote with `fetch`): the remote's answer.
        statuses.extend([403, 404, 409]);
        if writes {
            statuses.push(507);
        }
        if matches!(
            path,
            "/git/clone" | "/git/pull" | "/git/push" | "/git/remotes"
        ) {
            statuses.extend([401, 502]);
        }
    } else if path.starts_with("/process/session/") {
        statuses.push(404);
    } else if path.starts_with("/process/pty/{session_id}") {
        statuses.extend([404, 410]);
    } else if path.starts_with("/lsp") {
        // The server: not started, not answering, failed.
        statuses.extend([404, 408, 502]);
    } else if matches!(path, "/process/execute" | "/process/code-run") {
        // The working directory.
        statuses.extend([403, 404]);
    } else if path == "/mcp" {
        // The Origin check, the session, the Accept and Content-Type checks.
        statuses.extend([403, 404, 406]);
        if method == "post" {
            statuses.push(415);
        }
    } else if path == "/process/interpreter/context" && writes {
        statuses.extend([403, 404]);
    }
    statuses
}

/// What a status means on this API.
fn standard_description(status: u16) -> &'static str {
    match status {
        400 => {
            "Bad request: a missing, malformed or out-of-range parameter or body \
                (`BAD_REQUEST`, `INVALID_REQUEST_BODY`, `INVALID_FILE_PATH`)"
        }
        401 => "The remote refused the credentials (`GIT_AUTH_FAILED`)",
        403 => "Permission denied (`FILE_ACCESS_DENIED`, `FORBIDDEN`)",
        404 => "Not found",
        408 => "Timed out",
        409 => "Conflicts with what exists",
        410 => "The process has ended",
        412 => "A precondition (`If-Match`, `If-Unmodified-Since`) does not hold",
        413 => "The body is too large (`PAYLOAD_TOO_LARGE`; JSON bodies: 16 MiB)",
        416 => "The range is not satisfiable (`RANGE_NOT_SATISFIABLE`)",
        422 => "The remote rejected the update (`GIT_REMOTE_REJECTED`)",
        500 => "Internal error (`INTERNAL_SERVER_ERROR`, `FILE_READ_FAILED`)",
        502 => "The upstream failed",
        503 => {
            "toolboxd is shutting down (`SHUTTING_DOWN`) or out of file descriptors or memory \
                (`SERVICE_UNAVAILABLE`)"
        }
        507 => "No space left on device (`INSUFFICIENT_STORAGE`)",
        _ => "Error",
    }
}

/// The document as pretty JSON with a trailing newline (the checked-in form).
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string());
    text.push('\n');
    text
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "info",
    responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
