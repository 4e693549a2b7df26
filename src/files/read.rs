//! Reading a file for a download: exactly the bytes the response announced, in whole chunks.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// A file's first `len` bytes (from its current offset), in chunks of `chunk` bytes (the last
/// one shorter). Each chunk is filled before it is handed out: one `read(2)` for a regular file,
/// which returns short only at its end (std's `read_to_end` starts at 8 KiB and doubles: seven
/// calls per 512 KiB). Memory is one chunk at a time, whatever the file's size.
#[derive(Debug)]
pub struct Chunks {
    file: File,
    left: u64,
    chunk: usize,
}

impl Chunks {
    /// Reads `len` bytes of `file` in chunks of `chunk` bytes (at least 1).
    pub fn new(file: File, len: u64, chunk: usize) -> Chunks {
        Chunks {
            file,
            left: len,
            chunk: chunk.max(1),
        }
    }
}

impl Iterator for Chunks {
    type Item = io::Result<Vec<u8>>;

    /// The next chunk. A file that ends before `len` bytes yields an `UnexpectedEof` error (it
    /// shrank while being read), a failed read its error; either ends the iteration.
    fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        if self.left == 0 {
            return None;
        }
        let want = self.left.min(self.chunk as u64) as usize;
        let chunk = fill(&self.file, want);
        match &chunk {
            Ok(buf) if buf.len() == want => self.left -= want as u64,
            Ok(buf) => {
                let short = self.left - buf.len() as u64;
                self.left = 0;
                return Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended {short} bytes early (it shrank while being read)"),
                )));
            }
            Err(_) => self.left = 0,
        }
        Some(chunk)
    }
}

/// Reads from `file` into a new buffer until it holds `want` bytes or the file ends.
fn fill(file: &File, want: usize) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(want);
    while buf.len() < want {
        let filled = buf.len();
        let spare = &mut buf.spare_capacity_mut()[..want - filled];
        // SAFETY: `spare` is writable memory of `spare.len()` bytes that the Vec owns, and
        // read(2) writes at most that many bytes into it. (Reading into the uninitialised
        // capacity spares a memset of every chunk; std's safe way to do it, `read_buf`, is
        // unstable.)
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            break;
        }
        // SAFETY: the kernel initialised the `n` bytes it reported, right after `filled`.
        unsafe { buf.set_len(filled + n as usize) };
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn file_with(content: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file
    }

    #[test]
    fn chunks_are_whole_and_add_up_to_len() {
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let sizes: Vec<usize> = Chunks::new(file_with(&content), 10_000, 4096)
            .map(|chunk| chunk.unwrap().len())
            .collect();
        assert_eq!(sizes, [4096, 4096, 1808]);
        let joined: Vec<u8> = Chunks::new(file_with(&content), 10_000, 4096)
            .flat_map(|chunk| chunk.unwrap())
            .collect();
        assert_eq!(joined, content);
    }

    #[test]
    fn only_len_bytes_are_read_from_the_current_offset() {
        let mut file = file_with(b"0123456789");
        file.seek(SeekFrom::Start(2)).unwrap();
        let chunks: Vec<Vec<u8>> = Chunks::new(file, 5, 3).map(Result::unwrap).collect();
        assert_eq!(chunks, [b"234".to_vec(), b"56".to_vec()]);
        assert_eq!(Chunks::new(file_with(b"abc"), 0, 3).count(), 0);
    }

    #[test]
    fn a_file_shorter_than_len_ends_with_an_error() {
        let mut chunks = Chunks::new(file_with(b"abcdef"), 10, 4);
        assert_eq!(chunks.next().unwrap().unwrap(), b"abcd");
        let err = chunks.next().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("4 bytes early"), "{err}");
        assert!(chunks.next().is_none());
    }
}
