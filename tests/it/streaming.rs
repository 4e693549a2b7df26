//! Listings and finds are streamed: a chunked body written as the walk goes, in the same order
//! and bytes as a whole answer; a reader that pauses or hangs up leaves the daemon healthy; what
//! fails before the first byte is still a whole JSON error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::*;

/// Directories, files per directory and matching lines per file of the tree the order is
/// checked on: a listing of many 64 KiB chunks, a find past the 1 MiB a limited answer holds in
/// memory.
const DIRS: usize = 20;
const FILES: usize = 100;
const LINES: usize = 12;

/// Builds `big/` with `dirs` x `files` files of `lines` lines with `needle`, and names whose
/// path order differs from plain string order (`a/x` sorts before `a-b` and `a.txt`).
fn tree(root: &Path, dirs: usize, files: usize, lines: usize) {
    let text: String = (1..=lines).map(|n| format!("needle {n}\n")).collect();
    for dir in 0..dirs {
        let dir = root.join(format!("big/d{dir:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for file in 0..files {
            std::fs::write(dir.join(format!("f{file:03}.txt")), &text).unwrap();
        }
    }
    for name in ["big/a/x", "big/a-b", "big/a.txt"] {
        write(&root.join(name), text.as_bytes());
    }
}

/// Every path under `dir` (relative to `dir`), sorted by name per directory, parents before
/// their children: the order the SDKs get.
fn sorted_walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let shown = format!("{prefix}{name}");
        out.push(shown.clone());
        if path.is_dir() {
            sorted_walk(&path, &format!("{shown}/"), out);
        }
    }
}

fn is_chunked(response: &Response) -> bool {
    response
        .headers()
        .get("transfer-encoding")
        .is_some_and(|v| v.to_str().unwrap().contains("chunked"))
        && response.headers().get("content-length").is_none()
}

/// Sends a GET on a raw connection, reads at least `bytes` of the answer, and hangs up.
fn read_some_and_hang_up(base: &str, path_and_query: &str, bytes: usize) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while got.len() < bytes {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the answer ended after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    // Unread data makes the close a reset, as when a client dies.
    String::from_utf8_lossy(&got[..got.len().min(512)]).into_owned()
}

#[test]
fn a_deep_listing_is_streamed_in_sorted_order() {
    let daemon = Toolboxd::start();
    tree(&daemon.workdir, DIRS, FILES, LINES);
    let mut expected = Vec::new();
    sorted_walk(&daemon.path("big"), "", &mut expected);
    let root = daemon.path("big");
    let response = daemon.get("/files?path=big&depth=3");
    assert_eq!(response.status(), 200);
    assert!(is_chunked(&response), "{:?}", response.headers());
    assert_eq!(response.headers()["content-type"], "application/json");
    let listed = json(response, 200);
    let paths: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            Path::new(e["path"].as_str().unwrap())
                .strip_prefix(&root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(paths.len(), DIRS * (FILES + 1) + 4);
    assert_eq!(paths, expected);
    assert_eq!(listed[0]["name"], "a");
    assert_eq!(listed[1]["path"], format!("{}/a/x", root.display()));
    // A small listing is the same array, streamed too.
    let small = json(daemon.get("/files?path=big/a"), 200);
    assert_eq!(small.as_array().unwrap().len(), 1);
    assert_eq!(small[0]["name"], "x");
}

#[test]
fn find_streams_every_match_in_walk_order_and_max_results_keeps_its_header() {
    let daemon = Toolboxd::start();
    tree(&daemon.workdir, DIRS, FILES, LINES);
    let mut files = Vec::new();
    sorted_walk(&daemon.path("big"), "big/", &mut files);
    let expected: Vec<(String, u64)> = files
        .iter()
        .filter(|f| daemon.path(f).is_file())
        .flat_map(|f| (1..=LINES as u64).map(move |n| (f.clone(), n)))
        .collect();
    let response = daemon.get("/files/find?path=big&pattern=needle");
    assert!(is_chunked(&response), "{:?}", response.headers());
    assert!(response.headers().get("x-toolboxd-truncated").is_none());
    let found = json(response, 200);
    let got: Vec<(String, u64)> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["file"].as_str().unwrap().to_string(),
                m["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), (DIRS * FILES + 3) * LINES);
    assert_eq!(got, expected);
    assert_eq!(found[0]["content"], "needle 1");

    // maxResults: the first N in walk order (not whichever file a thread reached first), and
    // the header, which needs the whole answer before the head.
    for _ in 0..3 {
        let limited = daemon.get("/files/find?path=big&pattern=needle&maxResults=25");
        assert_eq!(limited.headers()["x-toolboxd-truncated"], "true");
        assert!(!is_chunked(&limited));
        let limited = json(limited, 200);
        let got: Vec<_> = limited
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["file"].as_str().unwrap(), m["line"].as_u64().unwrap()))
            .collect();
        let want: Vec<_> = expected[..25]
            .iter()
            .map(|(f, n)| (f.as_str(), *n))
            .collect();
        assert_eq!(got, want);
    }
    // A limit past the end: everything, no header. Large enough to be held in a temp file.
    let whole = daemon.get(&format!(
        "/files/find?path=big&pattern=needle&maxResults={}",
        expected.len()
    ));
    assert!(whole.headers().get("x-toolboxd-truncated").is_none());
    let length: usize = whole.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        length > 1024 * 1024,
        "{length} bytes: not past the memory hold"
    );
    assert_eq!(json(whole, 200), found);
}

#[test]
fn readers_that_pause_or_hang_up_leave_the_daemon_healthy() {
    let daemon = Toolboxd::start();
    // Answers of several MiB, more than the socket buffers take, so hang-ups come mid-stream.
    tree(&daemon.workdir, 20, 250, 20);
    let list = "/files?path=big&depth=3";
    let find = "/files/find?path=big&pattern=needle";
    let bytes = |route: &str| {
        let response = daemon.get(route);
        assert_eq!(response.status(), 200);
        response.bytes().unwrap().to_vec()
    };
    let whole_list = bytes(list);
    let whole_find = bytes(find);

    // A reader that takes the head and a little, then stops reading for a while: other requests
    // are served meanwhile, and the rest arrives intact once it reads on.
    let client = Client::builder().no_proxy().build().unwrap();
    let mut paused = client.get(daemon.url(find)).send().unwrap();
    assert!(is_chunked(&paused));
    let mut body = vec![0u8; 1024];
    paused.read_exact(&mut body).unwrap();
    assert!(body.starts_with(b"[{\"file\":\"big/a/x\",\"line\":1,"));
    assert_eq!(bytes(list), whole_list);
    paused.read_to_end(&mut body).unwrap();
    assert!(body == whole_find);

    // Readers that hang up mid-stream, several at once.
    let hang_ups: Vec<_> = (0..6)
        .map(|idx| {
            let route = if idx % 2 == 0 { list } else { find }.to_string();
            let base = daemon.base.clone();
            std::thread::spawn(move || read_some_and_hang_up(&base, &route, 64 * 1024))
        })
        .collect();
    for hang_up in hang_ups {
        let head = hang_up.join().unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"));
    }
    assert_eq!(json(daemon.get("/version"), 200)["version"], "v0.1.0");
    assert!(bytes(list) == whole_list);
    assert!(bytes(find) == whole_find);
}

#[test]
fn what_fails_before_the_first_byte_is_a_whole_json_error() {
    let daemon = Toolboxd::start();
    write(&daemon.path("dir/a.txt"), "needle\n");
    let whole = |response: Response| {
        assert!(!is_chunked(&response), "{:?}", response.headers());
        response
    };
    for (route, status, code) in [
        ("/files?path=missing&depth=5", 404, "FILE_NOT_FOUND"),
        ("/files?path=dir/a.txt&depth=5", 400, "INVALID_FILE_PATH"),
        ("/files?path=dir&depth=0", 400, "BAD_REQUEST"),
        ("/files/find?path=missing&pattern=x", 404, "FILE_NOT_FOUND"),
        (
            "/files/find?path=dir&pattern=(&regex=true",
            400,
            "BAD_REQUEST",
        ),
        (
            "/files/find?path=dir&pattern=(&regex=true&maxResults=3",
            400,
            "BAD_REQUEST",
        ),
        ("/files/find?path=dir&pattern=", 400, "BAD_REQUEST"),
    ] {
        let body = assert_error(whole(daemon.get(route)), status, code);
        assert_eq!(body["path"], route.split('?').next().unwrap(), "{route}");
    }
    if is_root() {
        // Root reads any directory; the permission cases need a plain user.
        return;
    }
    std::fs::create_dir(daemon.path("locked")).unwrap();
    write(&daemon.path("locked/inside.txt"), "needle\n");
    std::fs::set_permissions(
        daemon.path("locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let list = daemon.get("/files?path=locked");
    let find = daemon.get("/files/find?path=locked&pattern=needle");
    std::fs::set_permissions(
        daemon.path("locked"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_error(whole(list), 403, "FILE_ACCESS_DENIED");
    assert_error(whole(find), 403, "FILE_ACCESS_DENIED");
}
