//! The preview proxy: forwards one HTTP request to a port of this machine's loopback and hands
//! back the answer, both bodies streamed as they flow (no buffering), WebSocket and other
//! upgrades passed through byte for byte. This is HTTP by nature, so it speaks hyper's types; it
//! knows nothing of axum or of the route it is mounted on (the edge gives it the prefix).
//!
//! The target is always `localhost:{port}` resolved by a fixed resolver to 127.0.0.1, then
//! `::1` when 127.0.0.1 refuses: no name lookup, no other host. The path and query are the
//! caller's raw bytes. Hop-by-hop headers are dropped both ways; `X-Forwarded-For`, `-Proto`,
//! `-Host` and `-Prefix` are set. Connections to the upstream are pooled (keep-alive).

use std::future::{ready, Ready};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::config::Secret;
use crate::error::{Error, ErrorKind, Result};

/// Any body error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body on either side of the proxy.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How long a connect to the loopback may take (a refused one fails at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle upstream connection stays in the pool.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle upstream connections kept per port.
const POOL_MAX_IDLE_PER_PORT: usize = 32;
/// The largest read from an upstream connection (hyper's default is ~400 KB). Reads grow to it
/// only while they fill the buffer (a large body); fewer, larger chunks cost fewer wakeups.
const MAX_READ: usize = 1 << 20;

/// Where a request goes and what the forwarding headers say about it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The loopback port, 1–65535.
    pub port: u16,
    /// The upstream path and query exactly as the client wrote them (starts with `/`).
    pub path_and_query: String,
    /// The path this proxy is mounted at for this port (`/proxy/3000`); appended to any
    /// `X-Forwarded-Prefix` the request already carries.
    pub prefix: String,
    /// The client's address, appended to `X-Forwarded-For`.
    pub client: Option<IpAddr>,
    /// toolboxd's own credentials, taken out of the request before it is forwarded.
    pub credentials: Option<Credentials>,
}

/// toolboxd's token and where a client may carry it: the app behind the proxy never sees it.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The token (`--token`).
    pub token: Secret,
    /// Headers that carry only the token (`X-Toolboxd-Token`): always removed.
    pub headers: &'static [&'static str],
    /// Cookies that carry only the token: removed from `Cookie`.
    pub cookies: &'static [&'static str],
    /// The query parameter that carries the token (`token`): removed when it holds the token.
    pub param: &'static str,
}

/// The proxy: one pooled client shared by every request.
#[derive(Debug, Clone)]
pub struct Proxy {
    client: Client<HttpConnector<Loopback>, Body>,
}

impl Default for Proxy {
    fn default() -> Proxy {
        Proxy::new()
    }
}

impl Proxy {
    /// A proxy with an empty connection pool.
    pub fn new() -> Proxy {
        let mut connector = HttpConnector::new_with_resolver(Loopback);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_PORT)
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(MAX_READ)
            .build(connector);
        Proxy { client }
    }

    /// Forwards `request` to `target` and returns the upstream's answer with its body still
    /// streaming. An upgrade the upstream accepts (101) is spliced to the client's connection
    /// once both sides have switched. Nothing listening, or an upstream that fails before its
    /// answer's head, is a 502.
    pub async fn forward(
        &self,
        target: Target,
        mut request: Request<Body>,
    ) -> Result<Response<Body>> {
        let upgrade = upgrade_protocol(request.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let host = parts.headers.get(header::HOST).cloned();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        // 100-continue is this hop's business: the server side answers it when the body is read.
        parts.headers.remove(header::EXPECT);
        if let Some(protocol) = upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol);
        }
        set_forwarded(&mut parts.headers, &target, host);
        let mut path_and_query = target.path_and_query.clone();
        if let Some(credentials) = &target.credentials {
            strip_credentials(&mut parts.headers, &mut path_and_query, credentials);
        }
        parts.uri = Uri::builder()
            .scheme("http")
            .authority(format!("localhost:{}", target.port))
            .path_and_query(path_and_query.as_str())
            .build()
            .map_err(|err| {
                Error::bad_request(format!(
                    "invalid proxied path {:?}: {err}",
                    target.path_and_query
                ))
            })?;
        parts.version = Version::HTTP_11;
        let mut response = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|err| upstream_error(target.port, &err))?;

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(Error::new(
                    ErrorKind::BadGateway,
                    format!(
                        "the server on port {} switched protocols without being asked to",
                        target.port
                    ),
                ));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let port = target.port;
            tokio::spawn(async move {
                let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
                    (Ok(client), Ok(upstream)) => (client, upstream),
                    (Err(err), _) | (_, Err(err)) => {
                        tracing::debug!(port, "proxied upgrade did not complete: {err}");
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(port, "proxied upgraded connection ended: {err}");
                }
            });
            // The 101 goes back as the upstream wrote it (Upgrade, Connection, the WebSocket
            // accept key and protocol); hyper switches the client's connection after sending it.
            return Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()));
        }

        strip_hop_by_hop(response.headers_mut());
        Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
    }
}

/// Resolves every name to the loopback: 127.0.0.1 first, then ::1 (hyper-util tries the second
/// family at once when the first refuses).
#[derive(Debug, Clone, Copy)]
struct Loopback;

impl tower::Service<Name> for Loopback {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Ready<std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _name: Name) -> Self::Future {
        // Port 0 is replaced with the URI's port by the connector.
        ready(Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
        ]
        .into_iter()))
    }
}

/// The protocol of an upgrade request (`Connection: upgrade` plus `Upgrade: …`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Takes toolboxd's token out of a request: its headers, `Authorization` when it is
/// `Bearer TOKEN` (an app's own credentials stay), its cookies, and the query parameter when it
/// holds the token (the rest of the query is kept byte for byte).
fn strip_credentials(
    headers: &mut HeaderMap,
    path_and_query: &mut String,
    credentials: &Credentials,
) {
    for name in credentials.headers {
        headers.remove(*name);
    }
    let authorization: Vec<HeaderValue> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .cloned()
        .collect();
    if !authorization.is_empty() {
        headers.remove(header::AUTHORIZATION);
        for value in authorization {
            let ours = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|text| text.split_once(' '))
                .is_some_and(|(scheme, rest)| {
                    scheme.eq_ignore_ascii_case("bearer") && credentials.token.matches(rest.trim())
                });
            if !ours {
                headers.append(header::AUTHORIZATION, value);
            }
        }
    }
    let cookies: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if !cookies.is_empty() {
        headers.remove(header::COOKIE);
        for value in cookies {
            let Ok(text) = value.to_str() else {
                headers.append(header::COOKIE, value);
                continue;
            };
            let kept: Vec<&str> = text
                .split(';')
                .map(str::trim)
                .filter(|pair| {
                    let name = pair.split_once('=').map_or(*pair, |(name, _)| name).trim();
                    !pair.is_empty() && !credentials.cookies.contains(&name)
                })
                .collect();
            if let (false, Ok(value)) = (kept.is_empty(), HeaderValue::from_str(&kept.join("; "))) {
                headers.append(header::COOKIE, value);
            }
        }
    }
    if let Some((path, query)) = path_and_query.split_once('?') {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                // Name and value decoded as the token check decodes them (form encoding), so
                // `to%6Ben=…` cannot pass the check and still reach the app.
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |text: &str| {
                    percent_encoding::percent_decode_str(&text.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                !(decode(name) == credentials.param && credentials.token.matches(&decode(value)))
            })
            .collect();
        *path_and_query = if kept.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
    }
}

/// Drops the headers that describe one connection rather than the message (RFC 9110 §7.6.1):
/// `Connection` and every header it names, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`,
/// `Upgrade` and `Proxy-*`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// `X-Forwarded-For` gets the client appended; `-Proto` and `-Host` keep what a proxy in front
/// said, else `http` and the request's `Host`; `-Prefix` is what a proxy in front said plus
/// this proxy's own prefix.
fn set_forwarded(headers: &mut HeaderMap, target: &Target, host: Option<HeaderValue>) {
    let for_name = HeaderName::from_static("x-forwarded-for");
    let earlier: Vec<String> = headers
        .get_all(&for_name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::to_string)
        .collect();
    let mut chain = earlier.join(", ");
    if let Some(client) = target.client {
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&client.to_string());
    }
    if let Ok(value) = HeaderValue::from_str(&chain) {
        if !chain.is_empty() {
            headers.insert(for_name, value);
        }
    }
    let proto = HeaderName::from_static("x-forwarded-proto");
    if !headers.contains_key(&proto) {
        headers.insert(proto, HeaderValue::from_static("http"));
    }
    let forwarded_host = HeaderName::from_static("x-forwarded-host");
    if let (false, Some(host)) = (headers.contains_key(&forwarded_host), host) {
        headers.insert(forwarded_host, host);
    }
    let prefix_name = HeaderName::from_static("x-forwarded-prefix");
    let outer = headers
        .get(&prefix_name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .trim_end_matches('/');
    let prefix = format!("{outer}{}", target.prefix);
    if let Ok(value) = HeaderValue::from_str(&prefix) {
        headers.insert(prefix_name, value);
    }
}

/// A 502 saying what went wrong with the upstream.
fn upstream_error(port: u16, err: &hyper_util::client::legacy::Error) -> Error {
    let cause = root_cause(err);
    let message = if err.is_connect() {
        format!("nothing answers on port {port} (127.0.0.1 and ::1 tried): {cause}")
    } else {
        format!("the server on port {port} failed before answering: {cause}")
    };
    Error::new(ErrorKind::BadGateway, message)
}

/// The innermost cause of an error chain, lowercased, without Rust's "(os error N)".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_the_rest_kept() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Hop"),
            ("connection", "x-other-hop"),
            ("x-hop", "1"),
            ("x-other-hop", "2"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-end-to-end", "3"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(|name| name.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-type", "x-end-to-end"]);
    }

    #[test]
    fn upgrades_need_both_headers() {
        let ws = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_protocol(&ws).unwrap(), "websocket");
        assert!(upgrade_protocol(&headers(&[("upgrade", "websocket")])).is_none());
        assert!(upgrade_protocol(&headers(&[("connection", "upgrade")])).is_none());
    }

    #[test]
    fn credentials_are_stripped_and_the_rest_kept() {
        let credentials = Credentials {
            token: Secret::new("tok"),
            headers: &["x-toolboxd-token"],
            cookies: &["toolboxd_token"],
            param: "token",
        };
        let mut map = headers(&[
            ("x-toolboxd-token", "tok"),
            ("authorization", "Bearer tok"),
            ("cookie", "a=1; toolboxd_token=tok; b=2"),
            ("cookie", "toolboxd_token=tok"),
        ]);
        let mut path = "/p?x=1&token=tok&token=other&y".to_string();
        strip_credentials(&mut map, &mut path, &credentials);
        assert_eq!(path, "/p?x=1&token=other&y");
        assert!(map.get("x-toolboxd-token").is_none());
        assert!(map.get("authorization").is_none());
        let cookies: Vec<_> = map.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);

        let mut map = headers(&[("authorization", "Bearer app-own")]);
        let mut path = "/?token=tok".to_string();
        strip_credentials(&mut map, &mut path, &credentials);
        assert_eq!(path, "/");
        assert_eq!(map["authorization"], "Bearer app-own");

        // An encoded name is the same parameter to the token check: stripped too.
        let mut path = "/?to%6Ben=tok&a=1".to_string();
        strip_credentials(&mut HeaderMap::new(), &mut path, &credentials);
        assert_eq!(path, "/?a=1");
    }

    #[test]
    fn forwarded_headers_extend_what_a_proxy_in_front_said() {
        let target = Target {
            port: 3000,
            path_and_query: "/".into(),
            prefix: "/proxy/3000".into(),
            client: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            credentials: None,
        };
        let mut plain = HeaderMap::new();
        set_forwarded(
            &mut plain,
            &target,
            Some(HeaderValue::from_static("h:2280")),
        );
        assert_eq!(plain["x-forwarded-for"], "::1");
        assert_eq!(plain["x-forwarded-proto"], "http");
        assert_eq!(plain["x-forwarded-host"], "h:2280");
        assert_eq!(plain["x-forwarded-prefix"], "/proxy/3000");

        let mut behind = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "preview.example"),
            ("x-forwarded-prefix", "/toolbox/sb/"),
        ]);
        set_forwarded(
            &mut behind,
            &target,
            Some(HeaderValue::from_static("h:2280")),
        );
        assert_eq!(behind["x-forwarded-for"], "10.0.0.1, 10.0.0.2, ::1");
        assert_eq!(behind["x-forwarded-proto"], "https");
        assert_eq!(behind["x-forwarded-host"], "preview.example");
        assert_eq!(behind["x-forwarded-prefix"], "/toolbox/sb/proxy/3000");
    }
}
