//! Open files for random access, as SFTP clients use them (read at offsets, write at offsets,
//! close). A file opened to be replaced — for writing, with truncation, not exclusive: what
//! `sftp put`, WinSCP and most clients do — is staged: it is an [`AtomicFile`], written at any
//! offsets into the temp file beside the target and renamed over it on close, so the file API's
//! guarantee holds (a transfer that fails or is cut leaves the old content and no temp file).
//! A file opened for writing with `create` and nothing else (no reading, truncation, appending or
//! exclusivity) is staged too: that is `scp` (OpenSSH 9, which speaks SFTP), which writes the
//! file from the start and cuts it to length at the end, like the old scp protocol did in place;
//! its temp file starts as a copy of the current content, so the result on close is what the
//! in-place writes would have made, and a cut transfer leaves the old file (or no file).
//! Every other open (reading, updating part of a file, appending as `sftp reput` does, creating
//! exclusively) is on the real file, in place: those clients mean to change the file as it is,
//! and each acknowledged write is in it.

use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{parent_of, AtomicFile};
use crate::error::{Error, ErrorKind, Result};

/// How a file is opened (SFTP's `pflags`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenMode {
    /// Reads allowed.
    pub read: bool,
    /// Writes allowed.
    pub write: bool,
    /// Every write goes to the end.
    pub append: bool,
    /// Create the file when missing.
    pub create: bool,
    /// Start from empty.
    pub truncate: bool,
    /// Fail when the file exists (with `create`).
    pub exclusive: bool,
}

/// An open file.
#[derive(Debug)]
pub enum OpenFile {
    /// The real file.
    InPlace {
        /// The descriptor.
        file: File,
        /// Its path, for messages.
        path: PathBuf,
    },
    /// A replacement, published on `close`.
    Staged(AtomicFile),
}

impl OpenFile {
    /// Opens `path` with `mode`; `new_mode` is the permission bits of a file this creates (the
    /// umask applies). Only regular files open: a directory, device, FIFO or socket is refused
    /// (the open does not block on a FIFO).
    pub fn open(
        path: &Path,
        mode: OpenMode,
        new_mode: Option<u32>,
        umask: u32,
    ) -> Result<OpenFile> {
        if !mode.read && !mode.write {
            return Err(Error::bad_request(format!(
                "open {}: neither reading nor writing was asked for",
                path.display()
            )));
        }
        let replaces = mode.write && mode.truncate && !mode.exclusive && !mode.append;
        let rewrites = mode.write
            && mode.create
            && !mode.read
            && !mode.truncate
            && !mode.exclusive
            && !mode.append;
        if replaces || rewrites {
            match open_staged(path, mode, new_mode, umask, rewrites) {
                Ok(file) => return Ok(file),
                // A file that can be written but whose directory cannot take a temp file (a
                // root-owned directory, a bind-mounted file): rewritten in place, as a plain
                // open(O_TRUNC) would.
                Err(err) if err.kind == ErrorKind::AccessDenied => {}
                Err(err) => return Err(err),
            }
        }
        let mut options = OpenOptions::new();
        options
            .read(mode.read)
            .write(mode.write)
            .append(mode.append)
            .truncate(mode.truncate && mode.write)
            .mode(new_mode.unwrap_or(0o666) & 0o7777)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        if mode.create && mode.exclusive {
            options.create_new(true);
        } else if mode.create {
            options.create(true);
        }
        let file = options
            .open(path)
            .map_err(|err| Error::io("open", path, &err))?;
        let metadata = file
            .metadata()
            .map_err(|err| Error::io("stat", path, &err))?;
        if !metadata.is_file() {
            return Err(not_regular(path, &metadata));
        }
        // Back to blocking reads and writes (the flag only mattered for the open).
        // SAFETY: F_GETFL/F_SETFL on a descriptor this function owns.
        unsafe {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        Ok(OpenFile::InPlace {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The descriptor reads, writes and stats go to (the temp file of a staged one).
    pub fn file(&self) -> &File {
        match self {
            OpenFile::InPlace { file, .. } => file,
            OpenFile::Staged(staged) => staged.file(),
        }
    }

    fn path(&self) -> &Path {
        match self {
            OpenFile::InPlace { path, .. } => path,
            OpenFile::Staged(staged) => staged.target(),
        }
    }

    /// Up to `len` bytes from `offset`; empty at or past the end.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buffer = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self
                .file()
                .read_at(&mut buffer[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(Error::io("read", self.path(), &err)),
            }
        }
        buffer.truncate(filled);
        Ok(buffer)
    }

    /// Writes `data` at `offset` (at the end, whatever `offset`, for a file opened to append).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        match self {
            OpenFile::InPlace { file, path } => file
                .write_all_at(data, offset)
                .map_err(|err| Error::io("write", path, &err)),
            OpenFile::Staged(staged) => staged.write_at(offset, data),
        }
    }

    /// Its metadata (a staged file's size is what was written so far).
    pub fn metadata(&self) -> Result<Metadata> {
        self.file()
            .metadata()
            .map_err(|err| Error::io("stat", self.path(), &err))
    }

    /// Changes what SFTP's `fsetstat` may change: size, permission bits, times.
    pub fn set(
        &mut self,
        len: Option<u64>,
        mode: Option<u32>,
        times: Option<(SystemTime, SystemTime)>,
    ) -> Result<()> {
        if let Some(len) = len {
            match self {
                OpenFile::InPlace { file, path } => file
                    .set_len(len)
                    .map_err(|err| Error::io("truncate", path, &err))?,
                OpenFile::Staged(staged) => staged.set_len(len)?,
            }
        }
        if let Some(mode) = mode {
            match self {
                OpenFile::InPlace { file, path } => {
                    use std::os::unix::fs::PermissionsExt;
                    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
                        .map_err(|err| Error::io("chmod", path, &err))?
                }
                // Applied to the temp file on commit.
                OpenFile::Staged(staged) => staged.set_mode(mode),
            }
        }
        if let Some((accessed, modified)) = times {
            // The rename on commit keeps a staged file's times.
            let file = self.file();
            file.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(accessed)
                    .set_modified(modified),
            )
            .map_err(|err| Error::io("set the times of", self.path(), &err))?;
        }
        Ok(())
    }

    /// Flushes the content to the disk (`fsync@openssh.com`).
    pub fn sync(&self) -> Result<()> {
        self.file()
            .sync_all()
            .map_err(|err| Error::io("fsync", self.path(), &err))
    }

    /// Closes it: a staged file replaces its target now (an error leaves the target as it was).
    pub fn close(self) -> Result<()> {
        match self {
            OpenFile::InPlace { .. } => Ok(()),
            OpenFile::Staged(staged) => staged.commit().map(|_| ()),
        }
    }
}

/// A staged open of `path`; with `keep`, the temp file starts with the target's content.
fn open_staged(
    path: &Path,
    mode: OpenMode,
    new_mode: Option<u32>,
    umask: u32,
    keep: bool,
) -> Result<OpenFile> {
    // SFTP opens create nothing but the file: a missing directory is an error here, where the
    // upload API would create it.
    let parent = parent_of(path);
    match std::fs::metadata(&parent) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid_path(format!(
                "open {}: {} is not a directory",
                path.display(),
                parent.display()
            )))
        }
        Err(err) => return Err(Error::io("open", path, &err)),
    }
    if !mode.create {
        // Without `create`, a missing file is an error (as open(2) says).
        std::fs::metadata(path).map_err(|err| Error::io("open", path, &err))?;
    }
    let mut staged = AtomicFile::create(path, umask)?;
    if keep && !staged.is_new() {
        staged.copy_target()?;
    }
    if staged.is_new() {
        if let Some(bits) = new_mode {
            staged.set_mode(bits & !umask);
        }
    }
    Ok(OpenFile::Staged(staged))
}

fn not_regular(path: &Path, metadata: &Metadata) -> Error {
    if metadata.is_dir() {
        return Error::invalid_path(format!(
            "invalid file path: path points to a directory: {}",
            path.display()
        ));
    }
    Error::invalid_path(format!(
        "invalid file path: not a regular file (device, FIFO or socket): {}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace() -> OpenMode {
        OpenMode {
            write: true,
            create: true,
            truncate: true,
            ..OpenMode::default()
        }
    }

    #[test]
    fn a_replacement_appears_only_on_close_and_a_dropped_one_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        std::fs::write(&target, "old content").unwrap();
        let mut file = OpenFile::open(&target, replace(), Some(0o600), 0o022).unwrap();
        // Out of order, as pipelined clients may write.
        file.write_at(3, b"def").unwrap();
        file.write_at(0, b"abc").unwrap();
        assert_eq!(file.metadata().unwrap().len(), 6);
        assert_eq!(file.read_at(0, 100).unwrap(), b"abcdef");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old content");
        file.close().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "abcdef");
        let mut cut = OpenFile::open(&target, replace(), None, 0o022).unwrap();
        cut.write_at(0, b"partial").unwrap();
        drop(cut);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "abcdef");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn updates_and_appends_go_to_the_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("log");
        std::fs::write(&target, "0123456789").unwrap();
        let update = OpenMode {
            read: true,
            write: true,
            ..OpenMode::default()
        };
        let mut file = OpenFile::open(&target, update, None, 0o022).unwrap();
        file.write_at(2, b"ab").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "01ab456789");
        drop(file);
        let append = OpenMode {
            write: true,
            append: true,
            create: true,
            ..OpenMode::default()
        };
        let mut file = OpenFile::open(&target, append, None, 0o022).unwrap();
        file.write_at(0, b"!").unwrap();
        file.close().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "01ab456789!");
    }

    /// scp's open (write and create, nothing else) is staged from the old content: a cut
    /// transfer leaves the old file, or no file where there was none.
    #[test]
    fn an_scp_rewrite_is_staged_from_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        std::fs::write(&target, "0123456789").unwrap();
        let rewrite = OpenMode {
            write: true,
            create: true,
            ..OpenMode::default()
        };
        let mut cut = OpenFile::open(&target, rewrite, None, 0o022).unwrap();
        cut.write_at(0, b"ab").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "0123456789");
        drop(cut);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "0123456789");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mut file = OpenFile::open(&target, rewrite, None, 0o022).unwrap();
        file.write_at(0, b"ab").unwrap();
        assert_eq!(file.read_at(0, 100).unwrap(), b"ab23456789");
        file.close().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "ab23456789");
        let mut file = OpenFile::open(&target, rewrite, None, 0o022).unwrap();
        file.write_at(0, b"xyz").unwrap();
        file.set(Some(3), None, None).unwrap();
        file.close().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "xyz");
        let new = dir.path().join("new.bin");
        let mut cut = OpenFile::open(&new, rewrite, None, 0o022).unwrap();
        cut.write_at(0, b"partial").unwrap();
        drop(cut);
        assert!(!new.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn new_files_get_the_asked_mode_and_missing_things_are_errors() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("script.sh");
        let file = OpenFile::open(&target, replace(), Some(0o777), 0o022).unwrap();
        file.close().unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let missing_dir = dir.path().join("nope/file");
        let err = OpenFile::open(&missing_dir, replace(), None, 0o022).unwrap_err();
        assert_eq!(err.kind, ErrorKind::FileNotFound);
        let read = OpenMode {
            read: true,
            ..OpenMode::default()
        };
        let err = OpenFile::open(&dir.path().join("absent"), read, None, 0o022).unwrap_err();
        assert_eq!(err.kind, ErrorKind::FileNotFound);
        let err = OpenFile::open(dir.path(), read, None, 0o022).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidPath);
        let exclusive = OpenMode {
            write: true,
            create: true,
            exclusive: true,
            ..OpenMode::default()
        };
        let err = OpenFile::open(&target, exclusive, None, 0o022).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
    }
}
