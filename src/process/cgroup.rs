//! Per-command cgroup v2 leaves, when toolboxd may create them: every command (and session, and
//! worker) starts in its own `toolboxd-<marker>` cgroup under toolboxd's, so its whole tree can be
//! found and killed even after a child `setsid`s, double-forks and clears its environment. Where
//! cgroups are read-only (most unprivileged containers) this is off and the process-group,
//! descendant and environment-marker search in `tree.rs` does the job alone.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// toolboxd's own cgroup directory, if it can make children there.
fn base() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    BASE.get_or_init(detect).as_deref()
}

fn detect() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mountpoint options … - fstype source options.
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split(' ').next()? == "cgroup2")
            .then(|| left.split(' ').nth(4).map(PathBuf::from))?
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir = mount.join(path.trim_start_matches('/'));
    let probe = dir.join(format!("toolboxd-{}-probe", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let usable = probe.join("cgroup.procs").exists();
    let _ = std::fs::remove_dir(&probe);
    if !usable {
        return None;
    }
    // Leaves a previous toolboxd left behind, now empty. Never those of another toolboxd that
    // is alive in the same cgroup (test suites run many): removing a leaf between its making and
    // the clone into it fails that start.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if stale_leaf(&entry.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    tracing::info!("commands get cgroup v2 leaves under {}", dir.display());
    Some(dir)
}

fn leaf(marker: &str) -> Option<PathBuf> {
    Some(base()?.join(format!("toolboxd-{}-{marker}", std::process::id())))
}

/// Whether `name` is a leaf of a toolboxd that is gone: `toolboxd-<pid>-…` of a pid that no
/// longer runs or is this process's own (a previous toolboxd with the same pid), or a name of
/// an older layout.
fn stale_leaf(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("toolboxd-") else {
        return false;
    };
    let owner = rest
        .split('-')
        .next()
        .and_then(|pid| pid.parse::<i32>().ok());
    match owner {
        Some(pid) if pid > 0 && pid as u32 != std::process::id() => {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH)
        }
        _ => true,
    }
}

/// A leaf a child is to start in: its directory (for `clone3`'s `CLONE_INTO_CGROUP`) and its
/// `cgroup.procs` (for a forked child that joins it itself).
#[derive(Debug)]
pub struct Leaf {
    /// The leaf's directory, opened.
    pub dir: OwnedFd,
    /// The path of its `cgroup.procs`.
    pub procs: CString,
}

/// Makes the leaf named by `marker` (a session's restarted shell finds the one its first shell
/// made), or `None` where toolboxd makes no leaves.
pub fn prepare(marker: &str) -> Option<Leaf> {
    let dir = leaf(marker)?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let procs = CString::new(
        dir.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .ok()?;
    let dir = std::fs::File::open(&dir).ok()?.into();
    Some(Leaf { dir, procs })
}

/// Makes the forked child of `command` join the leaf whose `cgroup.procs` is `procs` before it
/// execs.
pub fn join_before_exec(command: &mut std::process::Command, procs: CString) {
    // SAFETY: between fork and exec the closure only calls open, write and close
    // (async-signal-safe) on a path prepared before the fork. A failure leaves the child where
    // it was: the other tree-finding methods still apply.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
            Ok(())
        });
    }
}

/// The processes in `marker`'s leaf.
pub fn members(marker: &str) -> Vec<i32> {
    let Some(dir) = leaf(marker) else {
        return Vec::new();
    };
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills everything in `marker`'s leaf at once (`cgroup.kill`, kernel 5.14+).
pub fn kill(marker: &str) {
    if let Some(dir) = leaf(marker) {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }
}

/// Removes `marker`'s leaf once it is empty (a background job still in it keeps it).
pub fn remove(marker: &str) {
    if let Some(dir) = leaf(marker) {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Removes `marker`'s leaf once the kernel has emptied it after a kill (waits up to 5 s on a
/// plain thread, never on the caller).
pub fn remove_when_empty(marker: &str) {
    if leaf(marker).is_none() {
        return;
    }
    let marker = marker.to_string();
    let _ = std::thread::Builder::new()
        .name("cgroup-cleanup".into())
        .spawn(move || {
            for _ in 0..50 {
                if members(&marker).is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            remove(&marker);
        });
}

#[cfg(test)]
mod tests {
    use super::stale_leaf;

    #[test]
    fn only_leaves_of_gone_toolboxds_are_stale() {
        let own = std::process::id();
        // A live process that is not this one: the parent (the test harness or a shell).
        let parent = nix::unistd::getppid().as_raw();
        assert!(!stale_leaf(&format!("toolboxd-{parent}-0123abcd")));
        assert!(!stale_leaf(&format!("toolboxd-{parent}-probe")));
        assert!(stale_leaf(&format!("toolboxd-{own}-0123abcd")));
        // Older layout, and a pid beyond pid_max.
        assert!(stale_leaf("toolboxd-0123abcdef"));
        assert!(stale_leaf("toolboxd-2147483646-x"));
        assert!(!stale_leaf("other-cgroup"));
    }
}
