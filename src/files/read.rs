//! Reading a file for a download: exactly the bytes the response announced, in whole chunks;
//! or, for a file whose size the kernel does not report (`/proc`, `/sys`), every byte up to EOF.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;

/// Filesystems whose files report a size that is not their content's: procfs and the kernel's
/// other pseudo filesystems say 0 or 4096 and produce their text as it is read.
const PSEUDO_FILESYSTEMS: [u32; 9] = [
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x7363_6673, // securityfs
    0x6265_6570, // configfs
    0x0027_e0eb, // cgroup (v1)
    0x6367_7270, // cgroup2
    0x6165_676c, // pstore
];

/// How much there is to read of a regular file, found out before a response announces it.
#[derive(Debug)]
pub enum Extent {
    /// `st_size`, which can be trusted.
    Sized(u64),
    /// The whole content of a file whose size the kernel does not report: it ended within the
    /// read-ahead.
    Whole(Vec<u8>),
    /// The first bytes of such a file, which did not end within the read-ahead: the rest is
    /// read until EOF ([`Chunks::to_end`]).
    Open(Vec<u8>),
}

/// How much `file` (just opened, at offset 0) holds. A file on a pseudo filesystem, or one that
/// says it is empty (`st_size` 0 is also what FUSE files such as lxcfs' `/proc/meminfo` say), is
/// read ahead by up to `read_ahead` bytes to find out; an empty file that is really empty
/// (not on a pseudo filesystem) is `Sized(0)`.
pub fn extent(file: &File, metadata: &Metadata, read_ahead: usize) -> io::Result<Extent> {
    let pseudo = is_pseudo(file);
    if !pseudo && metadata.len() > 0 {
        return Ok(Extent::Sized(metadata.len()));
    }
    let mut head = fill(file, read_ahead.max(1))?;
    Ok(if head.is_empty() && !pseudo {
        Extent::Sized(0)
    } else if head.len() < read_ahead.max(1) {
        // Held until the answer is sent: not a whole read-ahead buffer for a few lines.
        head.shrink_to_fit();
        Extent::Whole(head)
    } else {
        Extent::Open(head)
    })
}

/// True for a file on one of the [`PSEUDO_FILESYSTEMS`].
fn is_pseudo(file: &File) -> bool {
    rustix::fs::fstatfs(file)
        .is_ok_and(|stat| PSEUDO_FILESYSTEMS.contains(&((stat.f_type as u64) as u32)))
}

/// A file's first `len` bytes (from its current offset), in chunks of `chunk` bytes (the last
/// one shorter). Each chunk is filled before it is handed out: one `read(2)` for a regular file,
/// which returns short only at its end (std's `read_to_end` starts at 8 KiB and doubles: seven
/// calls per 512 KiB). Memory is one chunk at a time, whatever the file's size.
#[derive(Debug)]
pub struct Chunks {
    file: File,
    left: u64,
    chunk: usize,
    /// Read until EOF instead of `left` bytes.
    to_end: bool,
}

impl Chunks {
    /// Reads `len` bytes of `file` in chunks of `chunk` bytes (at least 1).
    pub fn new(file: File, len: u64, chunk: usize) -> Chunks {
        Chunks {
            file,
            left: len,
            chunk: chunk.max(1),
            to_end: false,
        }
    }

    /// Reads `file` from its offset until EOF, in chunks of `chunk` bytes (the last one
    /// shorter, possibly empty): for a file whose size is not known ([`Extent::Open`]).
    pub fn to_end(file: File, chunk: usize) -> Chunks {
        Chunks {
            file,
            left: u64::MAX,
            chunk: chunk.max(1),
            to_end: true,
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
            Ok(buf) if self.to_end => {
                if buf.len() < want {
                    self.left = 0;
                }
            }
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

/// Reads from `file` into a new buffer until it holds `want` bytes or the file ends. (A pseudo
/// file may hand out less than asked, a page at a time, before its end: only 0 is EOF.)
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
    fn to_end_reads_until_eof_whatever_the_size() {
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<Vec<u8>> = Chunks::to_end(file_with(&content), 4096)
            .map(Result::unwrap)
            .collect();
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4096, 4096, 1808]);
        assert_eq!(chunks.concat(), content);
        // A length that is a multiple of the chunk ends with an empty chunk.
        let sizes: Vec<usize> = Chunks::to_end(file_with(&content[..8192]), 4096)
            .map(|chunk| chunk.unwrap().len())
            .collect();
        assert_eq!(sizes, [4096, 4096, 0]);
    }

    #[test]
    fn the_extent_of_a_plain_file_is_its_size_and_proc_files_are_read_ahead() {
        let file = file_with(b"abc");
        let metadata = file.metadata().unwrap();
        assert!(matches!(
            extent(&file, &metadata, 16).unwrap(),
            Extent::Sized(3)
        ));
        let empty = file_with(b"");
        let metadata = empty.metadata().unwrap();
        assert!(matches!(
            extent(&empty, &metadata, 16).unwrap(),
            Extent::Sized(0)
        ));
        let status = File::open("/proc/self/status").unwrap();
        let metadata = status.metadata().unwrap();
        assert_eq!(metadata.len(), 0, "procfs reports no size");
        match extent(&status, &metadata, 1 << 20).unwrap() {
            Extent::Whole(bytes) => assert!(bytes.starts_with(b"Name:"), "{bytes:?}"),
            other => panic!("{other:?}"),
        }
        let status = File::open("/proc/self/status").unwrap();
        match extent(&status, &metadata, 8).unwrap() {
            Extent::Open(bytes) => {
                assert_eq!(bytes.len(), 8);
                assert!(bytes.starts_with(b"Name:"), "{bytes:?}");
            }
            other => panic!("{other:?}"),
        }
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
