//! The preview proxy, `ANY /proxy/{port}/{*path}`, against an upstream app run by the test
//! (axum on its own runtime, bound to 127.0.0.1 or ::1): bodies both ways, raw paths, headers,
//! SSE as it is produced, WebSocket echo, 502 when nothing listens, 1 GiB each way with the
//! daemon's memory flat, and preview links in local SDK mode.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::*;

/// An HTTP app on the loopback, served from a runtime of its own; stops when dropped.
struct Upstream {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Clone)]
struct UpstreamState {
    release: Arc<tokio::sync::Semaphore>,
}

impl Upstream {
    /// Serves on `addr` (`127.0.0.1:0`, `[::1]:0`).
    fn start(addr: &str) -> Upstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let app = Router::new()
            .route("/big", get(big))
            .route("/sink", post(sink))
            .route("/sse", get(sse))
            .route("/release", get(release_sse))
            .route("/ws", get(ws_echo))
            .route("/redirect", get(redirect))
            .route("/hop", get(hop_headers))
            .fallback(any(echo))
            .with_state(UpstreamState { release });
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Upstream {
            port,
            _runtime: runtime,
        }
    }
}

/// Answers what it received: method, raw URI, every header, the body.
async fn echo(request: Request) -> axum::Json<Value> {
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let mut headers = serde_json::Map::new();
    for (name, value) in request.headers() {
        let list = headers
            .entry(name.as_str().to_string())
            .or_insert_with(|| json!([]));
        list.as_array_mut()
            .unwrap()
            .push(json!(String::from_utf8_lossy(value.as_bytes())));
    }
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    axum::Json(json!({
        "method": method,
        "uri": uri,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

/// `n` bytes of a repeating pattern, in 64 KiB chunks produced on demand.
async fn big(Query(query): Query<std::collections::HashMap<String, u64>>) -> Response {
    let total = query["n"];
    let chunk = Bytes::from((0..65536u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let size = (total - sent).min(chunk.len() as u64) as usize;
            Some((
                Ok::<_, std::io::Error>(chunk.slice(..size)),
                sent + size as u64,
            ))
        }
    });
    Response::builder()
        .header("content-type", "application/octet-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Reads the whole body as it streams; answers `{bytes}`.
async fn sink(body: Body) -> axum::Json<Value> {
    let mut stream = body.into_data_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len() as u64;
    }
    axum::Json(json!({ "bytes": bytes }))
}

/// Server-sent events: `one` at once, `two` only after `/release` was called.
async fn sse(State(state): State<UpstreamState>) -> Response {
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let release = state.release.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(Bytes::from("data: one\n\n")), 1)),
                1 => {
                    release.acquire().await.unwrap().forget();
                    Some((Ok(Bytes::from("data: two\n\n")), 2))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn release_sse(State(state): State<UpstreamState>) -> &'static str {
    state.release.add_permits(1);
    "released"
}

/// Echoes every text and binary message; selects the `chat` subprotocol when offered.
async fn ws_echo(upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .protocols(["chat"])
        .on_upgrade(|mut socket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                let reply = match message {
                    WsMessage::Text(text) => WsMessage::Text(text),
                    WsMessage::Binary(data) => WsMessage::Binary(data),
                    // The close reply goes out on the next receive, which then ends the loop.
                    _ => continue,
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
        })
}

async fn redirect() -> Response {
    (StatusCode::FOUND, [("location", "/elsewhere?a=%2F")]).into_response()
}

/// A response carrying hop-by-hop headers (and one it names in `Connection`).
async fn hop_headers() -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("connection", "x-resp-hop".parse().unwrap());
    headers.insert("x-resp-hop", "1".parse().unwrap());
    headers.insert("keep-alive", "timeout=5".parse().unwrap());
    headers.insert("proxy-authenticate", "Basic".parse().unwrap());
    headers.insert("x-end-to-end", "kept".parse().unwrap());
    (headers, "hop").into_response()
}

/// The daemon's port.
fn daemon_port(daemon: &Toolboxd) -> u16 {
    daemon.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A raw HTTP/1.1 exchange (`Connection: close`), so the request line and headers are exactly
/// `head`; returns the status, the lower-cased headers and the (de-chunked) body.
fn raw_request(port: u16, head: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head_text = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head_text.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = String::from_utf8_lossy(&body[..end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
}

/// A port nothing listens on, on either loopback address.
fn closed_port() -> u16 {
    loop {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("::1", port)).is_ok() {
            return port;
        }
    }
}

fn no_redirects() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

#[test]
fn get_and_post_bodies_and_forwarding_headers() {
    let daemon = Toolboxd::start();
    let app = Upstream::start("127.0.0.1:0");
    let got = json(daemon.get(&format!("/proxy/{}/hello?x=1", app.port)), 200);
    assert_eq!(got["method"], "GET");
    assert_eq!(got["uri"], "/hello?x=1");
    let headers = &got["headers"];
    assert_eq!(headers["host"], json!([format!("localhost:{}", app.port)]));
    assert_eq!(headers["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], json!(["http"]));
    assert_eq!(
        headers["x-forwarded-host"],
        json!([daemon.base.trim_start_matches("http://")])
    );
    assert_eq!(
        headers["x-forwarded-prefix"],
        json!([format!("/proxy/{}", app.port)])
    );

    let posted = daemon
        .client
        .post(daemon.url(&format!("/proxy/{}/submit", app.port)))
        .header("content-type", "text/plain")
        .body("hello body")
        .send()
        .unwrap();
    let posted = json(posted, 200);
    assert_eq!(posted["method"], "POST");
    assert_eq!(posted["body"], "hello body");
    assert_eq!(posted["headers"]["content-type"], json!(["text/plain"]));

    // The bare port and the port with a slash both reach the app's root.
    for path in [
        format!("/proxy/{}", app.port),
        format!("/proxy/{}/", app.port),
    ] {
        assert_eq!(json(daemon.get(&path), 200)["uri"], "/");
    }
    let deleted = daemon
        .client
        .delete(daemon.url(&format!("/proxy/{}/thing/1", app.port)))
        .send()
        .unwrap();
    assert_eq!(json(deleted, 200)["method"], "DELETE");
}

#[test]
fn raw_path_and_query_reach_the_app_byte_for_byte() {
    let daemon = Toolboxd::start();
    let app = Upstream::start("127.0.0.1:0");
    let port = daemon_port(&daemon);
    for target in [
        "/a%2Fb%20c?x=%26&y=+",
        "/a/../b//c?",
        "/%E2%82%AC/%7e?q=%zz&&=",
    ] {
        let (status, _, body) = raw_request(
            port,
            &format!(
                "GET /proxy/{}{target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                app.port
            ),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got["uri"], target);
    }
}

#[test]
fn hop_by_hop_headers_are_dropped_both_ways() {
    let daemon = Toolboxd::start();
    let app = Upstream::start("127.0.0.1:0");
    let (status, _, body) = raw_request(
        daemon_port(&daemon),
        &format!(
            "GET /proxy/{}/h HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close, X-Hop\r\n\
             X-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
             Proxy-Authorization: Basic eDp5\r\nX-Forwarded-For: 10.1.2.3\r\n\
             X-Forwarded-Proto: https\r\nX-Keep: yes\r\n\r\n",
            app.port
        ),
    );
    assert_eq!(status, 200);
    let got: Value = serde_json::from_slice(&body).unwrap();
    let headers = got["headers"].as_object().unwrap();
    for dropped in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
        assert!(!headers.contains_key(dropped), "{dropped} forwarded: {got}");
    }
    // The client's `Connection` is about its own connection, not the proxy's to the app.
    assert!(!headers.contains_key("connection"), "{got}");
    assert_eq!(headers["x-keep"], json!(["yes"]));
    assert_eq!(headers["x-forwarded-for"], json!(["10.1.2.3, 127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], json!(["https"]));

    let response = daemon
        .client
        .get(daemon.url(&format!("/proxy/{}/hop", app.port)))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert!(headers.get("x-resp-hop").is_none(), "{headers:?}");
    assert!(headers.get("keep-alive").is_none(), "{headers:?}");
    assert!(headers.get("proxy-authenticate").is_none(), "{headers:?}");
    assert_eq!(headers["x-end-to-end"], "kept");
    assert_eq!(response.text().unwrap(), "hop");
}

#[test]
fn redirects_pass_through_and_a_browser_gets_the_slash() {
    let daemon = Toolboxd::start();
    let app = Upstream::start("127.0.0.1:0");
    let client = no_redirects();
    let redirected = client
        .get(daemon.url(&format!("/proxy/{}/redirect", app.port)))
        .send()
        .unwrap();
    assert_eq!(redirected.status(), 302);
    assert_eq!(redirected.headers()["location"], "/elsewhere?a=%2F");

    // A browser navigating to the bare prefix is sent to `{port}/` (relative links then
    // resolve under the prefix); a script or an SDK is forwarded to the app's root instead.
    let navigation = client
        .get(daemon.url(&format!("/proxy/{}?tab=2", app.port)))
        .header("sec-fetch-mode", "navigate")
        .send()
        .unwrap();
    assert_eq!(navigation.status(), 307);
    assert_eq!(
        navigation.headers()["location"],
        format!("{}/?tab=2", app.port).as_str()
    );
    let fetched = client
        .get(daemon.url(&format!("/proxy/{}?tab=2", app.port)))
        .header("sec-fetch-mode", "cors")
        .send()
        .unwrap();
    assert_eq!(json(fetched, 200)["uri"], "/?tab=2");
}

#[test]
fn server_sent_events_arrive_as_they_are_produced() {
    let daemon = Toolboxd::start();
    let app = Upstream::start("127.0.0.1:0");
    let mut response = daemon
        .client
        .get(daemon.url(&format!("/proxy/{}/sse", app.port)))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // The app sends `two` only once released, and it is released only after `one` arrived
    // here: a proxy that buffered the stream would never deliver `one` (the client's 120 s
    // timeout would fail the test).
    let mut seen = Vec::new();
    let mut buffer = [0u8; 256];
    while !seen.ends_with(b"data: one\n\n") {
        let n = response.read(&mut buffer).unwrap();
        assert!(
            n > 0,
            "stream ended early: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(seen, b"data: one\n\n");
    let released = reqwest::blocking::get(format!("http://127.0.0.1:{}/release", app.port))
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(released, "released");
    response.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, b"data: one\n\ndata: two\n\n");
}

#[test]
fn websocket_echo_through_the_proxy() {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::Message;
    let daemon = Toolboxd::start();
    let app = Upstream::start("127.0.0.1:0");
    let url = format!(
        "{}/proxy/{}/ws",
        daemon.base.replacen("http://", "ws://", 1),
        app.port
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat".parse().unwrap());
    let (mut socket, response) = tungstenite::connect(request).expect("websocket handshake");
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    socket
        .send(Message::text("hello through the proxy"))
        .unwrap();
    assert_eq!(
        socket.read().unwrap(),
        Message::text("hello through the proxy")
    );
    let payload: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    socket.send(Message::binary(payload.clone())).unwrap();
    assert_eq!(socket.read().unwrap(), Message::binary(payload));
    socket.close(None).unwrap();
    loop {
        match socket.read() {
            Ok(Message::Close(_)) | Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                break
            }
            Err(err) => panic!("websocket error: {err}"),
        }
    }
    // The daemon still serves plain requests afterwards.
    assert_eq!(daemon.get("/version").status(), 200);
}

#[test]
fn nothing_listening_is_a_502_and_bad_ports_are_400() {
    let daemon = Toolboxd::start();
    let port = closed_port();
    let body = assert_error(daemon.get(&format!("/proxy/{port}/x")), 502, "BAD_GATEWAY");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{body}"
    );
    let refused_post = daemon
        .client
        .post(daemon.url(&format!("/proxy/{port}/")))
        .body("data")
        .send()
        .unwrap();
    assert_error(refused_post, 502, "BAD_GATEWAY");
    for bad in [
        "/proxy/0/x",
        "/proxy/65536/",
        "/proxy/abc",
        "/proxy/-1/x",
        "/proxy/%33%30/",
    ] {
        assert_error(daemon.get(bad), 400, "BAD_REQUEST");
    }
}

#[test]
fn apps_bound_to_127_0_0_1_or_to_ipv6_loopback_alone_are_reached() {
    let daemon = Toolboxd::start();
    let v4 = Upstream::start("127.0.0.1:0");
    assert_eq!(
        json(daemon.get(&format!("/proxy/{}/v4", v4.port)), 200)["uri"],
        "/v4"
    );
    let v6 = Upstream::start("[::1]:0");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", v6.port)).is_err(),
        "the IPv6 app's port must be closed on 127.0.0.1 for this test"
    );
    for _ in 0..3 {
        assert_eq!(
            json(daemon.get(&format!("/proxy/{}/v6", v6.port)), 200)["uri"],
            "/v6"
        );
    }
}

/// `VmHWM` and `VmRSS` of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[test]
fn one_gib_each_way_with_flat_memory() {
    const SIZE: u64 = 1 << 30;
    let daemon = Toolboxd::start();
    let app = Upstream::start("127.0.0.1:0");
    // Warm up (pool, buffers), then measure the high-water mark from here.
    assert_eq!(
        daemon
            .get(&format!("/proxy/{}/big?n=1048576", app.port))
            .bytes()
            .unwrap()
            .len(),
        1 << 20
    );
    std::fs::write(format!("/proc/{}/clear_refs", daemon.pid()), "5").unwrap();
    let (_, baseline) = memory_kib(daemon.pid());

    let mut download = daemon
        .client
        .get(daemon.url(&format!("/proxy/{}/big?n={SIZE}", app.port)))
        .send()
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut buffer = vec![0u8; 1 << 18];
    let mut received = 0u64;
    let mut expected_byte = 0u64;
    loop {
        let n = download.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        // Spot-check the pattern (byte i of each 64 KiB chunk is i % 251).
        assert_eq!(buffer[0], ((expected_byte % 65536) % 251) as u8);
        received += n as u64;
        expected_byte += n as u64;
    }
    assert_eq!(received, SIZE);

    let upload = daemon
        .client
        .post(daemon.url(&format!("/proxy/{}/sink", app.port)))
        .body(reqwest::blocking::Body::sized(
            std::io::repeat(7).take(SIZE),
            SIZE,
        ))
        .send()
        .unwrap();
    assert_eq!(json(upload, 200)["bytes"], SIZE);

    let (peak, _) = memory_kib(daemon.pid());
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    assert!(
        growth_mib < 64,
        "daemon memory grew by {growth_mib} MiB while 1 GiB went each way"
    );
}

#[test]
fn preview_links_in_local_sdk_mode_open_the_app() {
    let daemon = Toolboxd::start_with(StartOptions {
        sdk_api: true,
        env: vec![("TOOLBOXD_SDK_API_KEY".into(), "s3cret".into())],
        ..Default::default()
    });
    let app = Upstream::start("127.0.0.1:0");
    let sdk = daemon.sdk_base.clone().unwrap();
    let preview = json(
        daemon
            .client
            .get(format!(
                "{sdk}/api/sandbox/local/ports/{}/preview-url",
                app.port
            ))
            .bearer_auth("s3cret")
            .send()
            .unwrap(),
        200,
    );
    let url = preview["url"].as_str().unwrap();
    let token = preview["token"].as_str().unwrap();
    assert_eq!(url, format!("{sdk}/toolbox/local/proxy/{}", app.port));
    // The token is the sandbox's: the same for every link.
    let again = json(
        daemon
            .client
            .get(format!("{sdk}/api/sandbox/local/ports/8080/preview-url"))
            .bearer_auth("s3cret")
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(again["token"], token);

    let client = no_redirects();
    assert_error(
        client.get(format!("{url}/page")).send().unwrap(),
        401,
        "UNAUTHORIZED",
    );
    let wrong = client
        .get(format!("{url}/page"))
        .header("X-Daytona-Preview-Token", "nope")
        .send()
        .unwrap();
    assert_error(wrong, 401, "UNAUTHORIZED");
    // The token opens preview links only, not the toolbox.
    let toolbox = client
        .get(format!("{sdk}/toolbox/local/version"))
        .header("X-Daytona-Preview-Token", token)
        .send()
        .unwrap();
    assert_error(toolbox, 401, "UNAUTHORIZED");

    let page = client
        .get(format!("{url}/page?q=%2F"))
        .header("X-Daytona-Preview-Token", token)
        .send()
        .unwrap();
    let page = json(page, 200);
    assert_eq!(page["uri"], "/page?q=%2F");
    let headers = page["headers"].as_object().unwrap();
    assert!(!headers.contains_key("x-daytona-preview-token"), "{page}");
    assert_eq!(
        headers["x-forwarded-prefix"],
        json!([format!("/toolbox/local/proxy/{}", app.port)])
    );
    // The API key works too, and is not handed to the app.
    let with_key = client
        .get(format!("{url}/"))
        .bearer_auth("s3cret")
        .send()
        .unwrap();
    let with_key = json(with_key, 200);
    assert!(
        !with_key["headers"]
            .as_object()
            .unwrap()
            .contains_key("authorization"),
        "{with_key}"
    );

    // A WebSocket through the preview link.
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/ws", url.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-daytona-preview-token", token.parse().unwrap());
    let (mut socket, _) = tungstenite::connect(request).expect("websocket handshake");
    socket.send(tungstenite::Message::text("via sdk")).unwrap();
    assert_eq!(
        socket.read().unwrap(),
        tungstenite::Message::text("via sdk")
    );
}
