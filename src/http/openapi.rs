//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `GET /openapi.json`. `openapi/toolbox.json` is this document checked in; a test keeps them equal.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

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
    modifiers(&TokenAuth),
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
    tags(
        (name = "info", description = "Version, init, directories"),
        (name = "files", description = "File system"),
        (name = "search", description = "Find, search and replace"),
        (name = "process", description = "Commands, environment, metrics"),
        (name = "git", description = "Git on libgit2 (no git CLI)"),
        (name = "lsp", description = "Language servers (python, typescript, javascript) and the LSP relay"),
        (name = "mcp", description = "The sandbox's tools over the Model Context Protocol (Streamable HTTP)"),
        (name = "ports", description = "Listening ports and the preview proxy"),
    )
)]
pub struct ApiDoc;

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
