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
mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    Implementation, ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::error::{Error, Result};
use crate::state::AppState;

pub use output::MAX_TEXT;

/// What the Streamable HTTP service is (a tower service, nested at `/mcp`).
pub type HttpService = StreamableHttpService<Toolbox, LocalSessionManager>;

/// The MCP server of one client session: the capabilities, the tool table (shared), and the
/// resource subscriptions of this session (ended with it).
pub struct Toolbox {
    app: AppState,
    tools: Arc<ToolRouter<Toolbox>>,
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
    fn new(app: AppState, tools: Arc<ToolRouter<Toolbox>>) -> Toolbox {
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

/// The Streamable HTTP service: sessions (`Mcp-Session-Id`, ended after 5 minutes without a
/// request or by `DELETE`), request-wise SSE streams whose events can be resumed
/// (`Last-Event-ID`), and a standalone SSE stream for notifications. Host and Origin checks are
/// `http::mcp`'s (it answers with the wire error body), so rmcp's own are off. `shutdown` ends
/// every session and stream.
pub fn http_service(app: AppState, shutdown: tokio_util::sync::CancellationToken) -> HttpService {
    let tools = Arc::new(Toolbox::router());
    let config = StreamableHttpServerConfig::default()
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
    let toolbox = Toolbox::new(app, Arc::new(Toolbox::router()));
    let running = toolbox
        .serve(rmcp::transport::io::stdio_pipes())
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

/// Runs blocking work (file IO, walks, libgit2) off the async workers.
async fn blocking<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::internal(format!("background task failed: {err}")))?
}

#[rmcp::tool_handler(router = self.tools)]
impl ServerHandler for Toolbox {
    fn get_info(&self) -> ServerConfig {
        server_config(&self.app)
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
