//! `POST /process/execute`, `POST /env`, `GET /system/metrics`, and the reaper's PID-1 duties.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

fn execute(daemon: &Toolboxd, body: Value) -> Value {
    json(daemon.post_json("/process/execute", &body), 200)
}

#[test]
fn execute_keeps_stdout_and_stderr_apart_and_interleaved() {
    let daemon = Toolboxd::start();
    let out = execute(
        &daemon,
        json!({"command": "echo out; echo err >&2; echo out2; exit 3"}),
    );
    assert_eq!(out["exitCode"], 3);
    assert_eq!(out["stdout"], "out\nout2\n");
    assert_eq!(out["stderr"], "err\n");
    let result = out["result"].as_str().unwrap();
    assert_eq!(result.len(), "out\nerr\nout2\n".len());
    for line in ["out\n", "err\n", "out2\n"] {
        assert!(result.contains(line), "{result:?}");
    }
    assert_eq!(out["truncated"], false);
}

#[test]
fn execute_honours_cwd_env_and_gives_children_no_stdin() {
    let daemon = Toolboxd::start();
    write(&daemon.path("sub/marker"), "");
    let out = execute(
        &daemon,
        json!({"command": "pwd; ls; echo \"$GREETING\"; cat; echo done", "cwd": "sub", "envs": {"GREETING": "hi there"}}),
    );
    let sub = std::fs::canonicalize(daemon.path("sub")).unwrap();
    assert_eq!(
        out["stdout"],
        format!("{}\nmarker\nhi there\ndone\n", sub.display())
    );
    assert_error(
        daemon.post_json(
            "/process/execute",
            &json!({"command": "true", "cwd": "nope"}),
        ),
        400,
        "BAD_REQUEST",
    );
    let bad_env = daemon.post_json(
        "/process/execute",
        &json!({"command": "true", "envs": {"1BAD": "x"}}),
    );
    assert!(assert_error(bad_env, 400, "BAD_REQUEST")["message"]
        .as_str()
        .unwrap()
        .contains("1BAD"));
    assert_error(
        daemon.post_json("/process/execute", &json!({"command": "   "})),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post_json("/process/execute", &json!({"cwd": "."})),
        400,
        "INVALID_REQUEST_BODY",
    );
}

#[test]
fn children_start_with_default_signals_in_their_own_group() {
    // toolboxd itself ignores SIGPIPE; its children must not inherit that (a writer to a closed
    // pipe dies of it, as `yes | head` expects), nor any blocked signal.
    for timeout in [None, Some(30)] {
        let daemon = Toolboxd::start();
        let mut body = json!({"command": "yes | head -c 3 >/dev/null; echo \"${PIPESTATUS[0]}\"; \
            grep -E '^Sig(Ign|Blk)' /proc/self/status; cut -d' ' -f5 /proc/$$/stat; echo $$"});
        if let Some(timeout) = timeout {
            body["timeout"] = json!(timeout);
        }
        let out = execute(&daemon, body);
        let stdout = out["stdout"].as_str().unwrap().to_string();
        let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
        assert_eq!(lines[0], "141", "yes was not killed by SIGPIPE: {stdout}");
        for line in &lines[1..3] {
            let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
            // Every standard signal at its default (glibc's posix_spawn leaves its own internal
            // signals 32 and 33 ignored; glibc programs reinstall them when they need them).
            assert_eq!(mask & 0x7fff_ffff, 0, "{line}");
            if line.starts_with("SigBlk") {
                assert_eq!(mask, 0, "{line}");
            }
        }
        assert_eq!(lines[3], lines[4], "not its own process group: {stdout}");
    }
}

#[test]
fn execute_handles_long_commands_non_utf8_and_missing_programs() {
    let daemon = Toolboxd::start();
    let long = format!("x='{}'; echo ${{#x}}", "a".repeat(200_000));
    assert_eq!(
        execute(&daemon, json!({"command": long}))["stdout"],
        "200000\n"
    );
    let bytes = execute(&daemon, json!({"command": "printf 'a\\377b'"}));
    assert_eq!(bytes["stdout"], "a\u{FFFD}b");
    let missing = execute(&daemon, json!({"command": "no-such-program-xyz"}));
    assert_eq!(missing["exitCode"], 127);
    assert!(missing["stderr"]
        .as_str()
        .unwrap()
        .contains("no-such-program-xyz"));
}

#[test]
fn timeout_answers_408_and_kills_the_whole_tree() {
    let daemon = Toolboxd::start();
    let pidfile = daemon.path("grandchild.pid");
    let command = format!(
        "(setsid sleep 300 & echo $! > {}) ; sleep 300",
        pidfile.display()
    );
    let started = Instant::now();
    let response = daemon.post_json(
        "/process/execute",
        &json!({"command": command, "timeout": 1}),
    );
    assert_error(response, 408, "PROCESS_EXECUTION_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(10));
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_alive(grandchild) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !is_alive(grandchild),
        "the setsid grandchild {grandchild} survived the timeout"
    );
}

/// Whether this process may create cgroup v2 children where it lives (the daemon, its child,
/// lives in the same cgroup and decides the same way).
fn cgroup_leaves_possible() -> bool {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Some(mount) = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.starts_with("cgroup2 ")).then(|| left.split(' ').nth(4).map(str::to_string))?
    }) else {
        return false;
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(path) = own.lines().find_map(|line| line.strip_prefix("0::")) else {
        return false;
    };
    let probe = std::path::Path::new(&mount)
        .join(path.trim_start_matches('/'))
        .join(format!("toolboxd-test-probe-{}", std::process::id()));
    let made = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    made
}

#[test]
fn timeout_kills_an_escapee_through_its_cgroup_leaf() {
    if !cgroup_leaves_possible() {
        eprintln!("cgroup v2 is read-only here: the daemon runs without leaves; nothing to check");
        return;
    }
    let daemon = Toolboxd::start();
    let pidfile = daemon.path("escapee.pid");
    // New session, new process group, empty environment (no marker), and its parent gone at
    // once: only the cgroup leaf still knows it belongs to the command.
    let command = format!(
        "env -i setsid sh -c 'sleep 300 & echo $! > {}'; sleep 300",
        pidfile.display()
    );
    let response = daemon.post_json(
        "/process/execute",
        &json!({"command": command, "timeout": 1}),
    );
    assert_error(response, 408, "PROCESS_EXECUTION_TIMEOUT");
    let escapee: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_alive(escapee) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !is_alive(escapee),
        "the escapee {escapee} survived the timeout"
    );
}

#[test]
fn orphans_are_reaped() {
    let daemon = Toolboxd::start();
    // 300 orphans: each subshell exits at once, leaving `sleep` to be reparented to toolboxd.
    let out = execute(
        &daemon,
        json!({"command": "for i in $(seq 300); do (sleep 0.2 &); done; echo spawned"}),
    );
    assert_eq!(out["stdout"], "spawned\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let zombies = zombie_children(daemon.pid());
        if zombies.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "zombies left: {}", zombies.len());
    }
    assert_eq!(daemon.get("/version").status(), 200);
}

#[test]
fn output_beyond_the_cap_is_cut_with_a_marker() {
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("TOOLBOXD_MAX_OUTPUT".into(), "1000".into())],
        ..Default::default()
    });
    let out = execute(
        &daemon,
        json!({"command": "head -c 100000 /dev/zero | tr '\\0' x; echo; echo tail >&2"}),
    );
    assert_eq!(out["truncated"], true);
    assert_eq!(out["exitCode"], 0);
    let result = out["result"].as_str().unwrap();
    assert!(result.starts_with(&"x".repeat(1000)));
    assert!(
        result.contains("[toolboxd: output truncated at 1000 bytes]"),
        "{result}"
    );
    assert!(result.len() < 1100);
}

#[test]
fn env_changes_reach_new_children() {
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![
            ("SECRET_A".into(), "placeholder:1".into()),
            ("KEEP".into(), "k".into()),
        ],
        ..Default::default()
    });
    let changes = json(
        daemon.post_json(
            "/env",
            &json!({"set": {"NEW_VAR": "v 1"}, "unset": ["KEEP"]}),
        ),
        200,
    );
    assert_eq!(changes, json!({"NEW_VAR": "v 1", "KEEP": ""}));
    let out = execute(
        &daemon,
        json!({"command": "echo \"$NEW_VAR|${KEEP-unset}|$SECRET_A\""}),
    );
    assert_eq!(out["stdout"], "v 1|unset|placeholder:1\n");
    let changes = json(
        daemon.post_json("/env", &json!({"unsetValuePrefix": "placeholder:"})),
        200,
    );
    assert_eq!(changes, json!({"SECRET_A": ""}));
    assert_eq!(
        execute(&daemon, json!({"command": "echo ${SECRET_A-gone}"}))["stdout"],
        "gone\n"
    );
    assert_error(
        daemon.post_json("/env", &json!({"set": {"A=B": "x"}})),
        400,
        "BAD_REQUEST",
    );
}

/// `POST /env` refuses what no child could be started with (issue 12, item 1): before, a NUL
/// byte or a 1.5 MB value answered 200 and then every execute answered 400 and every session
/// create 500 until the variable was unset. A refused update changes nothing.
#[test]
fn env_refuses_what_no_child_can_start_with() {
    let daemon = Toolboxd::start();
    let refused = |body: Value, needle: &str| {
        let error = assert_error(daemon.post_json("/env", &body), 400, "BAD_REQUEST");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    };
    refused(json!({"set": {"OK_1": "kept?", "AB": "x\0y"}}), "NUL byte");
    refused(
        json!({"set": {"A=B": "x"}}),
        "invalid environment variable name",
    );
    refused(
        json!({"set": {"": "x"}}),
        "invalid environment variable name",
    );
    refused(
        json!({"set": {"BIG": "x".repeat(1_500_000)}}),
        "131072 bytes",
    );
    // The per-variable limit is the kernel's: 128 KiB for NAME=value and its NUL.
    let fits = "y".repeat(128 * 1024 - "FITS=".len() - 1);
    assert_eq!(
        json(
            daemon.post_json("/env", &json!({"set": {"FITS": fits}})),
            200
        )["FITS"]
            .as_str()
            .unwrap()
            .len(),
        fits.len()
    );
    // The whole environment has a budget too (about 1 MiB): variables that each fit, together
    // past it, are refused as one.
    let many: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("PART_{i}"), json!("z".repeat(120_000))))
        .collect();
    refused(json!({ "set": many }), "over the 1048576 bytes");
    // Nothing of the refused requests was applied, and children still start.
    let out = execute(
        &daemon,
        json!({"command": "echo ${OK_1-unset} ${PART_0-unset} ${#FITS}"}),
    );
    assert_eq!(out["stdout"], format!("unset unset {}\n", fits.len()));
    let response = daemon.post_json("/process/session", &json!({"sessionId": "after-env"}));
    assert_eq!(response.status().as_u16(), 201, "{:?}", response.text());
    // Per-command variables are checked the same way.
    let error = assert_error(
        daemon.post_json(
            "/process/execute",
            &json!({"command": "true", "envs": {"BAD": "a\0b"}}),
        ),
        400,
        "BAD_REQUEST",
    );
    assert!(
        error["message"].as_str().unwrap().contains("NUL"),
        "{error}"
    );
}

/// A child that cannot start is a 4xx that says why, never a 500 (issue 12, item 1): before, a
/// session in a work dir that had been removed answered 500.
#[test]
fn a_child_that_cannot_start_is_a_clear_400() {
    let temp = tempfile::tempdir().unwrap();
    let workdir = temp.path().join("work");
    std::fs::create_dir(&workdir).unwrap();
    let daemon = Toolboxd::start_with(StartOptions {
        workdir: Some(workdir.clone()),
        ..Default::default()
    });
    std::fs::remove_dir(&workdir).unwrap();
    let error = assert_error(
        daemon.post_json("/process/session", &json!({"sessionId": "s"})),
        400,
        "BAD_REQUEST",
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("working directory") && message.contains("does not exist"),
        "{message}"
    );
    let error = assert_error(
        daemon.post_json("/process/execute", &json!({"command": "true"})),
        400,
        "BAD_REQUEST",
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("working directory"),
        "{error}"
    );
    // Arguments and environment past what the kernel takes (E2BIG, 2 MiB under the usual 8 MiB
    // stack limit): the daemon's environment within its budget plus a command's own variables.
    std::fs::create_dir(&workdir).unwrap();
    let shared: serde_json::Map<String, Value> = (0..7)
        .map(|i| (format!("SHARED_{i}"), json!("s".repeat(120_000))))
        .collect();
    assert_eq!(
        daemon.post_json("/env", &json!({ "set": shared })).status(),
        200
    );
    let envs: serde_json::Map<String, Value> = (0..11)
        .map(|i| (format!("HUGE_{i}"), json!("h".repeat(120_000))))
        .collect();
    let error = assert_error(
        daemon.post_json(
            "/process/execute",
            &json!({"command": "true", "envs": envs}),
        ),
        400,
        "BAD_REQUEST",
    );
    assert!(
        error["message"].as_str().unwrap().contains("too large"),
        "{error}"
    );
}

/// A NUL byte in a command is a 400 in `/process/execute` and in session exec alike (issue 12,
/// item 9): before, session exec silently dropped it and ran the rest.
#[test]
fn a_nul_byte_in_a_command_is_a_400_everywhere() {
    let daemon = Toolboxd::start();
    let error = assert_error(
        daemon.post_json("/process/execute", &json!({"command": "echo a\0b"})),
        400,
        "BAD_REQUEST",
    );
    assert!(
        error["message"].as_str().unwrap().contains("NUL"),
        "{error}"
    );
    let response = daemon.post_json("/process/session", &json!({"sessionId": "s"}));
    assert_eq!(response.status().as_u16(), 201);
    for body in [
        json!({"command": "echo a\0b"}),
        json!({"command": "echo a\0b", "runAsync": true}),
    ] {
        let error = assert_error(
            daemon.post_json("/process/session/s/exec", &body),
            400,
            "BAD_REQUEST",
        );
        assert!(
            error["message"].as_str().unwrap().contains("NUL"),
            "{error}"
        );
    }
    let session = json(daemon.get("/process/session/s"), 200);
    assert_eq!(session["commands"], json!([]), "nothing ran: {session}");
}

#[test]
fn metrics_report_cpu_memory_and_disk_as_integers() {
    let daemon = Toolboxd::start();
    let metrics = json(daemon.get("/system/metrics"), 200);
    for field in [
        "cpuCount",
        "memTotal",
        "memUsed",
        "memCache",
        "diskTotal",
        "diskUsed",
        "diskFree",
        "timestampUnix",
    ] {
        assert!(metrics[field].is_u64(), "{field}: {metrics}");
    }
    assert!(metrics["cpuCount"].as_u64().unwrap() >= 1);
    assert!(metrics["memTotal"].as_u64().unwrap() > metrics["memUsed"].as_u64().unwrap());
    assert!(metrics["diskTotal"].as_u64().unwrap() >= metrics["diskUsed"].as_u64().unwrap());
    let pct = metrics["cpuUsedPct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&pct), "{pct}");
    assert!(metrics["timestamp"].as_str().unwrap().contains('T'));
}

#[test]
fn commands_run_under_bash_unless_the_shell_is_overridden() {
    let shell_of = |daemon: &Toolboxd| -> String {
        let out = execute(daemon, json!({"command": "readlink -f /proc/$$/exe; true"}));
        assert_eq!(out["exitCode"], 0, "{out}");
        out["stdout"].as_str().unwrap().trim().to_string()
    };
    let bash = std::fs::canonicalize("/bin/bash").unwrap();
    assert_eq!(shell_of(&Toolboxd::start()), bash.to_str().unwrap());
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    assert_ne!(
        sh, bash,
        "this test needs /bin/sh to be another shell than bash"
    );
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("TOOLBOXD_SHELL".into(), "/bin/sh".into())],
        ..Default::default()
    });
    assert_eq!(shell_of(&daemon), sh.to_str().unwrap());
    // Sessions use it too.
    assert_eq!(
        daemon
            .post_json("/process/session", &json!({"sessionId": "s"}))
            .status(),
        201
    );
    let out: Value = daemon
        .post_json(
            "/process/session/s/exec",
            &json!({"command": "readlink -f /proc/$$/exe"}),
        )
        .json()
        .unwrap();
    assert_eq!(out["stdout"].as_str().unwrap().trim(), sh.to_str().unwrap());
}
