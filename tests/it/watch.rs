//! File watching: the WebSocket `GET /files/watch` and the long-poll form.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::harness::*;

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(daemon: &Toolboxd, query: &str) -> Socket {
    let url = format!(
        "{}/files/watch?{query}",
        daemon.base.replacen("http://", "ws://", 1)
    );
    let (socket, _) = tungstenite::connect(url).expect("watch handshake");
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    socket
}

enum Frame {
    Event(Value),
    Closed(u16, String),
    Nothing,
}

fn next(socket: &mut Socket) -> Frame {
    match socket.read() {
        Ok(Message::Text(text)) => Frame::Event(serde_json::from_str(&text).unwrap()),
        Ok(Message::Close(frame)) => frame
            .map(|f| Frame::Closed(f.code.into(), f.reason.to_string()))
            .unwrap_or(Frame::Closed(1005, String::new())),
        Ok(_) => Frame::Nothing,
        Err(tungstenite::Error::Io(err))
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Frame::Nothing
        }
        Err(err) => panic!("watch socket: {err}"),
    }
}

/// Reads events until one matches `wanted`; returns everything read up to it.
fn until(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no matching event in {seen:?}");
        match next(socket) {
            Frame::Event(event) => {
                assert!(
                    event["timestamp"].as_str().unwrap().contains('T'),
                    "{event}"
                );
                assert!(event["isDir"].is_boolean(), "{event}");
                let done = wanted(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Frame::Closed(code, reason) => panic!("closed {code} {reason}; saw {seen:?}"),
            Frame::Nothing => {}
        }
    }
}

/// Everything that arrives within `quiet` of silence.
fn drain(socket: &mut Socket, quiet: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Frame::Event(event) = next(socket) {
            seen.push(event);
            last = Instant::now();
        }
    }
    seen
}

fn is(event: &Value, kind: &str, path: &std::path::Path) -> bool {
    event["type"] == kind && event["path"] == path.to_str().unwrap()
}

/// Kernel watches the daemon holds (the `inotify wd:` lines of its inotify descriptors).
fn kernel_watches(daemon: &Toolboxd) -> usize {
    let pid = daemon.pid();
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

fn wait_for_watches(daemon: &Toolboxd, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while kernel_watches(daemon) != count {
        assert!(
            Instant::now() < deadline,
            "{} kernel watches, expected {count}",
            kernel_watches(daemon)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_modify_rename_and_remove_are_reported() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.path("w")).unwrap();
    let mut socket = connect(&daemon, "path=w");
    let file = daemon.path("w/a.txt");
    std::fs::write(&file, "one").unwrap();
    until(&mut socket, |e| {
        is(e, "create", &file) && e["isDir"] == false
    });
    std::fs::write(&file, "two").unwrap();
    until(&mut socket, |e| is(e, "modify", &file));
    let renamed = daemon.path("w/b.txt");
    std::fs::rename(&file, &renamed).unwrap();
    let seen = until(&mut socket, |e| is(e, "rename", &renamed));
    assert_eq!(
        seen.last().unwrap()["oldPath"],
        file.to_str().unwrap(),
        "{seen:?}"
    );
    std::fs::remove_file(&renamed).unwrap();
    until(&mut socket, |e| is(e, "remove", &renamed));
    let dir = daemon.path("w/sub");
    std::fs::create_dir(&dir).unwrap();
    until(&mut socket, |e| is(e, "create", &dir) && e["isDir"] == true);
    // Not recursive: a file inside the subdirectory is not reported.
    std::fs::write(daemon.path("w/sub/inner.txt"), "x").unwrap();
    std::fs::write(daemon.path("w/marker"), "x").unwrap();
    let seen = until(&mut socket, |e| is(e, "create", &daemon.path("w/marker")));
    assert!(
        !seen
            .iter()
            .any(|e| e["path"].as_str().unwrap().contains("inner")),
        "{seen:?}"
    );
}

#[test]
fn recursive_watches_follow_new_subdirectories_and_skip_git() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.path("r/.git/objects")).unwrap();
    std::fs::create_dir_all(daemon.path("r/old")).unwrap();
    let mut socket = connect(&daemon, "path=r&recursive=true");
    std::fs::write(daemon.path("r/old/x.txt"), "x").unwrap();
    until(&mut socket, |e| {
        is(e, "create", &daemon.path("r/old/x.txt"))
    });
    // A new directory tree is watched as it appears; what was made before its watch existed is
    // reported too.
    std::fs::create_dir_all(daemon.path("r/new/deeper")).unwrap();
    std::fs::write(daemon.path("r/new/deeper/y.txt"), "y").unwrap();
    until(&mut socket, |e| {
        is(e, "create", &daemon.path("r/new/deeper/y.txt"))
    });
    std::fs::write(daemon.path("r/new/deeper/y.txt"), "changed").unwrap();
    until(&mut socket, |e| {
        is(e, "modify", &daemon.path("r/new/deeper/y.txt"))
    });
    // A directory renamed inside the tree is one rename, and is watched under its new name.
    std::fs::rename(daemon.path("r/new"), daemon.path("r/moved")).unwrap();
    let seen = until(&mut socket, |e| is(e, "rename", &daemon.path("r/moved")));
    assert_eq!(
        seen.last().unwrap()["oldPath"],
        daemon.path("r/new").to_str().unwrap()
    );
    assert_eq!(seen.last().unwrap()["isDir"], true);
    std::fs::write(daemon.path("r/moved/deeper/z.txt"), "z").unwrap();
    let seen = until(&mut socket, |e| {
        is(e, "create", &daemon.path("r/moved/deeper/z.txt"))
    });
    assert!(
        !seen.iter().any(|e| e["type"] == "remove"),
        "a rename is not also a removal: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| e["path"] == daemon.path("r/moved/deeper/y.txt").to_str().unwrap()),
        "what moved with the directory is not new: {seen:?}"
    );
    // .git internals are left out.
    std::fs::write(daemon.path("r/.git/index"), "i").unwrap();
    std::fs::write(daemon.path("r/.git/objects/ab"), "o").unwrap();
    std::fs::write(daemon.path("r/after-git"), "x").unwrap();
    let seen = until(&mut socket, |e| {
        is(e, "create", &daemon.path("r/after-git"))
    });
    assert!(
        !seen
            .iter()
            .any(|e| e["path"].as_str().unwrap().contains(".git")),
        "{seen:?}"
    );
    // …unless asked for.
    let mut with_git = connect(&daemon, "path=r&recursive=true&includeGit=true");
    std::fs::write(daemon.path("r/.git/objects/cd"), "o").unwrap();
    until(&mut with_git, |e| {
        is(e, "create", &daemon.path("r/.git/objects/cd"))
    });
}

#[test]
fn a_burst_of_writes_to_one_file_is_coalesced() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.path("b")).unwrap();
    let file = daemon.path("b/hot.txt");
    std::fs::write(&file, "0").unwrap();
    let mut socket = connect(&daemon, "path=b");
    let writes = 500;
    for i in 0..writes {
        std::fs::write(&file, i.to_string()).unwrap();
    }
    std::fs::write(daemon.path("b/done"), "x").unwrap();
    let mut seen = until(&mut socket, |e| is(e, "create", &daemon.path("b/done")));
    seen.extend(drain(&mut socket, Duration::from_millis(300)));
    let modifies = seen.iter().filter(|e| is(e, "modify", &file)).count();
    assert!(modifies >= 1, "{seen:?}");
    // Each write is several inotify events (truncate, write, close); far fewer reach the client.
    assert!(
        modifies < writes / 10,
        "{modifies} modify events for {writes} writes"
    );
}

#[test]
fn closing_the_socket_releases_the_shared_kernel_watches() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.path("s/a/b")).unwrap();
    assert_eq!(kernel_watches(&daemon), 0);
    let first = connect(&daemon, "path=s&recursive=true");
    wait_for_watches(&daemon, 3);
    // A second watcher of the same tree (and one of a subtree) shares the same watches.
    let second = connect(&daemon, "path=s&recursive=true");
    let third = connect(&daemon, "path=s/a&recursive=true");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(kernel_watches(&daemon), 3);
    drop(first);
    drop(second);
    std::thread::sleep(Duration::from_millis(200));
    // The subtree's watcher still holds its two directories.
    wait_for_watches(&daemon, 2);
    drop(third);
    wait_for_watches(&daemon, 0);
}

#[test]
fn removing_the_watched_path_ends_the_watch_with_a_clear_close() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.path("gone/inside")).unwrap();
    let mut socket = connect(&daemon, "path=gone&recursive=true");
    wait_for_watches(&daemon, 2);
    std::fs::remove_dir_all(daemon.path("gone")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, reason) = loop {
        assert!(Instant::now() < deadline, "no close");
        if let Frame::Closed(code, reason) = next(&mut socket) {
            break (code, reason);
        }
    };
    assert_eq!(code, 1000);
    assert!(reason.contains("removed"), "{reason}");
    wait_for_watches(&daemon, 0);
}

#[test]
fn bad_watch_requests_are_clear_errors() {
    let daemon = Toolboxd::start();
    assert_error(daemon.get("/files/watch?path=nope"), 400, "BAD_REQUEST");
    let missing = tungstenite::connect(format!(
        "{}/files/watch?path=nope",
        daemon.base.replacen("http://", "ws://", 1)
    ));
    match missing {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }
    assert_error(
        daemon.post_json("/files/watch", &json!({"path": "nope"})),
        404,
        "FILE_NOT_FOUND",
    );
    assert_error(daemon.get("/files/watch/nope/events"), 404, "NOT_FOUND");
    assert_error(daemon.delete("/files/watch/nope"), 404, "NOT_FOUND");
}

#[test]
fn running_out_of_watches_is_a_507_and_leaves_nothing_watched() {
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("TOOLBOXD_MAX_WATCHES".to_string(), "2".to_string())],
        ..StartOptions::default()
    });
    std::fs::create_dir_all(daemon.path("big/a/b")).unwrap();
    let body = assert_error(
        daemon.post_json("/files/watch", &json!({"path": "big", "recursive": true})),
        507,
        "INSUFFICIENT_STORAGE",
    );
    assert!(
        body["message"].as_str().unwrap().contains("out of watches"),
        "{body}"
    );
    assert_eq!(kernel_watches(&daemon), 0);
    // Within the limit it works; a directory made later that does not fit ends the watch with
    // a clear close instead of silently going unwatched.
    let mut socket = connect(&daemon, "path=big/a&recursive=true");
    std::fs::create_dir(daemon.path("big/a/c")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, reason) = loop {
        assert!(Instant::now() < deadline, "no close");
        if let Frame::Closed(code, reason) = next(&mut socket) {
            break (code, reason);
        }
    };
    assert_eq!(code, 1011);
    assert!(reason.contains("out of watches"), "{reason}");
}

#[test]
fn the_long_poll_form_reports_events_by_cursor() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.path("lp/sub")).unwrap();
    let created = json(
        daemon.post_json("/files/watch", &json!({"path": "lp", "recursive": true})),
        201,
    );
    let id = created["id"].as_str().unwrap().to_string();
    std::fs::write(daemon.path("lp/sub/f.txt"), "x").unwrap();
    let url = |cursor: u64, timeout: f64| {
        format!("/files/watch/{id}/events?cursor={cursor}&timeout={timeout}")
    };
    let mut cursor = 0;
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events
        .iter()
        .any(|e: &Value| is(e, "create", &daemon.path("lp/sub/f.txt")))
    {
        assert!(Instant::now() < deadline, "{events:?}");
        let poll = json(daemon.get(&url(cursor, 10.0)), 200);
        assert_eq!(poll["dropped"], false, "{poll}");
        cursor = poll["cursor"].as_u64().unwrap();
        events.extend(poll["events"].as_array().unwrap().iter().cloned());
    }
    // Nothing new: an empty answer after the timeout, same cursor.
    let poll = json(daemon.get(&url(cursor, 0.2)), 200);
    assert_eq!(poll["events"], json!([]), "{poll}");
    assert_eq!(poll["cursor"], cursor);
    // An old cursor replays.
    let replay = json(daemon.get(&url(0, 0.0)), 200);
    assert!(!replay["events"].as_array().unwrap().is_empty(), "{replay}");
    assert_eq!(kernel_watches(&daemon), 2);
    let response = daemon.delete(&format!("/files/watch/{id}"));
    assert_eq!(response.status().as_u16(), 204);
    assert_error(daemon.get(&url(cursor, 0.0)), 404, "NOT_FOUND");
    wait_for_watches(&daemon, 0);
}

/// Every event a long-poll watcher gets until nothing comes for `quiet`.
fn poll_until_quiet(daemon: &Toolboxd, id: &str, cursor: &mut u64, quiet: f64) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let poll = json(
            daemon.get(&format!(
                "/files/watch/{id}/events?cursor={cursor}&timeout={quiet}"
            )),
            200,
        );
        assert_eq!(poll["dropped"], false, "{poll}");
        *cursor = poll["cursor"].as_u64().unwrap();
        let got = poll["events"].as_array().unwrap();
        if got.is_empty() {
            return events;
        }
        events.extend(got.iter().cloned());
    }
}

/// Checks that `events` (from one burst) are few and tell about every file in `files`: each has
/// an event of its own of `kind`, or lies in a directory an overflow says to rescan.
fn assert_bounded_and_covering(events: &[Value], files: &[std::path::PathBuf], kind: &str) {
    assert!(
        events.len() <= 300,
        "{} events for {} files",
        events.len(),
        files.len()
    );
    let exact: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    let rescan: Vec<std::path::PathBuf> = events
        .iter()
        .filter(|e| e["type"] == "overflow")
        .map(|e| {
            assert_eq!(e["isDir"], true, "{e}");
            std::path::PathBuf::from(e["path"].as_str().unwrap())
        })
        .collect();
    assert!(
        events
            .iter()
            .filter(|e| e["type"] == "overflow")
            .any(|e| e["coalesced"].as_u64().unwrap_or(0) > 0),
        "no burst summary in {events:?}"
    );
    for file in files {
        assert!(
            exact.contains(file.to_str().unwrap()) || rescan.iter().any(|d| file.starts_with(d)),
            "nothing tells about {} in {events:?}",
            file.display()
        );
    }
}

/// Five files made at once (empty: one inotify event each that matters) arrive as five exact
/// `create` events, on the socket and by long poll.
fn assert_small_burst_is_exact(
    daemon: &Toolboxd,
    socket: &mut Socket,
    id: &str,
    cursor: &mut u64,
    tag: &str,
) {
    let files: Vec<_> = (0..5)
        .map(|i| daemon.path(&format!("burst/d0/{tag}-{i}")))
        .collect();
    for file in &files {
        std::fs::File::create(file).unwrap();
    }
    let expected: Vec<(String, String)> = files
        .iter()
        .map(|f| ("create".to_string(), f.display().to_string()))
        .collect();
    let pairs = |events: Vec<Value>| -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["path"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let mut seen = until(socket, |e| is(e, "create", &files[4]));
    seen.extend(drain(socket, Duration::from_millis(300)));
    assert_eq!(pairs(seen), expected);
    assert_eq!(pairs(poll_until_quiet(daemon, id, cursor, 0.5)), expected);
}

/// Follow-up 1, item 2 (issue 14): a burst touching 10,000 files reached a watcher as 10,000
/// events. Now past 256 events in a second a watcher gets one `overflow` per directory that
/// changed (with `coalesced`), once a second; small bursts stay exact.
#[test]
fn a_burst_over_many_files_is_summed_up_per_directory() {
    let daemon = Toolboxd::start();
    let dirs: Vec<_> = (0..4)
        .map(|i| daemon.path(&format!("burst/d{i}")))
        .collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut socket = connect(&daemon, "path=burst&recursive=true");
    let created = json(
        daemon.post_json("/files/watch", &json!({"path": "burst", "recursive": true})),
        201,
    );
    let id = created["id"].as_str().unwrap().to_string();
    let mut cursor = 0;
    wait_for_watches(&daemon, 5);
    assert_small_burst_is_exact(&daemon, &mut socket, &id, &mut cursor, "before");

    let files: Vec<_> = (0..10_000)
        .map(|i| dirs[i % dirs.len()].join(format!("f{i}.txt")))
        .collect();
    for file in &files {
        std::fs::write(file, "one").unwrap();
    }
    // Summaries go out once a second: a quiet of 2.5 s means the burst is over.
    let quiet = Duration::from_millis(2500);
    let events = drain(&mut socket, quiet);
    assert_bounded_and_covering(&events, &files, "create");
    let polled = poll_until_quiet(&daemon, &id, &mut cursor, 2.5);
    assert_bounded_and_covering(&polled, &files, "create");

    for file in &files {
        std::fs::write(file, "two").unwrap();
    }
    let events = drain(&mut socket, quiet);
    assert_bounded_and_covering(&events, &files, "modify");
    let polled = poll_until_quiet(&daemon, &id, &mut cursor, 2.5);
    assert_bounded_and_covering(&polled, &files, "modify");

    // Once a burst is over, small ones are exact again.
    assert_small_burst_is_exact(&daemon, &mut socket, &id, &mut cursor, "after");
}
