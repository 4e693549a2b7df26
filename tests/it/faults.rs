//! The fault matrix of issue 17: clients that vanish mid-transfer, a full disk, processes killed
//! with SIGKILL, SIGTERM with work in flight, and a storm of orphans. Every disconnect test
//! checks that the daemon holds no more descriptors or processes than before (`Held`) and that
//! nothing partial is left.
//!
//! Faults covered elsewhere, not repeated here:
//! - an upload cut mid-stream keeps the old file (`upload::bulk_upload_cut_mid_stream_…`,
//!   `upload::upload_v2_cut_mid_stream_…`; here again with the leak check, and the legacy route);
//! - an SFTP upload cut by killing the client (`ssh::an_upload_that_is_cut_leaves_the_old_file_…`);
//! - a language server killed with SIGKILL is restarted with its documents by the next request
//!   (`lsp::a_server_killed_mid_session_is_restarted_with_its_documents`);
//! - an interpreter worker killed between jobs (`interpreter::a_worker_killed_between_jobs_…`);
//! - SIGTERM with executes, a code run, a session command and a worker in flight
//!   (`cli::shutdown_answers_waiting_clients_and_ends_every_tree`), and its forwarding to the
//!   entrypoint (`entrypoint::sigterm_is_forwarded_to_the_entrypoint_and_sessions_are_cleaned_up`);
//! - a full disk for uploads and a shallow clone (`upload::upload_onto_a_full_disk_…`,
//!   `git::a_shallow_file_clone_onto_a_full_disk_…`), here gathered on one tmpfs work dir with
//!   the other writers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::transfer_support::*;
use crate::upload::cut_upload;

/// A daemon whose test client keeps no idle connection (see `unpooled_client`).
fn daemon() -> Toolboxd {
    daemon_with(StartOptions::default())
}

fn daemon_with(options: StartOptions) -> Toolboxd {
    let mut daemon = Toolboxd::start_with(options);
    daemon.client = unpooled_client();
    daemon
}

/// Connects a raw socket and sends `head` (and `body`).
fn raw(daemon: &Toolboxd, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address(daemon)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream
}

/// Reads until `needle` has arrived (or panics after 30 s); returns what was read.
fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buffer = [0u8; 8192];
    while find_bytes(&got, needle, 0).is_none() {
        let n = stream.read(&mut buffer).expect("read from the daemon");
        assert!(
            n > 0,
            "connection ended before {:?}: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buffer[..n]);
    }
    got
}

/// Waits (at most 20 s) for a descendant of the daemon whose command line contains `needle`.
fn wait_for_descendant(daemon: &Toolboxd, needle: &str) -> i32 {
    let mut found = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            found = descendants(daemon.pid())
                .into_iter()
                .find(|pid| is_alive(*pid) && cmdline(*pid).contains(needle));
            found.is_some()
        }),
        "no process {needle:?} under the daemon"
    );
    found.unwrap()
}

fn kill(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

/// No file in `dir` (recursively) is one of the daemon's temp files.
fn assert_no_temp_files(dir: &Path) {
    let left: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().contains("toolboxd-tmp"))
        .map(|entry| entry.path().display().to_string())
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// 1. Clients that disconnect
// ---------------------------------------------------------------------------------------------

/// Each upload route, cut after the daemon started its temp file: the old file stays, no temp
/// file is left, and the daemon holds what it held before.
#[test]
fn mid_upload_disconnect_leaks_nothing() {
    let daemon = daemon();
    let dir = daemon.path("cut");
    let target = dir.join("keep.bin");
    write(&target, "old content");
    let boundary = UPLOAD_BOUNDARY;
    let host = address(&daemon);
    let announced = 64 * 1024 * 1024;
    let part = |name: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"keep.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
    };
    let cases = [
        (
            format!(
                "POST /files/upload?path={} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {}\r\nContent-Length: {announced}\r\n\r\n",
                q("cut/keep.bin"),
                multipart_type()
            ),
            part("file"),
        ),
        (
            format!(
                "POST /files/bulk-upload HTTP/1.1\r\nHost: {host}\r\nContent-Type: {}\r\nContent-Length: {announced}\r\n\r\n",
                multipart_type()
            ),
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\ncut/keep.bin\r\n{}",
                part("files[0].file")
            ),
        ),
        (
            format!(
                "POST /files/upload-v2?path={} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {announced}\r\n\r\n",
                q("cut/keep.bin"),
            ),
            String::new(),
        ),
    ];
    // One whole upload first, so what the first one opens for good is in the baseline.
    let response = daemon
        .client
        .post(daemon.url(&format!("/files/upload-v2?path={}", q("cut/warm.bin"))))
        .body("warm")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let held = Held::of(&daemon);
    for (head, body_start) in &cases {
        cut_upload(&daemon, head, body_start.as_bytes(), &dir, &target);
        held.assert_settled(&daemon, head.lines().next().unwrap());
    }
    assert_no_temp_files(&daemon.workdir);
}

/// A 64 MiB download read for a few KiB, then the socket dropped.
#[test]
fn mid_download_disconnect_leaks_nothing() {
    let daemon = daemon();
    let big = daemon.path("big.bin");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(64 << 20).unwrap();
    drop(file);
    let head = format!(
        "GET /files/download?path=big.bin HTTP/1.1\r\nHost: {}\r\n\r\n",
        address(&daemon)
    );
    let held = Held::of(&daemon);
    for _ in 0..3 {
        let mut stream = raw(&daemon, &head, b"");
        let got = read_until(&mut stream, b"\r\n\r\n");
        assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", &got[..12]);
        let mut some = vec![0u8; 16 << 10];
        stream.read_exact(&mut some).unwrap();
        drop(stream);
        held.assert_settled(&daemon, "a download dropped after 16 KiB");
    }
    // The file is untouched and still served whole.
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 64 << 20);
    let response = daemon.get("/files/download?path=big.bin");
    assert_eq!(response.bytes().unwrap().len(), 64 << 20);
    held.assert_settled(&daemon, "a whole download");
}

/// A session command's log WebSocket dropped without a close frame while output flows; the
/// command goes on, and once it is deleted the daemon holds what it held before the session.
#[test]
fn mid_log_follow_disconnect_leaks_nothing() {
    let daemon = daemon();
    let before_session = Held::of(&daemon);
    crate::session::create(&daemon, "f");
    // Builtins only (`read -t` on a FIFO no one writes waits 20 ms): no short-lived
    // children to blur the process count.
    let cmd = crate::session::exec_async(
        &daemon,
        "f",
        json!({"command": "mkfifo tick.fifo; exec 3<>tick.fifo; while :; do echo line; read -t 0.02 -u 3; done", "runAsync": true}),
    );
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .path("tick.fifo")
            .exists()),
        "the command never started"
    );
    std::thread::sleep(Duration::from_millis(100));
    let held = Held::of(&daemon);
    let path = format!("/process/session/f/command/{cmd}/logs?follow=true");
    for _ in 0..3 {
        let url = format!("{}{}", daemon.base.replacen("http://", "ws://", 1), path);
        let (mut socket, _) = tungstenite::connect(url).expect("websocket handshake");
        let mut got = 0;
        while got < 64 {
            match socket.read().expect("a log frame") {
                tungstenite::Message::Binary(data) => got += data.len(),
                tungstenite::Message::Text(text) => got += text.len(),
                _ => {}
            }
        }
        // Drop the TCP connection under the WebSocket: no close frame.
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.shutdown(Shutdown::Both).unwrap();
        }
        drop(socket);
        held.assert_settled(&daemon, "a log follower dropped its connection");
    }
    // The command still runs and logs.
    let info = json(
        daemon.get(&format!("/process/session/f/command/{cmd}")),
        200,
    );
    assert!(info["exitCode"].is_null(), "{info}");
    assert_eq!(daemon.delete("/process/session/f").status(), 204);
    before_session.assert_settled(&daemon, "the session was deleted");
}

/// A PTY running `yes`, its client dropping TCP: the PTY lives on (PTYs outlive their
/// clients), the dropped client's queue and socket go, and deleting the PTY ends `yes`.
#[test]
fn mid_pty_disconnect_leaks_nothing() {
    let daemon = daemon();
    let before_pty = Held::of(&daemon);
    json(daemon.post_json("/process/pty", &json!({"id": "y"})), 201);
    let connect = |daemon: &Toolboxd| {
        let url = format!(
            "{}/process/pty/y/connect",
            daemon.base.replacen("http://", "ws://", 1)
        );
        tungstenite::connect(url).expect("pty handshake").0
    };
    let mut first = Some(connect(&daemon));
    first
        .as_mut()
        .unwrap()
        .send(tungstenite::Message::Binary(b"yes\n".to_vec().into()))
        .unwrap();
    let yes = wait_for_descendant(&daemon, "yes");
    let held = Held::of(&daemon);
    for _ in 0..3 {
        let mut socket = first.take().unwrap_or_else(|| connect(&daemon));
        let mut got = 0;
        while got < 64 << 10 {
            if let tungstenite::Message::Binary(data) = socket.read().expect("pty output") {
                got += data.len();
            }
        }
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.shutdown(Shutdown::Both).unwrap();
        }
        drop(socket);
        held.assert_settled(&daemon, "a PTY client dropped its connection");
        assert!(is_alive(yes), "yes ended with its client");
    }
    assert_eq!(daemon.delete("/process/pty/y").status(), 200);
    before_pty.assert_settled(&daemon, "the PTY was deleted");
    assert!(!is_alive(yes));
}

/// Sends `tools/call execute_command` with `arguments` on a raw connection, waits for the
/// command (`needle` in its command line) and the answer's head, then drops the connection.
fn mcp_call_then_drop(daemon: &Toolboxd, session: &str, arguments: Value, needle: &str) -> i32 {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "execute_command", "arguments": arguments}})
    .to_string();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAccept: {}\r\nContent-Type: application/json\r\n\
         Mcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\n\r\n",
        address(daemon),
        crate::mcp::ACCEPT,
        body.len()
    );
    let mut stream = raw(daemon, &head, body.as_bytes());
    let pid = wait_for_descendant(daemon, needle);
    let got = read_until(&mut stream, b"\r\n\r\n");
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    stream.shutdown(Shutdown::Both).unwrap();
    drop(stream);
    pid
}

/// `tools/call execute_command` over Streamable HTTP (2025-11-25), its connection dropped while
/// the command runs. By design that is not a cancellation (the MCP spec: a disconnection SHOULD
/// NOT be read as one; the client may resume the stream with `Last-Event-ID`), so the command
/// goes on: it ends at its `timeout`, and a call without one ends when its session ends
/// (`DELETE /mcp`). Either way the daemon then holds what it held before. (In 2026-07-28 the
/// request's stream closing is its cancellation: `tests/sdk/python/test_mcp.py`,
/// `test_current_revision_client`.)
#[test]
fn mid_mcp_call_disconnect_leaks_nothing() {
    let daemon = daemon();
    let session = crate::mcp::Session::open(&daemon);
    let held = Held::of(&daemon);
    // With a timeout: the tree is killed at the timeout.
    let sleep = mcp_call_then_drop(
        &daemon,
        &session.id,
        json!({"command": "sleep 30.5; echo done", "timeout": 2}),
        "sleep 30.5",
    );
    held.assert_settled(&daemon, "an MCP call with a 2 s timeout lost its client");
    assert!(!is_alive(sleep));
    // Without one: ending the session ends the call.
    let sleep = mcp_call_then_drop(
        &daemon,
        &session.id,
        json!({"command": "sleep 30.6; echo done"}),
        "sleep 30.6",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(is_alive(sleep), "the call was cancelled by the disconnect");
    let response = daemon
        .client
        .delete(daemon.url("/mcp"))
        .header("mcp-session-id", &session.id)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    held.assert_settled(&daemon, "the MCP session of an abandoned call was deleted");
    assert!(!is_alive(sleep));
    // The daemon still serves MCP.
    let session = crate::mcp::Session::open(&daemon);
    let response = session.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "execute_command", "arguments": {"command": "echo again"}}}));
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("again"));
}

/// OpenSSH `scp` (the SFTP protocol, scp's default since OpenSSH 9.0) of a 64 MiB file, the
/// client killed with SIGKILL mid-transfer: the old target stays, a new target never appears,
/// no temp file is left, and the daemon holds what it held before.
#[test]
fn mid_scp_kill_leaves_nothing_partial() {
    if !crate::ssh::have(&[]) {
        return;
    }
    let mut fx = crate::ssh::Fixture::start();
    fx.daemon.client = unpooled_client();
    let local = fx.dir.path().join("big.bin");
    crate::ssh::random_file(&local, 64 << 20);
    let existing = fx.daemon.path("keep.bin");
    write(&existing, "old content");
    let held = Held::of(&fx.daemon);
    for target in ["keep.bin", "new.bin"] {
        let mut scp = Command::new("scp")
            .args(fx.options(&fx.key))
            // 8 Mbit/s: the transfer takes a while.
            .args(["-l", "8000", "-P", &fx.port.to_string()])
            .arg(&local)
            .arg(format!("{}:{target}", fx.target()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_for(Duration::from_secs(30), || !temp_files(&fx.daemon.workdir)
                .is_empty()),
            "the transfer never started, or wrote {target} in place: {:?}",
            std::fs::read_dir(&fx.daemon.workdir)
                .unwrap()
                .flatten()
                .map(|e| (e.file_name(), e.metadata().unwrap().len()))
                .collect::<Vec<_>>(),
        );
        // Some bytes have arrived: the temp file grows.
        std::thread::sleep(Duration::from_millis(300));
        scp.kill().unwrap();
        scp.wait().unwrap();
        held.assert_settled(&fx.daemon, "scp was killed");
        assert_no_temp_files(&fx.daemon.workdir);
    }
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "old content");
    assert!(!fx.daemon.path("new.bin").exists(), "a partial new.bin");
}

// ---------------------------------------------------------------------------------------------
// 2. A full disk
// ---------------------------------------------------------------------------------------------

/// A daemon whose work dir (`DISK/work`) and HOME (`DISK/home`) are on a tmpfs of `size`
/// mounted at `DISK`: mounted by the test as root, else (or with `TOOLBOXD_TEST_UNSHARE=1`)
/// inside a user and mount namespace of the daemon's own (`unshare -rm`), which the test reaches
/// through `/proc/PID/root`. Returns the daemon, DISK as the test sees it, and the mount's guard;
/// None (with a note) when neither is possible.
fn daemon_on_tmpfs(
    size: &str,
    disk: &Path,
    env: Vec<(String, String)>,
) -> Option<(Toolboxd, std::path::PathBuf, Option<TmpfsMount>)> {
    let options = |wrapper: Vec<String>| StartOptions {
        workdir: Some(disk.join("work")),
        env: [
            env.clone(),
            vec![("HOME".to_string(), disk.join("home").display().to_string())],
        ]
        .concat(),
        wrapper,
        ..StartOptions::default()
    };
    if is_root() && std::env::var_os("TOOLBOXD_TEST_UNSHARE").is_none() {
        let mount = TmpfsMount::mount(disk, &format!("size={size}"))?;
        std::fs::create_dir_all(disk.join("work")).unwrap();
        std::fs::create_dir_all(disk.join("home")).unwrap();
        let daemon = daemon_with(options(Vec::new()));
        return Some((daemon, disk.to_path_buf(), Some(mount)));
    }
    std::fs::create_dir_all(disk).unwrap();
    let unshare = Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if !unshare {
        eprintln!("SKIP: neither mount (not root) nor unshare -rm (user namespaces) is possible");
        return None;
    }
    let script = format!(
        "mount -t tmpfs -o size={size} tmpfs \"$0\" && mkdir \"$0/work\" \"$0/home\" && exec \"$@\""
    );
    let wrapper = ["unshare", "-rm", "sh", "-c", &script]
        .iter()
        .map(|s| s.to_string())
        .chain([disk.display().to_string()])
        .collect();
    let daemon = daemon_with(options(wrapper));
    let view =
        Path::new(&format!("/proc/{}/root", daemon.pid())).join(disk.strip_prefix("/").unwrap());
    Some((daemon, view, None))
}

/// Every writer on a 2 MiB tmpfs that holds the work dir and HOME (sessions' logs): uploads
/// (legacy, bulk, v2), `/files/replace`, git clones (file:// and smart HTTP) and a session
/// command whose log fills the disk. Each answers the disk's error (507 `INSUFFICIENT_STORAGE`;
/// `/files/replace` answers per file, always 200, as the SDKs expect), leaves no temp file or half
/// a target, and once space is freed the daemon works as before.
#[test]
fn enospc_on_a_tiny_tmpfs_is_507_and_leaves_nothing() {
    let fx = crate::git_support::Fixtures::new();
    let remote = fx.remote("origin");
    // 4 MiB of hex digits: about 2 MiB in a pack, more than the disk has room for.
    let big_text: String = pseudo_random(2 << 20, 7)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    fx.push_upstream(&remote, &[("big.txt", &big_text)], "big");
    let http = fx.http();
    let temp = tempfile::tempdir().unwrap();
    let Some((daemon, disk, _mount)) = daemon_on_tmpfs("2m", &temp.path().join("disk"), Vec::new())
    else {
        return;
    };
    let work = disk.join("work");
    let target = work.join("keep.txt");
    write(&target, "old content");
    let big = pseudo_random(4 << 20, 4);
    let nothing_partial = |what: &str| {
        assert_no_temp_files(&disk);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "old content",
            "{what}"
        );
    };

    // Uploads.
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2?path=keep.txt"))
        .body(big.clone())
        .send()
        .unwrap();
    assert_error(response, 507, "INSUFFICIENT_STORAGE");
    nothing_partial("upload-v2");
    let response = post_multipart(
        &daemon,
        "/files/upload?path=keep.txt",
        multipart_body(&[Part::File("file", "keep.txt", &big)]),
    );
    assert_error(response, 507, "INSUFFICIENT_STORAGE");
    nothing_partial("upload");
    let response = post_multipart(
        &daemon,
        "/files/bulk-upload",
        multipart_body(&[
            Part::Field("files[0].path", "keep.txt"),
            Part::File("files[0].file", "keep.txt", &big),
        ]),
    );
    assert_error(response, 507, "INSUFFICIENT_STORAGE");
    nothing_partial("bulk-upload");

    // Git clones.
    for (url, body) in [
        (
            remote.file_url(),
            json!({"url": remote.file_url(), "path": "repo"}),
        ),
        (
            http.url(&remote.name()),
            json!({"url": http.url(&remote.name()), "path": "repo",
                "username": crate::git_support::USER, "password": crate::git_support::PASSWORD}),
        ),
    ] {
        let response = daemon.post_json("/git/clone", &body);
        let body = assert_error(response, 507, "INSUFFICIENT_STORAGE");
        assert!(!work.join("repo").exists(), "{url}: {body}");
        nothing_partial(&url);
    }

    // /files/replace: a file that no longer fits beside its old copy (the SDKs expect 200 and a
    // result per file).
    let replaced = work.join("r.txt");
    let original = "x".repeat(600 << 10);
    write(&replaced, &original);
    let free = nix::sys::statvfs::statvfs(&disk).unwrap();
    let room = free.blocks_available() as usize * free.fragment_size() as usize;
    let filler = work.join("filler.bin");
    write(&filler, vec![0u8; room.saturating_sub(300 << 10)]);
    let results = json(
        daemon.post_json(
            "/files/replace",
            &json!({"files": ["r.txt"], "pattern": "x", "newValue": "y"}),
        ),
        200,
    );
    assert_eq!(results[0]["success"], false, "{results}");
    assert!(
        results[0]["error"]
            .as_str()
            .unwrap()
            .contains("no space left on device"),
        "{results}"
    );
    assert!(std::fs::read_to_string(&replaced).unwrap() == original);
    nothing_partial("replace");
    std::fs::remove_file(&filler).unwrap();

    // A session command whose output outgrows the disk: the command ran, so its exit code is
    // in the answer's message, but the answer is the disk's error, and the log says it is cut.
    crate::session::create(&daemon, "s");
    let response = daemon.post_json(
        "/process/session/s/exec",
        &json!({"command": "head -c 4000000 /dev/zero | tr '\\0' x; echo; echo after"}),
    );
    let body = assert_error(response, 507, "INSUFFICIENT_STORAGE");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("exit code 0"), "{body}");
    assert!(message.contains("no space left on device"), "{body}");
    let sessions = json(daemon.get("/process/session/s"), 200);
    let cmd = sessions["commands"][0]["id"].as_str().unwrap().to_string();
    let logs = json(
        daemon.get(&format!("/process/session/s/command/{cmd}/logs")),
        200,
    );
    assert!(
        logs["stdout"]
            .as_str()
            .unwrap()
            .ends_with("later output was not kept]\n"),
        "{}",
        &logs["stdout"].as_str().unwrap()[..100]
    );
    // Deleting the session frees its logs; the daemon works as before.
    assert_eq!(daemon.delete("/process/session/s").status(), 204);
    crate::session::create(&daemon, "s2");
    let out = json(
        daemon.post_json("/process/session/s2/exec", &json!({"command": "echo ok"})),
        200,
    );
    assert_eq!(out["stdout"], "ok\n", "{out}");
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2?path=keep.txt"))
        .body("new content")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new content");
    assert_no_temp_files(&disk);
}

// ---------------------------------------------------------------------------------------------
// 3. Processes killed with SIGKILL (a language server: `lsp::a_server_killed_mid_session_…`;
//    an idle interpreter worker: `interpreter::a_worker_killed_between_jobs_…`)
// ---------------------------------------------------------------------------------------------

/// A session command killed with SIGKILL from outside: it ends with 137 and cause `signal`, and
/// the session goes on in the same shell (its variables are still set).
#[test]
fn sigkill_of_a_session_command_is_reported_and_the_session_goes_on() {
    let daemon = daemon();
    crate::session::create(&daemon, "k");
    let out = json(
        daemon.post_json("/process/session/k/exec", &json!({"command": "KEPT=yes"})),
        200,
    );
    assert_eq!(out["exitCode"], 0);
    let cmd = crate::session::exec_async(
        &daemon,
        "k",
        json!({"command": "sleep 30.7", "runAsync": true}),
    );
    let sleep = wait_for_descendant(&daemon, "sleep 30.7");
    kill(sleep, nix::sys::signal::Signal::SIGKILL);
    let mut info = Value::Null;
    assert!(
        wait_for(Duration::from_secs(10), || {
            info = json(
                daemon.get(&format!("/process/session/k/command/{cmd}")),
                200,
            );
            !info["exitCode"].is_null()
        }),
        "the killed command never ended: {info}"
    );
    assert_eq!(info["exitCode"], 137, "{info}");
    assert_eq!(info["exitCause"], "signal", "{info}");
    let out = json(
        daemon.post_json("/process/session/k/exec", &json!({"command": "echo $KEPT"})),
        200,
    );
    assert_eq!(out["stdout"], "yes\n", "{out}");
}

/// An interpreter worker killed with SIGKILL while a job runs: the job's socket closes with
/// 1011 "worker process ended", and the context's next job runs in a new worker that says the
/// old state is gone.
#[test]
fn sigkill_of_an_interpreter_worker_mid_job_is_reported_and_the_context_recovers() {
    let daemon = daemon();
    let url = format!(
        "{}/process/interpreter/execute",
        daemon.base.replacen("http://", "ws://", 1)
    );
    let run = |code: &str| {
        let (mut socket, _) = tungstenite::connect(url.as_str()).expect("handshake");
        socket
            .send(tungstenite::Message::Text(
                json!({ "code": code }).to_string().into(),
            ))
            .unwrap();
        socket
    };
    // The first job sets state; the second prints its worker's pid and hangs.
    let mut first = run("kept = 1");
    while first.read().is_ok() {}
    let mut socket = run("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(30)");
    let mut pid = None;
    while pid.is_none() {
        if let tungstenite::Message::Text(text) = socket.read().expect("a frame") {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == "stdout" {
                pid = frame["text"].as_str().unwrap().trim().parse::<i32>().ok();
            }
        }
    }
    let pid = pid.unwrap();
    kill(pid, nix::sys::signal::Signal::SIGKILL);
    let close = loop {
        match socket.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame,
            Ok(_) => {}
            Err(err) => panic!("no close frame: {err}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1011, "{close:?}");
    assert_eq!(close.reason.as_str(), "worker process ended");
    drop(socket);
    let mut next = run("print('kept' in globals())");
    let mut frames = Vec::new();
    while let Ok(message) = next.read() {
        if let tungstenite::Message::Text(text) = message {
            frames.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    let text = |kind: &str| -> String {
        frames
            .iter()
            .filter(|f| f["type"] == kind)
            .map(|f| f["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(text("stdout"), "False\n", "{frames:?}");
    assert!(text("stderr").contains("state"), "{frames:?}");
    assert!(!is_alive(pid));
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM with work in flight (executes, a code run and a worker:
//    `cli::shutdown_answers_waiting_clients_and_ends_every_tree`)
// ---------------------------------------------------------------------------------------------

/// SIGTERM while an upload streams, a sync session exec runs and a log follower is open, with an
/// entrypoint that records the signal it gets: the exec is answered 503 `SHUTTING_DOWN`, the
/// upload is either answered and whole or cut with the old file kept (never half a file), the
/// follower's socket ends, the entrypoint gets SIGTERM, toolboxd exits 0 and every process it
/// started is gone.
#[test]
fn sigterm_with_work_in_flight_drains_and_leaves_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let flag = temp.path().join("signal");
    let script = format!(
        "trap 'echo TERM > {0}; exit 0' TERM; trap 'echo INT > {0}; exit 0' INT; echo ready; \
         while :; do sleep 0.1; done",
        flag.display()
    );
    let mut daemon = daemon_with(StartOptions {
        entrypoint: vec!["sh".into(), "-c".into(), script],
        ..StartOptions::default()
    });
    assert!(
        wait_for(Duration::from_secs(10), || json(
            daemon.get("/process/session/entrypoint/logs"),
            200
        )["stdout"]
            == "ready\n"),
        "the entrypoint never started"
    );
    // A follower of a command that never ends.
    crate::session::create(&daemon, "f");
    let cmd = crate::session::exec_async(
        &daemon,
        "f",
        json!({"command": "while :; do echo tick; sleep 0.05; done", "runAsync": true}),
    );
    let (mut follower, _) = tungstenite::connect(format!(
        "{}/process/session/f/command/{cmd}/logs?follow=true",
        daemon.base.replacen("http://", "ws://", 1)
    ))
    .expect("follow handshake");
    follower.read().expect("a first log frame");
    // A sync exec that would run for 30 s.
    crate::session::create(&daemon, "s");
    let exec = {
        let client = daemon.client.clone();
        let url = daemon.url("/process/session/s/exec");
        std::thread::spawn(move || {
            let response = client
                .post(url)
                .json(&json!({"command": "sleep 30.8"}))
                .send()
                .unwrap();
            (response.status().as_u16(), response.text().unwrap())
        })
    };
    // An upload streaming 8 MiB over about 2 s.
    let target = daemon.path("up.bin");
    write(&target, "old content");
    let data = pseudo_random(8 << 20, 9);
    let head = format!(
        "POST /files/upload-v2?path=up.bin HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        address(&daemon),
        data.len()
    );
    let mut upload = raw(&daemon, &head, b"");
    let uploader = {
        let mut stream = upload.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            for chunk in data.chunks(64 << 10) {
                if stream.write_all(chunk).is_err() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            true
        })
    };
    wait_for_descendant(&daemon, "sleep 30.8");
    assert!(
        wait_for(Duration::from_secs(10), || !temp_files(&daemon.workdir)
            .is_empty()),
        "the upload never started"
    );
    let before: Vec<i32> = descendants(daemon.pid());
    kill(daemon.pid() as i32, nix::sys::signal::Signal::SIGTERM);

    let (status, text) = exec.join().unwrap();
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("SHUTTING_DOWN"), "{text}");
    // The follower's socket ends (a close frame or the connection's end), it does not hang.
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = follower.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
    loop {
        match follower.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(err)) if err.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the follower was still open 20 s after SIGTERM")
            }
            Err(_) => break,
        }
    }
    let sent_all = uploader.join().unwrap();
    let mut answer = Vec::new();
    let _ = upload.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let exit = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("toolboxd exited");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let content = std::fs::read(&target).unwrap();
    if answer.starts_with("HTTP/1.1 200") {
        assert!(
            sent_all && content == data,
            "answered 200 but the file is not whole"
        );
    } else {
        assert_eq!(
            content, b"old content",
            "a cut upload changed the file: {answer}"
        );
    }
    assert!(temp_files(&daemon.workdir).is_empty());
    assert_eq!(
        std::fs::read_to_string(&flag).expect("the entrypoint got a signal"),
        "TERM\n"
    );
    std::thread::sleep(Duration::from_millis(200));
    let left: Vec<String> = before
        .into_iter()
        .filter(|pid| is_alive(*pid))
        .map(|pid| format!("{pid} {}", cmdline(pid)))
        .collect();
    assert!(left.is_empty(), "processes outlived toolboxd: {left:?}");
    eprintln!(
        "upload answer: {}",
        answer.lines().next().unwrap_or("(none)")
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Orphans (300 from an execute: `process::orphans_are_reaped`)
// ---------------------------------------------------------------------------------------------

/// A session command forks 1,000 short-lived grandchildren and leaves them: each is reparented
/// to toolboxd (a subreaper), which reaps them all; none is left a zombie.
#[test]
fn a_thousand_orphans_leave_no_zombie() {
    let daemon = daemon();
    crate::session::create(&daemon, "o");
    // Each subshell exits at once, leaving its `sleep` to toolboxd.
    let out = json(
        daemon.post_json(
            "/process/session/o/exec",
            &json!({"command": "for i in $(seq 1000); do (sleep 0.3 &); done; echo spawned"}),
        ),
        200,
    );
    assert_eq!(out["stdout"], "spawned\n", "{out}");
    assert!(
        wait_for(Duration::from_secs(20), || {
            zombie_children(daemon.pid()).is_empty()
                && descendants(daemon.pid())
                    .into_iter()
                    .all(|pid| !cmdline(pid).starts_with("sleep 0.3"))
        }),
        "left: {} zombies, {} sleeps",
        zombie_children(daemon.pid()).len(),
        descendants(daemon.pid())
            .into_iter()
            .filter(|pid| cmdline(*pid).starts_with("sleep 0.3"))
            .count()
    );
    let out = json(
        daemon.post_json("/process/session/o/exec", &json!({"command": "echo ok"})),
        200,
    );
    assert_eq!(out["stdout"], "ok\n");
}
