//! The error contract: unknown routes, wrong methods, no trailing-slash redirects, bad bodies,
//! and requests the HTTP parser refuses before routing (raw TCP).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

#[test]
fn unknown_routes_are_json_404s_and_wrong_methods_json_405s() {
    let daemon = Toolboxd::start();
    let body = assert_error(daemon.get("/nope"), 404, "NOT_FOUND");
    assert_eq!(body["path"], "/nope");
    let body = assert_error(
        daemon.client.put(daemon.url("/files")).send().unwrap(),
        405,
        "METHOD_NOT_ALLOWED",
    );
    assert_eq!(body["method"], "PUT");
    assert_error(daemon.get("/files/bulk-upload"), 405, "METHOD_NOT_ALLOWED");
}

#[test]
fn trailing_slashes_never_redirect() {
    let daemon = Toolboxd::start();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(daemon.url("/files/info/?path=."))
        .send()
        .unwrap();
    assert!(!response.status().is_redirection());
    assert_error(response, 404, "NOT_FOUND");
    assert_eq!(
        client.get(daemon.url("/files/")).send().unwrap().status(),
        200
    );
}

#[test]
fn malformed_json_bodies_are_400s_that_say_why() {
    let daemon = Toolboxd::start();
    let send = |body: &'static str| {
        daemon
            .client
            .post(daemon.url("/files/replace"))
            .body(body)
            .send()
            .unwrap()
    };
    let message = |body: Value| body["message"].as_str().unwrap().to_string();
    let empty = assert_error(send(""), 400, "INVALID_REQUEST_BODY");
    assert!(message(empty).contains("empty"));
    let broken = assert_error(send("{\"files\":"), 400, "INVALID_REQUEST_BODY");
    assert!(message(broken).contains("JSON"));
    let wrong_type = assert_error(
        send("{\"files\":\"a\",\"pattern\":\"x\",\"newValue\":\"y\"}"),
        400,
        "INVALID_REQUEST_BODY",
    );
    assert!(message(wrong_type).contains("files"));
    assert_error(
        send("{\"files\":[\"a\"],\"pattern\":\"x\"}"),
        400,
        "INVALID_REQUEST_BODY",
    );
    assert_error(
        daemon.get("/files/find?path=.&pattern=x&maxResults=-1"),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn broken_json_says_where_it_broke() {
    let daemon = Toolboxd::start();
    let message = |body: &'static str| {
        let response = daemon
            .client
            .post(daemon.url("/files/replace"))
            .body(body)
            .send()
            .unwrap();
        let body = assert_error(response, 400, "INVALID_REQUEST_BODY");
        let text = body["message"].as_str().unwrap().to_string();
        assert!(!text.contains('?'), "names an unknown field: {text}");
        text
    };
    // Cut short after a complete field, and a missing comma: where, by line and column.
    let cut = message("{\"files\":[\"a\"],");
    assert!(cut.contains("line 1 column 15"), "{cut}");
    let comma = message("{\"files\":[\"a\"]\n \"pattern\":\"x\"}");
    assert!(comma.contains("line 2 column 2"), "{comma}");
    // A field of the wrong type: its path.
    let field = message("{\"files\":[1],\"pattern\":\"x\",\"newValue\":\"y\"}");
    assert!(field.contains("field `files[0]`"), "{field}");
    // The top-level value of the wrong type: the body, in JSON terms.
    let top = message("\"x\"");
    assert!(top.contains("the body"), "{top}");
    assert!(top.contains("expected a JSON object"), "{top}");
    // A second value after the first is refused, not ignored.
    let trailing = message("{\"files\":[\"a\"],\"pattern\":\"x\",\"newValue\":\"y\"} {}");
    assert!(trailing.contains("trailing characters"), "{trailing}");
}

#[test]
fn json_bodies_over_the_limit_are_413s_naming_it() {
    let daemon = Toolboxd::start();
    let limit = 16 * 1024 * 1024;
    let command = "x".repeat(limit);
    let body = serde_json::to_vec(&serde_json::json!({ "command": command })).unwrap();
    // Declared with Content-Length, sent whole: the client reads the answer, not a reset.
    let response = daemon
        .client
        .post(daemon.url("/process/execute"))
        .body(body.clone())
        .send()
        .unwrap();
    let error = assert_error(response, 413, "PAYLOAD_TOO_LARGE");
    let text = error["message"].as_str().unwrap();
    assert!(
        text.contains("16 MiB") && text.contains("16777216"),
        "{error}"
    );
    // Chunked, so the size shows only while reading.
    let chunks = body
        .chunks(1 << 20)
        .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
        .collect::<Vec<_>>();
    let response = daemon
        .client
        .post(daemon.url("/process/execute"))
        .body(reqwest::blocking::Body::new(ChunkReader::new(chunks)))
        .send()
        .unwrap();
    assert_error(response, 413, "PAYLOAD_TOO_LARGE");
    // The daemon goes on serving, and a body just under the limit is read.
    let response = daemon.post_json(
        "/process/execute",
        &serde_json::json!({"command": format!("true #{}", "x".repeat(limit - 64))}),
    );
    assert_eq!(json(response, 200)["exitCode"], 0);
}

/// A body reader without a known length (reqwest then sends it chunked).
struct ChunkReader {
    chunks: std::vec::IntoIter<std::io::Result<Vec<u8>>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl ChunkReader {
    fn new(chunks: Vec<std::io::Result<Vec<u8>>>) -> ChunkReader {
        ChunkReader {
            chunks: chunks.into_iter(),
            current: std::io::Cursor::new(Vec::new()),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let read = self.current.read(buf)?;
            if read > 0 {
                return Ok(read);
            }
            match self.chunks.next() {
                Some(chunk) => self.current = std::io::Cursor::new(chunk?),
                None => return Ok(0),
            }
        }
    }
}

/// Sends `request` on a fresh connection and reads until the daemon closes it.
fn raw(daemon: &Toolboxd, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(daemon.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

/// Splits raw HTTP/1.1 answers: (status, lower-cased head, body) of each.
fn answers(mut bytes: &[u8]) -> Vec<(u16, String, Vec<u8>)> {
    let mut all = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(bytes)));
        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap_or_else(|| panic!("no content-length in {head}"))
            .parse()
            .unwrap();
        let body = bytes[end + 4..end + 4 + length].to_vec();
        bytes = &bytes[end + 4 + length..];
        all.push((status, head, body));
    }
    all
}

/// The one answer in `bytes`, checked as a JSON wire error with `status` and `code`.
fn wire_error(bytes: &[u8], status: u16, code: &str) -> Value {
    let mut all = answers(bytes);
    assert_eq!(all.len(), 1, "{:?}", String::from_utf8_lossy(bytes));
    let (got, head, body) = all.remove(0);
    wire_error_parts(got, &head, &body, status, code)
}

fn wire_error_parts(got: u16, head: &str, body: &[u8], status: u16, code: &str) -> Value {
    assert_eq!(got, status, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_slice(body)
        .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(body)));
    assert_eq!(body["statusCode"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["source"], "DAYTONA_DAEMON", "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
    assert!(body["timestamp"].as_str().unwrap().contains('T'), "{body}");
    assert!(
        body["path"].is_string() && body["method"].is_string(),
        "{body}"
    );
    body
}

#[test]
fn requests_the_http_parser_refuses_get_the_json_error_body() {
    let daemon = Toolboxd::start();

    let long = format!(
        "GET /files/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let body = wire_error(&raw(&daemon, long.as_bytes()), 414, "URI_TOO_LONG");
    assert!(
        body["message"].as_str().unwrap().contains("65534"),
        "{body}"
    );
    assert_eq!(body["method"], "GET");
    assert!(
        body["path"].as_str().unwrap().starts_with("/files/aaa"),
        "{body}"
    );

    let mut many = String::from("GET /version HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-Header-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let body = wire_error(
        &raw(&daemon, many.as_bytes()),
        431,
        "REQUEST_HEADER_FIELDS_TOO_LARGE",
    );
    assert!(body["message"].as_str().unwrap().contains("100"), "{body}");
    assert_eq!(body["path"], "/version");

    let garbage = wire_error(&raw(&daemon, b"garbage\r\n\r\n"), 400, "BAD_REQUEST");
    assert!(
        garbage["message"]
            .as_str()
            .unwrap()
            .contains("request line"),
        "{garbage}"
    );

    let bad_length = b"POST /files/replace HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}";
    let body = wire_error(&raw(&daemon, bad_length), 400, "BAD_REQUEST");
    assert!(
        body["message"].as_str().unwrap().contains("Content-Length"),
        "{body}"
    );
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/files/replace");

    // On a kept-alive connection, after an answered request: the first answer is untouched.
    let pipelined = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n\
        GET /version HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n";
    let all = answers(&raw(&daemon, pipelined));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].0, 200);
    let version: Value = serde_json::from_slice(&all[0].2).unwrap();
    assert!(version["version"].is_string(), "{version}");
    wire_error_parts(all[1].0, &all[1].1, &all[1].2, 400, "BAD_REQUEST");

    // The daemon goes on serving.
    assert_eq!(daemon.get("/version").status(), 200);
}

#[test]
fn content_that_looks_like_a_parser_error_is_sent_unchanged() {
    // A file whose bytes are exactly the head hyper writes when it refuses a request: it is a
    // body, and it must reach the client as it is, whether the connection closes after it or
    // stays open for another request.
    let daemon = Toolboxd::start();
    let lookalike = "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\
                     date: Sat, 05 Dec 2026 12:36:49 GMT\r\n\r\n";
    write(&daemon.path("head.txt"), lookalike);
    let closing = raw(
        &daemon,
        b"GET /files/download?path=head.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let all = answers(&closing);
    assert_eq!(all.len(), 1, "{:?}", String::from_utf8_lossy(&closing));
    assert_eq!(all[0].0, 200);
    assert_eq!(all[0].2, lookalike.as_bytes());

    let kept = raw(
        &daemon,
        b"GET /files/download?path=head.txt HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /files/download?path=head.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let all = answers(&kept);
    assert_eq!(all.len(), 2, "{:?}", String::from_utf8_lossy(&kept));
    for (status, _, body) in all {
        assert_eq!(status, 200);
        assert_eq!(body, lookalike.as_bytes());
    }
}

#[test]
fn nul_bytes_in_paths_are_rejected() {
    let daemon = Toolboxd::start();
    assert_error(
        daemon.get("/files/info?path=a%00b"),
        400,
        "INVALID_FILE_PATH",
    );
}
