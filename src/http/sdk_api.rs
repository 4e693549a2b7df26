//! Local SDK mode over HTTP: the control-plane calls the Daytona SDKs make (`/api/sandbox…`)
//! for the one sandbox this toolboxd is, and `/toolbox/{sandboxId}/…`, which strips the id and
//! hands the request to the toolbox router in-process (WebSocket upgrades included).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use super::error::{no_route, render_errors, wrong_method};
use super::extract::{self, Query};
use super::info::VERSION;
use super::wire;
use crate::config::Secret;
use crate::error::{Error, ErrorKind, Result};
use crate::sdk_api::{CreateSandbox, Sandbox, SandboxState, SandboxStore, SigningKey};

#[derive(Clone)]
struct SdkState {
    store: SandboxStore,
    signing_key: SigningKey,
    auth: Arc<Auth>,
    toolbox: Router,
}

/// What the guard accepts: the API key (when configured) on every route, the preview token on
/// preview routes (`/toolbox/{id}/proxy/…`).
/// Both are compared in constant time.
struct Auth {
    api_key: Option<Secret>,
    /// Handed out with every preview link, fixed for the daemon's life (like a sandbox's).
    preview_token: Secret,
}

/// The prefix a stripping proxy reports (here: `/toolbox/{sandboxId}`).
const FORWARDED_PREFIX: &str = "x-forwarded-prefix";

/// The header the SDKs document for a preview link's token.
const PREVIEW_TOKEN_HEADER: &str = "x-daytona-preview-token";

/// The control plane plus the toolbox proxy, in front of `toolbox`. With `api_key`, every request
/// must carry `Authorization: Bearer api_key` (a signed file URL carries its own authorization,
/// a preview link its token).
pub fn router(
    store: SandboxStore,
    api_key: Option<String>,
    key: SigningKey,
    toolbox: Router,
    metrics: Arc<crate::metrics::Metrics>,
) -> Router {
    let auth = Arc::new(Auth {
        api_key: api_key.map(Secret::new),
        preview_token: Secret::new(uuid::Uuid::new_v4().simple().to_string()),
    });
    Router::new()
        .route("/api/sandbox", post(create).get(list))
        .route("/api/sandbox/{id}", get(get_one).delete(delete))
        .route("/api/sandbox/{id}/start", post(start))
        .route("/api/sandbox/{id}/stop", post(stop))
        .route("/api/sandbox/{id}/labels", put(set_labels))
        .route(
            "/api/sandbox/{id}/toolbox-proxy-url",
            get(toolbox_proxy_url),
        )
        .route(
            "/api/sandbox/{id}/ports/{port}/preview-url",
            get(preview_url),
        )
        .route("/api/sandbox/{id}/signing-key", get(signing_key))
        .route(
            "/api/sandbox/{id}/signing-key/rotate",
            post(rotate_signing_key),
        )
        .route("/toolbox/{*rest}", any(proxy))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(SdkState {
            store,
            signing_key: key,
            auth: auth.clone(),
            toolbox,
        })
        .layer(middleware::from_fn_with_state(auth, guard))
        .layer(middleware::from_fn(render_errors))
        .layer(middleware::from_fn_with_state(
            Some(super::observe::Counted {
                metrics,
                listener: "sdk_api",
            }),
            super::observe::observe,
        ))
}

/// Local SDK mode serves a developer's files: it only answers requests addressed to this
/// machine by IP or `localhost` (DNS rebinding), refuses browsers on foreign origins (CSRF), and
/// checks the bearer key (or a preview link's token) when one is configured.
async fn guard(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Result<Response> {
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        if !is_local_host(host) && !is_ip_host(host) {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("host {host:?} is not served: use an IP address or localhost"),
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(origin);
        if !is_local_host(origin_host) {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("requests from web origin {origin:?} are refused"),
            ));
        }
    }
    if let Some(key) = auth.api_key.as_ref() {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| super::auth::bearer_token(v.as_bytes()))
            .is_some_and(|given| key.matches(given));
        let signed_url = request.uri().path().starts_with("/toolbox/")
            && request
                .uri()
                .query()
                .is_some_and(|q| q.contains("signature="));
        let preview = is_preview_path(request.uri().path())
            && headers
                .get(PREVIEW_TOKEN_HEADER)
                .and_then(|token| token.to_str().ok())
                .is_some_and(|token| auth.preview_token.matches(token));
        if !bearer && !signed_url && !preview {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                "missing or wrong API key: send Authorization: Bearer <--sdk-api-key, else \
                 --token> (or a preview link's X-Daytona-Preview-Token)",
            ));
        }
    }
    Ok(next.run(request).await)
}

/// `/toolbox/{id}/proxy/…`: a preview link.
fn is_preview_path(path: &str) -> bool {
    let mut segments = path.split('/').skip(1);
    segments.next() == Some("toolbox") && segments.nth(1) == Some("proxy")
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
pub(crate) fn is_local_host(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Any IP literal, with or without a port (a LAN address is not a rebinding risk).
pub(crate) fn is_ip_host(host: &str) -> bool {
    host_name(host).parse::<std::net::IpAddr>().is_ok()
}

fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map(|(name, _)| name).unwrap_or(host)
}

/// The parts of `CreateSandbox` that mean something here; the rest is accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateSandboxBody {
    name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    env: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    labels: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LabelsBody {
    labels: BTreeMap<String, String>,
}

/// The `Sandbox` JSON with every field the SDKs require.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SandboxDto {
    id: String,
    organization_id: String,
    name: String,
    user: String,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    public: bool,
    network_block_all: bool,
    kvm: bool,
    target: String,
    cpu: u32,
    gpu: u32,
    memory: u32,
    disk: u32,
    state: String,
    desired_state: String,
    toolbox_proxy_url: String,
    daemon_version: String,
    created_at: String,
    updated_at: String,
    auto_stop_interval: u32,
    auto_archive_interval: u32,
    auto_delete_interval: i32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    items: Vec<SandboxDto>,
    next_cursor: Option<String>,
    total: usize,
    page: u32,
    total_pages: u32,
}

#[derive(Debug, Serialize)]
struct UrlResponse {
    url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PreviewResponse {
    sandbox_id: String,
    url: String,
    token: String,
}

#[derive(Debug, Serialize)]
struct LabelsResponse {
    labels: BTreeMap<String, String>,
}

async fn create(
    State(state): State<SdkState>,
    headers: HeaderMap,
    extract::Json(body): extract::Json<CreateSandboxBody>,
) -> Json<SandboxDto> {
    let sandbox = state.store.create(CreateSandbox {
        name: body.name,
        labels: body.labels.unwrap_or_default(),
        env: body.env.unwrap_or_default(),
    });
    Json(to_dto(&sandbox, &headers))
}

async fn list(
    State(state): State<SdkState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListResponse>> {
    let labels: BTreeMap<String, String> = match query.labels.as_deref().filter(|l| !l.is_empty()) {
        Some(text) => serde_json::from_str(text).map_err(|err| {
            Error::bad_request(format!("labels must be a JSON object of strings: {err}"))
        })?,
        None => BTreeMap::new(),
    };
    let items: Vec<SandboxDto> = state
        .store
        .list(&labels)
        .iter()
        .map(|s| to_dto(s, &headers))
        .collect();
    Ok(Json(ListResponse {
        total: items.len(),
        items,
        next_cursor: None,
        page: 1,
        total_pages: 1,
    }))
}

async fn get_one(
    State(state): State<SdkState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SandboxDto>> {
    Ok(Json(to_dto(&state.store.get(&id)?, &headers)))
}

async fn delete(
    State(state): State<SdkState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SandboxDto>> {
    Ok(Json(to_dto(
        &state.store.set_state(&id, SandboxState::Destroyed)?,
        &headers,
    )))
}

async fn start(
    State(state): State<SdkState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SandboxDto>> {
    Ok(Json(to_dto(
        &state.store.set_state(&id, SandboxState::Started)?,
        &headers,
    )))
}

async fn stop(
    State(state): State<SdkState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SandboxDto>> {
    Ok(Json(to_dto(
        &state.store.set_state(&id, SandboxState::Stopped)?,
        &headers,
    )))
}

async fn set_labels(
    State(state): State<SdkState>,
    Path(id): Path<String>,
    extract::Json(body): extract::Json<LabelsBody>,
) -> Result<Json<LabelsResponse>> {
    let sandbox = state.store.set_labels(&id, body.labels)?;
    Ok(Json(LabelsResponse {
        labels: sandbox.labels,
    }))
}

async fn toolbox_proxy_url(
    State(state): State<SdkState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<UrlResponse>> {
    state.store.get(&id)?;
    Ok(Json(UrlResponse {
        url: toolbox_url(&headers),
    }))
}

async fn preview_url(
    State(state): State<SdkState>,
    headers: HeaderMap,
    Path((id, port)): Path<(String, String)>,
) -> Result<Json<PreviewResponse>> {
    let sandbox = state.store.get(&id)?;
    let port: u16 = port
        .parse()
        .map_err(|_| Error::bad_request(format!("invalid port {port:?}: expected 1-65535")))?;
    Ok(Json(PreviewResponse {
        url: format!("{}/{}/proxy/{port}", toolbox_url(&headers), sandbox.id),
        sandbox_id: sandbox.id,
        token: state.auth.preview_token.expose().to_string(),
    }))
}

/// The key the SDKs sign file URLs with (a bare JSON string).
async fn signing_key(
    State(state): State<SdkState>,
    Path(id): Path<String>,
) -> Result<Json<String>> {
    state.store.get(&id)?;
    Ok(Json(state.signing_key.current()))
}

/// A new signing key; URLs signed with the old one answer 401.
async fn rotate_signing_key(
    State(state): State<SdkState>,
    Path(id): Path<String>,
) -> Result<Json<String>> {
    state.store.get(&id)?;
    Ok(Json(state.signing_key.rotate()))
}

/// `/toolbox/{sandboxId}/{route…}` → `/{route…}` on the toolbox router, raw encoding kept, with
/// `/toolbox/{sandboxId}` added to `X-Forwarded-Prefix` (the preview proxy passes it on).
/// Signed file URLs (`signature=`) are verified against the signing key first. A preview
/// request loses the preview token and this API key before it reaches the app.
async fn proxy(State(state): State<SdkState>, mut request: Request) -> Result<Response> {
    let raw_path = request.uri().path().to_string();
    let rest = raw_path.strip_prefix("/toolbox/").unwrap_or("");
    let (id, route) = match rest.find('/') {
        Some(idx) => (&rest[..idx], &rest[idx..]),
        None => (rest, "/"),
    };
    let sandbox_id = state.store.id();
    if id != sandbox_id {
        return Err(Error::not_found(format!(
            "sandbox {id} not found (this toolboxd is {sandbox_id})"
        )));
    }
    crate::sdk_api::verify_query(
        &state.signing_key,
        request.method().as_str(),
        route,
        request.uri().query(),
    )?;
    let rewritten = match request.uri().query() {
        Some(query) => format!("{route}?{query}"),
        None => route.to_string(),
    };
    *request.uri_mut() = rewritten
        .parse::<Uri>()
        .map_err(|err| Error::bad_request(format!("invalid toolbox path {rewritten:?}: {err}")))?;
    let headers = request.headers_mut();
    let outer = headers
        .get(FORWARDED_PREFIX)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_end_matches('/');
    if let Ok(prefix) = HeaderValue::from_str(&format!("{outer}/toolbox/{id}")) {
        headers.insert(FORWARDED_PREFIX, prefix);
    }
    if route.starts_with("/proxy/") {
        headers.remove(PREVIEW_TOKEN_HEADER);
        if let Some(key) = state.auth.api_key.as_ref() {
            let ours = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| super::auth::bearer_token(v.as_bytes()))
                .is_some_and(|given| key.matches(given));
            if ours {
                headers.remove(header::AUTHORIZATION);
            }
        }
    }
    // The guard checked this request (API key, signed URL or preview token): the toolbox
    // router's token check (`--token`) lets it in.
    request.extensions_mut().insert(super::auth::Authenticated);
    let response = state
        .toolbox
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    Ok(response)
}

fn toolbox_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/toolbox")
}

fn to_dto(sandbox: &Sandbox, headers: &HeaderMap) -> SandboxDto {
    SandboxDto {
        id: sandbox.id.clone(),
        organization_id: "local".to_string(),
        name: sandbox.name.clone(),
        user: sandbox.user.clone(),
        env: sandbox.env.clone(),
        labels: sandbox.labels.clone(),
        public: false,
        network_block_all: false,
        kvm: false,
        target: "local".to_string(),
        cpu: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        gpu: 0,
        memory: 1,
        disk: 1,
        state: sandbox.state.as_str().to_string(),
        desired_state: sandbox.state.as_str().to_string(),
        toolbox_proxy_url: toolbox_url(headers),
        daemon_version: VERSION.to_string(),
        created_at: wire::rfc3339_nano(sandbox.created_at),
        updated_at: wire::rfc3339_nano(sandbox.updated_at),
        auto_stop_interval: 0,
        auto_archive_interval: 0,
        auto_delete_interval: -1,
    }
}
