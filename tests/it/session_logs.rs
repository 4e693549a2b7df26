//! `/process/session/{id}/command/{cmd}/logs` over a WebSocket: following a log live, large
//! and lossless, followers that stall or leave, unknown ids. (The plain-HTTP answers are in
//! `session.rs` and `session_formats.rs`.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::session::{create, exec, exec_async, wait_exit};

/// What a log WebSocket delivered: the bytes, when the first frame came, the close code and the
/// subprotocol the server selected.
pub(crate) struct Followed {
    pub bytes: Vec<u8>,
    pub first_frame: Option<Instant>,
    pub close_code: Option<u16>,
    pub protocol: Option<String>,
    pub closed_at: Instant,
}

/// Follows `path` (a logs URL path and query) over a WebSocket until the server closes, as the
/// current SDKs do (with their version header), offering `protocol` if given.
pub(crate) fn follow_ws(daemon: &Toolboxd, path: &str, protocol: Option<&str>) -> Followed {
    let mut headers = vec![("X-Daytona-SDK-Version", SDK_VERSION)];
    headers.extend(protocol.map(|protocol| ("Sec-WebSocket-Protocol", protocol)));
    follow_ws_with(daemon, path, &headers)
}

/// Follows `path` over a WebSocket sending exactly `headers`.
pub(crate) fn follow_ws_with(daemon: &Toolboxd, path: &str, headers: &[(&str, &str)]) -> Followed {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::Message;
    let url = format!("{}{}", daemon.base.replacen("http://", "ws://", 1), path);
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let (mut socket, response) = tungstenite::connect(request).expect("websocket handshake");
    let selected = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    let mut followed = Followed {
        bytes: Vec::new(),
        first_frame: None,
        close_code: None,
        protocol: selected,
        closed_at: Instant::now(),
    };
    loop {
        match socket.read() {
            Ok(Message::Binary(data)) => {
                followed.first_frame.get_or_insert_with(Instant::now);
                followed.bytes.extend_from_slice(&data);
            }
            Ok(Message::Close(frame)) => {
                followed.close_code = frame.map(|f| u16::from(f.code));
                followed.closed_at = Instant::now();
            }
            Ok(other) => assert!(!other.is_text(), "unexpected text frame"),
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                break
            }
            Err(err) => panic!("websocket error: {err}"),
        }
    }
    followed
}

fn output_log(daemon: &Toolboxd, id: &str, cmd: &str) -> Vec<u8> {
    std::fs::read(
        daemon
            .home
            .join(".toolboxd/sessions")
            .join(id)
            .join(cmd)
            .join("output.log"),
    )
    .unwrap()
}

#[test]
fn logs_follow_streams_live_and_closes_1000() {
    let daemon = Toolboxd::start();
    create(&daemon, "s");
    let started = Instant::now();
    let cmd = exec_async(
        &daemon,
        "s",
        json!({"command": "printf part; sleep 2; printf more; sleep 0.2; printf oops >&2", "runAsync": true}),
    );
    let path = format!("/process/session/s/command/{cmd}/logs?follow=true");
    let live = follow_ws(&daemon, &path, None);
    let first = live.first_frame.expect("a frame arrived");
    assert!(
        first.duration_since(started) < Duration::from_millis(1500),
        "partial output came only after {:?}",
        first.duration_since(started)
    );
    assert!(live.closed_at.duration_since(started) >= Duration::from_secs(2));
    assert_eq!(live.close_code, Some(1000));
    assert_eq!(live.protocol, None, "no subprotocol unless offered");
    assert_eq!(live.bytes, b"\x01\x01\x01partmore\x02\x02\x02oops");
    assert_eq!(live.bytes, output_log(&daemon, "s", &cmd));
    assert_eq!(wait_exit(&daemon, "s", &cmd), 0);

    // A finished command replays and closes at once, follow or not, from an offset too.
    let replay_start = Instant::now();
    let replay = follow_ws(&daemon, &path, None);
    assert!(replay_start.elapsed() < Duration::from_secs(1));
    assert_eq!(
        (replay.bytes, replay.close_code),
        (live.bytes.clone(), Some(1000))
    );
    let plain = follow_ws(
        &daemon,
        &format!("/process/session/s/command/{cmd}/logs"),
        None,
    );
    assert_eq!(
        (plain.bytes, plain.close_code),
        (live.bytes.clone(), Some(1000))
    );
    let tail = follow_ws(&daemon, &format!("{path}&offset=7"), None);
    assert_eq!(tail.bytes, &live.bytes[7..]);
    // The SDK-version subprotocol is echoed when offered.
    let versioned = follow_ws(&daemon, &path, Some("X-Daytona-SDK-Version~0.226.1"));
    assert_eq!(
        versioned.protocol.as_deref(),
        Some("X-Daytona-SDK-Version~0.226.1")
    );
    assert_eq!(versioned.bytes, live.bytes);
    // Plain HTTP still answers JSON, follow or not.
    let snapshot = json(daemon.get(&path), 200);
    assert_eq!(snapshot["stdout"], "partmore");
    assert_eq!(snapshot["stderr"], "oops");
    assert_error(
        daemon.get(&format!("/process/session/s/command/{cmd}/logs?offset=x")),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn logs_follow_of_a_running_command_started_earlier_and_unknown_ids() {
    let daemon = Toolboxd::start();
    create(&daemon, "s");
    let cmd = exec_async(
        &daemon,
        "s",
        json!({"command": "echo one; sleep 0.5; echo two >&2", "runAsync": true}),
    );
    std::thread::sleep(Duration::from_millis(200));
    let followed = follow_ws(
        &daemon,
        &format!("/process/session/s/command/{cmd}/logs?follow=true"),
        None,
    );
    assert_eq!(followed.close_code, Some(1000));
    assert_eq!(followed.bytes, b"\x01\x01\x01one\n\x02\x02\x02two\n");
    let missing = tungstenite::connect(format!(
        "{}/process/session/s/command/nope/logs?follow=true",
        daemon.base.replacen("http://", "ws://", 1)
    ));
    match missing {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected a 404 handshake, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn logs_follow_50_mb_losslessly() {
    let daemon = Toolboxd::start();
    create(&daemon, "s");
    let lines = 6_500_000;
    let cmd = exec_async(
        &daemon,
        "s",
        json!({"command": format!("echo start >&2; seq 1 {lines}; echo end >&2"), "runAsync": true}),
    );
    let followed = follow_ws(
        &daemon,
        &format!("/process/session/s/command/{cmd}/logs?follow=true"),
        None,
    );
    assert_eq!(followed.close_code, Some(1000));
    assert_eq!(wait_exit(&daemon, "s", &cmd), 0);
    assert_eq!(followed.bytes, output_log(&daemon, "s", &cmd));
    // Demux as the SDKs do and compare with what `seq` wrote, byte for byte.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut current = None;
    let mut rest = &followed.bytes[..];
    while !rest.is_empty() {
        if rest.starts_with(b"\x01\x01\x01") || rest.starts_with(b"\x02\x02\x02") {
            current = Some(rest[0]);
            rest = &rest[3..];
            continue;
        }
        let end = rest.iter().position(|b| *b < 3).unwrap_or(rest.len());
        match current {
            Some(1) => stdout.extend_from_slice(&rest[..end]),
            Some(2) => stderr.extend_from_slice(&rest[..end]),
            _ => panic!("bytes before the first marker"),
        }
        rest = &rest[end..];
    }
    let expected: String = (1..=lines).map(|i| format!("{i}\n")).collect();
    assert!(expected.len() > 50_000_000, "{}", expected.len());
    assert_eq!(stdout.len(), expected.len());
    assert!(
        stdout == expected.as_bytes(),
        "stdout differs from seq's output"
    );
    assert_eq!(stderr, b"start\nend\n");
}

#[test]
fn a_follower_that_does_not_read_never_blocks_the_command() {
    let daemon = Toolboxd::start();
    create(&daemon, "s");
    let cmd = exec_async(
        &daemon,
        "s",
        json!({"command": "sleep 0.3; head -c 30000000 /dev/zero | tr '\\0' a", "runAsync": true}),
    );
    // Connect and never read: the socket buffers fill up, the command must still finish.
    let (stalled, _) = tungstenite::connect(format!(
        "{}/process/session/s/command/{cmd}/logs?follow=true",
        daemon.base.replacen("http://", "ws://", 1)
    ))
    .unwrap();
    assert_eq!(wait_exit(&daemon, "s", &cmd), 0);
    assert_eq!(output_log(&daemon, "s", &cmd).len(), 3 + 30_000_000);
    drop(stalled);
    // The daemon is unaffected by the abandoned follower.
    assert_eq!(exec(&daemon, "s", "echo ok")["stdout"], "ok\n");
}

/// A follower that leaves while a command streams gets the reply to its close frame (the
/// server's next write fails once the client closed; the reply it owes still goes out).
#[test]
fn a_follower_that_closes_mid_stream_gets_the_closing_handshake() {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::Message;
    let daemon = Toolboxd::start();
    create(&daemon, "busy");
    let cmd = exec_async(
        &daemon,
        "busy",
        json!({"command": "yes streaming", "runAsync": true}),
    );
    let url = format!(
        "{}/process/session/busy/command/{cmd}/logs?follow=true",
        daemon.base.replacen("http://", "ws://", 1)
    );
    for _ in 0..20 {
        let request = url.as_str().into_client_request().unwrap();
        let (mut socket, _) = tungstenite::connect(request).expect("websocket handshake");
        let mut seen = 0;
        while seen < 3 {
            if let Message::Binary(_) = socket.read().unwrap() {
                seen += 1;
            }
        }
        socket.close(None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut answered = false;
        loop {
            assert!(Instant::now() < deadline, "no end to the connection");
            match socket.read() {
                Ok(Message::Close(_)) => answered = true,
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(err) => panic!("websocket error: {err}"),
            }
        }
        assert!(answered, "no close frame from the server");
    }
    let response = daemon.delete("/process/session/busy");
    assert!(response.status().is_success(), "{:?}", response.text());
}
