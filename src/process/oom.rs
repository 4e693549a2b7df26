//! The OOM killer's preference (`/proc/self/oom_score_adj`): toolboxd lowers its own (default
//! -900, `--oom-score-adj`) so that when user code fills the sandbox's memory the kernel kills
//! that code rather than the agent, while every child starts back at 0, the default, so user
//! code is not shielded too.
//!
//! A child inherits its parent's value at fork, and `posix_spawn` has no hook to change it
//! before the exec, so `Reaper::spawn` (which already starts one child at a time) wraps each
//! start in `for_child`: toolboxd's own value is 0 for the microseconds of the start and then
//! restored. Lowering a value needs CAP_SYS_RESOURCE once: the kernel then allows going back
//! down to it without (`oom_score_adj_min`). Where the first write is refused (no privilege),
//! nothing is changed, ever.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

const PATH: &str = "/proc/self/oom_score_adj";

/// toolboxd's own value and the open file, once `protect_self` succeeded.
static OWN: OnceLock<(File, i32)> = OnceLock::new();

/// Sets toolboxd's own `oom_score_adj` to `value` (-1000..=1000; 0 leaves it alone). Returns
/// whether it was set; `Err` when the kernel refused (e.g. no CAP_SYS_RESOURCE to lower it).
pub fn protect_self(value: i32) -> io::Result<bool> {
    if value == 0 || OWN.get().is_some() {
        return Ok(false);
    }
    if !(-1000..=1000).contains(&value) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("oom_score_adj {value} is outside -1000..=1000"),
        ));
    }
    let file = File::options().write(true).open(PATH)?;
    file.write_at(value.to_string().as_bytes(), 0)?;
    let _ = OWN.set((file, value));
    Ok(true)
}

/// Runs `start` (one child's start) with toolboxd's value at 0, so the child inherits 0.
pub(super) fn for_child<T>(start: impl FnOnce() -> T) -> T {
    let Some((file, own)) = OWN.get() else {
        return start();
    };
    let _ = file.write_at(b"0", 0);
    let started = start();
    let _ = file.write_at(own.to_string().as_bytes(), 0);
    started
}
