//! Issue 17's size limits: what each WebSocket reads from its client, `/mcp` bodies and
//! `toolboxd mcp` lines. Each limit is sent one byte over (the documented refusal, and the
//! daemon serves the next request) and exactly at the limit (it works).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::harness::*;

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

const MIB: usize = 1024 * 1024;
/// PTY and web terminal input.
const INPUT_LIMIT: usize = MIB;
/// Interpreter requests and LSP messages (the JSON body limit).
const REQUEST_LIMIT: usize = 16 * MIB;
/// Session log and watch sockets, whose clients only listen.
const LISTENER_LIMIT: usize = 64 * 1024;

fn open(base: &str, path: &str) -> Socket {
    let url = format!("{}{}", base.replacen("http://", "ws://", 1), path);
    let (socket, _) = tungstenite::connect(url).unwrap_or_else(|err| panic!("{path}: {err}"));
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    socket
}

/// What came before the close, and the close (code, reason); 30 s at most.
fn read_to_close(socket: &mut Socket) -> (Vec<u8>, Option<(u16, String)>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut data = Vec::new();
    while Instant::now() < deadline {
        match socket.read() {
            Ok(Message::Binary(bytes)) => data.extend_from_slice(&bytes),
            Ok(Message::Text(text)) => data.extend_from_slice(text.as_bytes()),
            Ok(Message::Close(frame)) => {
                let close = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return (data, Some(close));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (data, None),
        }
    }
    panic!("no close within 30 s");
}

/// Reads until what arrived holds `needle` (30 s at most); panics on a close.
fn read_until(socket: &mut Socket, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut data = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in {:?}",
            String::from_utf8_lossy(&data[data.len().saturating_sub(500)..])
        );
        match socket.read() {
            Ok(Message::Binary(bytes)) => data.extend_from_slice(&bytes),
            Ok(Message::Text(text)) => data.extend_from_slice(text.as_bytes()),
            Ok(Message::Close(frame)) => panic!("closed: {frame:?}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => panic!("websocket error: {err}"),
        }
        let text = String::from_utf8_lossy(&data);
        if text.contains(needle) {
            return text.into_owned();
        }
    }
}

/// Sends one binary frame of `len` bytes straight onto the connection, from a thread of its own
/// that ignores write errors: the daemon refuses it from its header and closes, so the client
/// may never get to write all of it.
pub(crate) fn send_oversized(socket: &Socket, len: usize) {
    let MaybeTlsStream::Plain(tcp) = socket.get_ref() else {
        unreachable!()
    };
    let mut tcp = tcp.try_clone().unwrap();
    // FIN + binary; masked (a zero key leaves the payload as it is), 64-bit length.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(len as u64).to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    std::thread::spawn(move || {
        use std::io::Write;
        let _ = tcp.write_all(&frame);
        let chunk = vec![b'z'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if tcp.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
}

/// The refusal of a message one byte over `limit`: close 1009 naming the limit.
fn assert_refused(socket: &mut Socket, limit: usize) {
    let (_, close) = read_to_close(socket);
    let (code, reason) = close.expect("a close frame, not a dropped connection");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains(&format!("at most {limit}")), "{reason}");
}

/// Sends a message of exactly the input limit to the shell on `socket` and checks that every
/// byte reached the program reading the terminal (raw mode, no echo: `head` gets them all).
fn typed_whole(socket: &mut Socket, daemon: &Toolboxd) {
    socket
        .send(Message::Binary(
            b"stty -echo -icanon; echo re''ady; head -c 1048576 > in.bin; echo got-$(wc -c < in.bin)\n"
                .to_vec()
                .into(),
        ))
        .unwrap();
    read_until(socket, "ready");
    socket
        .send(Message::Binary(vec![b'a'; INPUT_LIMIT].into()))
        .unwrap();
    read_until(socket, "got-1048576");
    assert_eq!(
        std::fs::read(daemon.path("in.bin")).unwrap(),
        vec![b'a'; INPUT_LIMIT]
    );
}

#[test]
fn pty_input_is_taken_up_to_1_mib_a_message_and_refused_past_it() {
    let daemon = Toolboxd::start();
    let path = "/process/pty/create-connect?id=big&cols=80&rows=24";
    let mut socket = open(&daemon.base, path);
    typed_whole(&mut socket, &daemon);
    // One byte more: refused, the client is detached, the PTY goes on.
    send_oversized(&socket, INPUT_LIMIT + 1);
    assert_refused(&mut socket, INPUT_LIMIT);
    let mut again = open(&daemon.base, "/process/pty/big/connect");
    again
        .send(Message::Binary(b"echo still-$((6*7))\n".to_vec().into()))
        .unwrap();
    read_until(&mut again, "still-42");
}

#[test]
fn web_terminal_input_is_refused_past_1_mib() {
    let daemon = Toolboxd::start_with(StartOptions {
        terminal: true,
        ..Default::default()
    });
    let terminal = daemon.terminal_base.clone().expect("the terminal listener");
    let mut socket = open(&terminal, "/ws");
    socket
        .send(Message::Binary(b"echo up-$((6*7))\n".to_vec().into()))
        .unwrap();
    read_until(&mut socket, "up-42");
    typed_whole(&mut socket, &daemon);
    send_oversized(&socket, INPUT_LIMIT + 1);
    assert_refused(&mut socket, INPUT_LIMIT);
    // The listener serves the next page.
    let mut next = open(&terminal, "/ws");
    next.send(Message::Binary(b"echo next-$((6*7))\n".to_vec().into()))
        .unwrap();
    read_until(&mut next, "next-42");
}

/// `{"code": CODE}` padded with a comment to exactly `size` bytes.
fn code_request(code: &str, size: usize) -> String {
    let bare = json!({ "code": format!("{code} #") }).to_string();
    let padding = size - bare.len();
    json!({ "code": format!("{code} #{}", "x".repeat(padding)) }).to_string()
}

#[test]
fn interpreter_requests_are_taken_up_to_16_mib_and_refused_past_it() {
    let daemon = Toolboxd::start();
    let request = code_request("print(6*7)", REQUEST_LIMIT);
    assert_eq!(request.len(), REQUEST_LIMIT);
    let mut socket = open(&daemon.base, "/process/interpreter/execute");
    socket.send(Message::Text(request.into())).unwrap();
    let (frames, close) = read_to_close(&mut socket);
    assert_eq!(close.map(|c| c.0), Some(1000));
    assert!(String::from_utf8_lossy(&frames).contains("42"));

    let mut socket = open(&daemon.base, "/process/interpreter/execute");
    send_oversized(&socket, REQUEST_LIMIT + 1);
    assert_refused(&mut socket, REQUEST_LIMIT);

    let mut socket = open(&daemon.base, "/process/interpreter/execute");
    socket
        .send(Message::Text(
            json!({"code": "print(7*6)"}).to_string().into(),
        ))
        .unwrap();
    let (frames, close) = read_to_close(&mut socket);
    assert_eq!(close.map(|c| c.0), Some(1000));
    assert!(String::from_utf8_lossy(&frames).contains("42"));
}

#[test]
fn watch_sockets_take_64_kib_from_their_listener_and_refuse_more() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.path("w")).unwrap();
    let path = "/files/watch?path=w";
    let mut socket = open(&daemon.base, path);
    socket
        .send(Message::Text("x".repeat(LISTENER_LIMIT).into()))
        .unwrap();
    std::fs::write(daemon.path("w/one.txt"), "1").unwrap();
    read_until(&mut socket, "one.txt");
    send_oversized(&socket, LISTENER_LIMIT + 1);
    assert_refused(&mut socket, LISTENER_LIMIT);
    let mut next = open(&daemon.base, path);
    std::fs::write(daemon.path("w/two.txt"), "2").unwrap();
    read_until(&mut next, "two.txt");
}

#[test]
fn session_log_sockets_take_64_kib_from_their_listener_and_refuse_more() {
    let daemon = Toolboxd::start();
    let response = daemon.post_json("/process/session", &json!({"sessionId": "s"}));
    assert_eq!(response.status().as_u16(), 201);
    let exec = json(
        daemon.post_json(
            "/process/session/s/exec",
            &json!({"command": "read a; echo got-$a; read b; echo got-$b", "runAsync": true}),
        ),
        202,
    );
    let cmd = exec["cmdId"].as_str().unwrap().to_string();
    let input = format!("/process/session/s/command/{cmd}/input");
    let logs = format!("/process/session/s/command/{cmd}/logs?follow=true");
    let mut socket = open(&daemon.base, &logs);
    socket
        .send(Message::Binary(vec![0; LISTENER_LIMIT].into()))
        .unwrap();
    assert_eq!(
        daemon
            .post_json(&input, &json!({"data": "one\n"}))
            .status()
            .as_u16(),
        204
    );
    read_until(&mut socket, "got-one");
    send_oversized(&socket, LISTENER_LIMIT + 1);
    assert_refused(&mut socket, LISTENER_LIMIT);
    // The command goes on; a new follower gets all of it.
    let mut next = open(&daemon.base, &logs);
    assert_eq!(
        daemon
            .post_json(&input, &json!({"data": "two\n"}))
            .status()
            .as_u16(),
        204
    );
    let (data, close) = read_to_close(&mut next);
    assert_eq!(close.map(|c| c.0), Some(1000));
    let text = String::from_utf8_lossy(&data);
    assert!(
        text.contains("got-one") && text.contains("got-two"),
        "{text}"
    );
}

/// MCP bodies and stdio lines.
const MCP_LIMIT: usize = 16 * MIB;

/// `message` padded with spaces (JSON allows them after the value) to `size` bytes.
fn padded(message: &serde_json::Value, size: usize) -> Vec<u8> {
    let mut bytes = message.to_string().into_bytes();
    assert!(bytes.len() <= size);
    bytes.resize(size, b' ');
    bytes
}

#[test]
fn mcp_bodies_are_taken_up_to_16_mib_and_refused_past_it_with_the_wire_body() {
    let daemon = Toolboxd::start();
    let accept = "application/json, text/event-stream";
    let post = |body: Vec<u8>, session: Option<&str>| {
        let mut request = daemon
            .client
            .post(daemon.url("/mcp"))
            .header("accept", accept)
            .header("content-type", "application/json")
            .body(body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        request.send().unwrap()
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "it", "version": "1"}}});
    let response = post(init.to_string().into_bytes(), None);
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = response.text();
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        post(ack.to_string().into_bytes(), Some(&session)).status(),
        202
    );
    let ping = |id: u64| json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
    // At the limit.
    let response = post(padded(&ping(1), MCP_LIMIT), Some(&session));
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("\"id\":1"));
    // One byte over: 413 with the wire body, and the next request is served.
    let refused = assert_error(
        post(padded(&ping(2), MCP_LIMIT + 1), Some(&session)),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert!(
        refused["message"].as_str().unwrap().contains("16777216"),
        "{refused}"
    );
    assert_eq!(refused["path"], "/mcp");
    let response = post(ping(3).to_string().into_bytes(), Some(&session));
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("\"id\":3"));
}

#[test]
fn mcp_stdio_lines_over_16_mib_are_answered_with_an_error_and_the_server_goes_on() {
    use std::io::{BufRead, BufReader, Write};
    let work = tempfile::tempdir().unwrap();
    let mut child = crate::mcp::stdio_server(work.path());
    let mut stdin = child.stdin.take().unwrap();
    // Lines from stdout, read on a thread so that a missing answer fails the test.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (lines, answers) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut send = |mut line: Vec<u8>| {
        line.push(b'\n');
        stdin.write_all(&line).unwrap();
        stdin.flush().unwrap();
    };
    let next = || {
        let line = answers
            .recv_timeout(Duration::from_secs(60))
            .expect("an answer");
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|err| panic!("{err}: {line:?}"))
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "it", "version": "1"}}});
    send(init.to_string().into_bytes());
    assert_eq!(next()["id"], 1);
    send(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
            .to_string()
            .into_bytes(),
    );
    let ping = |id: u64| json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
    // At the limit.
    send(padded(&ping(2), MCP_LIMIT));
    let answer = next();
    assert_eq!(answer["id"], 2, "{answer}");
    assert!(answer["result"].is_object(), "{answer}");
    // One byte over: a JSON-RPC error for that id.
    send(padded(&ping(3), MCP_LIMIT + 1));
    let answer = next();
    assert_eq!(answer["id"], 3, "{answer}");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 16 MiB (16777216 bytes)"),
        "{answer}"
    );
    // A client that puts the id last gets it back too.
    let mut last = br#"{"jsonrpc":"2.0","method":"ping","params":{"p":""#.to_vec();
    last.resize(MCP_LIMIT + 10, b'x');
    last.extend_from_slice(br#""},"id":"last"}"#);
    send(last);
    let answer = next();
    assert_eq!(answer["id"], "last", "{answer}");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    // And the server goes on.
    send(ping(4).to_string().into_bytes());
    let answer = next();
    assert_eq!(answer["id"], 4, "{answer}");
    assert!(answer["result"].is_object(), "{answer}");
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "toolboxd mcp did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
