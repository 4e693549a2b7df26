//! What a one-shot command wrote, held once: both streams in arrival order, plus which stream
//! each byte came from, so each stream's own text is read back out of the same bytes instead of
//! being kept a second time. Where the streams take turns the record of who wrote what is a
//! list of run lengths; when the runs are so short that the list would outgrow one bit per byte,
//! it becomes a bitmap (at most an eighth of the output).

use std::ops::Range;

/// One of a command's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

impl Stream {
    fn other(self) -> Stream {
        match self {
            Stream::Stdout => Stream::Stderr,
            Stream::Stderr => Stream::Stdout,
        }
    }
}

/// A command's output, capped: at most `cap` bytes of the two streams together, then a notice
/// (`[toolboxd: output truncated at N bytes]`) on the stream that went past the cap, and nothing
/// more.
#[derive(Debug, Clone, Default)]
pub struct Output {
    cap: usize,
    /// Both streams in arrival order, the notice included.
    bytes: Vec<u8>,
    origin: Origin,
    truncated: bool,
}

/// Which stream each byte of `Output::bytes` came from.
#[derive(Debug, Clone, Default)]
enum Origin {
    /// Nothing yet.
    #[default]
    Empty,
    /// Alternating runs, the first from `first`: the bytes of run `i` follow those of run `i-1`.
    Runs { first: Stream, lengths: Vec<u32> },
    /// Bit `i` set: byte `i` came from stderr.
    Bits(Vec<u64>),
}

/// The longest notice the cap adds (the cap in decimal is at most 20 digits).
const NOTICE_MAX: usize = 64;

impl Output {
    /// An empty output that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Output {
        Output {
            cap,
            ..Output::default()
        }
    }

    /// Appends what `stream` wrote, up to the cap; past it, the notice once, then nothing.
    pub fn push(&mut self, stream: Stream, data: &[u8]) {
        if self.truncated || data.is_empty() {
            return;
        }
        let room = self.cap.saturating_sub(self.bytes.len());
        let kept = &data[..data.len().min(room)];
        self.append(stream, kept);
        if kept.len() < data.len() {
            self.truncated = true;
            let notice = format!("\n[toolboxd: output truncated at {} bytes]\n", self.cap);
            self.append(stream, notice.as_bytes());
        }
    }

    /// The most bytes kept (before the notice).
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// True when the cap cut the output.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Both streams in arrival order.
    pub fn interleaved(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes `stream` wrote, in order, as the slices of `interleaved` they sit in.
    pub fn pieces(&self, stream: Stream) -> Pieces<'_> {
        Pieces {
            output: self,
            stream,
            cursor: Cursor::default(),
        }
    }

    /// The next slice of `stream`'s bytes after `cursor` (which moves past it), or `None` at
    /// the end.
    pub fn next_piece(&self, stream: Stream, cursor: &mut Cursor) -> Option<&[u8]> {
        self.next_range(stream, cursor)
            .map(|range| &self.bytes[range])
    }

    /// Where in `interleaved` the next slice of `stream`'s bytes after `cursor` is (the cursor
    /// moves past it), or `None` at the end. For readers that cannot hold a borrowing iterator.
    pub fn next_range(&self, stream: Stream, cursor: &mut Cursor) -> Option<Range<usize>> {
        loop {
            let start = cursor.offset;
            if start >= self.bytes.len() {
                return None;
            }
            let (from, end) = match &self.origin {
                Origin::Empty => return None,
                Origin::Runs { first, lengths } => {
                    let length = *lengths.get(cursor.run)? as usize;
                    let from = if cursor.run.is_multiple_of(2) {
                        *first
                    } else {
                        first.other()
                    };
                    cursor.run += 1;
                    (from, start + length)
                }
                Origin::Bits(bits) => {
                    let from = bit(bits, start);
                    (from, run_end(bits, start, self.bytes.len(), from))
                }
            };
            cursor.offset = end;
            if from == stream && end > start {
                return Some(start..end);
            }
        }
    }

    /// `stream`'s bytes, copied out.
    pub fn to_vec(&self, stream: Stream) -> Vec<u8> {
        self.pieces(stream).flatten().copied().collect()
    }

    /// Bytes kept: the output, and the record of which stream wrote them.
    #[cfg(test)]
    fn memory(&self) -> usize {
        self.bytes.capacity()
            + match &self.origin {
                Origin::Empty => 0,
                Origin::Runs { lengths, .. } => lengths.capacity() * 4,
                Origin::Bits(bits) => bits.capacity() * 8,
            }
    }

    fn append(&mut self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let start = self.bytes.len();
        if self.bytes.capacity() - start < data.len() {
            // Double as a Vec would, but never past the cap and its notice: a full 64 MiB
            // output must not reserve 128 MiB.
            let limit = self.cap.saturating_add(NOTICE_MAX);
            let wanted = (self.bytes.capacity() * 2)
                .min(limit)
                .max(start + data.len());
            self.bytes.reserve_exact(wanted - start);
        }
        self.bytes.extend_from_slice(data);
        match &mut self.origin {
            Origin::Empty => {
                self.origin = Origin::Runs {
                    first: stream,
                    lengths: Vec::new(),
                };
                self.add_run(stream, data.len());
            }
            Origin::Runs { .. } => self.add_run(stream, data.len()),
            Origin::Bits(bits) => {
                // One bit per byte of room, reserved as the bytes are.
                let words = self.bytes.capacity().div_ceil(64);
                bits.reserve_exact(words.saturating_sub(bits.len()));
                mark(bits, start, data.len(), stream);
            }
        }
    }

    /// Records the `len` bytes just appended from `stream` in the run list, or turns the list
    /// into a bitmap once it would take more memory than one.
    fn add_run(&mut self, stream: Stream, len: usize) {
        let Origin::Runs { first, lengths } = &mut self.origin else {
            return;
        };
        // Runs alternate, starting with `first`: run `i` is `first`'s when `i` is even.
        let last = if lengths.len() % 2 == 1 {
            *first
        } else {
            first.other()
        };
        let mut len = len;
        if last == stream {
            if let Some(run) = lengths.last_mut() {
                let more = len.min((u32::MAX - *run) as usize);
                *run += more as u32;
                len -= more;
                if len == 0 {
                    return;
                }
                // A run past 4 GiB goes on after an empty run of the other stream.
                lengths.push(0);
            }
        }
        let start = self.bytes.len() - len;
        if lengths.len() * 4 > start / 8 + 4096 {
            let mut bits = Vec::with_capacity(self.bytes.capacity().div_ceil(64));
            let mut at = 0;
            let mut from = *first;
            for &length in lengths.iter() {
                mark(&mut bits, at, length as usize, from);
                at += length as usize;
                from = from.other();
            }
            mark(&mut bits, start, len, stream);
            self.origin = Origin::Bits(bits);
            return;
        }
        while len > 0 {
            let part = len.min(u32::MAX as usize);
            lengths.push(part as u32);
            len -= part;
            if len > 0 {
                lengths.push(0);
            }
        }
    }
}

/// Where a reader of one stream is in an `Output`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    offset: usize,
    run: usize,
}

/// The slices of one stream's bytes, in order (see `Output::pieces`).
#[derive(Debug)]
pub struct Pieces<'a> {
    output: &'a Output,
    stream: Stream,
    cursor: Cursor,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.output.next_piece(self.stream, &mut self.cursor)
    }
}

fn bit(bits: &[u64], at: usize) -> Stream {
    if bits[at / 64] >> (at % 64) & 1 == 1 {
        Stream::Stderr
    } else {
        Stream::Stdout
    }
}

/// Sets (stderr) or clears (stdout) bits `start..start + len`, growing `bits` to hold them.
fn mark(bits: &mut Vec<u64>, start: usize, len: usize, stream: Stream) {
    let end = start + len;
    let words = end.div_ceil(64);
    if bits.len() < words {
        bits.resize(words, 0);
    }
    if stream == Stream::Stdout {
        // New words are zero already, and no bit past the end was ever set.
        return;
    }
    let mut at = start;
    while at < end {
        let word = at / 64;
        let low = at % 64;
        let high = (end - word * 64).min(64);
        let mask = if high - low == 64 {
            u64::MAX
        } else {
            ((1u64 << (high - low)) - 1) << low
        };
        bits[word] |= mask;
        at = word * 64 + high;
    }
}

/// The end of the run of bits equal to `from`'s that starts at `start` (at most `len`).
fn run_end(bits: &[u64], start: usize, len: usize, from: Stream) -> usize {
    let flip = if from == Stream::Stderr { u64::MAX } else { 0 };
    let mut word = start / 64;
    // Bits that differ from the run's, at or after `start`.
    let mut differ = (bits[word] ^ flip) & (u64::MAX << (start % 64));
    loop {
        if differ != 0 {
            return (word * 64 + differ.trailing_zeros() as usize).min(len);
        }
        word += 1;
        if word * 64 >= len {
            return len;
        }
        differ = bits[word] ^ flip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output as two separate copies, the way it used to be kept.
    fn split(output: &Output) -> (Vec<u8>, Vec<u8>) {
        (output.to_vec(Stream::Stdout), output.to_vec(Stream::Stderr))
    }

    #[test]
    fn streams_come_back_apart_and_interleaved() {
        let mut output = Output::new(1000);
        output.push(Stream::Stdout, b"out1 ");
        output.push(Stream::Stdout, b"out2 ");
        output.push(Stream::Stderr, b"err1 ");
        output.push(Stream::Stdout, b"out3");
        assert_eq!(output.interleaved(), b"out1 out2 err1 out3");
        assert_eq!(
            split(&output),
            (b"out1 out2 out3".to_vec(), b"err1 ".to_vec())
        );
        assert!(!output.truncated());
        let pieces: Vec<&[u8]> = output.pieces(Stream::Stdout).collect();
        assert_eq!(pieces, [&b"out1 out2 "[..], b"out3"]);
        assert_eq!(Output::new(10).to_vec(Stream::Stdout), b"");
    }

    #[test]
    fn the_cap_cuts_with_a_notice_on_the_stream_that_overflowed() {
        let mut output = Output::new(10);
        output.push(Stream::Stdout, b"12345");
        output.push(Stream::Stderr, b"abcdefgh");
        output.push(Stream::Stdout, b"more");
        assert!(output.truncated());
        let notice = b"\n[toolboxd: output truncated at 10 bytes]\n";
        assert_eq!(output.interleaved(), [&b"12345abcde"[..], notice].concat());
        assert_eq!(
            split(&output),
            (b"12345".to_vec(), [&b"abcde"[..], notice].concat())
        );
        // Never more room reserved than the cap and its notice.
        assert!(output.bytes.capacity() <= 10 + NOTICE_MAX);
    }

    #[test]
    fn short_alternating_runs_switch_to_a_bitmap_with_the_same_answers() {
        let mut output = Output::new(1 << 20);
        let mut want = (Vec::new(), Vec::new(), Vec::new());
        let mut seed = 7u32;
        for i in 0..200_000usize {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let stream = if i % 3 == 0 || seed >> 30 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let data = [b'a' + (i % 26) as u8; 3];
            let data = &data[..1 + (seed >> 16) as usize % 3];
            let room = (1usize << 20) - want.0.len();
            let kept = &data[..data.len().min(room)];
            output.push(stream, data);
            want.0.extend_from_slice(kept);
            match stream {
                Stream::Stdout => want.1.extend_from_slice(kept),
                Stream::Stderr => want.2.extend_from_slice(kept),
            }
        }
        assert!(matches!(output.origin, Origin::Bits(_)));
        assert!(!output.truncated());
        assert_eq!(output.interleaved(), want.0);
        assert_eq!(split(&output), (want.1, want.2));
        // The record of who wrote what stays within an eighth of the bytes (and a little).
        assert!(output.memory() <= output.bytes.capacity() * 9 / 8 + 64);
    }

    #[test]
    fn bits_mark_and_runs_end_at_word_edges() {
        let mut bits = Vec::new();
        mark(&mut bits, 3, 200, Stream::Stderr);
        mark(&mut bits, 203, 60, Stream::Stdout);
        mark(&mut bits, 263, 1, Stream::Stderr);
        assert_eq!(bit(&bits, 2), Stream::Stdout);
        assert_eq!(run_end(&bits, 0, 264, Stream::Stdout), 3);
        assert_eq!(run_end(&bits, 3, 264, Stream::Stderr), 203);
        assert_eq!(run_end(&bits, 64, 264, Stream::Stderr), 203);
        assert_eq!(run_end(&bits, 203, 264, Stream::Stdout), 263);
        assert_eq!(run_end(&bits, 263, 264, Stream::Stderr), 264);
    }
}
