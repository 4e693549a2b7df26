//! The command line: help documents every option with its env var; signals stop it cleanly.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

#[test]
fn help_documents_every_option_and_env_var() {
    let output = Command::new(binary()).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--toolbox-addr",
        "TOOLBOXD_TOOLBOX_ADDR",
        "--terminal-addr",
        "TOOLBOXD_TERMINAL_ADDR",
        "--ssh-addr",
        "TOOLBOXD_SSH_ADDR",
        "--ssh-host-key",
        "TOOLBOXD_SSH_HOST_KEY",
        "--ssh-authorized-keys",
        "TOOLBOXD_SSH_AUTHORIZED_KEYS",
        "--ssh-insecure-accept-any-key",
        "--ssh-idle-timeout",
        "--workdir",
        "TOOLBOXD_WORKDIR",
        "--sdk-api-addr",
        "TOOLBOXD_SDK_API_ADDR",
        "--log-format",
        "--shell",
        "TOOLBOXD_SHELL",
        "--max-output",
        "TOOLBOXD_MAX_OUTPUT",
        "--max-log",
        "TOOLBOXD_MAX_LOG",
        "--max-history",
        "TOOLBOXD_MAX_HISTORY",
        "--max-history-bytes",
        "TOOLBOXD_MAX_HISTORY_BYTES",
        "DAYTONA_USER_HOME_AS_WORKDIR",
        "RUST_LOG",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let mut daemon = Toolboxd::start();
        assert_eq!(daemon.get("/version").status(), 200);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), signal).unwrap();
        let status = daemon
            .wait_exit(Duration::from_secs(8))
            .expect("exited within the drain deadline");
        assert_eq!(status.code(), Some(0), "{signal}");
    }
}

#[test]
fn home_as_workdir_and_bad_workdirs() {
    let daemon = Toolboxd::start_with(StartOptions {
        home_as_workdir: true,
        ..Default::default()
    });
    let home = std::fs::canonicalize(&daemon.home).unwrap();
    assert_eq!(
        json(daemon.get("/work-dir"), 200)["dir"],
        home.to_str().unwrap()
    );
    let output = Command::new(binary())
        .args([
            "--toolbox-addr",
            "127.0.0.1:0",
            "--workdir",
            "/definitely/not/here",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/definitely/not/here"));
}

#[test]
fn a_port_in_use_is_a_clear_startup_error() {
    let daemon = Toolboxd::start();
    let addr = daemon.base.trim_start_matches("http://").to_string();
    let output = Command::new(binary())
        .args(["--toolbox-addr", &addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&addr));
}

/// Shutdown ends every tree toolboxd started, not only sessions, and answers the clients still
/// waiting (issue 12, item 11): before, five `sleep 30` executes in flight got an empty reply
/// after the 5 s drain and the sleeps lived on. Here executes, a code run, a sync session command
/// and an interpreter worker are all running; every child carries a marker set with `POST /env`.
#[test]
fn shutdown_answers_waiting_clients_and_ends_every_tree() {
    let mut daemon = Toolboxd::start();
    let needle = format!("TOOLBOXD_SHUTDOWN_MARK=run-{}", std::process::id());
    let (name, value) = needle.split_once('=').unwrap();
    assert_eq!(
        daemon
            .post_json("/env", &json!({"set": {name: value}}))
            .status(),
        200
    );
    // An interpreter context: its worker waits for jobs.
    let context = daemon.post_json("/process/interpreter/context", &json!({}));
    assert_eq!(context.status(), 200, "{:?}", context.text());
    assert_eq!(
        daemon
            .post_json("/process/session", &json!({"sessionId": "s"}))
            .status(),
        201
    );
    let mut requests: Vec<(&str, Value)> = (0..5)
        .map(|_| ("/process/execute", json!({"command": "sleep 30"})))
        .collect();
    requests.push((
        "/process/code-run",
        json!({"code": "import time\ntime.sleep(30)", "language": "python"}),
    ));
    requests.push(("/process/session/s/exec", json!({"command": "sleep 30"})));
    let clients: Vec<_> = requests
        .into_iter()
        .map(|(path, body)| {
            let url = daemon.url(path);
            let client = daemon.client.clone();
            std::thread::spawn(move || {
                let response = client.post(url).json(&body).send().unwrap();
                (response.status().as_u16(), response.text().unwrap())
            })
        })
        .collect();
    // 5 sleeps, the code run, the session shell and its sleep, the worker.
    let deadline = Instant::now() + Duration::from_secs(20);
    while marked(&needle).len() < 9 {
        assert!(
            Instant::now() < deadline,
            "children never started: {:?}",
            marked(&needle)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    for client in clients {
        let (status, text) = client.join().unwrap();
        assert_eq!(status, 503, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], "SHUTTING_DOWN", "{body}");
        assert_eq!(body["source"], "DAYTONA_DAEMON", "{body}");
    }
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("toolboxd exited");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(
        marked(&needle),
        Vec::<i32>::new(),
        "processes outlived toolboxd"
    );
}

#[test]
fn the_terminal_address_is_host_port_or_off_and_a_taken_port_is_an_error() {
    let output = Command::new(binary())
        .args(["--toolbox-addr", "127.0.0.1:0", "--terminal-addr", "nope"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("neither HOST:PORT nor `off`"), "{stderr}");
    let daemon = Toolboxd::start();
    let taken = daemon.base.trim_start_matches("http://").to_string();
    let output = Command::new(binary())
        .args(["--toolbox-addr", "127.0.0.1:0", "--terminal-addr", &taken])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&taken) && stderr.contains("terminal"),
        "{stderr}"
    );
}

#[test]
fn the_ssh_address_is_host_port_or_off_and_a_taken_port_is_an_error() {
    let output = Command::new(binary())
        .args(["--toolbox-addr", "127.0.0.1:0", "--terminal-addr", "off"])
        .args(["--ssh-addr", "nope"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("neither HOST:PORT nor `off`"), "{stderr}");
    let daemon = Toolboxd::start();
    let taken = daemon.base.trim_start_matches("http://").to_string();
    let output = Command::new(binary())
        .args(["--toolbox-addr", "127.0.0.1:0", "--terminal-addr", "off"])
        .args(["--ssh-addr", &taken])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&taken) && stderr.contains("ssh"),
        "{stderr}"
    );
}

#[test]
fn a_host_key_file_that_is_not_a_key_stops_the_start_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host_key");
    std::fs::write(&key, "not a key").unwrap();
    let output = Command::new(binary())
        .args(["--toolbox-addr", "127.0.0.1:0", "--terminal-addr", "off"])
        .args(["--ssh-addr", "127.0.0.1:0", "--ssh-host-key"])
        .arg(&key)
        .arg("--workdir")
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not an OpenSSH private key"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "not a key");
}
