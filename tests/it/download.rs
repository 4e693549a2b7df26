//! `GET /files/download` and `POST /files/bulk-download`.

use serde_json::json;

use crate::harness::*;
use crate::transfer_support::*;

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
    assert_eq!(
        body["message"], "range bytes=100- is outside the file (12 bytes)",
        "{body}"
    );
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

#[test]
fn bulk_download_boundary_is_fresh_per_response_and_delimits_the_body() {
    let daemon = Toolboxd::start();
    // Files a fixed boundary would cut short: the old boundary (with a fake part after it), a
    // closing delimiter, a file starting with a delimiter (it follows the part headers' CRLF),
    // CRLFs and NULs.
    let fake_part = format!(
        "\r\n--{OLD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"evil\"\r\n\
         Content-Length: 4\r\n\r\nevil"
    );
    let closing = format!("\r\n--{OLD_BOUNDARY}--\r\n");
    // The report's file: 1,064,960 bytes, a closing delimiter and a tail (1,064,996 bytes).
    let mut report: Vec<u8> = (0..1_064_960u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    report.extend_from_slice(closing.as_bytes());
    report.extend_from_slice(b"trailer");
    assert_eq!(report.len(), 1_064_996);
    let contents: Vec<(&str, Vec<u8>)> = vec![
        ("report.bin", report),
        (
            "fake-part.bin",
            [b"head".as_slice(), fake_part.as_bytes(), b"tail"].concat(),
        ),
        (
            "starts-with-delimiter.bin",
            [
                format!("--{OLD_BOUNDARY}\r\n\r\n").as_bytes(),
                closing.as_bytes(),
            ]
            .concat(),
        ),
        (
            "crlf-nul.bin",
            b"\r\n\0\r\n--\r\n\r\n--toolboxd-\0".repeat(5000),
        ),
        ("only-closing.bin", closing.clone().into_bytes()),
    ];
    for (name, content) in &contents {
        write(&daemon.path(name), content);
    }
    let paths: Vec<&str> = contents.iter().map(|(name, _)| *name).collect();

    let (first, body) = bulk_download_raw(&daemon, &paths);
    let (second, _) = bulk_download_raw(&daemon, &paths);
    assert_ne!(first, second, "every response needs a boundary of its own");

    // The Content-Type's boundary is what delimits the body: one delimiter before each part and
    // the closing one, nowhere else, and each part is the file, byte for byte.
    let delimiter = format!("--{first}");
    let mut count = 0;
    let mut at = 0;
    while let Some(pos) = find_bytes(&body, delimiter.as_bytes(), at) {
        count += 1;
        at = pos + 1;
    }
    assert_eq!(count, contents.len() + 1, "delimiters in the body");
    let parts = parse_multipart(&body, &first);
    assert_eq!(parts.len(), contents.len());
    for (part, (name, content)) in parts.iter().zip(&contents) {
        assert_eq!(part.requested_path(), *name);
        assert_eq!(part.name(), "file", "{name}: {:?}", part.headers);
        assert_eq!(part.body.len(), content.len(), "{name}");
        assert!(part.body == *content, "{name}: the bytes differ");
    }
}

#[test]
fn a_file_that_shrinks_mid_download_cuts_the_response() {
    use std::io::Read;
    let daemon = Toolboxd::start();
    // Far more than the daemon reads ahead (a few chunks) plus both sockets' buffers.
    let size = 64 * 1024 * 1024;
    let content = pseudo_random(size, 11);
    let shrink = |response: &mut Response| {
        let mut head = vec![0u8; 1024 * 1024];
        response.read_exact(&mut head).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(daemon.path("big.bin"))
            .unwrap()
            .set_len(0)
            .unwrap();
        let mut rest = Vec::new();
        let read = response.read_to_end(&mut rest);
        (head, rest, read.is_err())
    };

    // GET: the body ends before its Content-Length.
    write(&daemon.path("big.bin"), &content);
    let mut response = download(&daemon, "big.bin").send().unwrap();
    assert_eq!(response.status(), 200);
    let (head, rest, failed) = shrink(&mut response);
    assert!(
        failed || head.len() + rest.len() < size,
        "a cut body must not look whole"
    );
    assert_eq!(head, content[..head.len()]);

    // Bulk download: the body ends without the closing delimiter.
    write(&daemon.path("big.bin"), &content);
    let mut response = daemon
        .client
        .post(daemon.url("/files/bulk-download"))
        .json(&json!({ "paths": ["big.bin"] }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let boundary = header(&response, "content-type")
        .rsplit("boundary=")
        .next()
        .unwrap()
        .to_string();
    let (head, rest, failed) = shrink(&mut response);
    let body = [head, rest].concat();
    let closing = format!("\r\n--{boundary}--");
    assert!(
        failed || find_bytes(&body, closing.as_bytes(), 0).is_none(),
        "a cut multipart body must not carry the closing delimiter"
    );

    // The daemon goes on serving.
    assert_eq!(daemon.get("/version").status(), 200);
}

// ---------------------------------------------------------------------------------------------
// 3. Sockets and files whose size the kernel does not report
// ---------------------------------------------------------------------------------------------

#[test]
fn a_unix_socket_is_refused_like_a_fifo() {
    let daemon = daemon_with_hello();
    let _listener = std::os::unix::net::UnixListener::bind(daemon.path("sock")).unwrap();
    let body = assert_error(
        download(&daemon, "sock").send().unwrap(),
        400,
        "INVALID_FILE_PATH",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{body}"
    );
    let parts = bulk_download(&daemon, &["sock", "hello.txt"]);
    assert_eq!(parts[0].name(), "error");
    let error = parts[0].error_json();
    assert_eq!(error["statusCode"], 400, "{error}");
    assert_eq!(error["code"], "INVALID_FILE_PATH", "{error}");
    assert_eq!(parts[1].body, b"hello world!");
    let replace = json!({"files": ["sock"], "pattern": "a", "newValue": "b"});
    let replaced = json(daemon.post_json("/files/replace", &replace), 200);
    assert_eq!(replaced[0]["success"], false, "{replaced}");
    assert!(
        replaced[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{replaced}"
    );
}

/// A `/sys` file that exists on this machine (sysfs files report 4096 bytes whatever they hold).
fn some_sysfs_file() -> Option<&'static str> {
    [
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/devices/system/cpu/online",
        "/sys/kernel/osrelease",
        "/sys/fs/cgroup/cgroup.controllers",
    ]
    .into_iter()
    .find(|path| std::fs::read(path).is_ok_and(|bytes| !bytes.is_empty()))
}

#[test]
fn proc_and_sys_files_are_read_to_their_end() {
    let daemon = daemon_with_hello();
    // procfs says 0 bytes: the daemon's own status is sent whole, with its real length.
    let response = download(&daemon, "/proc/self/status").send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("etag").is_none(),
        "no validator for a pseudo file"
    );
    let length: usize = header(&response, "content-length").parse().unwrap();
    let body = response.bytes().unwrap();
    assert_eq!(body.len(), length);
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("Name:\ttoolboxd"), "{text}");
    assert!(
        text.contains(&format!("\nPid:\t{}\n", daemon.pid())),
        "{text}"
    );
    let cpuinfo = download(&daemon, "/proc/cpuinfo").send().unwrap();
    assert_eq!(cpuinfo.status(), 200);
    assert!(!cpuinfo.bytes().unwrap().is_empty());

    // A range of a pseudo file that was read whole.
    let response = download(&daemon, "/proc/self/status")
        .header("range", "bytes=0-4")
        .send()
        .unwrap();
    assert_eq!(response.status(), 206);
    assert!(header(&response, "content-range").starts_with("bytes 0-4/"));
    assert_eq!(response.bytes().unwrap().as_ref(), b"Name:");

    // sysfs says 4096 bytes: exactly what the file holds is sent.
    if let Some(sys) = some_sysfs_file() {
        let response = download(&daemon, sys).send().unwrap();
        assert_eq!(response.status(), 200, "{sys}");
        assert_eq!(
            response.bytes().unwrap().as_ref(),
            std::fs::read(sys).unwrap(),
            "{sys}"
        );
    } else {
        eprintln!("no readable sysfs file: the /sys case is skipped");
    }

    // Bulk download with pseudo files first still answers everything.
    let parts = bulk_download(
        &daemon,
        &["/proc/self/status", "/proc/cpuinfo", "hello.txt"],
    );
    assert_eq!(parts.len(), 3);
    assert!(parts[0].body.starts_with(b"Name:\ttoolboxd"));
    assert_eq!(
        parts[0].header("content-length"),
        Some(parts[0].body.len().to_string().as_str())
    );
    assert!(!parts[1].body.is_empty());
    assert_eq!(parts[2].name(), "file");
    assert_eq!(parts[2].body, b"hello world!");
}

#[test]
fn a_pseudo_file_larger_than_a_chunk_streams_whole_without_a_length() {
    // /proc/kallsyms is several MiB on most kernels: more than one read-ahead chunk.
    let expected = match std::fs::read("/proc/kallsyms") {
        Ok(bytes) if bytes.len() > 1024 * 1024 => bytes,
        _ => {
            eprintln!("skipping: no /proc/kallsyms over 1 MiB here");
            return;
        }
    };
    let daemon = daemon_with_hello();
    let response = download(&daemon, "/proc/kallsyms")
        .header("range", "bytes=0-9")
        .send()
        .unwrap();
    // The size is known only at the end: no Content-Length, and the range is ignored.
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_none());
    assert!(response.headers().get("accept-ranges").is_none());
    let body = response.bytes().unwrap();
    assert_eq!(body.len(), expected.len());
    assert!(body.as_ref() == expected.as_slice(), "the bytes differ");

    let parts = bulk_download(&daemon, &["/proc/kallsyms", "hello.txt"]);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].header("content-length"), None);
    assert!(parts[0].body == expected, "the bulk part differs");
    assert_eq!(parts[1].body, b"hello world!");
}
