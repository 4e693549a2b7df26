//! Memory the daemon holds and gives back (issue 12, items 10 and 13). The daemon's own
//! `/proc/PID/status` is read: peaks through `VmHWM` (reset with `clear_refs`), what stays
//! through `RssAnon` (the heap and stacks; the binary's mapped code pages, which grow as new
//! code runs, are left out). Bounds leave at least a factor of two to what the fixed code
//! needs, and are waited for rather than timed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

const MIB: u64 = 1024 * 1024;

/// A `NNN kB` field of the daemon's `/proc/PID/status`, in bytes.
fn status(daemon: &Toolboxd, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Waits (up to 20 s) for `RssAnon` to come down to `limit`; returns the last value seen.
fn anon_settles_under(daemon: &Toolboxd, limit: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let anon = status(daemon, "RssAnon");
        if anon <= limit || Instant::now() > deadline {
            return anon;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The daemon's idle `RssAnon`, once the first requests' memory went back.
fn idle_anon(daemon: &Toolboxd) -> u64 {
    assert_eq!(daemon.get("/version").status(), 200);
    std::thread::sleep(Duration::from_secs(4));
    status(daemon, "RssAnon")
}

/// Issue 12, item 10: a capped output was held several times over (the collector's copies,
/// their clones, a text copy of each field, the whole JSON document: ~5x the cap at peak), and
/// the daemon kept tens of MiB after the answer.
#[test]
fn a_capped_output_is_held_once_and_given_back() {
    let cap = 16 * MIB;
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("TOOLBOXD_MAX_OUTPUT".into(), cap.to_string())],
        ..Default::default()
    });
    let idle = idle_anon(&daemon);
    std::fs::write(format!("/proc/{}/clear_refs", daemon.pid()), "5").unwrap();
    let before = status(&daemon, "VmHWM");
    let response = daemon.post_json(
        "/process/execute",
        &json!({"command": "head -c 67108864 /dev/zero | tr '\\0' x; echo done >&2"}),
    );
    // Too long to be built whole first: the answer streams.
    assert_eq!(
        response
            .headers()
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("chunked")
    );
    let out = json(response, 200);
    let peak = status(&daemon, "VmHWM") - before;
    assert_eq!(out["exitCode"], 0);
    assert_eq!(out["truncated"], true);
    let notice = format!("\n[toolboxd: output truncated at {cap} bytes]\n");
    let result = out["result"].as_str().unwrap();
    assert_eq!(result.len() as u64, cap + notice.len() as u64);
    assert!(result.starts_with("xxxx") && result.ends_with(&notice));
    assert_eq!(out["stdout"], out["result"]);
    assert_eq!(out["stderr"], "");
    assert!(
        peak < 2 * cap + cap / 2,
        "the daemon's peak grew by {} MiB for a {} MiB output",
        peak / MIB,
        cap / MIB
    );
    let after = anon_settles_under(&daemon, idle + 4 * MIB);
    assert!(
        after <= idle + 4 * MIB,
        "RssAnon stayed at {} MiB after the answer (idle: {} MiB)",
        after / MIB,
        idle / MIB
    );
}

/// Issue 12, item 13: after a load of concurrent searches the daemon kept its freed heap (one
/// allocator arena per busy thread, each holding up to its 32 MiB trim threshold) and stayed
/// several times its idle size.
#[test]
fn memory_goes_back_after_a_search_load() {
    let daemon = Toolboxd::start();
    // 300 files of 2000 matching lines each: every search hands out 600 000 matches.
    let line = "let needle = \"a line long enough to make the matches weigh something\";\n";
    let text = line.repeat(2000);
    for i in 0..300 {
        write(&daemon.path(&format!("tree/d{}/f{i}.rs", i % 10)), &text);
    }
    let idle = idle_anon(&daemon);
    let url = daemon.url("/files/find?path=tree&pattern=needle");
    for _round in 0..3 {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let client = daemon.client.clone();
                let url = url.clone();
                scope.spawn(move || {
                    let body = client.get(&url).send().unwrap().bytes().unwrap();
                    assert!(body.starts_with(b"[{") && body.ends_with(b"}]"));
                });
            }
        });
    }
    let limit = 2 * idle + 2 * MIB;
    let after = anon_settles_under(&daemon, limit);
    assert!(
        after <= limit,
        "RssAnon stayed at {} MiB after the searches (idle: {} MiB)",
        after / MIB,
        idle / MIB
    );
}

/// The daemon's heap in use (its `/metrics` gauge, glibc's mallinfo2), in bytes.
fn heap_in_use(daemon: &Toolboxd) -> u64 {
    let text = daemon.get("/metrics").text().unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("toolboxd_heap_in_use_bytes "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no heap gauge in /metrics:\n{text}"))
}

/// Issue 17's load: a session keeps up to `--max-history` (1000) finished commands, and each
/// was held whole (two watch channels, locks, the reader's shared state: about 1.4 KiB), so 200
/// busy sessions grew the daemon by tens of MiB within minutes. Then a finished command was a
/// record with its id and text on the heap: 352 bytes of heap in use a command here. Now it is
/// 64 bytes in its session's list, the text read back from its `cmd.sh`: 193 bytes measured, the
/// list's doubling growth and the allocator's thread caches included. The bound is 240 (heap
/// in use, which the allocator's free pages and fragmentation do not blur).
#[test]
fn a_finished_session_command_is_kept_small() {
    let daemon = Toolboxd::start();
    let sessions = 4;
    for s in 0..sessions {
        let response = daemon.post_json("/process/session", &json!({"sessionId": format!("s{s}")}));
        assert_eq!(response.status(), 201);
    }
    let run = |per_session: usize| {
        std::thread::scope(|scope| {
            for s in 0..sessions {
                let daemon = &daemon;
                scope.spawn(move || {
                    for i in 0..per_session {
                        let out = json(
                            daemon.post_json(
                                &format!("/process/session/s{s}/exec"),
                                &json!({"command": format!("echo {i}")}),
                            ),
                            200,
                        );
                        assert_eq!(out["exitCode"], 0);
                    }
                });
            }
        });
    };
    // Warm-up: thread stacks, buffers and pools reach their steady size.
    run(100);
    let before = idle_anon(&daemon);
    let heap_before = heap_in_use(&daemon);
    let per_session = 500;
    run(per_session);
    let commands = (sessions * per_session) as u64;
    // Settled, so the reader threads of the last commands are gone.
    let limit = before + commands * 700;
    let after = anon_settles_under(&daemon, limit);
    let heap_after = heap_in_use(&daemon);
    let each = heap_after.saturating_sub(heap_before) / commands;
    assert!(
        each <= 240,
        "{commands} more finished commands grew the heap in use from {heap_before} to \
         {heap_after} bytes ({each} bytes each; bound 240)"
    );
    assert!(
        after <= limit,
        "{commands} more finished commands grew RssAnon from {before} to {after} bytes \
         ({} bytes each; bound 700)",
        after.saturating_sub(before) / commands
    );
    // Each still answers in full.
    let session = json(daemon.get("/process/session/s0"), 200);
    let commands = session["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 100 + per_session);
    let last = commands.last().unwrap();
    assert_eq!(last["exitCode"], 0);
    assert_eq!(last["command"], format!("echo {}", per_session - 1));
    let cmd = last["id"].as_str().unwrap();
    let logs = json(
        daemon.get(&format!("/process/session/s0/command/{cmd}/logs")),
        200,
    );
    assert_eq!(logs["stdout"], format!("{}\n", per_session - 1));
}

/// A finished command's text is not held in memory: 16 commands of 1 MiB each (the history's
/// byte budget would have let a session hold 1 GiB of them) leave the heap as it was, and
/// each command's text still comes back whole.
#[test]
fn a_finished_command_text_is_read_back_from_disk() {
    let daemon = Toolboxd::start();
    let response = daemon.post_json("/process/session", &json!({"sessionId": "big"}));
    assert_eq!(response.status(), 201);
    let text = |i: usize| format!("echo {i} # {}", "x".repeat(1024 * 1024));
    let exec = |i: usize| -> String {
        let out = json(
            daemon.post_json("/process/session/big/exec", &json!({"command": text(i)})),
            200,
        );
        assert_eq!(out["stdout"], format!("{i}\n"));
        out["cmdId"].as_str().unwrap().to_string()
    };
    exec(0);
    let before = heap_in_use(&daemon);
    let ids: Vec<String> = (1..=16).map(exec).collect();
    // Settled: the last command's readers are gone.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let after = heap_in_use(&daemon);
    assert!(
        after < before + 1024 * 1024,
        "16 MiB of finished commands grew the heap in use from {before} to {after} bytes"
    );
    for (i, id) in ids.iter().enumerate() {
        let command = json(
            daemon.get(&format!("/process/session/big/command/{id}")),
            200,
        );
        assert_eq!(command["command"].as_str(), Some(text(i + 1).as_str()));
    }
    let session = json(daemon.get("/process/session/big"), 200);
    assert_eq!(
        session["commands"][16]["command"].as_str(),
        Some(text(16).as_str())
    );
}
