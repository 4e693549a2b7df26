//! Helpers for the transfer tests: multipart bodies and a strict parser of multipart responses,
//! a raw HTTP/1.1 client for cut and chunked uploads, tmpfs and mode guards.

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
pub(crate) const UPLOAD_BOUNDARY: &str = "toolboxd-test-boundary-7f3a9c";

/// The fixed boundary toolboxd's bulk download used to send (Daytona's): a file that contained
/// it came back cut short.
pub(crate) const OLD_BOUNDARY: &str = "DAYTONA-FILE-BOUNDARY";

/// One part of a multipart request body.
pub(crate) enum Part<'a> {
    /// A text field: name, value.
    Field(&'a str, &'a str),
    /// A file part: name, filename, content.
    File(&'a str, &'a str, &'a [u8]),
}

/// Builds a `multipart/form-data` body with `UPLOAD_BOUNDARY`.
pub(crate) fn multipart_body(parts: &[Part]) -> Vec<u8> {
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

pub(crate) fn multipart_type() -> String {
    format!("multipart/form-data; boundary={UPLOAD_BOUNDARY}")
}

/// POSTs a prebuilt multipart body.
pub(crate) fn post_multipart(daemon: &Toolboxd, path_and_query: &str, body: Vec<u8>) -> Response {
    daemon
        .client
        .post(daemon.url(path_and_query))
        .header("content-type", multipart_type())
        .body(body)
        .send()
        .unwrap()
}

/// A response header as text (panics when absent).
pub(crate) fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}: {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_string()
}

/// Decodes `%XX` escapes (no `+` rule: RFC 5987 values keep `+` literal).
pub(crate) fn percent_decode(text: &str) -> String {
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
pub(crate) fn filename_star(disposition: &str) -> Option<String> {
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
pub(crate) fn filename_plain(disposition: &str) -> Option<String> {
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
pub(crate) fn disposition_name(disposition: &str) -> Option<String> {
    let start = disposition
        .find(" name=\"")
        .map(|idx| idx + " name=\"".len())?;
    let end = disposition[start..].find('"')?;
    Some(disposition[start..start + end].to_string())
}

/// A part of a multipart response.
#[derive(Debug)]
pub(crate) struct ResponsePart {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl ResponsePart {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn disposition(&self) -> &str {
        self.header("content-disposition")
            .unwrap_or_else(|| panic!("part without Content-Disposition: {:?}", self.headers))
    }

    pub(crate) fn name(&self) -> String {
        disposition_name(self.disposition()).expect("part name")
    }

    pub(crate) fn requested_path(&self) -> String {
        filename_star(self.disposition())
            .unwrap_or_else(|| panic!("no filename*: {}", self.disposition()))
    }

    pub(crate) fn error_json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "error part is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub(crate) fn find_bytes(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
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
pub(crate) fn parse_multipart(body: &[u8], boundary: &str) -> Vec<ResponsePart> {
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
pub(crate) fn bulk_download(daemon: &Toolboxd, paths: &[&str]) -> Vec<ResponsePart> {
    let (boundary, body) = bulk_download_raw(daemon, paths);
    parse_multipart(&body, &boundary)
}

/// POSTs `/files/bulk-download`; returns the boundary of its Content-Type and the raw body,
/// after checking that the boundary is fresh-looking (`toolboxd-` and 32 hex digits: 128 random
/// bits, a valid RFC 2046 boundary) and that the body ends with the closing delimiter.
pub(crate) fn bulk_download_raw(daemon: &Toolboxd, paths: &[&str]) -> (String, Vec<u8>) {
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
    let random = boundary
        .strip_prefix("toolboxd-")
        .unwrap_or_else(|| panic!("boundary {boundary:?} does not start with toolboxd-"));
    assert!(
        random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()),
        "boundary {boundary:?} does not end in 32 hex digits"
    );
    let body = response.bytes().unwrap().to_vec();
    let closing = format!("\r\n--{boundary}--");
    let trimmed = body.strip_suffix(b"\r\n").unwrap_or(&body);
    assert!(
        trimmed.ends_with(closing.as_bytes()),
        "no closing boundary at the end"
    );
    (boundary, body)
}

/// The `host:port` of the toolbox API.
pub(crate) fn address(daemon: &Toolboxd) -> String {
    daemon.base.trim_start_matches("http://").to_string()
}

/// A response read off a raw socket.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Parses a full HTTP/1.1 response (the connection was closed after it).
pub(crate) fn parse_raw_response(raw: &[u8]) -> RawResponse {
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
pub(crate) fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("toolboxd-tmp"))
        .collect()
}

/// Polls `check` until it is true or `limit` passes; returns the last result.
pub(crate) fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
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
pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
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

pub(crate) fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// A tmpfs mounted for one test; unmounted on drop (also when the test fails).
pub(crate) struct TmpfsMount {
    pub(crate) dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs with `options` at `dir` (created first). None when mount is not possible.
    pub(crate) fn mount(dir: &Path, options: &str) -> Option<TmpfsMount> {
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
pub(crate) struct ModeGuard {
    pub(crate) dir: PathBuf,
    pub(crate) mode: u32,
}

impl Drop for ModeGuard {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(self.mode));
    }
}

/// A daemon with `hello.txt` = "hello world!" (12 bytes) in its work dir.
pub(crate) fn daemon_with_hello() -> Toolboxd {
    let daemon = Toolboxd::start();
    write(&daemon.path("hello.txt"), "hello world!");
    daemon
}

pub(crate) fn download(daemon: &Toolboxd, path: &str) -> reqwest::blocking::RequestBuilder {
    daemon
        .client
        .get(daemon.url(&format!("/files/download?path={}", q(path))))
}
