//! Token auth (`--token`): one middleware in front of every route of a listener (the toolbox
//! API, its WebSockets, the preview proxy and `/mcp`; the web terminal's page, files and socket).
//!
//! A request is let in when it carries the token as `Authorization: Bearer TOKEN`, as
//! `X-Toolboxd-Token: TOKEN`, in the listener's cookie, or as a `token` query parameter (for a
//! browser's first visit: the answer then sets the cookie, HttpOnly and SameSite=Strict, so the
//! page's own requests and sockets carry it). Every comparison is in constant time. A request
//! local SDK mode's control plane already authenticated (its API key, a signed file URL, a
//! preview link's token) carries `Authenticated` and is let in. With `--signing-key`, a signed
//! file URL (`expires` + `signature`, as the SDKs make them) stands in for the token on
//! `GET /files/download` and `POST /files/upload-v2`; a `signature` that does not verify is a 401
//! even when the token is there too. Without a token configured,
//! everything is let in. The paths in `Guard::open` (`GET /version`, `GET /healthz`) are always
//! open, for probes. Anything else answers 401 `UNAUTHORIZED` with the wire error body.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::Secret;
use crate::error::{Error, ErrorKind, Result};
use crate::sdk_api::{verify_query, SigningKey};

/// The header that carries the token where `Authorization` is taken (e.g. by a proxied app).
pub const TOKEN_HEADER: &str = "x-toolboxd-token";
/// The query parameter a browser may carry the token in once.
pub const TOKEN_PARAM: &str = "token";
/// The toolbox listener's cookie.
pub const TOOLBOX_COOKIE: &str = "toolboxd_token";
/// The web terminal listener's cookie (browsers share cookies across the ports of a host, so
/// each listener has its own name).
pub const TERMINAL_COOKIE: &str = "toolboxd_terminal_token";

/// Marks a request that local SDK mode's control plane authenticated before handing it to the
/// toolbox router in-process. Only code can set it: a client cannot.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

/// What one listener requires.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The token; `None` lets everything in.
    pub token: Option<Secret>,
    /// This listener's cookie name.
    pub cookie: &'static str,
    /// Paths a `GET`/`HEAD` reaches without the token.
    pub open: &'static [&'static str],
    /// The key of signed file URLs (`--signing-key`): a valid one stands in for the token on
    /// the routes that can be signed.
    pub signing: Option<SigningKey>,
}

impl Guard {
    /// The toolbox listener's guard: `/version` and `/healthz` stay open.
    pub fn toolbox(token: Option<Secret>, signing: Option<SigningKey>) -> Arc<Guard> {
        Arc::new(Guard {
            token,
            cookie: TOOLBOX_COOKIE,
            open: &["/version", "/healthz"],
            signing,
        })
    }

    /// The web terminal listener's guard: nothing is open.
    pub fn terminal(token: Option<Secret>) -> Arc<Guard> {
        Arc::new(Guard {
            token,
            cookie: TERMINAL_COOKIE,
            open: &[],
            signing: None,
        })
    }
}

/// How a request showed the token.
#[derive(Debug, PartialEq, Eq)]
enum Shown {
    /// In a header or the cookie.
    Carried,
    /// In the `token` query parameter: the answer sets the cookie.
    InQuery,
}

/// Middleware: lets a request in when it shows the token (see the module docs), else 401.
pub async fn require(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Result<Response> {
    let Some(token) = guard.token.as_ref() else {
        return Ok(next.run(request).await);
    };
    let open = (request.method() == Method::GET || request.method() == Method::HEAD)
        && guard.open.contains(&request.uri().path());
    if open || request.extensions().get::<Authenticated>().is_some() {
        return Ok(next.run(request).await);
    }
    if let Some(key) = &guard.signing {
        let (method, path, query) = (
            request.method().as_str(),
            request.uri().path(),
            request.uri().query(),
        );
        if verify_query(key, method, path, query)? {
            return Ok(next.run(request).await);
        }
    }
    match shown(
        token,
        guard.cookie,
        request.headers(),
        request.uri().query(),
    ) {
        Some(Shown::Carried) => Ok(next.run(request).await),
        Some(Shown::InQuery) => {
            let mut response = next.run(request).await;
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                guard.cookie,
                token.expose()
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        None => Err(Error::new(
            ErrorKind::Unauthorized,
            "missing or wrong token: send Authorization: Bearer <token> or X-Toolboxd-Token",
        )),
    }
}

/// Whether the request shows `token`, and how.
fn shown(token: &Secret, cookie: &str, headers: &HeaderMap, query: Option<&str>) -> Option<Shown> {
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| bearer_token(value.as_bytes()));
    let header_tokens = headers
        .get_all(TOKEN_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok());
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| cookie_values(value, cookie));
    // Every candidate is compared (no short cut), so the time does not tell which one matched.
    let carried = bearer
        .chain(header_tokens)
        .chain(cookies)
        .fold(false, |found, candidate| token.matches(candidate) | found);
    if carried {
        return Some(Shown::Carried);
    }
    let pairs: Vec<(String, String)> = query
        .and_then(|query| serde_urlencoded::from_str(query).ok())
        .unwrap_or_default();
    let in_query = pairs
        .iter()
        .filter(|(name, _)| name == TOKEN_PARAM)
        .fold(false, |found, (_, value)| token.matches(value) | found);
    in_query.then_some(Shown::InQuery)
}

/// The credentials of `Authorization: Bearer X` (the scheme is case-insensitive).
pub fn bearer_token(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The values of cookie `name` in a `Cookie` header.
pub fn cookie_values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.split(';').filter_map(move |pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// Documents token auth in the OpenAPI document: the two ways to send the token as security
/// schemes (either one, or none when no token is configured), and a 401 on every operation but
/// the open ones.
pub struct Documented;

impl utoipa::Modify for Documented {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "token_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Toolboxd-Token"))),
        );
        // Alternatives: the bearer header, X-Toolboxd-Token, or nothing (no --token configured).
        openapi.security = Some(vec![
            SecurityRequirement::new("token", Vec::<String>::new()),
            SecurityRequirement::new("token_header", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
        let unauthorized = ResponseBuilder::new()
            .description(
                "--token is set and the request carries no valid token (code UNAUTHORIZED)",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let open = ["/version", "/healthz"].contains(&path.as_str());
            let operations = [
                (&mut item.get, open),
                (&mut item.put, false),
                (&mut item.post, false),
                (&mut item.delete, false),
                (&mut item.options, false),
                (&mut item.head, open),
                (&mut item.patch, false),
                (&mut item.trace, false),
            ];
            for (operation, open) in operations {
                let Some(operation) = operation else { continue };
                if open {
                    operation.security = Some(vec![SecurityRequirement::default()]);
                } else {
                    operation
                        .responses
                        .responses
                        .entry("401".to_string())
                        .or_insert_with(|| unauthorized.clone().into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_carrier_is_read() {
        let token = Secret::new("s3cret");
        let mut headers = HeaderMap::new();
        assert_eq!(shown(&token, TOOLBOX_COOKIE, &headers, None), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cret"),
        );
        assert_eq!(
            shown(&token, TOOLBOX_COOKIE, &headers, None),
            Some(Shown::Carried)
        );
        headers.clear();
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("s3cret"));
        assert_eq!(
            shown(&token, TOOLBOX_COOKIE, &headers, None),
            Some(Shown::Carried)
        );
        headers.clear();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; toolboxd_token=s3cret"),
        );
        assert_eq!(
            shown(&token, TOOLBOX_COOKIE, &headers, None),
            Some(Shown::Carried)
        );
        assert_eq!(shown(&token, TERMINAL_COOKIE, &headers, None), None);
        headers.clear();
        assert_eq!(
            shown(&token, TOOLBOX_COOKIE, &headers, Some("a=1&token=s3cret")),
            Some(Shown::InQuery)
        );
        assert_eq!(
            shown(&token, TOOLBOX_COOKIE, &headers, Some("token=s3cre")),
            None
        );
    }
}
