//! Killing a command's whole tree: its process group, every descendant found under it in /proc
//! (a descendant may have left the group with `setsid`), and every process that carries the
//! command's marker in its environment (a descendant whose parent died was reparented to
//! toolboxd and is no longer under the command at all), and, where toolboxd may create cgroups,
//! everything in the command's cgroup leaf (which nothing inside can leave).

use std::collections::{HashMap, HashSet};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// The environment variable every spawned command carries, `MARKER_VAR=<unique id>`.
pub const MARKER_VAR: &str = "TOOLBOXD_COMMAND_ID";

/// Sends `signal` to the process group `pid` leads, to every descendant of `pid`, and to every
/// process whose environment holds `MARKER_VAR=marker`. Descendants are collected before
/// anything is signalled: once a parent dies its children are reparented and the link is gone.
pub fn signal_tree(pid: i32, marker: &str, signal: Signal) {
    let mut descendants = descendants_of(pid);
    descendants.extend(marked_with(marker));
    let _ = killpg(Pid::from_raw(pid), signal);
    let _ = kill(Pid::from_raw(pid), signal);
    for child in descendants {
        let _ = kill(Pid::from_raw(child), signal);
    }
    if signal == Signal::SIGKILL {
        super::cgroup::kill(marker);
    }
}

/// Sends `signal` to every process carrying `MARKER_VAR=marker` and, for SIGKILL, everything in
/// the marker's cgroup leaf: what is left of a tree whose root has already been reaped (its pid,
/// and so its process group, may belong to someone else by now).
pub fn signal_marked(marker: &str, signal: Signal) {
    for pid in marked_with(marker) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
    if signal == Signal::SIGKILL {
        super::cgroup::kill(marker);
    }
}

/// Every process whose parent chain leads to `root` (excluding `root`).
pub fn descendants_of(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(child) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

/// Processes whose initial environment contains `MARKER_VAR=marker`, and the members of the
/// command's cgroup leaf.
pub fn marked_with(marker: &str) -> Vec<i32> {
    let needle = format!("{MARKER_VAR}={marker}");
    let mut found = super::cgroup::members(marker);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let marked = entries
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .filter(|pid| !found.contains(pid))
        .collect::<Vec<_>>();
    found.extend(marked);
    found
}

/// The parent pid from `/proc/PID/stat` (the field after the parenthesised command name).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is a process that has not exited (zombies and dead ones are not).
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
