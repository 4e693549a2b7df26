//! Transfers: `GET /files/download` (headers, Range, conditional GET, HEAD), `POST
//! /files/bulk-download` (a multipart stream parsed here byte by byte), `POST /files/bulk-upload`
//! (Python and TS SDK part orders, chunked bodies), `POST /files/upload-v2` and the legacy
//! `/files/upload`, plus the failure modes: cut connections, read-only targets and full disks.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The boundary of the multipart bodies this file sends.
const UPLOAD_BOUNDARY: &str = "toolboxd-test-boundary-7f3a9c";

/// The boundary Daytona's bulk download uses.
const DAYTONA_BOUNDARY: &str = "DAYTONA-FILE-BOUNDARY";

/// One part of a multipart request body.
enum Part<'a> {
    /// A text field: name, value.
    Field(&'a str, &'a str),
    /// A file part: name, filename, content.
    File(&'a str, &'a str, &'a [u8]),
}

/// Builds a `multipart/form-data` body with `UPLOAD_BOUNDARY`.
fn multipart_body(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Field(name, value) => {
                out.extend_from_slice(
                    format!(
                        "--{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                    )
                    .as_bytes(),
                );
            }
            Part::File(name, filename, data) => {
                out.extend_from_slice(
                    format!(
                        "--{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                         Content-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(format!("--{UPLOAD_BOUNDARY}--\r\n").as_bytes());
    out
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={UPLOAD_BOUNDARY}")
}

/// POSTs a prebuilt multipart body.
fn post_multipart(daemon: &Toolboxd, path_and_query: &str, body: Vec<u8>) -> Response {
    daemon
        .client
        .post(daemon.url(path_and_query))
        .header("content-type", multipart_type())
        .body(body)
        .send()
        .unwrap()
}

/// A response header as text (panics when absent).
fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}: {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_string()
}

/// Decodes `%XX` escapes (no `+` rule: RFC 5987 values keep `+` literal).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut idx = 0;
    while idx < bytes.len() {
        if bytes[idx] == b'%' && idx + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[idx + 1..idx + 3]).unwrap();
            out.push(
                u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad escape in {text}")),
            );
            idx += 3;
        } else {
            out.push(bytes[idx]);
            idx += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| panic!("not UTF-8 after decoding: {text}"))
}

/// The `filename*=utf-8''…` value of a Content-Disposition, percent-decoded.
fn filename_star(disposition: &str) -> Option<String> {
    let start = disposition.find("filename*=")? + "filename*=".len();
    let value = disposition[start..].split(';').next().unwrap().trim();
    let lowered = value.to_ascii_lowercase();
    assert!(
        lowered.starts_with("utf-8''"),
        "filename* is not utf-8'': {disposition}"
    );
    let encoded = &value["utf-8''".len()..];
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'),
        "filename* has raw characters: {disposition}"
    );
    Some(percent_decode(encoded))
}

/// The quoted `filename="…"` value of a Content-Disposition, unescaped.
fn filename_plain(disposition: &str) -> Option<String> {
    let start = disposition.find("filename=\"")? + "filename=\"".len();
    let mut out = String::new();
    let mut chars = disposition[start..].chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            ch => out.push(ch),
        }
    }
    None
}

/// The `name="…"` of a form-data Content-Disposition.
fn disposition_name(disposition: &str) -> Option<String> {
    let start = disposition
        .find(" name=\"")
        .map(|idx| idx + " name=\"".len())?;
    let end = disposition[start..].find('"')?;
    Some(disposition[start..start + end].to_string())
}

/// A part of a multipart response.
#[derive(Debug)]
struct ResponsePart {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl ResponsePart {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn disposition(&self) -> &str {
        self.header("content-disposition")
            .unwrap_or_else(|| panic!("part without Content-Disposition: {:?}", self.headers))
    }

    fn name(&self) -> String {
        disposition_name(self.disposition()).expect("part name")
    }

    fn requested_path(&self) -> String {
        filename_star(self.disposition())
            .unwrap_or_else(|| panic!("no filename*: {}", self.disposition()))
    }

    fn error_json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "error part is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|pos| pos + from)
}

/// Parses a multipart body strictly: parts in order, every part's Content-Length (when given)
/// must end exactly at the next delimiter, and the body must end with the closing boundary.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<ResponsePart> {
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = [b"\r\n".as_slice(), &delimiter].concat();
    let mut pos = find_bytes(body, &delimiter, 0).expect("no opening boundary");
    assert!(
        body[..pos].iter().all(u8::is_ascii_whitespace),
        "garbage before the first boundary: {:?}",
        String::from_utf8_lossy(&body[..pos])
    );
    let mut parts = Vec::new();
    loop {
        pos += delimiter.len();
        if body[pos..].starts_with(b"--") {
            let rest = &body[pos + 2..];
            assert!(
                rest.is_empty() || rest == b"\r\n",
                "bytes after the closing boundary: {:?}",
                String::from_utf8_lossy(rest)
            );
            return parts;
        }
        assert!(
            body[pos..].starts_with(b"\r\n"),
            "boundary not followed by CRLF (truncated?) at {pos}"
        );
        pos += 2;
        let head_end =
            find_bytes(body, b"\r\n\r\n", pos).expect("part headers never end (truncated)");
        let head = std::str::from_utf8(&body[pos..head_end]).expect("part headers are UTF-8");
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .map(|line| {
                let (key, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad part header {line:?}"));
                (key.trim().to_string(), value.trim().to_string())
            })
            .collect();
        pos = head_end + 4;
        let length = headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
            .map(|(_, value)| value.parse::<usize>().expect("numeric part Content-Length"));
        let end = match length {
            Some(length) => {
                let end = pos + length;
                assert!(
                    body.get(end..)
                        .is_some_and(|rest| rest.starts_with(&next_delimiter)),
                    "part Content-Length {length} does not end at a boundary (headers {headers:?})"
                );
                end
            }
            None => find_bytes(body, &next_delimiter, pos).expect("part never ends (truncated)"),
        };
        parts.push(ResponsePart {
            headers,
            body: body[pos..end].to_vec(),
        });
        pos = end + 2;
    }
}

/// POSTs `/files/bulk-download` and parses the multipart answer (checking its boundary).
fn bulk_download(daemon: &Toolboxd, paths: &[&str]) -> Vec<ResponsePart> {
    let response = daemon
        .client
        .post(daemon.url("/files/bulk-download"))
        .header("accept", "multipart/form-data")
        .json(&json!({ "paths": paths }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = header(&response, "content-type");
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let boundary = content_type
        .split(';')
        .filter_map(|piece| piece.trim().strip_prefix("boundary="))
        .next()
        .expect("boundary parameter")
        .trim_matches('"')
        .to_string();
    assert_eq!(boundary, DAYTONA_BOUNDARY);
    let body = response.bytes().unwrap();
    let closing = format!("--{DAYTONA_BOUNDARY}--");
    let trimmed = body.strip_suffix(b"\r\n").unwrap_or(&body);
    assert!(
        trimmed.ends_with(closing.as_bytes()),
        "no closing boundary at the end"
    );
    parse_multipart(&body, &boundary)
}

/// The `host:port` of the toolbox API.
fn address(daemon: &Toolboxd) -> String {
    daemon.base.trim_start_matches("http://").to_string()
}

/// A response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    body: Vec<u8>,
}

/// Parses a full HTTP/1.1 response (the connection was closed after it).
fn parse_raw_response(raw: &[u8]) -> RawResponse {
    let head_end = find_bytes(raw, b"\r\n\r\n", 0)
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..head_end]).unwrap();
    let mut lines = head.split("\r\n");
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
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(key, value)| key == "transfer-encoding" && value.contains("chunked"));
    if chunked {
        let mut decoded = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = find_bytes(&body, b"\r\n", pos).expect("chunk size line");
            let size_text = std::str::from_utf8(&body[pos..line_end]).unwrap();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            pos = line_end + 2;
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&body[pos..pos + size]);
            pos += size + 2;
        }
        body = decoded;
    } else if let Some((_, length)) = headers.iter().find(|(key, _)| key == "content-length") {
        body.truncate(length.parse().unwrap());
    }
    RawResponse { status, body }
}

/// Names in `dir` that look like the daemon's temp files.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("toolboxd-tmp"))
        .collect()
}

/// Polls `check` until it is true or `limit` passes; returns the last result.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// A tmpfs mounted for one test; unmounted on drop (also when the test fails).
struct TmpfsMount {
    dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs with `options` at `dir` (created first). None when mount is not possible.
    fn mount(dir: &Path, options: &str) -> Option<TmpfsMount> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status();
        match status {
            Ok(status) if status.success() => Some(TmpfsMount {
                dir: dir.to_path_buf(),
            }),
            other => {
                eprintln!("skipping: mount -t tmpfs -o {options} failed: {other:?}");
                None
            }
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Restores a directory's mode on drop (so the temp dir can be removed).
struct ModeGuard {
    dir: PathBuf,
    mode: u32,
}

impl Drop for ModeGuard {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(self.mode));
    }
}

/// A daemon with `hello.txt` = "hello world!" (12 bytes) in its work dir.
fn daemon_with_hello() -> Toolboxd {
    let daemon = Toolboxd::start();
    write(&daemon.path("hello.txt"), "hello world!");
    daemon
}

fn download(daemon: &Toolboxd, path: &str) -> reqwest::blocking::RequestBuilder {
    daemon
        .client
        .get(daemon.url(&format!("/files/download?path={}", q(path))))
}

// ---------------------------------------------------------------------------------------------
// 1. GET /files/download
// ---------------------------------------------------------------------------------------------

#[test]
fn download_sends_the_body_with_daytona_headers() {
    let daemon = daemon_with_hello();
    let response = download(&daemon, "hello.txt").send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "application/octet-stream"
    );
    let disposition = header(&response, "content-disposition");
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(
        filename_plain(&disposition).as_deref(),
        Some("hello.txt"),
        "{disposition}"
    );
    assert!(
        disposition.contains("filename*=utf-8''hello.txt"),
        "{disposition}"
    );
    assert_eq!(header(&response, "content-description"), "File Transfer");
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    let last_modified = header(&response, "last-modified");
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    let etag = header(&response, "etag");
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    assert_eq!(header(&response, "content-length"), "12");
    assert_eq!(response.bytes().unwrap().as_ref(), b"hello world!");

    // Absolute paths work too.
    let absolute = daemon.path("hello.txt").to_string_lossy().into_owned();
    let response = download(&daemon, &absolute).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap().as_ref(), b"hello world!");
}

#[test]
fn download_range_answers_206_with_exact_bytes() {
    let daemon = daemon_with_hello();
    let response = download(&daemon, "hello.txt")
        .header("range", "bytes=2-5")
        .send()
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(header(&response, "content-range"), "bytes 2-5/12");
    assert_eq!(header(&response, "content-length"), "4");
    assert_eq!(response.bytes().unwrap().as_ref(), b"llo ");
}

#[test]
fn download_suffix_range_sends_the_tail() {
    let daemon = daemon_with_hello();
    let response = download(&daemon, "hello.txt")
        .header("range", "bytes=-3")
        .send()
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(header(&response, "content-range"), "bytes 9-11/12");
    assert_eq!(response.bytes().unwrap().as_ref(), b"ld!");
}

#[test]
fn download_range_past_the_end_is_416_with_content_range() {
    let daemon = daemon_with_hello();
    let response = download(&daemon, "hello.txt")
        .header("range", "bytes=100-")
        .send()
        .unwrap();
    assert_eq!(header(&response, "content-range"), "bytes */12");
    let body = assert_error(response, 416, "RANGE_NOT_SATISFIABLE");
    assert!(body["message"].as_str().unwrap().contains("12"), "{body}");
}

#[test]
fn download_if_none_match_with_the_etag_is_304() {
    let daemon = daemon_with_hello();
    let first = download(&daemon, "hello.txt").send().unwrap();
    assert_eq!(first.status(), 200);
    let etag = header(&first, "etag");
    let response = download(&daemon, "hello.txt")
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(header(&response, "etag"), etag);
    assert!(response.bytes().unwrap().is_empty());
    // A different tag is not a match.
    let response = download(&daemon, "hello.txt")
        .header("if-none-match", "\"other\"")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap().as_ref(), b"hello world!");
}

#[test]
fn download_if_modified_since_last_modified_is_304() {
    let daemon = daemon_with_hello();
    let first = download(&daemon, "hello.txt").send().unwrap();
    let last_modified = header(&first, "last-modified");
    let response = download(&daemon, "hello.txt")
        .header("if-modified-since", &last_modified)
        .send()
        .unwrap();
    assert_eq!(response.status(), 304);
    assert!(response.bytes().unwrap().is_empty());
    // A date long before the file's mtime gets the content.
    let response = download(&daemon, "hello.txt")
        .header("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap().as_ref(), b"hello world!");
}

#[test]
fn download_head_has_length_and_no_body() {
    let daemon = daemon_with_hello();
    let response = daemon
        .client
        .head(daemon.url("/files/download?path=hello.txt"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), "12");
    assert_eq!(
        header(&response, "content-type"),
        "application/octet-stream"
    );
    assert!(response.bytes().unwrap().is_empty());
}

#[test]
fn download_of_a_directory_is_400_invalid_file_path() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.path("adir")).unwrap();
    assert_error(
        download(&daemon, "adir").send().unwrap(),
        400,
        "INVALID_FILE_PATH",
    );
}

#[test]
fn download_of_a_missing_file_is_404_file_not_found() {
    let daemon = Toolboxd::start();
    assert_error(
        download(&daemon, "missing.txt").send().unwrap(),
        404,
        "FILE_NOT_FOUND",
    );
}

#[test]
fn download_without_path_is_400_bad_request() {
    let daemon = Toolboxd::start();
    assert_error(daemon.get("/files/download"), 400, "BAD_REQUEST");
}

#[test]
fn download_ignores_signed_url_parameters() {
    let daemon = daemon_with_hello();
    let response = daemon.get("/files/download?path=hello.txt&expires=1&signature=x");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap().as_ref(), b"hello world!");
}

#[test]
fn download_of_a_unicode_space_plus_name_with_form_encoding() {
    let daemon = Toolboxd::start();
    let name = "naïve +file é.txt";
    let relative = format!("sp ace/{name}");
    write(&daemon.path(&relative), "unicode content");
    let response = daemon.get(&format!("/files/download?path={}", form(&relative)));
    assert_eq!(response.status(), 200);
    let disposition = header(&response, "content-disposition");
    assert_eq!(
        filename_star(&disposition).as_deref(),
        Some(name),
        "{disposition}"
    );
    assert!(disposition.contains("filename=\""), "{disposition}");
    assert!(disposition.is_ascii(), "{disposition}");
    assert_eq!(response.bytes().unwrap().as_ref(), b"unicode content");
}

// ---------------------------------------------------------------------------------------------
// 2. POST /files/bulk-download
// ---------------------------------------------------------------------------------------------

#[test]
fn bulk_download_streams_parts_in_request_order() {
    let daemon = Toolboxd::start();
    write(&daemon.path("a.txt"), "alpha\n");
    let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    write(&daemon.path("bin/b.bin"), &binary);
    write(&daemon.path("empty.txt"), "");
    std::fs::create_dir_all(daemon.path("adir")).unwrap();
    write(&daemon.path("uni dir/é+ x.txt"), "unicode");
    let absolute_b = daemon.path("bin/b.bin").to_string_lossy().into_owned();

    let requested = [
        "a.txt",
        absolute_b.as_str(),
        "empty.txt",
        "missing.txt",
        "adir",
        "uni dir/é+ x.txt",
        "a.txt",
    ];
    let parts = bulk_download(&daemon, &requested);
    assert_eq!(parts.len(), requested.len(), "{parts:?}");
    for (part, path) in parts.iter().zip(requested) {
        assert_eq!(
            part.requested_path(),
            path,
            "parts out of order or filename* wrong"
        );
        assert!(
            filename_plain(part.disposition()).is_some(),
            "{}",
            part.disposition()
        );
    }
    let expect_file = |idx: usize, content: &[u8]| {
        let part = &parts[idx];
        assert_eq!(part.name(), "file", "{:?}", part.headers);
        assert_eq!(
            part.header("content-length"),
            Some(content.len().to_string().as_str())
        );
        assert_eq!(part.body, content, "part {idx}");
    };
    expect_file(0, b"alpha\n");
    expect_file(1, &binary);
    expect_file(2, b"");
    expect_file(5, b"unicode");
    expect_file(6, b"alpha\n");
    assert!(
        parts[0]
            .header("content-type")
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        parts[0].headers
    );
    assert_eq!(
        parts[1].header("content-type"),
        Some("application/octet-stream")
    );

    let expect_error = |idx: usize, status: u16, code: &str| {
        let part = &parts[idx];
        assert_eq!(part.name(), "error", "{:?}", part.headers);
        let content_type = part.header("content-type").unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let body = part.error_json();
        assert_eq!(body["statusCode"], status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["source"], "DAYTONA_DAEMON", "{body}");
        assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
        assert_eq!(body["path"], requested[idx], "{body}");
    };
    expect_error(3, 404, "FILE_NOT_FOUND");
    expect_error(4, 400, "INVALID_FILE_PATH");
}

#[test]
fn bulk_download_with_no_paths_is_400() {
    let daemon = Toolboxd::start();
    let response = daemon.post_json("/files/bulk-download", &json!({ "paths": [] }));
    assert_error(response, 400, "INVALID_REQUEST_BODY");
}

#[test]
fn bulk_download_with_a_non_json_body_is_400() {
    let daemon = Toolboxd::start();
    let response = daemon
        .client
        .post(daemon.url("/files/bulk-download"))
        .header("content-type", "application/json")
        .body("paths=a.txt")
        .send()
        .unwrap();
    assert_error(response, 400, "INVALID_REQUEST_BODY");
}

#[test]
fn bulk_download_with_an_empty_body_is_400() {
    let daemon = Toolboxd::start();
    let response = daemon.post("/files/bulk-download");
    let body = json(response, 400);
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["source"], "DAYTONA_DAEMON", "{body}");
}

// ---------------------------------------------------------------------------------------------
// 3. POST /files/bulk-upload
// ---------------------------------------------------------------------------------------------

#[test]
fn bulk_upload_python_style_all_paths_first() {
    let daemon = Toolboxd::start();
    let absolute = daemon.path("py/three.txt").to_string_lossy().into_owned();
    let two = pseudo_random(70_000, 2);
    let body = multipart_body(&[
        Part::Field("files[0].path", "py/one.txt"),
        Part::Field("files[1].path", "py/deep/nested/two.bin"),
        Part::Field("files[2].path", &absolute),
        Part::Field("files[3].path", "py/é ü.txt"),
        Part::File("files[0].file", "py/one.txt", b"one"),
        Part::File("files[1].file", "py/deep/nested/two.bin", &two),
        Part::File("files[2].file", &absolute, b""),
        Part::File("files[3].file", "py/é ü.txt", "ünïcödé".as_bytes()),
    ]);
    let response = json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(
        response,
        json!({
            "files": [
                {"path": "py/one.txt", "bytes": 3},
                {"path": "py/deep/nested/two.bin", "bytes": 70_000},
                {"path": absolute, "bytes": 0},
                {"path": "py/é ü.txt", "bytes": "ünïcödé".len()},
            ],
            "errors": []
        })
    );
    assert_eq!(std::fs::read(daemon.path("py/one.txt")).unwrap(), b"one");
    assert_eq!(
        std::fs::read(daemon.path("py/deep/nested/two.bin")).unwrap(),
        two
    );
    assert_eq!(std::fs::read(daemon.path("py/three.txt")).unwrap(), b"");
    assert_eq!(
        std::fs::read_to_string(daemon.path("py/é ü.txt")).unwrap(),
        "ünïcödé"
    );
    for dir in ["py", "py/deep", "py/deep/nested"] {
        assert_eq!(mode_of(&daemon.path(dir)), 0o755, "{dir}");
    }
}

#[test]
fn bulk_upload_ts_style_interleaved() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("files[0].path", "ts/a.txt"),
        Part::File("files[0].file", "a.txt", b"first file"),
        Part::Field("files[1].path", "ts/sub/b.txt"),
        Part::File("files[1].file", "b.txt", b"second file"),
    ]);
    let response = json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(
        response,
        json!({
            "files": [{"path": "ts/a.txt", "bytes": 10}, {"path": "ts/sub/b.txt", "bytes": 11}],
            "errors": []
        })
    );
    assert_eq!(
        std::fs::read(daemon.path("ts/a.txt")).unwrap(),
        b"first file"
    );
    assert_eq!(
        std::fs::read(daemon.path("ts/sub/b.txt")).unwrap(),
        b"second file"
    );
    assert_eq!(mode_of(&daemon.path("ts/sub")), 0o755);
    assert!(!daemon.path("a.txt").exists() && !daemon.path("b.txt").exists());
}

#[test]
fn bulk_upload_ignores_the_part_filename() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("files[0].path", "dest/real.txt"),
        Part::File("files[0].file", "decoy.txt", b"payload"),
    ]);
    let response = json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(
        response["files"],
        json!([{"path": "dest/real.txt", "bytes": 7}])
    );
    assert_eq!(
        std::fs::read(daemon.path("dest/real.txt")).unwrap(),
        b"payload"
    );
    assert!(!daemon.path("decoy.txt").exists());
    assert!(!daemon.path("dest/decoy.txt").exists());
}

#[test]
fn bulk_upload_accepts_a_chunked_request_body() {
    let daemon = Toolboxd::start();
    let big = pseudo_random(300_000, 9);
    let body = multipart_body(&[
        Part::Field("files[0].path", "chunked/a.bin"),
        Part::File("files[0].file", "a.bin", &big),
        Part::Field("files[1].path", "chunked/b.txt"),
        Part::File("files[1].file", "b.txt", b"small one"),
    ]);
    let mut stream = TcpStream::connect(address(&daemon)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST /files/bulk-upload HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        address(&daemon),
        multipart_type()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Odd chunk sizes so part boundaries fall inside chunks.
    let sizes = [1usize, 7, 100, 4093, 65_537];
    let mut pos = 0;
    let mut turn = 0;
    while pos < body.len() {
        let size = sizes[turn % sizes.len()].min(body.len() - pos);
        stream
            .write_all(format!("{size:x}\r\n").as_bytes())
            .unwrap();
        stream.write_all(&body[pos..pos + size]).unwrap();
        stream.write_all(b"\r\n").unwrap();
        pos += size;
        turn += 1;
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let response = parse_raw_response(&raw);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let value: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        value,
        json!({
            "files": [{"path": "chunked/a.bin", "bytes": 300_000}, {"path": "chunked/b.txt", "bytes": 9}],
            "errors": []
        })
    );
    assert_eq!(std::fs::read(daemon.path("chunked/a.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(daemon.path("chunked/b.txt")).unwrap(),
        b"small one"
    );
}

#[test]
fn bulk_upload_file_part_without_its_path_is_400_naming_the_index() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[Part::File("files[7].file", "orphan.txt", b"data")]);
    let response = post_multipart(&daemon, "/files/bulk-upload", body);
    let body = json(response, 400);
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert!(errors[0].as_str().unwrap().contains("[7]"), "{body}");
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(!daemon.path("orphan.txt").exists());
}

#[test]
fn bulk_upload_with_an_empty_path_is_400() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("files[0].path", ""),
        Part::File("files[0].file", "x.txt", b"data"),
    ]);
    let response = post_multipart(&daemon, "/files/bulk-upload", body);
    let body = json(response, 400);
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"));
    assert!(!errors.is_empty(), "{body}");
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(!daemon.path("x.txt").exists());
}

#[test]
fn bulk_upload_of_a_non_multipart_body_is_400() {
    let daemon = Toolboxd::start();
    let response = daemon.post_json("/files/bulk-upload", &json!({"files": ["a.txt"]}));
    let body = assert_error(response, 400, "INVALID_REQUEST_BODY");
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
}

#[test]
fn bulk_upload_over_an_existing_file_keeps_its_mode() {
    let daemon = Toolboxd::start();
    let script = daemon.path("run.sh");
    write(&script, "echo old\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let body = multipart_body(&[
        Part::Field("files[0].path", "run.sh"),
        Part::File("files[0].file", "run.sh", b"echo new\n"),
    ]);
    json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(std::fs::read_to_string(&script).unwrap(), "echo new\n");
    assert_eq!(mode_of(&script), 0o755);
}

#[test]
fn bulk_upload_through_a_symlink_writes_its_target() {
    let daemon = Toolboxd::start();
    write(&daemon.path("real/target.txt"), "old");
    std::os::unix::fs::symlink("real/target.txt", daemon.path("link.txt")).unwrap();
    let body = multipart_body(&[
        Part::Field("files[0].path", "link.txt"),
        Part::File("files[0].file", "link.txt", b"through the link"),
    ]);
    json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    let link = std::fs::symlink_metadata(daemon.path("link.txt")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(
        std::fs::read_link(daemon.path("link.txt")).unwrap(),
        Path::new("real/target.txt")
    );
    assert_eq!(
        std::fs::read_to_string(daemon.path("real/target.txt")).unwrap(),
        "through the link"
    );
    assert!(temp_files(&daemon.workdir).is_empty() && temp_files(&daemon.path("real")).is_empty());
}

#[test]
fn bulk_upload_onto_a_directory_fails_and_keeps_it() {
    let daemon = Toolboxd::start();
    write(&daemon.path("adir/inner.txt"), "inner");
    let body = multipart_body(&[
        Part::Field("files[0].path", "adir"),
        Part::File("files[0].file", "adir", b"not a dir"),
    ]);
    let response = post_multipart(&daemon, "/files/bulk-upload", body);
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    assert!((400..500).contains(&status), "status {status}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    assert!(daemon.path("adir").is_dir());
    assert_eq!(
        std::fs::read_to_string(daemon.path("adir/inner.txt")).unwrap(),
        "inner"
    );
    assert!(temp_files(&daemon.workdir).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. A 50 MiB round trip
// ---------------------------------------------------------------------------------------------

#[test]
fn fifty_mib_round_trip_is_byte_exact() {
    let daemon = Toolboxd::start();
    const SIZE: usize = 50 * 1024 * 1024;
    let data = pseudo_random(SIZE, 0x5eed_1234);
    let body = multipart_body(&[
        Part::Field("files[0].path", "big/blob.bin"),
        Part::File("files[0].file", "big/blob.bin", &data),
    ]);
    let response = json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(
        response,
        json!({"files": [{"path": "big/blob.bin", "bytes": SIZE}], "errors": []})
    );
    let on_disk = std::fs::read(daemon.path("big/blob.bin")).unwrap();
    assert!(on_disk == data, "on-disk content differs");
    drop(on_disk);

    let response = download(&daemon, "big/blob.bin").send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), SIZE.to_string());
    let downloaded = response.bytes().unwrap();
    assert_eq!(downloaded.len(), SIZE);
    assert!(
        downloaded.as_ref() == data.as_slice(),
        "GET /files/download content differs"
    );
    drop(downloaded);

    let parts = bulk_download(&daemon, &["big/blob.bin"]);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].name(), "file");
    assert_eq!(
        parts[0].header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!(parts[0].body.len(), SIZE);
    assert!(parts[0].body == data, "bulk-download content differs");
}

// ---------------------------------------------------------------------------------------------
// 5. Uploads cut mid-stream
// ---------------------------------------------------------------------------------------------

/// Sends `head` + `body_start` (the body announced much larger), waits until the daemon has a
/// temp file in `dir`, then cuts the connection. Asserts the temp file goes away and `target`
/// keeps "old content".
fn cut_upload(daemon: &Toolboxd, head: &str, body_start: &[u8], dir: &Path, target: &Path) {
    let mut stream = TcpStream::connect(address(daemon)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body_start).unwrap();
    stream.write_all(&pseudo_random(1 << 20, 77)).unwrap();
    stream.flush().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !temp_files(dir).is_empty()),
        "the daemon never started writing a temp file (is the upload streamed?)"
    );
    stream.shutdown(Shutdown::Both).unwrap();
    drop(stream);
    let clean = wait_for(Duration::from_secs(10), || temp_files(dir).is_empty());
    assert!(
        clean,
        "temp files left after the cut: {:?}",
        temp_files(dir)
    );
    assert_eq!(std::fs::read_to_string(target).unwrap(), "old content");
    // The daemon still serves, and serves the old content.
    let response = download(daemon, &target.to_string_lossy()).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "old content");
}

#[test]
fn bulk_upload_cut_mid_stream_keeps_the_old_file_and_no_temp() {
    let daemon = Toolboxd::start();
    let target = daemon.path("cut/keep.bin");
    write(&target, "old content");
    let head = format!(
        "POST /files/bulk-upload HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        address(&daemon),
        multipart_type(),
        64 * 1024 * 1024
    );
    let body_start = format!(
        "--{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\ncut/keep.bin\r\n\
         --{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"keep.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    cut_upload(
        &daemon,
        &head,
        body_start.as_bytes(),
        &daemon.path("cut"),
        &target,
    );
}

#[test]
fn upload_v2_cut_mid_stream_keeps_the_old_file_and_no_temp() {
    let daemon = Toolboxd::start();
    let target = daemon.path("cut2/keep.bin");
    write(&target, "old content");
    let head = format!(
        "POST /files/upload-v2?path={} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        q("cut2/keep.bin"),
        address(&daemon),
        64 * 1024 * 1024
    );
    cut_upload(&daemon, &head, b"", &daemon.path("cut2"), &target);
}

// ---------------------------------------------------------------------------------------------
// 6. POST /files/upload-v2 and the legacy POST /files/upload
// ---------------------------------------------------------------------------------------------

#[test]
fn upload_v2_stores_a_raw_body() {
    let daemon = Toolboxd::start();
    let response = daemon
        .client
        .post(daemon.url(&format!(
            "/files/upload-v2?path={}",
            form("v2/raw file+.bin")
        )))
        .header("content-type", "application/octet-stream")
        .body(b"raw bytes \x00\x01\xff".to_vec())
        .send()
        .unwrap();
    let body = json(response, 200);
    assert_eq!(
        body,
        json!({"files": [{"path": "v2/raw file+.bin", "bytes": 13}], "errors": []})
    );
    assert_eq!(
        std::fs::read(daemon.path("v2/raw file+.bin")).unwrap(),
        b"raw bytes \x00\x01\xff"
    );
}

#[test]
fn upload_v2_stores_a_multipart_file_field() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("other", "ignored"),
        Part::File("file", "whatever.txt", b"multipart content"),
    ]);
    let response = post_multipart(
        &daemon,
        &format!("/files/upload-v2?path={}", q("v2/multi.txt")),
        body,
    );
    let body = json(response, 200);
    assert_eq!(
        body,
        json!({"files": [{"path": "v2/multi.txt", "bytes": 17}], "errors": []})
    );
    assert_eq!(
        std::fs::read(daemon.path("v2/multi.txt")).unwrap(),
        b"multipart content"
    );
    assert!(!daemon.path("v2/whatever.txt").exists());
}

#[test]
fn upload_v2_ignores_signed_url_parameters() {
    let daemon = Toolboxd::start();
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2?path=signed.txt&expires=1700000000&signature=abc"))
        .body("signed")
        .send()
        .unwrap();
    let body = json(response, 200);
    assert_eq!(
        body,
        json!({"files": [{"path": "signed.txt", "bytes": 6}], "errors": []})
    );
    assert_eq!(std::fs::read(daemon.path("signed.txt")).unwrap(), b"signed");
}

#[test]
fn upload_v2_without_path_is_400() {
    let daemon = Toolboxd::start();
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2"))
        .body("data")
        .send()
        .unwrap();
    assert_error(response, 400, "BAD_REQUEST");
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2?path="))
        .body("data")
        .send()
        .unwrap();
    assert_error(response, 400, "BAD_REQUEST");
}

#[test]
fn legacy_upload_stores_the_file_field() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[Part::File("file", "ignored-name.txt", b"legacy content")]);
    let response = post_multipart(
        &daemon,
        &format!("/files/upload?path={}", q("legacy/dir/l.txt")),
        body,
    );
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().unwrap_or_default()
    );
    assert_eq!(
        std::fs::read(daemon.path("legacy/dir/l.txt")).unwrap(),
        b"legacy content"
    );
}

#[test]
fn legacy_upload_without_a_file_field_is_400() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[Part::Field("notfile", "x")]);
    let response = post_multipart(&daemon, "/files/upload?path=legacy.txt", body);
    let body = json(response, 400);
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["source"], "DAYTONA_DAEMON", "{body}");
    assert!(!daemon.path("legacy.txt").exists());
}

// ---------------------------------------------------------------------------------------------
// 7. A read-only target
// ---------------------------------------------------------------------------------------------

#[test]
fn upload_into_a_read_only_directory_is_403() {
    let daemon = Toolboxd::start();
    let dir = daemon.path("locked");
    std::fs::create_dir_all(&dir).unwrap();
    // Declared after the daemon, so they drop (unmount, chmod back) before its temp dir goes.
    let _mount;
    let _mode;
    if is_root() {
        match TmpfsMount::mount(&dir, "ro,size=1m") {
            Some(mount) => _mount = mount,
            None => return,
        }
    } else {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        _mode = ModeGuard {
            dir: dir.clone(),
            mode: 0o755,
        };
    }

    let body = multipart_body(&[
        Part::Field("files[0].path", "locked/new.txt"),
        Part::File("files[0].file", "new.txt", b"should not land"),
    ]);
    let body = assert_error(
        post_multipart(&daemon, "/files/bulk-upload", body),
        403,
        "FILE_ACCESS_DENIED",
    );
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert!(
        errors[0].as_str().unwrap().contains("locked/new.txt"),
        "{body}"
    );
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(!dir.join("new.txt").exists());

    let response = daemon
        .client
        .post(daemon.url(&format!("/files/upload-v2?path={}", q("locked/v2.txt"))))
        .body("should not land")
        .send()
        .unwrap();
    let body = assert_error(response, 403, "FILE_ACCESS_DENIED");
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    assert!(!dir.join("v2.txt").exists());
    assert!(temp_files(&dir).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 8. A full disk
// ---------------------------------------------------------------------------------------------

#[test]
fn upload_onto_a_full_disk_is_507_and_keeps_the_old_file() {
    if !is_root() {
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let daemon = Toolboxd::start();
    let dir = daemon.path("full");
    let Some(_mount) = TmpfsMount::mount(&dir, "size=1m") else {
        return;
    };
    let target = dir.join("keep.bin");
    write(&target, "old content");
    let big = pseudo_random(4 * 1024 * 1024, 4);

    let response = daemon
        .client
        .post(daemon.url(&format!("/files/upload-v2?path={}", q("full/keep.bin"))))
        .header("content-type", "application/octet-stream")
        .body(big.clone())
        .send()
        .expect("upload-v2 got no response (was the rest of the body drained before answering?)");
    let body = assert_error(response, 507, "INSUFFICIENT_STORAGE");
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    assert_eq!(body["files"], json!([]), "{body}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old content");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    let multipart = multipart_body(&[
        Part::Field("files[0].path", "full/keep.bin"),
        Part::File("files[0].file", "keep.bin", &big),
    ]);
    let response = daemon
        .client
        .post(daemon.url("/files/bulk-upload"))
        .header("content-type", multipart_type())
        .body(multipart)
        .send()
        .expect("bulk-upload got no response (was the rest of the body drained before answering?)");
    let body = assert_error(response, 507, "INSUFFICIENT_STORAGE");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(body["files"], json!([]), "{body}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old content");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    // The disk is usable again: a small upload succeeds.
    let response = daemon
        .client
        .post(daemon.url(&format!("/files/upload-v2?path={}", q("full/keep.bin"))))
        .body("new small content")
        .send()
        .unwrap();
    json(response, 200);
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "new small content"
    );
}
