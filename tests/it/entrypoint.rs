//! The entrypoint session: `toolboxd -- CMD…` runs CMD as session `entrypoint`, command
//! `entrypoint_command`; it is hidden, read-only through the API, and SIGTERM reaches it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::session_logs::follow_ws;

fn start(entrypoint: &[&str]) -> Toolboxd {
    Toolboxd::start_with(StartOptions {
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
        ..StartOptions::default()
    })
}

fn wait_entrypoint_exit(daemon: &Toolboxd) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let session = json(daemon.get("/process/session/entrypoint"), 200);
        if let Some(code) = session["commands"][0]["exitCode"].as_i64() {
            return code;
        }
        assert!(
            Instant::now() < deadline,
            "entrypoint never ended: {session}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn entrypoint_runs_quoted_and_its_logs_are_served() {
    let daemon = start(&[
        "sh",
        "-c",
        "echo \"out $1\"; echo err >&2; exit 3",
        "x",
        "a b'c",
    ]);
    assert_eq!(wait_entrypoint_exit(&daemon), 3);
    let session = json(daemon.get("/process/session/entrypoint"), 200);
    assert_eq!(session["sessionId"], "entrypoint");
    let commands = session["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0]["id"], "entrypoint_command");
    let logs = json(daemon.get("/process/session/entrypoint/logs"), 200);
    assert_eq!(logs["stdout"], "out a b'c\n", "{logs}");
    assert_eq!(logs["stderr"], "err\n");
    let same = json(
        daemon.get("/process/session/entrypoint/command/entrypoint_command/logs"),
        200,
    );
    assert_eq!(same, logs);
    // Without an SDK version the entrypoint's log is never combined: raw text, markers kept.
    let bare = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let raw = bare
        .get(daemon.url("/process/session/entrypoint/logs"))
        .send()
        .unwrap();
    assert!(raw.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let raw = raw.text().unwrap();
    // JSON `output` is the same text without the markers.
    let stripped = raw
        .replace("\u{1}\u{1}\u{1}", "")
        .replace("\u{2}\u{2}\u{2}", "");
    assert_eq!(logs["output"], stripped, "{raw:?}");
    let followed = follow_ws(
        &daemon,
        "/process/session/entrypoint/logs?follow=true",
        None,
    );
    assert_eq!(followed.close_code, Some(1000));
    // Two pipes: the order across streams is arrival order, so compare with the stored log.
    assert_eq!(followed.bytes, raw.as_bytes());
    assert!(
        followed.bytes.starts_with(b"\x01\x01\x01") || followed.bytes.starts_with(b"\x02\x02\x02")
    );

    // Hidden from the list, and read-only through the API.
    daemon.post_json("/process/session", &json!({"sessionId": "other"}));
    let list = json(daemon.get("/process/session"), 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["other"]);
    assert_error(
        daemon.post_json(
            "/process/session/entrypoint/exec",
            &json!({"command": "echo no"}),
        ),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post_json(
            "/process/session/entrypoint/command/entrypoint_command/input",
            &json!({"data": "x"}),
        ),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.delete("/process/session/entrypoint"),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post_json("/process/session", &json!({"sessionId": "entrypoint"})),
        400,
        "BAD_REQUEST",
    );
    // The daemon keeps serving after the entrypoint exited.
    assert!(json(daemon.get("/version"), 200).is_object());
}

#[test]
fn no_entrypoint_means_404() {
    let daemon = Toolboxd::start();
    assert_error(daemon.get("/process/session/entrypoint"), 404, "NOT_FOUND");
    assert_error(
        daemon.get("/process/session/entrypoint/logs"),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn sigterm_is_forwarded_to_the_entrypoint_and_sessions_are_cleaned_up() {
    let temp = tempfile::tempdir().unwrap();
    let flag = temp.path().join("got-term");
    let script = format!(
        "trap 'echo got-term > {}; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
        flag.display()
    );
    let mut daemon = start(&["sh", "-c", &script]);
    // Wait for the trap to be installed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while json(daemon.get("/process/session/entrypoint/logs"), 200)["stdout"] != "ready\n" {
        assert!(Instant::now() < deadline, "entrypoint never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Another session with a long-running command: it must not survive toolboxd.
    daemon.post_json("/process/session", &json!({"sessionId": "s"}));
    let marker = format!("toolboxd-leftover-{}", std::process::id());
    let response = daemon.post_json(
        "/process/session/s/exec",
        &json!({"command": format!("bash -c 'trap \"\" TERM; exec -a {marker} sleep 300' &"), "runAsync": true}),
    );
    assert_eq!(response.status().as_u16(), 202);
    let running = |marker: &str| {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| cmdline.starts_with(marker.as_bytes()))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running(&marker) {
        assert!(
            Instant::now() < deadline,
            "the session's sleep never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("toolboxd exited");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(
        std::fs::read_to_string(&flag).expect("the entrypoint got SIGTERM"),
        "got-term\n"
    );
    // Killed (SIGKILL after the grace: it ignores SIGTERM) and reaped before toolboxd exited;
    // allow a moment for the kernel to drop the entry.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!running(&marker), "a session's process outlived toolboxd");
}

#[test]
fn sigint_is_forwarded_too() {
    let temp = tempfile::tempdir().unwrap();
    let flag = temp.path().join("got-int");
    let script = format!(
        "trap 'echo got-int > {}; exit 0' INT; echo ready; while :; do sleep 0.1; done",
        flag.display()
    );
    let mut daemon = start(&["sh", "-c", &script]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while json(daemon.get("/process/session/entrypoint/logs"), 200)["stdout"] != "ready\n" {
        assert!(Instant::now() < deadline, "entrypoint never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("toolboxd exited");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(std::fs::read_to_string(&flag).unwrap(), "got-int\n");
}

#[test]
fn entrypoint_logs_cli_prints_both_streams_until_the_end() {
    let daemon = start(&["sh", "-c", "echo first; sleep 1; echo second; echo bad >&2"]);
    let addr = daemon.base.trim_start_matches("http://").to_string();
    let output = std::process::Command::new(binary())
        .args(["entrypoint", "logs", "--addr", &addr])
        .env_remove("TOOLBOXD_TOOLBOX_ADDR")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "first\nsecond\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "bad\n");
    let unreachable = std::process::Command::new(binary())
        .args(["entrypoint", "logs", "--addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach toolboxd"));
}
