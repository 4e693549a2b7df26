//! Memory the daemon gives back. glibc's malloc is tuned once at start (`tune`), and a
//! trimmer thread hands freed heap back to the kernel (`malloc_trim`) once toolboxd has been
//! idle for [`IDLE`]: no request in flight, none ended in that time. Requests say when they
//! start and end with a [`Busy`] guard (the HTTP edge holds one until a response body is
//! dropped), so a transfer is never slowed down by a trim in its middle, and a burst of
//! requests costs one trim after it, not one per request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Quiet time after the last request before freed memory is handed back.
pub const IDLE: Duration = Duration::from_secs(1);

/// How long an idle thread of the async runtime's blocking pool lives (tokio's default is
/// 10 s): what the thread holds is given back only after it ends.
pub const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Requests in flight.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// When the last request ended, in milliseconds since `epoch()`.
static LAST_END: AtomicU64 = AtomicU64::new(0);
/// Set from the first request that ends after a trim until the next trim.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The trimmer thread, once started.
static TRIMMER: OnceLock<Thread> = OnceLock::new();

/// Sets glibc's malloc parameters. Call before any other thread exists.
///
/// A fixed 8 MiB mmap threshold keeps buffers of a streamed transfer in the heap, where they
/// are reused (glibc's moving threshold served them with fresh mmaps: ~130k page faults per
/// GiB of upload measured); it also fixes the trim threshold, so that is set too: up to 32 MiB
/// freed at the top of the heap stays for reuse while requests come (the trimmer gives it back
/// once they stop). One arena: `malloc_trim` gives back the free pages of the main heap whole,
/// but not the top of a secondary arena (that shrinks only as frees cross the trim threshold),
/// and each arena keeps its own free memory; small allocations, most of them, come from each
/// thread's own cache without taking the arena's lock.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread is running yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Starts the trimmer thread (once; later calls do nothing).
pub fn start_trimmer() {
    if TRIMMER.get().is_some() {
        return;
    }
    epoch();
    // The first round runs once start-up has been quiet for `IDLE` (its end is time 0).
    PENDING.store(true, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("toolboxd-trim".into())
        .stack_size(64 * 1024)
        .spawn(trimmer);
    if let Ok(handle) = spawned {
        let _ = TRIMMER.set(handle.thread().clone());
    }
}

/// Held while a request is being served; dropping it marks the request's end.
#[derive(Debug)]
pub struct Busy(());

impl Busy {
    /// A request starts.
    pub fn start() -> Busy {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Busy(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        LAST_END.store(now(), Ordering::SeqCst);
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        if !PENDING.swap(true, Ordering::SeqCst) {
            if let Some(trimmer) = TRIMMER.get() {
                trimmer.unpark();
            }
        }
    }
}

/// The trimmer: sleeps until a request ended, then until nothing happened for `IDLE` and trims;
/// and once more when the runtime's idle blocking threads are gone (`BLOCKING_KEEP_ALIVE`
/// later): what a thread keeps for itself (glibc's per-thread cache, scattered over pages it
/// pins) is freed only as the thread ends.
fn trimmer() {
    let passes = [IDLE, BLOCKING_KEEP_ALIVE + IDLE];
    loop {
        if !PENDING.load(Ordering::SeqCst) {
            std::thread::park();
            continue;
        }
        let mut since = LAST_END.load(Ordering::SeqCst);
        let mut pass = 0;
        while pass < passes.len() {
            if IN_FLIGHT.load(Ordering::SeqCst) > 0 {
                // Those requests end later, which starts the passes over.
                std::thread::sleep(IDLE);
                continue;
            }
            let last = LAST_END.load(Ordering::SeqCst);
            if last != since {
                since = last;
                pass = 0;
            }
            let due = since + passes[pass].as_millis() as u64;
            let now = now();
            if now < due {
                std::thread::sleep(Duration::from_millis(due - now));
                continue;
            }
            if pass == passes.len() - 1 {
                // A request ending from here on arms the next round.
                PENDING.store(false, Ordering::SeqCst);
                if LAST_END.load(Ordering::SeqCst) != since || IN_FLIGHT.load(Ordering::SeqCst) > 0
                {
                    PENDING.store(true, Ordering::SeqCst);
                    continue;
                }
            }
            trim();
            pass += 1;
        }
    }
}

/// Hands every whole free page of the heap back to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the heap holds, as glibc's malloc counts it (`mallinfo2`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heap {
    /// Bytes in allocated blocks, mmapped ones included.
    pub in_use: usize,
    /// Bytes in the heap's free blocks: fragmentation. The trim hands their whole pages back
    /// to the kernel, so not all of it is resident.
    pub free: usize,
}

/// The heap's figures now; `None` where the allocator is not glibc's.
pub fn heap() -> Option<Heap> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters (under its own locks).
        let info = unsafe { libc::mallinfo2() };
        Some(Heap {
            in_use: info.uordblks + info.hblkhd,
            free: info.fordblks,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now() -> u64 {
    epoch().elapsed().as_millis() as u64
}
