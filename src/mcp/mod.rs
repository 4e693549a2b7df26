//! The MCP edge: the sandbox's tools for any MCP client, over Streamable HTTP (`/mcp` on the
//! toolbox listener, mounted by `http::mcp`) and over stdio (`toolboxd mcp`). Like `http/`, it
//! only translates: every tool parses its arguments, calls the same capability functions the HTTP
//! routes call (`Files`, `search`, `Process`, `Sessions`, `Git`, `Code`, `Watch`) and converts the
//! outcome. Built on the official Rust SDK, `rmcp`: its tool router (input schemas from the
//! parameter types, output schemas from the result types), its session handling and transports.
//!
//! Reading order: `tools/` (one file per capability, each an `impl Toolbox` block of `#[tool]`s),
//! `output.rs` (results, errors, caps), `progress.rs`, `resources.rs` (the work dir's files as
//! resources, with update notifications from the watch hub), then the `ServerHandler` below.

mod output;
mod progress;
mod resources;
pub mod stdio;
mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CacheScope, Implementation, JsonObject, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::error::Result;
pub(crate) use crate::http::extract::blocking;
use crate::state::AppState;

pub use output::MAX_TEXT;

/// What the Streamable HTTP service is (a tower service, nested at `/mcp`).
pub type HttpService = StreamableHttpService<Toolbox, LocalSessionManager>;

/// The MCP server of one client session: the capabilities, the tool table (shared), and the
/// resource subscriptions of this session (ended with it).
pub struct Toolbox {
    app: AppState,
    tools: Arc<Tools>,
    /// Watch tasks of subscribed resources, by URI.
    subscriptions: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Drop for Toolbox {
    fn drop(&mut self) {
        // The tasks own the hub subscriptions: aborting them releases the kernel watches.
        for (_, task) in self
            .subscriptions
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            task.abort();
        }
    }
}

impl Toolbox {
    /// A server for one client session.
    fn new(app: AppState, tools: Arc<Tools>) -> Toolbox {
        Toolbox {
            app,
            tools,
            subscriptions: Mutex::new(HashMap::new()),
        }
    }

    /// Every tool.
    fn router() -> ToolRouter<Toolbox> {
        Self::files_router()
            + Self::search_router()
            + Self::process_router()
            + Self::session_router()
            + Self::git_router()
            + Self::code_router()
            + Self::preview_router()
    }
}

/// The tool table, built once per daemon: the router that dispatches calls, and the tools as
/// listed (schemas without schemars' Rust integer formats, see `plain_formats`).
pub struct Tools {
    router: ToolRouter<Toolbox>,
    listed: Vec<Tool>,
}

impl Tools {
    fn new() -> Tools {
        let router = Toolbox::router();
        let listed = router
            .list_all()
            .into_iter()
            .map(|mut tool| {
                plain_formats(Arc::make_mut(&mut tool.input_schema));
                if let Some(output) = tool.output_schema.as_mut() {
                    plain_formats(Arc::make_mut(output));
                }
                tool
            })
            .collect();
        Tools { router, listed }
    }
}

/// Removes the `format`s schemars gives integer and float types (`uint64`, `int32`, `double`,
/// …): JSON Schema has no such formats, so validators ignore them, but Ajv (the TypeScript SDK's
/// validator) prints a warning for each one. Their range is in `minimum`/`maximum` already.
fn plain_formats(schema: &mut JsonObject) {
    const NUMERIC: &[&str] = &[
        "int", "int8", "int16", "int32", "int64", "int128", "uint", "uint8", "uint16", "uint32",
        "uint64", "uint128", "float", "double",
    ];
    if schema
        .get("format")
        .and_then(|f| f.as_str())
        .is_some_and(|f| NUMERIC.contains(&f))
    {
        schema.remove("format");
    }
    for value in schema.values_mut() {
        match value {
            serde_json::Value::Object(inner) => plain_formats(inner),
            serde_json::Value::Array(items) => {
                for item in items {
                    if let serde_json::Value::Object(inner) = item {
                        plain_formats(inner);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The Streamable HTTP service: sessions (`Mcp-Session-Id`, ended after 5 minutes without a
/// request or by `DELETE`), request-wise SSE streams whose events can be resumed
/// (`Last-Event-ID`), and a standalone SSE stream for notifications. Host and Origin checks are
/// `http::mcp`'s (it answers with the wire error body), so rmcp's own are off. `shutdown` ends
/// every session and stream.
pub fn http_service(app: AppState, shutdown: tokio_util::sync::CancellationToken) -> HttpService {
    let tools = Arc::new(Tools::new());
    let config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(stdio::MAX_MESSAGE)
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_cancellation_token(shutdown);
    StreamableHttpService::new(
        move || Ok(Toolbox::new(app.clone(), tools.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Serves one client over stdin/stdout until stdin closes or `shutdown` resolves.
pub async fn serve_stdio(
    app: AppState,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use rmcp::ServiceExt;
    let toolbox = Toolbox::new(app, Arc::new(Tools::new()));
    // stdin → `read_lines` → rmcp → `write_lines` → stdout (see `stdio`).
    let (stdin, stdout) = rmcp::transport::io::stdio_pipes();
    let (service_in, feed) = tokio::io::duplex(64 * 1024);
    let (service_out, from_service) = tokio::io::duplex(64 * 1024);
    let (refusals, refused) = tokio::sync::mpsc::channel(16);
    let reader = tokio::spawn(stdio::read_lines(stdin, feed, refusals, stdio::MAX_MESSAGE));
    let writer = tokio::spawn(stdio::write_lines(from_service, refused, stdout));
    // Lines reach rmcp already bounded; its own bound (which drops a line silently) is lifted.
    let transport =
        rmcp::transport::async_rw::AsyncRwTransport::new_server(service_in, service_out)
            .with_max_line_length(usize::MAX);
    let served = async {
        let running = toolbox
            .serve(transport)
            .await
            .map_err(|err| std::io::Error::other(format!("MCP handshake failed: {err}")))?;
        let token = running.cancellation_token();
        tokio::select! {
            quit = running.waiting() => {
                if let Err(err) = quit {
                    tracing::error!("MCP service failed: {err}");
                }
            }
            () = shutdown => token.cancel(),
        }
        Ok(())
    };
    let result = served.await;
    // The service is gone, and with it the write end of `from_service`: the writer finishes
    // what it has (bounded, in case nobody reads stdout any more).
    reader.abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    result
}

/// What the server says about itself in `initialize` (and `server/discover`).
fn server_config(app: &AppState) -> ServerConfig {
    ServerConfig::new(
        ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .build(),
    )
    .with_server_info(
        Implementation::new("toolboxd", env!("CARGO_PKG_VERSION")).with_title("toolboxd sandbox"),
    )
    .with_instructions(format!(
        "Tools of a Linux sandbox. Relative paths resolve against the work dir {}. Text a tool \
         returns is capped at {} KiB with a notice saying how to read the rest. Long commands: \
         execute_command reports progress and is stopped by cancelling the request; for \
         commands that outlive a request use session_start, session_exec and session_logs. The \
         work dir's files are also resources (file:// URIs) that can be subscribed to.",
        app.config.workdir.display(),
        MAX_TEXT / 1024
    ))
}

#[rmcp::tool_handler(router = self.tools.router)]
impl ServerHandler for Toolbox {
    fn get_info(&self) -> ServerConfig {
        server_config(&self.app)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, McpError> {
        let mut result = ListToolsResult::with_all_items(self.tools.listed.clone());
        // 2026-07-28 wants cache hints on lists: the tool list never changes.
        if context
            .protocol_version()
            .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28)
        {
            result.ttl_ms = Some(0);
            result.cache_scope = Some(CacheScope::Public);
        }
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools
            .listed
            .iter()
            .find(|tool| tool.name == name)
            .cloned()
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourcesResult, McpError> {
        self.resources_page(request.and_then(|r| r.cursor)).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ReadResourceResponse, McpError> {
        self.read_file_resource(&request.uri).await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        resources::accepted_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> std::result::Result<(), McpError> {
        self.listen_resources(context).await
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<(), McpError> {
        self.subscribe_resource(request.uri, context.peer).await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<(), McpError> {
        self.unsubscribe_resource(&request.uri);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_schemas_have_no_rust_number_formats() {
        let tools = Tools::new();
        assert_eq!(tools.listed.len(), 18);
        for tool in &tools.listed {
            let text = serde_json::to_string(&tool).unwrap_or_default();
            for format in ["\"uint", "\"int32", "\"int64", "\"double"] {
                assert!(
                    !text.contains(&format!("\"format\":{format}")),
                    "{}: {text}",
                    tool.name
                );
            }
        }
        let mut schema = serde_json::json!({"properties": {"a": {"type": "integer", "format": "uint64",
            "minimum": 0}, "b": {"type": "string", "format": "date-time"}}});
        if let serde_json::Value::Object(object) = &mut schema {
            plain_formats(object);
        }
        assert_eq!(
            schema,
            serde_json::json!({"properties": {"a": {"type": "integer", "minimum": 0},
                "b": {"type": "string", "format": "date-time"}}})
        );
    }
}
