//! System metrics from /proc, statvfs and the cgroup (v2) limits when toolboxd runs inside one.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A metrics sample. Sizes are bytes.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// CPUs available (the cgroup quota when lower than the online CPUs).
    pub cpu_count: u64,
    /// CPU busy percentage since the previous sample (or over a short window for the first).
    pub cpu_used_pct: f64,
    /// Memory limit (cgroup) or total RAM.
    pub mem_total: u64,
    /// Memory in use, page cache excluded.
    pub mem_used: u64,
    /// Page cache.
    pub mem_cache: u64,
    /// Size of the work dir's filesystem.
    pub disk_total: u64,
    /// Used on it.
    pub disk_used: u64,
    /// Free for unprivileged users.
    pub disk_free: u64,
    /// When sampled.
    pub timestamp: SystemTime,
}

/// Keeps the previous CPU counters so each sample measures the interval since the last.
#[derive(Debug, Clone, Default)]
pub struct System {
    last_cpu: Arc<Mutex<Option<(u64, u64)>>>,
}

impl System {
    /// Samples everything. Blocking (reads /proc, may sleep 100 ms on the first call).
    pub fn sample(&self, disk_path: &Path) -> Metrics {
        let (mem_total, mem_used, mem_cache) = memory();
        let (disk_total, disk_used, disk_free) = disk(disk_path);
        Metrics {
            cpu_count: cpu_count(),
            cpu_used_pct: self.cpu_used_pct(),
            mem_total,
            mem_used,
            mem_cache,
            disk_total,
            disk_used,
            disk_free,
            timestamp: SystemTime::now(),
        }
    }

    fn cpu_used_pct(&self) -> f64 {
        let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
        let previous = match *last {
            Some(previous) => previous,
            None => {
                let first = cpu_ticks().unwrap_or((0, 0));
                std::thread::sleep(std::time::Duration::from_millis(100));
                first
            }
        };
        let Some(now) = cpu_ticks() else { return 0.0 };
        *last = Some(now);
        let busy = now.0.saturating_sub(previous.0) as f64;
        let total = now.1.saturating_sub(previous.1) as f64;
        if total == 0.0 {
            0.0
        } else {
            (busy / total * 1000.0).round() / 10.0
        }
    }
}

/// `(busy, total)` jiffies from the `cpu` line of /proc/stat.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn cpu_count() -> u64 {
    let online = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    // cgroup v2: "max 100000" or "200000 100000".
    let quota = std::fs::read_to_string("/sys/fs/cgroup/cpu.max")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace();
            let quota: f64 = parts.next()?.parse().ok()?;
            let period: f64 = parts.next()?.parse().ok()?;
            Some((quota / period).ceil().max(1.0) as u64)
        });
    quota.map_or(online, |quota| quota.min(online))
}

/// `(total, used, cache)` in bytes: the cgroup's view when it has a limit, else /proc/meminfo.
fn memory() -> (u64, u64, u64) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    let host_total = field("MemTotal:");
    let cache = field("Cached:") + field("Buffers:");
    let cgroup_limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let cgroup_current = std::fs::read_to_string("/sys/fs/cgroup/memory.current")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    match (cgroup_limit, cgroup_current) {
        (Some(limit), Some(current)) if limit < host_total => {
            let stat = std::fs::read_to_string("/sys/fs/cgroup/memory.stat").unwrap_or_default();
            let file = stat
                .lines()
                .find(|line| line.starts_with("file "))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            (limit, current.saturating_sub(file), file)
        }
        _ => {
            let available = field("MemAvailable:");
            (host_total, host_total.saturating_sub(available), cache)
        }
    }
}

/// `(total, used, free)` bytes of the filesystem holding `path`.
fn disk(path: &Path) -> (u64, u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => {
            let fragment = stat.fragment_size();
            let total = stat.blocks() * fragment;
            let free_all = stat.blocks_free() * fragment;
            let available = stat.blocks_available() * fragment;
            (total, total.saturating_sub(free_all), available)
        }
        Err(_) => (0, 0, 0),
    }
}
