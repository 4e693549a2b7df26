//! `preview_link`: the URL that reaches a sandbox port through the toolbox's preview proxy
//! (`/proxy/{port}/`), and whether anything listens there.

use super::Parameters;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::output;
use super::super::Toolbox;
use crate::error::Error;

/// Where the toolbox API is when nothing says otherwise (its default address).
pub const DEFAULT_BASE: &str = "http://127.0.0.1:2280";

/// `preview_link`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PreviewArgs {
    /// The port a server in the sandbox listens on.
    pub port: u16,
    /// What runs there (echoed back, for the agent's own notes).
    pub description: Option<String>,
    /// Check whether a socket listens on the port (default true).
    pub check_server: Option<bool>,
}

/// A preview link.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Preview {
    /// The URL that reaches the port through the toolbox's preview proxy.
    pub url: String,
    /// The URL from inside the sandbox.
    pub local_url: String,
    /// The port.
    pub port: u16,
    /// Whether a TCP socket listens on the port, on any address (absent when not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listening: Option<bool>,
    /// The description given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How to authenticate, when toolboxd requires a token (`--token`): the URL does not carry
    /// it, so a link shown to a person or left in a transcript gives nothing away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

/// What `auth` says when a token is required.
const TOKEN_REQUIRED: &str = "toolboxd requires its token on this URL: send `Authorization: \
    Bearer <token>` (or `X-Toolboxd-Token`), or open it once in a browser with `?token=<token>` \
    (an HttpOnly cookie keeps it for the rest of the visit); the proxied app never sees the token";

/// The toolbox API's base URL as the client sees it: `--public-url`, else the scheme
/// (`X-Forwarded-Proto`) and `Host` of the HTTP request the tool call came in, else the default
/// address (stdio).
fn base_url(public_url: Option<&str>, parts: Option<&http::request::Parts>) -> String {
    if let Some(base) = public_url {
        return base.to_string();
    }
    let header = |name: &str| {
        parts
            .and_then(|p| p.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
            .filter(|v| !v.is_empty())
    };
    match header("x-forwarded-host").or_else(|| header("host")) {
        Some(host) => {
            let scheme = header("x-forwarded-proto")
                .filter(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"))
                .unwrap_or_else(|| "http".to_string())
                .to_ascii_lowercase();
            format!("{scheme}://{host}")
        }
        None => DEFAULT_BASE.to_string(),
    }
}

#[rmcp::tool_router(router = preview_router, vis = "pub(crate)")]
impl Toolbox {
    /// The URL that reaches a port of the sandbox from outside (through the toolbox's preview
    /// proxy at /proxy/PORT/), and whether a server listens on it.
    #[rmcp::tool(
        annotations(
            title = "Preview link",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<Preview>()
    )]
    async fn preview_link(
        &self,
        Parameters(args): Parameters<PreviewArgs>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        if args.port == 0 {
            return Ok(output::failure(&Error::bad_request(
                "port 0 is not a port a server listens on: give the server's port",
            )));
        }
        let base = base_url(
            self.app.config.public_url.as_deref(),
            context.extensions.get::<http::request::Parts>(),
        );
        // The check `GET /port/{port}/in-use` makes: a listening socket in /proc/net/tcp*.
        let listening = if args.check_server.unwrap_or(true) {
            let ports = self.app.ports.clone();
            let port = args.port;
            match tokio::task::spawn_blocking(move || ports.in_use(port)).await {
                Ok(Ok(in_use)) => Some(in_use),
                Ok(Err(err)) => return Ok(output::failure(&err)),
                Err(_) => return Ok(output::failure(&Error::internal("the port check failed"))),
            }
        } else {
            None
        };
        Ok(output::data(&Preview {
            url: format!("{base}/proxy/{}/", args.port),
            local_url: format!("http://127.0.0.1:{}/", args.port),
            port: args.port,
            listening,
            description: args.description.filter(|d| !d.is_empty()),
            auth: self
                .app
                .config
                .token
                .is_some()
                .then(|| TOKEN_REQUIRED.to_string()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut request = http::Request::builder().uri("/mcp");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).map(|r| r.into_parts().0).expect("request")
    }

    #[test]
    fn the_base_comes_from_config_then_the_request() {
        let direct = parts(&[("host", "127.0.0.1:2280")]);
        assert_eq!(base_url(None, Some(&direct)), "http://127.0.0.1:2280");
        let proxied = parts(&[
            ("host", "10.0.0.5:2280"),
            ("x-forwarded-host", "2280-abc.proxy.example.com"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            base_url(None, Some(&proxied)),
            "https://2280-abc.proxy.example.com"
        );
        assert_eq!(
            base_url(Some("https://x.example"), Some(&proxied)),
            "https://x.example"
        );
        assert_eq!(base_url(None, None), DEFAULT_BASE);
    }
}
