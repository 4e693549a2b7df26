//! The command line: help documents every option with its env var; signals stop it cleanly.

use std::process::Command;
use std::time::Duration;

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
