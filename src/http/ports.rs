//! `GET /port` (listening TCP ports) and `GET /port/{port}/in-use`.

use axum::extract::State;
use axum::http::Uri;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::blocking;
use crate::error::Result;
use crate::ports::parse_port;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/port", get(list_ports))
        .route("/port/{port}/in-use", get(port_in_use))
}

/// `{ports}`
#[derive(Debug, Serialize, ToSchema)]
pub struct PortList {
    /// Ports a TCP socket listens on (IPv4 or IPv6, any address), ascending, once each.
    pub ports: Vec<u16>,
}

/// `{isInUse}`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IsPortInUse {
    /// Whether a TCP socket listens on the port.
    pub is_in_use: bool,
}

/// Listening TCP ports, from `/proc/net/tcp` and `/proc/net/tcp6` at the time of the call
/// (toolboxd's own and loopback-only listeners included).
#[utoipa::path(get, path = "/port", tag = "ports",
    responses((status = 200, body = PortList)))]
pub async fn list_ports(State(app): State<AppState>) -> Result<Json<PortList>> {
    let ports = app.ports.clone();
    let ports = blocking(move || ports.listening()).await?;
    Ok(Json(PortList { ports }))
}

/// Whether a TCP socket listens on `port` (1–65535; Daytona accepts only 3000–9999).
#[utoipa::path(get, path = "/port/{port}/in-use", tag = "ports",
    params(("port" = u16, Path, minimum = 1, maximum = 65535, description = "1-65535")),
    responses((status = 200, body = IsPortInUse), (status = 400, body = super::error::ErrorBody)))]
pub async fn port_in_use(State(app): State<AppState>, uri: Uri) -> Result<Json<IsPortInUse>> {
    // The raw segment: a percent-encoded or non-UTF-8 one is a 400 like any other bad port.
    let segment = uri
        .path()
        .strip_prefix("/port/")
        .and_then(|rest| rest.strip_suffix("/in-use"))
        .unwrap_or("");
    let port = parse_port(segment)?;
    let ports = app.ports.clone();
    let is_in_use = blocking(move || ports.in_use(port)).await?;
    Ok(Json(IsPortInUse { is_in_use }))
}
