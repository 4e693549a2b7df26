//! A command's logs: `output.log` (both streams in arrival order with a 3-byte marker at every
//! switch of stream), `stdout.log` and `stderr.log`, capped only by `--max-log`; and the FIFO drain that feeds
//! them.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub(super) const STDOUT_MARK: &[u8] = &[1, 1, 1];
pub(super) const STDERR_MARK: &[u8] = &[2, 2, 2];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

/// Appends to `output.log` (with markers) and the per-stream logs, each capped at `cap`.
#[derive(Debug)]
pub(super) struct LogWriter {
    pub(super) cap: usize,
    pub(super) output: Option<File>,
    pub(super) stdout: Option<File>,
    pub(super) stderr: Option<File>,
    pub(super) last: Option<Stream>,
    pub(super) sizes: [usize; 3],
    pub(super) truncated: [bool; 3],
}

impl LogWriter {
    /// A writer whose files are closed: what a finished command's lookup reads under.
    pub(super) fn closed() -> LogWriter {
        LogWriter {
            cap: usize::MAX,
            output: None,
            stdout: None,
            stderr: None,
            last: None,
            sizes: [0; 3],
            truncated: [false; 3],
        }
    }

    pub(super) fn push(&mut self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut framed = Vec::with_capacity(data.len() + 3);
        let mut whole = 0;
        if self.last != Some(stream) {
            framed.extend_from_slice(match stream {
                Stream::Stdout => STDOUT_MARK,
                Stream::Stderr => STDERR_MARK,
            });
            // Under the cap, a marker goes in whole with at least one byte of its stream, or
            // not at all: a cut marker would read as data.
            whole = framed.len() + 1;
        }
        framed.extend_from_slice(data);
        if self.write_capped(0, &framed, whole) {
            self.last = Some(stream);
        }
        let index = match stream {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        };
        self.write_capped(index, data, 0);
    }

    /// Writes what fits under the cap, but nothing unless at least the first `whole` bytes fit;
    /// once it no longer fits, a notice. True if anything of `data` was written.
    fn write_capped(&mut self, index: usize, data: &[u8], whole: usize) -> bool {
        let room = self.cap.saturating_sub(self.sizes[index]);
        let fits = data.len().min(room);
        let kept = &data[..if fits < whole { 0 } else { fits }];
        let file = match index {
            0 => &mut self.output,
            1 => &mut self.stdout,
            _ => &mut self.stderr,
        };
        let Some(file) = file.as_mut() else {
            return false;
        };
        if !kept.is_empty() {
            let _ = file.write_all(kept);
            self.sizes[index] += kept.len();
        }
        if kept.len() < data.len() && !self.truncated[index] {
            self.truncated[index] = true;
            let notice = format!("\n[toolboxd: output truncated at {} bytes]\n", self.cap);
            let _ = file.write_all(notice.as_bytes());
        }
        !kept.is_empty()
    }

    /// Closes the three files once nothing can write any more (both readers ended): a finished
    /// command holds no descriptors. Readers of the logs open them by path.
    pub(super) fn close(&mut self) {
        self.output = None;
        self.stdout = None;
        self.stderr = None;
    }
}

/// The first `limit` bytes of the log at `path` (all of it when shorter), then a notice saying
/// where the rest is. A cut inside a stream marker of `output.log` (`markers`) drops the
/// marker's start.
pub(super) fn read_head(path: &Path, limit: usize, markers: bool) -> Vec<u8> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let size = file.metadata().map_or(0, |m| m.len());
    // Two bytes more: what follows the cut tells a marker from data.
    let mut head = Vec::with_capacity((size as usize).min(limit.saturating_add(2)));
    if file
        .take(limit.saturating_add(2) as u64)
        .read_to_end(&mut head)
        .is_err()
        || head.len() <= limit
    {
        return head;
    }
    let after = head.split_off(limit);
    if markers {
        if let Some(&last) = head.last().filter(|b| **b == 1 || **b == 2) {
            let ours = head
                .iter()
                .rev()
                .take(2)
                .take_while(|b| **b == last)
                .count();
            let theirs = after.iter().take_while(|b| **b == last).count();
            if ours + theirs >= 3 {
                head.truncate(head.len() - ours);
            }
        }
    }
    head.extend_from_slice(
        format!(
            "\n[toolboxd: log cut at {limit} of {size} bytes; follow the logs (follow=true) for all of it]\n"
        )
        .as_bytes(),
    );
    head
}

/// Reads a non-blocking FIFO until EOF (after a writer came and went) or `cancel`.
pub(super) fn drain(mut pipe: File, stream: Stream, log: &Mutex<LogWriter>, cancel: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if cancel.load(Ordering::SeqCst) {
            return;
        }
        let mut fds = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `fds` is one valid pollfd for a descriptor `pipe` keeps open.
        let ready = unsafe { libc::poll(&mut fds, 1, 200) };
        if ready == 0 {
            continue;
        }
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        // A FIFO reports HUP only after a writer opened and closed it, so a read of 0 here is
        // the real end (before the shell opens it, poll does not wake).
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(stream, &buf[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_markers_at_every_switch_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let open = |n: &str| File::create(dir.path().join(n)).unwrap();
        let mut log = LogWriter {
            cap: 12,
            output: Some(open("o")),
            stdout: Some(open("1")),
            stderr: Some(open("2")),
            last: None,
            sizes: [0; 3],
            truncated: [false; 3],
        };
        log.push(Stream::Stdout, b"ab");
        log.push(Stream::Stdout, b"c");
        log.push(Stream::Stderr, b"d\0");
        log.push(Stream::Stdout, b"efghij");
        let output = std::fs::read(dir.path().join("o")).unwrap();
        assert!(
            output.starts_with(b"\x01\x01\x01abc\x02\x02\x02d\0\n[toolboxd: output truncated"),
            "{output:?}"
        );
        assert!(output.ends_with(b"bytes]\n"));
        assert_eq!(std::fs::read(dir.path().join("1")).unwrap(), b"abcefghij");
    }

    #[test]
    fn a_reply_holds_the_head_of_a_long_log_and_never_half_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.log");
        std::fs::write(&path, b"\x01\x01\x01abc\x02\x02\x02def").unwrap();
        // Whole when it fits.
        assert_eq!(
            read_head(&path, 12, true),
            b"\x01\x01\x01abc\x02\x02\x02def"
        );
        // Cut inside the stderr marker: the marker's start goes too.
        for limit in [7, 8] {
            let head = read_head(&path, limit, true);
            assert!(
                head.starts_with(b"\x01\x01\x01abc\n[toolboxd: log cut at"),
                "{head:?}"
            );
            assert!(head.ends_with(b"of 12 bytes; follow the logs (follow=true) for all of it]\n"));
        }
        // Cut in data.
        let head = read_head(&path, 10, true);
        assert!(
            head.starts_with(b"\x01\x01\x01abc\x02\x02\x02d\n["),
            "{head:?}"
        );
        // A per-stream log has no markers: bytes 1 and 2 are data there.
        std::fs::write(&path, b"ab\x01\x01\x01").unwrap();
        assert!(read_head(&path, 3, false).starts_with(b"ab\x01\n["));
        assert_eq!(read_head(&dir.path().join("missing"), 3, true), b"");
    }

    /// A writer over three files in `dir`, capped at `cap`.
    fn writer(dir: &Path, cap: usize) -> LogWriter {
        let open = |n: &str| File::create(dir.join(n)).unwrap();
        LogWriter {
            cap,
            output: Some(open("output.log")),
            stdout: Some(open("stdout.log")),
            stderr: Some(open("stderr.log")),
            last: None,
            sizes: [0; 3],
            truncated: [false; 3],
        }
    }

    #[test]
    fn a_capped_log_never_keeps_half_a_marker() {
        // "ab" (3 + 2 bytes), then a switch to stderr with 1 or 2 bytes of room left.
        for cap in [6, 7] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = writer(dir.path(), cap);
            log.push(Stream::Stdout, b"ab");
            log.push(Stream::Stderr, b"cd");
            let output = std::fs::read(dir.path().join("output.log")).unwrap();
            let notice = format!("\n[toolboxd: output truncated at {cap} bytes]\n");
            assert_eq!(output, [b"\x01\x01\x01ab", notice.as_bytes()].concat());
        }
        // Room for the marker and one byte: both go in.
        let dir = tempfile::tempdir().unwrap();
        let mut log = writer(dir.path(), 9);
        log.push(Stream::Stdout, b"ab");
        log.push(Stream::Stderr, b"cd");
        let output = std::fs::read(dir.path().join("output.log")).unwrap();
        assert!(
            output.starts_with(b"\x01\x01\x01ab\x02\x02\x02c\n["),
            "{output:?}"
        );
    }

    #[test]
    fn a_reply_cut_anywhere_strips_to_the_interleaved_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = writer(dir.path(), usize::MAX);
        let chunks: [(Stream, &[u8]); 6] = [
            (Stream::Stdout, b"out\n"),
            (Stream::Stderr, b"e"),
            (Stream::Stderr, b"rr\n"),
            (Stream::Stdout, b"x"),
            (Stream::Stderr, b"y"),
            (Stream::Stdout, b"tail\n"),
        ];
        let mut text = Vec::new();
        for (stream, data) in chunks {
            log.push(stream, data);
            text.extend_from_slice(data);
        }
        log.close();
        let path = dir.path().join("output.log");
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert_eq!(
            super::super::strip_markers(read_head(&path, size, true)),
            text
        );
        for limit in 0..size {
            let reply = super::super::strip_markers(read_head(&path, limit, true));
            let cut = reply
                .windows(2)
                .position(|w| w == b"\n[")
                .map_or(reply.len(), |at| at);
            let (head, notice) = reply.split_at(cut);
            assert!(text.starts_with(head), "limit {limit}: {reply:?}");
            assert!(
                notice.starts_with(b"\n[toolboxd: log cut at"),
                "limit {limit}: {reply:?}"
            );
            assert!(
                !reply.iter().any(|b| *b == 1 || *b == 2),
                "limit {limit}: {reply:?}"
            );
        }
    }
}
