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

/// The three logs, in `LogWriter`'s order.
pub(super) const LOG_NAMES: [&str; 3] = ["output.log", "stdout.log", "stderr.log"];

/// Appends to `output.log` (with markers) and the per-stream logs, each capped at `cap`. A write
/// that fails (a full disk) is kept in `lost` and ends the writing: a log that lost bytes is not
/// resumed with a gap in it.
#[derive(Debug)]
pub(super) struct LogWriter {
    pub(super) cap: usize,
    pub(super) output: Option<File>,
    pub(super) stdout: Option<File>,
    pub(super) stderr: Option<File>,
    pub(super) last: Option<Stream>,
    pub(super) sizes: [usize; 3],
    pub(super) truncated: [bool; 3],
    /// The first failed write: which log (an index into `LOG_NAMES`) and why.
    pub(super) lost: Option<(usize, std::io::Error)>,
}

impl LogWriter {
    /// A writer whose files are closed: what a finished command's lookup reads under (`lost`:
    /// the write that ended its logs, if one did).
    pub(super) fn closed(lost: Option<(usize, std::io::Error)>) -> LogWriter {
        LogWriter {
            cap: usize::MAX,
            output: None,
            stdout: None,
            stderr: None,
            last: None,
            sizes: [0; 3],
            truncated: [false; 3],
            lost,
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
        // After the notice, nothing: a later chunk that would fit the room a marker left would
        // read as if it followed what was cut.
        if self.truncated[index] {
            return false;
        }
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
        let mut written = Ok(());
        if !kept.is_empty() {
            written = file.write_all(kept);
            self.sizes[index] += kept.len();
        }
        if written.is_ok() && kept.len() < data.len() && !self.truncated[index] {
            self.truncated[index] = true;
            let notice = format!("\n[toolboxd: output truncated at {} bytes]\n", self.cap);
            written = file.write_all(notice.as_bytes());
        }
        if let Err(err) = written {
            self.lost.get_or_insert((index, err));
            self.close();
            return false;
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
            lost: None,
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

    /// A write that fails (a full disk: /dev/full) is kept and ends the writing.
    #[test]
    fn a_failed_write_is_kept_and_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = writer(dir.path(), usize::MAX);
        log.push(Stream::Stdout, b"kept");
        log.stdout = Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        );
        log.push(Stream::Stdout, b"lost");
        log.push(Stream::Stdout, b"after");
        let (index, err) = log.lost.as_ref().expect("the failure is kept");
        assert_eq!(LOG_NAMES[*index], "stdout.log");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(log.output.is_none() && log.stdout.is_none() && log.stderr.is_none());
        // output.log took "lost" before stdout.log failed; nothing after the failure.
        assert_eq!(
            std::fs::read(dir.path().join("output.log")).unwrap(),
            b"\x01\x01\x01keptlost"
        );
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
    pub(super) fn writer(dir: &Path, cap: usize) -> LogWriter {
        let open = |n: &str| File::create(dir.join(n)).unwrap();
        LogWriter {
            cap,
            output: Some(open("output.log")),
            stdout: Some(open("stdout.log")),
            stderr: Some(open("stderr.log")),
            last: None,
            sizes: [0; 3],
            truncated: [false; 3],
            lost: None,
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

    /// Found by `proptests::capped_logs_keep_a_clean_prefix`: a marker that no longer fit left
    /// room under the cap, and a later chunk of the stream that needs no marker was written
    /// after the notice.
    #[test]
    fn nothing_follows_the_truncation_notice() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = writer(dir.path(), 13);
        log.push(Stream::Stdout, b"abcdefghi");
        log.push(Stream::Stderr, b"e");
        log.push(Stream::Stdout, b"j");
        let output = std::fs::read(dir.path().join("output.log")).unwrap();
        let notice = "\n[toolboxd: output truncated at 13 bytes]\n";
        assert_eq!(
            output,
            [b"\x01\x01\x01abcdefghi", notice.as_bytes()].concat()
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

/// Property tests of the framing (`PROPTEST_CASES` sets how many cases run; 256 by default).
#[cfg(test)]
mod proptests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::process::session::{strip_markers, MarkerStripper};
    use crate::testing::chunked;

    /// Bytes rich in what the framing is made of: marker bytes, alone and in pairs.
    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        vec(
            prop_oneof![3 => Just(1u8), 3 => Just(2u8), 2 => Just(b'a'), 1 => Just(b'\n'), 1 => any::<u8>()],
            0..max,
        )
    }

    fn pushes() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
        vec((any::<bool>(), bytes(12)), 0..24)
    }

    /// Breaks every run of three equal marker bytes in the streams' interleaved data (such data
    /// would read as a marker: the format cannot carry it), keeping each push's length.
    fn without_marker_runs(pushes: &mut [(bool, Vec<u8>)]) {
        let (mut previous, mut before) = (None, None);
        for (_, data) in pushes.iter_mut() {
            for byte in data.iter_mut() {
                if (*byte == 1 || *byte == 2) && previous == Some(*byte) && before == Some(*byte) {
                    *byte = b'x';
                }
                before = previous;
                previous = Some(*byte);
            }
        }
    }

    /// Writes `pushes` through a `LogWriter` capped at `cap`: (output.log, stdout.log, stderr.log).
    fn write(pushes: &[(bool, Vec<u8>)], cap: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = super::tests::writer(dir.path(), cap);
        for (stdout, data) in pushes {
            let stream = if *stdout {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            log.push(stream, data);
        }
        log.close();
        let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
        (read("output.log"), read("stdout.log"), read("stderr.log"))
    }

    fn concat<'a>(parts: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u8> {
        parts.flatten().copied().collect()
    }

    fn notice(cap: usize) -> Vec<u8> {
        format!("\n[toolboxd: output truncated at {cap} bytes]\n").into_bytes()
    }

    proptest! {
        /// Any bytes, split at any points: the stripper gives what stripping the whole gives.
        #[test]
        fn stripping_does_not_depend_on_the_chunking(log in bytes(64), cuts in vec(any::<usize>(), 0..8)) {
            let whole = strip_markers(log.clone());
            let mut stripper = MarkerStripper::default();
            let mut out = Vec::new();
            for chunk in chunked(&log, &cuts) {
                out.extend(stripper.feed(&chunk));
            }
            out.extend(stripper.finish());
            prop_assert_eq!(out, whole);
        }

        /// Both streams, any data the format can carry, split anywhere: output.log strips to
        /// the data in arrival order (also read back in chunks), and each stream's own log is
        /// that stream's data.
        #[test]
        fn framing_round_trips(mut pushes in pushes(), cuts in vec(any::<usize>(), 0..8)) {
            without_marker_runs(&mut pushes);
            let (output, stdout, stderr) = write(&pushes, usize::MAX);
            let interleaved = concat(pushes.iter().map(|(_, d)| d));
            prop_assert_eq!(&strip_markers(output.clone()), &interleaved);
            let mut stripper = MarkerStripper::default();
            let mut out = Vec::new();
            for chunk in chunked(&output, &cuts) {
                out.extend(stripper.feed(&chunk));
            }
            out.extend(stripper.finish());
            prop_assert_eq!(&out, &interleaved);
            prop_assert_eq!(stdout, concat(pushes.iter().filter(|(o, _)| *o).map(|(_, d)| d)));
            prop_assert_eq!(stderr, concat(pushes.iter().filter(|(o, _)| !*o).map(|(_, d)| d)));
        }

        /// Under `--max-log`, output.log strips to a prefix of the data, then the notice when
        /// something was cut: never half a marker read as data. Each stream's log is its data
        /// cut at the cap.
        #[test]
        fn capped_logs_keep_a_clean_prefix(mut pushes in pushes(), cap in 0usize..80) {
            without_marker_runs(&mut pushes);
            let (output, stdout, _) = write(&pushes, cap);
            let interleaved = concat(pushes.iter().map(|(_, d)| d));
            let stripped = strip_markers(output.clone());
            let notice = notice(cap);
            let kept = stripped.strip_suffix(notice.as_slice()).unwrap_or(&stripped);
            prop_assert!(interleaved.starts_with(kept), "{:?} is not a prefix of {:?}", kept, interleaved);
            prop_assert_eq!(kept.len() == interleaved.len(), kept.len() == stripped.len());
            prop_assert!(output.len() <= cap + notice.len());
            let all_stdout = concat(pushes.iter().filter(|(o, _)| *o).map(|(_, d)| d));
            let mut expected = all_stdout[..all_stdout.len().min(cap)].to_vec();
            if all_stdout.len() > cap {
                expected.extend_from_slice(&notice);
            }
            prop_assert_eq!(stdout, expected);
        }

        /// A reply cut at any `--max-output` strips to a prefix of the whole log's text, then
        /// the notice.
        #[test]
        fn a_reply_cut_anywhere_strips_to_a_prefix(mut pushes in pushes(), limit in 0usize..120) {
            without_marker_runs(&mut pushes);
            let dir = tempfile::tempdir().unwrap();
            let (output, _, _) = write(&pushes, usize::MAX);
            let path = dir.path().join("output.log");
            std::fs::write(&path, &output).unwrap();
            let interleaved = concat(pushes.iter().map(|(_, d)| d));
            let reply = strip_markers(read_head(&path, limit, true));
            let notice = format!("\n[toolboxd: log cut at {limit} of {} bytes; follow the logs (follow=true) for all of it]\n", output.len());
            let kept = match output.len() > limit {
                true => reply.strip_suffix(notice.as_bytes()).expect("the notice"),
                false => &reply[..],
            };
            prop_assert!(interleaved.starts_with(kept), "{:?} is not a prefix of {:?}", kept, interleaved);
            if output.len() <= limit {
                prop_assert_eq!(kept, &interleaved[..]);
            }
        }
    }
}
