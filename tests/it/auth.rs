//! Token auth (`--token`): every path and method of openapi/toolbox.json, the WebSockets, the
//! preview proxy (which must not pass the token on), `/mcp`, the web terminal listener, local
//! SDK mode and SSH answer 401 without the token and with a wrong one, and not 401 with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use reqwest::blocking::RequestBuilder;
use reqwest::Method;
use serde_json::Value;

use crate::harness::*;

const TOKEN: &str = "s3cret-Token_42";

/// How a request presents itself.
#[derive(Debug, Clone, Copy)]
enum Cred {
    Missing,
    Wrong,
    Bearer,
    Header,
}

impl Cred {
    fn apply(self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Cred::Missing => request,
            Cred::Wrong => request.bearer_auth("s3cret-Token_41"),
            Cred::Bearer => request.bearer_auth(TOKEN),
            Cred::Header => request.header("X-Toolboxd-Token", TOKEN),
        }
    }
}

fn start(options: StartOptions) -> Toolboxd {
    let mut options = options;
    options
        .args
        .extend(["--token".to_string(), TOKEN.to_string()]);
    Toolboxd::start_with(options)
}

/// A plausible value for a path parameter (the route must match; the resource need not exist).
fn fill(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |i| open + i + 1);
        let name = &rest[open + 1..close - 1];
        out.push_str(if name == "port" { "1" } else { "x1" });
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

fn assert_unauthorized(response: reqwest::blocking::Response, what: &str) {
    assert_eq!(response.status().as_u16(), 401, "{what}");
    let body: Value = response
        .json()
        .unwrap_or_else(|_| panic!("{what}: not JSON"));
    assert_eq!(body["code"], "UNAUTHORIZED", "{what}: {body}");
    assert_eq!(body["statusCode"], 401, "{what}: {body}");
    assert_eq!(body["source"], "DAYTONA_DAEMON", "{what}: {body}");
}

#[test]
fn every_route_of_the_openapi_document_needs_the_token() {
    let daemon = start(StartOptions::default());
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/toolbox.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut walked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let path = fill(template);
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if method == Method::TRACE {
                continue;
            }
            let open = method == Method::GET && (path == "/version" || path == "/healthz");
            for cred in [Cred::Missing, Cred::Wrong, Cred::Bearer, Cred::Header] {
                let mut request = daemon
                    .client
                    .request(method.clone(), daemon.url(&path))
                    .timeout(std::time::Duration::from_secs(60));
                if method != Method::GET && method != Method::HEAD && method != Method::DELETE {
                    request = request
                        .header("content-type", "application/json")
                        .body("{}");
                }
                if path == "/mcp" {
                    request = request.header("accept", "application/json, text/event-stream");
                }
                let response = cred.apply(request).send().unwrap();
                let what = format!("{method} {path} with {cred:?}");
                match cred {
                    Cred::Missing | Cred::Wrong if !open => {
                        if method == Method::HEAD {
                            assert_eq!(response.status().as_u16(), 401, "{what}");
                        } else {
                            assert_unauthorized(response, &what);
                        }
                    }
                    _ => assert_ne!(response.status().as_u16(), 401, "{what}"),
                }
            }
            walked += 1;
        }
    }
    assert!(walked > 70, "walked only {walked} routes");
    // A route that does not exist is a 401 too: nothing is told without the token.
    assert_unauthorized(daemon.get("/no/such/route"), "unknown route");
    assert_eq!(daemon.get("/healthz").status().as_u16(), 200);
    assert_eq!(json(daemon.get("/healthz"), 200)["status"], "ok");
}

/// Opens a WebSocket at `url` with `headers`; the HTTP status of the handshake's answer.
fn ws_status(url: &str, headers: &[(&str, &str)]) -> u16 {
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tungstenite::connect(request) {
        Ok((mut socket, response)) => {
            let _ = socket.close(None);
            response.status().as_u16()
        }
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(err) => panic!("{url}: {err}"),
    }
}

#[test]
fn websockets_need_the_token() {
    let daemon = start(StartOptions::default());
    let ws = daemon.base.replacen("http://", "ws://", 1);
    let bearer = format!("Bearer {TOKEN}");
    for path in [
        "/process/pty/create-connect?cols=80&rows=24",
        "/process/interpreter/execute",
        "/lsp/ws?languageId=python&pathToProject=.",
        "/files/watch?path=.",
        "/process/session/entrypoint/logs?follow=true",
    ] {
        let url = format!("{ws}{path}");
        assert_eq!(ws_status(&url, &[]), 401, "{path} without a token");
        assert_eq!(
            ws_status(&url, &[("x-toolboxd-token", "nope")]),
            401,
            "{path} with a wrong token"
        );
        assert_ne!(
            ws_status(&url, &[("authorization", &bearer)]),
            401,
            "{path} with the token"
        );
        assert_ne!(
            ws_status(
                &format!(
                    "{url}{}token={TOKEN}",
                    if path.contains('?') { '&' } else { '?' }
                ),
                &[]
            ),
            401,
            "{path} with ?token="
        );
    }
}

/// An app on the loopback that answers each request with its head, verbatim.
fn echo_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                head.len()
            );
        }
    });
    port
}

#[test]
fn the_preview_proxy_needs_the_token_and_never_passes_it_on() {
    let daemon = start(StartOptions::default());
    let port = echo_upstream();
    let url = daemon.url(&format!("/proxy/{port}/app?a=1&token={TOKEN}&b=2"));
    assert_unauthorized(
        daemon
            .client
            .get(daemon.url(&format!("/proxy/{port}/app")))
            .send()
            .unwrap(),
        "no token",
    );
    assert_unauthorized(
        daemon
            .client
            .get(daemon.url(&format!("/proxy/{port}/app?token=wrong")))
            .send()
            .unwrap(),
        "wrong token",
    );
    // Every carrier at once, plus an app cookie that must survive.
    let response = daemon
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .header("x-toolboxd-token", TOKEN)
        .header("cookie", format!("app=1; toolboxd_token={TOKEN}"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let seen = response.text().unwrap();
    assert!(!seen.contains(TOKEN), "the app saw the token:\n{seen}");
    assert!(seen.starts_with("GET /app?a=1&b=2 HTTP/1.1"), "{seen}");
    assert!(seen.to_lowercase().contains("cookie: app=1\r\n"), "{seen}");
    // An app's own Authorization passes (the token then rides in its header).
    let response = daemon
        .client
        .get(daemon.url(&format!("/proxy/{port}/")))
        .header("x-toolboxd-token", TOKEN)
        .bearer_auth("app-own")
        .send()
        .unwrap();
    let seen = response.text().unwrap();
    assert!(seen.contains("Bearer app-own"), "{seen}");
    assert!(!seen.contains(TOKEN), "{seen}");
}

#[test]
fn a_browser_passes_the_token_once_and_keeps_a_cookie() {
    let daemon = start(StartOptions {
        terminal: true,
        ..StartOptions::default()
    });
    let base = daemon.terminal_base.clone().unwrap();
    let client = &daemon.client;
    assert_unauthorized(
        client.get(format!("{base}/")).send().unwrap(),
        "terminal page",
    );
    assert_unauthorized(
        client.get(format!("{base}/?token=wrong")).send().unwrap(),
        "terminal page, wrong token",
    );
    let ws = base.replacen("http://", "ws://", 1);
    assert_eq!(ws_status(&format!("{ws}/ws"), &[]), 401);
    let page = client.get(format!("{base}/?token={TOKEN}")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let cookie = page
        .headers()
        .get("set-cookie")
        .expect("a cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with(&format!("toolboxd_terminal_token={TOKEN};")),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    // The page's relative files and its socket work with the cookie alone.
    let html = page.text().unwrap();
    let asset = html
        .split(['"', '\''])
        .find(|part| part.ends_with(".js") && !part.starts_with("http"))
        .expect("a script on the page")
        .to_string();
    let response = client
        .get(format!("{base}/{}", asset.trim_start_matches("./")))
        .header("cookie", &pair)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{asset}");
    assert_eq!(ws_status(&format!("{ws}/ws"), &[("cookie", &pair)]), 101);
    // The toolbox listener's cookie is another one: the terminal's does not open it.
    assert_unauthorized(
        client
            .get(daemon.url("/files?path=."))
            .header("cookie", &pair)
            .send()
            .unwrap(),
        "toolbox with the terminal's cookie",
    );
    let toolbox = client
        .get(daemon.url(&format!("/work-dir?token={TOKEN}")))
        .send()
        .unwrap();
    let cookie = toolbox.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with(&format!("toolboxd_token={TOKEN};")),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let response = client
        .get(daemon.url("/work-dir"))
        .header("cookie", &pair)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[test]
fn local_sdk_mode_takes_the_token_as_its_api_key() {
    let daemon = start(StartOptions {
        sdk_api: true,
        ..StartOptions::default()
    });
    let sdk = daemon.sdk_base.clone().unwrap();
    for cred in [Cred::Missing, Cred::Wrong] {
        let response = cred
            .apply(daemon.client.get(format!("{sdk}/api/sandbox")))
            .send()
            .unwrap();
        assert_unauthorized(response, &format!("{cred:?}"));
        let response = cred
            .apply(
                daemon
                    .client
                    .get(format!("{sdk}/toolbox/local/files?path=.")),
            )
            .send()
            .unwrap();
        assert_unauthorized(response, &format!("{cred:?} through the toolbox proxy"));
    }
    let response = Cred::Bearer
        .apply(daemon.client.get(format!("{sdk}/api/sandbox")))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = Cred::Bearer
        .apply(
            daemon
                .client
                .get(format!("{sdk}/toolbox/local/files?path=.")),
        )
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

fn ssh_with_password(port: u16, dir: &Path, password: &str) -> std::process::Output {
    let askpass = dir.join(format!("askpass-{}", password.len()));
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "StrictHostKeyChecking=no", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            dir.join("known_hosts").display()
        ))
        .args(["-o", "PubkeyAuthentication=no", "-o", "IdentityAgent=none"])
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args(["-p", &port.to_string(), "test@127.0.0.1", "echo in"])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let mut output = child.wait_with_output().unwrap();
    output.stdout = stdout;
    output
}

#[test]
fn ssh_takes_the_token_as_a_password() {
    let have = Command::new("sh")
        .args(["-c", "command -v ssh"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !have {
        eprintln!("SKIP: ssh is not installed");
        return;
    }
    let daemon = start(StartOptions {
        ssh: true,
        ..StartOptions::default()
    });
    let port = daemon.ssh_port.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = ssh_with_password(port, dir.path(), "not-the-token");
    assert_eq!(wrong.status.code(), Some(255));
    assert!(wrong.stdout.is_empty());
    let right = ssh_with_password(port, dir.path(), TOKEN);
    assert_eq!(
        String::from_utf8_lossy(&right.stdout),
        "in\n",
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
}

#[test]
fn token_flags_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let output = Command::new(binary())
        .args(["--token-file"])
        .arg(&empty)
        .args([
            "--toolbox-addr",
            "127.0.0.1:0",
            "--terminal-addr",
            "off",
            "--ssh-addr",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty"));
    // A token file: its content, without the trailing newline, is the token.
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let daemon = Toolboxd::start_with(StartOptions {
        args: vec!["--token-file".into(), file.display().to_string()],
        ..StartOptions::default()
    });
    assert_eq!(daemon.get("/work-dir").status().as_u16(), 401);
    let response = daemon
        .client
        .get(daemon.url("/work-dir"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

fn sign(key: &str, method: &str, path: &str, expires: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("v1:files:{method}:{path}:{expires}").as_bytes());
    format!(
        "v1_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

const SIGNING_KEY: &str = "signing-key-for-tests";

/// `route?path=…&expires=…&signature=…` signed for `method` and `signed_path`, asking for `path`.
fn signed(route: &str, method: &str, signed_path: &str, path: &str, expires: &str) -> String {
    format!(
        "{route}?path={}&expires={expires}&signature={}",
        form(path),
        sign(SIGNING_KEY, method, signed_path, expires)
    )
}

#[test]
fn signed_urls_stand_in_for_the_token_on_download_and_upload() {
    let daemon = start(StartOptions {
        args: vec!["--signing-key".into(), SIGNING_KEY.into()],
        ..StartOptions::default()
    });
    write(&daemon.path("a b.txt"), "signed");
    let path = daemon.path("a b.txt").to_str().unwrap().to_string();
    let other = daemon.path("other.txt").to_str().unwrap().to_string();
    write(&daemon.path("other.txt"), "other");
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600)
        .to_string();
    let client = &daemon.client;
    // Valid: a download (expiring and not), and an upload.
    for expires in ["0", later.as_str()] {
        let url = daemon.url(&signed("/files/download", "GET", &path, &path, expires));
        let response = client.get(url).send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "expires={expires}");
        assert_eq!(response.text().unwrap(), "signed");
    }
    let upload = client
        .post(daemon.url(&signed("/files/upload-v2", "POST", &path, &path, &later)))
        .body("uploaded")
        .send()
        .unwrap();
    assert_eq!(upload.status().as_u16(), 200);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "uploaded");
    // Expired.
    assert_unauthorized(
        client
            .get(daemon.url(&signed("/files/download", "GET", &path, &path, "1")))
            .send()
            .unwrap(),
        "expired",
    );
    // Wrong path: signed for one file, asking for another.
    assert_unauthorized(
        client
            .get(daemon.url(&signed("/files/download", "GET", &path, &other, "0")))
            .send()
            .unwrap(),
        "wrong path",
    );
    // Wrong method: a download's signature used for an upload, and the reverse.
    assert_unauthorized(
        client
            .post(daemon.url(&signed("/files/upload-v2", "GET", &path, &path, "0")))
            .body("x")
            .send()
            .unwrap(),
        "GET signature on an upload",
    );
    assert_unauthorized(
        client
            .get(daemon.url(&signed("/files/download", "POST", &path, &path, "0")))
            .send()
            .unwrap(),
        "POST signature on a download",
    );
    // A route that cannot be signed.
    assert_unauthorized(
        client
            .get(daemon.url(&signed("/files/info", "GET", &path, &path, "0")))
            .send()
            .unwrap(),
        "signed /files/info",
    );
    // Tampered: the expiry changed after signing, or the signature itself.
    let tampered = signed("/files/download", "GET", &path, &path, "0")
        .replace("expires=0", "expires=9999999999");
    assert_unauthorized(
        client.get(daemon.url(&tampered)).send().unwrap(),
        "tampered expires",
    );
    let mut url = signed("/files/download", "GET", &path, &path, "0");
    let last = url.pop().unwrap();
    url.push(if last == 'A' { 'B' } else { 'A' });
    assert_unauthorized(
        client.get(daemon.url(&url)).send().unwrap(),
        "tampered signature",
    );
    // Nothing was written by the refused upload.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "uploaded");
}

#[test]
fn without_a_signing_key_a_signed_url_does_not_open_the_toolbox() {
    let daemon = start(StartOptions::default());
    write(&daemon.path("f.txt"), "x");
    let path = daemon.path("f.txt").to_str().unwrap().to_string();
    assert_unauthorized(
        daemon
            .client
            .get(daemon.url(&signed("/files/download", "GET", &path, &path, "0")))
            .send()
            .unwrap(),
        "no --signing-key",
    );
}
