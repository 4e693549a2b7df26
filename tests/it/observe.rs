//! Request ids (`X-Request-Id` on every answer and in every log line of the request) and the
//! Prometheus metrics at `GET /metrics`.

use serde_json::json;

use crate::harness::*;

#[test]
fn every_answer_has_a_request_id_and_a_client_sane_one_is_kept() {
    let daemon = Toolboxd::start();
    let id = |response: Response| {
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let fresh = id(daemon.get("/version"));
    assert_eq!(fresh.len(), 36, "{fresh}");
    assert_ne!(fresh, id(daemon.get("/version")));
    // Errors too, from a route and from the fallback.
    assert_eq!(id(daemon.get("/files/info?path=nope")).len(), 36);
    assert_eq!(id(daemon.get("/no/such/route")).len(), 36);
    let kept = daemon
        .client
        .get(daemon.url("/version"))
        .header("x-request-id", "client-id_1.2:3")
        .send()
        .unwrap();
    assert_eq!(id(kept), "client-id_1.2:3");
    for insane in ["has space", "quote\"d", &"x".repeat(129)] {
        let response = daemon
            .client
            .get(daemon.url("/version"))
            .header("x-request-id", insane)
            .send()
            .unwrap();
        let given = id(response);
        assert_ne!(given, insane);
        assert_eq!(given.len(), 36);
    }
}

/// A daemon writing JSON log lines at debug level to `log`.
fn logging_to(log: &std::path::Path) -> Toolboxd {
    Toolboxd::start_with(StartOptions {
        args: vec!["--log-format".into(), "json".into()],
        env: vec![("RUST_LOG".into(), "debug".into())],
        stderr_file: Some(log.to_path_buf()),
        ..StartOptions::default()
    })
}

#[test]
fn log_lines_of_a_request_carry_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let daemon = logging_to(&log);
    let response = daemon
        .client
        .get(daemon.url("/files/info?path=no-such-file-here"))
        .header("x-request-id", "trace-me-42")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    drop(daemon);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|line| line.contains("no-such-file-here") && line.contains("FILE_NOT_FOUND"))
        .unwrap_or_else(|| panic!("no log line of the error:\n{text}"));
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    // The outermost span of the line is the request's, with its id.
    assert_eq!(value["spans"][0]["id"], "trace-me-42", "{line}");
    assert_eq!(value["spans"][0]["name"], "request", "{line}");
}

/// The log lines in `text` that contain `needle`, parsed.
fn lines_with(text: &str, needle: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|line| line.contains(needle))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Work a request moves elsewhere (a blocking thread for git, the task axum serves a WebSocket
/// in) still logs in the request's span.
#[test]
fn work_on_other_threads_logs_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let daemon = logging_to(&log);
    // A shallow clone of a local repository writes its pack on a blocking thread.
    let origin = dir.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    let commit = |message| {
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
        ]
    };
    for args in [
        vec!["init", "-q", "-b", "main"],
        commit("one"),
        commit("two"),
    ] {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(&origin)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let clone = daemon
        .client
        .post(daemon.url("/git/clone"))
        .header("x-request-id", "clone-on-a-thread")
        .json(&json!({
            "url": format!("file://{}", origin.display()),
            "path": "copy",
            "depth": 1,
        }))
        .send()
        .unwrap();
    assert!(clone.status().is_success(), "{:?}", clone.text());
    // A followed log closes from a task of its own.
    let session = daemon.post_json("/process/session", &json!({"sessionId": "traced"}));
    assert_eq!(session.status().as_u16(), 201);
    let ran = json(
        daemon.post_json(
            "/process/session/traced/exec",
            &json!({"command": "echo hi"}),
        ),
        200,
    );
    let cmd = ran["cmdId"].as_str().unwrap();
    let followed = crate::session_logs::follow_ws_with(
        &daemon,
        &format!("/process/session/traced/command/{cmd}/logs?follow=true"),
        &[("x-request-id", "follow-in-a-task")],
    );
    assert_eq!(followed.close_code, Some(1000));
    drop(daemon);
    let text = std::fs::read_to_string(&log).unwrap();
    let packs = lines_with(&text, "shallow pack written");
    assert!(!packs.is_empty(), "no pack line:\n{text}");
    for line in packs {
        assert_eq!(line["spans"][0]["id"], "clone-on-a-thread", "{line}");
    }
    let closes = lines_with(&text, "closing the WebSocket");
    assert!(
        closes
            .iter()
            .any(|line| line["spans"][0]["id"] == "follow-in-a-task"),
        "no close line in the follow's span:\n{text}"
    );
}

/// The value of the series `name` (exact, labels included) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn metrics_count_requests_by_route_and_status_behind_the_token() {
    let daemon = Toolboxd::start_with(StartOptions {
        args: vec!["--token".into(), "metrics-token".into()],
        terminal: true,
        sdk_api: true,
        ..StartOptions::default()
    });
    // The web terminal's page and local SDK mode's control plane are counted too.
    let terminal = daemon.terminal_base.clone().unwrap();
    let page = daemon
        .client
        .get(format!("{terminal}/"))
        .bearer_auth("metrics-token")
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let sdk = daemon.sdk_base.clone().unwrap();
    let sandboxes = daemon
        .client
        .get(format!("{sdk}/api/sandbox"))
        .bearer_auth("metrics-token")
        .send()
        .unwrap();
    assert_eq!(sandboxes.status().as_u16(), 200);
    let refused = daemon
        .client
        .get(format!("{sdk}/api/sandbox"))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let get = |path: &str| {
        daemon
            .client
            .get(daemon.url(path))
            .bearer_auth("metrics-token")
            .send()
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(get("/files?path=.").status().as_u16(), 200);
    }
    assert_eq!(get("/files/info?path=nope").status().as_u16(), 404);
    assert_eq!(get("/no/such/route").status().as_u16(), 404);
    assert_eq!(daemon.get("/files?path=.").status().as_u16(), 401);
    let exec = daemon
        .client
        .post(daemon.url("/process/execute"))
        .bearer_auth("metrics-token")
        .json(&json!({"command": "true"}))
        .send()
        .unwrap();
    assert_eq!(exec.status().as_u16(), 200);
    let session = daemon
        .client
        .post(daemon.url("/process/session"))
        .bearer_auth("metrics-token")
        .json(&json!({"sessionId": "m1"}))
        .send()
        .unwrap();
    assert!(session.status().is_success());

    // Behind the token.
    assert_error(daemon.get("/metrics"), 401, "UNAUTHORIZED");
    let response = get("/metrics");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().unwrap();
    let series = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
    assert_eq!(
        series(
            r#"toolboxd_http_requests_total{listener="toolbox",route="/files",method="GET",status="200"}"#
        ),
        3.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_requests_total{listener="toolbox",route="/files",method="GET",status="401"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_requests_total{listener="toolbox",route="/files/info",method="GET",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_requests_total{listener="toolbox",route="unmatched",method="GET",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_requests_total{listener="toolbox",route="/metrics",method="GET",status="401"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_request_duration_seconds_count{listener="toolbox",route="/files"}"#
        ),
        4.0
    );
    assert!(
        series(r#"toolboxd_http_request_duration_seconds_sum{listener="toolbox",route="/files"}"#)
            > 0.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_request_duration_seconds_bucket{le="+Inf",listener="toolbox",route="/files"}"#
        ),
        4.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_requests_total{listener="terminal",route="/",method="GET",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_requests_total{listener="sdk_api",route="/api/sandbox",method="GET",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            r#"toolboxd_http_requests_total{listener="sdk_api",route="/api/sandbox",method="GET",status="401"}"#
        ),
        1.0
    );
    assert_eq!(series("toolboxd_sessions"), 1.0);
    assert_eq!(series("toolboxd_ptys"), 0.0);
    assert_eq!(series("toolboxd_interpreter_contexts"), 0.0);
    assert_eq!(series("toolboxd_lsp_servers"), 0.0);
    assert_eq!(series("toolboxd_watched_directories"), 0.0);
    assert_eq!(series("toolboxd_ssh_connections"), 0.0);
    // The execute's shell and the session's shell.
    assert!(series("toolboxd_processes_started_total") >= 2.0);
    assert!(series("toolboxd_processes_reaped_total") >= 1.0);
    assert!(value(&text, "toolboxd_orphans_reaped_total").is_some());
    assert!(series("toolboxd_http_received_bytes_total") > 500.0);
    assert!(series("toolboxd_http_sent_bytes_total") > 500.0);
    assert!(text.ends_with("# EOF\n"));
}

/// Reads one HTTP/1.1 answer head from `stream` (up to the blank line) and returns it.
fn read_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "the connection ended in a head"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

/// An answer given before the request's body was read says `connection: close` (hyper closes
/// such a connection; without the header a keep-alive client sent its next request into the
/// closing socket: "Server disconnected without sending a response"). An answer to a request
/// whose body was read keeps the connection.
#[test]
fn an_answer_before_the_body_is_read_closes_the_connection_and_says_so() {
    use std::io::{Read, Write};
    let daemon = Toolboxd::start_with(StartOptions {
        args: vec!["--token".into(), "keep-token".into()],
        ..StartOptions::default()
    });
    let address = daemon.base.trim_start_matches("http://").to_string();
    let body = r#"{"command":"echo kept"}"#;
    // Refused by the token check before the body is sent.
    let mut refused = std::net::TcpStream::connect(&address).unwrap();
    write!(
        refused,
        "POST /process/execute HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let head = read_head(&mut refused);
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    // Served with its body read: the connection stays for a second request.
    let mut kept = std::net::TcpStream::connect(&address).unwrap();
    for _ in 0..2 {
        write!(
            kept,
            "POST /process/execute HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer keep-token\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let head = read_head(&mut kept);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut answer = vec![0u8; length];
        kept.read_exact(&mut answer).unwrap();
        assert!(String::from_utf8_lossy(&answer).contains("kept"));
    }
}
