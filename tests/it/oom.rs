//! `--oom-score-adj`: toolboxd sets its own OOM score (where it may), every child starts back
//! at 0.

use std::process::Command;

use serde_json::json;

use crate::harness::*;

fn own(pid: u32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// What a child of toolboxd and that child's own child read as their oom_score_adj.
fn children_values(daemon: &Toolboxd) -> String {
    let answer = json(
        daemon.post_json(
            "/process/execute",
            &json!({"command": "sh -c 'cat /proc/self/oom_score_adj; (cat /proc/self/oom_score_adj)'"}),
        ),
        200,
    );
    answer["result"].as_str().unwrap().to_string()
}

/// Whether a process here may lower its oom_score_adj (CAP_SYS_RESOURCE; root in a container
/// may lack it).
fn may_lower() -> bool {
    Command::new("sh")
        .args(["-c", "echo -900 > /proc/self/oom_score_adj"])
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn toolboxd_is_shielded_where_it_may_be_and_its_children_never_are() {
    let inherited = own(std::process::id());
    let daemon = Toolboxd::start();
    if may_lower() {
        assert_eq!(own(daemon.pid()), -900);
    } else {
        // Refused: left as it was, and the daemon serves.
        assert_eq!(own(daemon.pid()), inherited);
    }
    assert_eq!(children_values(&daemon), "0\n0\n");
    // Raising needs no privilege: the value is set, children still start at 0, and toolboxd
    // keeps its own value after starting them.
    let daemon = Toolboxd::start_with(StartOptions {
        args: vec!["--oom-score-adj".into(), "500".into()],
        ..StartOptions::default()
    });
    assert_eq!(own(daemon.pid()), 500);
    assert_eq!(children_values(&daemon), "0\n0\n");
    assert_eq!(own(daemon.pid()), 500);
    // 0 leaves it alone.
    let daemon = Toolboxd::start_with(StartOptions {
        args: vec!["--oom-score-adj".into(), "0".into()],
        ..StartOptions::default()
    });
    assert_eq!(own(daemon.pid()), inherited);
}
