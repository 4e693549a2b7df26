//! The atomic writer: content goes to a temp file beside the target and is renamed over it on
//! commit. Dropping an uncommitted writer removes the temp file and leaves the target untouched.
//! A write can also be staged ([`AtomicFile::stage`]): written whole and closed, but renamed only
//! later, so several files can be published together once a request has arrived whole.

use std::fs::{self, DirBuilder};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempPath};

use super::parent_of;
use crate::error::{Error, Result};

/// A write in progress. `commit` publishes it; drop discards it.
#[derive(Debug)]
pub struct AtomicFile {
    temp: NamedTempFile,
    target: PathBuf,
    mode: u32,
    owner: Option<(u32, u32)>,
    n_bytes: u64,
}

impl AtomicFile {
    /// Prepares a write of `target`. A symlink is followed to the file it names (the write goes
    /// through the link, as a plain `open(O_TRUNC)` would). Missing parent directories are created
    /// 0755. An existing target keeps its mode and owner; a new one gets `0o666 & !umask`. Only
    /// regular files are written: a directory, device, FIFO or socket is refused.
    pub fn create(target: &Path, umask: u32) -> Result<AtomicFile> {
        if target.as_os_str().as_bytes().ends_with(b"/") {
            return Err(Error::invalid_path(format!(
                "invalid file path: {} names a directory, not a file",
                target.display()
            )));
        }
        let target = follow_symlinks(target);
        let (mode, owner) = match fs::metadata(&target) {
            Ok(metadata) if metadata.is_dir() => {
                return Err(Error::invalid_path(format!(
                    "invalid file path: path points to a directory: {}",
                    target.display()
                )))
            }
            Ok(metadata) if !metadata.is_file() => {
                return Err(Error::invalid_path(format!(
                    "invalid file path: not a regular file (device, FIFO or socket): {}",
                    target.display()
                )))
            }
            Ok(metadata) => (
                metadata.mode() & 0o7777,
                Some((metadata.uid(), metadata.gid())),
            ),
            Err(_) => (0o666 & !umask, None),
        };
        let parent = parent_of(&target);
        let temp = match new_temp(&target, &parent) {
            // Parents are created only when missing, so a failed write leaves no new directories
            // behind in the common case.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                create_parents(&target, &parent)?;
                new_temp(&target, &parent)
            }
            other => other,
        }
        .map_err(|err| Error::io("create", &target, &err))?;
        Ok(AtomicFile {
            temp,
            target,
            mode,
            owner,
            n_bytes: 0,
        })
    }

    /// The path that `commit` will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Bytes written so far (the end of the furthest write).
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// Whether the target did not exist when the write began.
    pub fn is_new(&self) -> bool {
        self.owner.is_none()
    }

    /// The mode the target gets on commit (by default the existing file's, else `0o666 & !umask`).
    pub fn set_mode(&mut self, mode: u32) {
        self.mode = mode & 0o7777;
    }

    /// The temp file, for what acts on the open file itself (its size, times, reads back).
    pub fn file(&self) -> &std::fs::File {
        self.temp.as_file()
    }

    /// Writes `data` at `offset` (a hole before it reads as zeros), for a writer that does not
    /// go in order.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.temp
            .as_file()
            .write_all_at(data, offset)
            .map_err(|err| Error::io("write", &self.target, &err))?;
        self.n_bytes = self.n_bytes.max(offset + data.len() as u64);
        Ok(())
    }

    /// Fills the temp file with the target's current content, for a writer that changes the
    /// file where it writes and keeps the rest.
    pub fn copy_target(&mut self) -> Result<()> {
        let mut source =
            fs::File::open(&self.target).map_err(|err| Error::io("open", &self.target, &err))?;
        let mut temp = self.temp.as_file();
        // std copies file to file with copy_file_range (a reflink where the filesystem can).
        let copied = std::io::copy(&mut source, &mut temp)
            .map_err(|err| Error::io("copy", &self.target, &err))?;
        self.n_bytes = copied;
        Ok(())
    }

    /// Cuts or extends the content to `len` bytes.
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        self.temp
            .as_file()
            .set_len(len)
            .map_err(|err| Error::io("truncate", &self.target, &err))?;
        self.n_bytes = len;
        Ok(())
    }

    /// Appends `data`.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.temp
            .as_file_mut()
            .write_all(data)
            .map_err(|err| Error::io("write", &self.target, &err))?;
        self.n_bytes += data.len() as u64;
        Ok(())
    }

    /// Sets mode and owner, then renames the temp file over the target. Returns the byte count.
    pub fn commit(self) -> Result<u64> {
        self.stage()?.commit()
    }

    /// As `commit`, but only when the target does not exist: one that does (or appeared since
    /// `create`) is left alone and the write fails with a 409, its temp file removed.
    pub fn commit_new(self) -> Result<u64> {
        self.stage()?.commit_new()
    }

    /// Finishes the content: sets mode and owner and closes the temp file, which stays beside
    /// the target until [`StagedFile::commit`] renames it there (or the `StagedFile` is dropped
    /// and removes it). A staged file holds no descriptor.
    pub fn stage(self) -> Result<StagedFile> {
        let AtomicFile {
            temp,
            target,
            mode,
            owner,
            n_bytes,
        } = self;
        let file = temp.as_file();
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|err| Error::io("chmod", &target, &err))?;
        if let Some((uid, gid)) = owner {
            let metadata = file
                .metadata()
                .map_err(|err| Error::io("stat", &target, &err))?;
            if (metadata.uid(), metadata.gid()) != (uid, gid) {
                // Only root may give a file away; as anyone else the new content is ours.
                let _ = std::os::unix::fs::fchown(file, Some(uid), Some(gid));
                // chown clears setuid/setgid bits: put the mode back.
                let _ = file.set_permissions(fs::Permissions::from_mode(mode));
            }
        }
        Ok(StagedFile {
            temp: temp.into_temp_path(),
            target,
            n_bytes,
        })
    }
}

/// A finished write waiting to be published: the temp file (closed) beside its target. `commit`
/// renames it over the target; dropping it removes the temp file.
#[derive(Debug)]
pub struct StagedFile {
    temp: TempPath,
    target: PathBuf,
    n_bytes: u64,
}

impl StagedFile {
    /// The path that `commit` will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the temp file over the target. Returns the byte count.
    pub fn commit(self) -> Result<u64> {
        let StagedFile {
            temp,
            target,
            n_bytes,
        } = self;
        match temp.persist(&target) {
            Ok(()) => Ok(n_bytes),
            // Some targets can be written but not replaced: bind-mounted files such as
            // /etc/hosts (EBUSY), files in sticky or read-only-for-us directories (EPERM,
            // EACCES). Those are rewritten in place, as a plain open(O_TRUNC) would.
            Err(err)
                if matches!(
                    err.error.raw_os_error(),
                    Some(libc::EBUSY | libc::EPERM | libc::EACCES | libc::EXDEV)
                ) =>
            {
                let mut source =
                    fs::File::open(&err.path).map_err(|e| Error::io("reopen", &target, &e))?;
                let mut destination = fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&target)
                    .map_err(|e| Error::io("write", &target, &e))?;
                std::io::copy(&mut source, &mut destination)
                    .map_err(|e| Error::io("write", &target, &e))?;
                Ok(n_bytes)
            }
            Err(err) => Err(Error::io("rename", &target, &err.error)),
        }
    }

    /// Renames the temp file to the target only if the target does not exist (a 409 otherwise;
    /// the temp file is removed either way).
    pub fn commit_new(self) -> Result<u64> {
        let StagedFile {
            temp,
            target,
            n_bytes,
        } = self;
        match temp.persist_noclobber(&target) {
            Ok(()) => Ok(n_bytes),
            Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => Err(
                Error::conflict(format!("file already exists: {}", target.display())),
            ),
            Err(err) => Err(Error::io("rename", &target, &err.error)),
        }
    }
}

/// A temp file beside `target`, named after it (bounded to 100 bytes so long names still fit
/// under NAME_MAX).
fn new_temp(target: &Path, parent: &Path) -> std::io::Result<NamedTempFile> {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut prefix = format!(".{name}");
    if prefix.len() > 100 {
        let mut end = 100;
        while !prefix.is_char_boundary(end) {
            end -= 1;
        }
        prefix.truncate(end);
    }
    tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".toolboxd-tmp")
        .tempfile_in(parent)
}

fn create_parents(target: &Path, parent: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::ENOTDIR) => Error::invalid_path(format!(
                "invalid file path: a parent of {} is not a directory",
                target.display()
            )),
            _ => Error::io("mkdir", parent, &err),
        })
}

/// Follows a chain of symlinks (at most 40) to the path that is not a link.
pub fn follow_symlinks(path: &Path) -> PathBuf {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.file_type().is_symlink() => match fs::read_link(&current) {
                Ok(link) if link.is_absolute() => current = link,
                Ok(link) => current = parent_of(&current).join(link),
                Err(_) => break,
            },
            _ => break,
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_writer_leaves_old_content_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.txt");
        fs::write(&target, "old").unwrap();
        let mut writer = AtomicFile::create(&target, 0o022).unwrap();
        writer.write_all(b"new content").unwrap();
        drop(writer);
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn commit_keeps_mode_and_writes_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.sh");
        fs::write(&real, "old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o751)).unwrap();
        let link = dir.path().join("link.sh");
        std::os::unix::fs::symlink("real.sh", &link).unwrap();
        let mut writer = AtomicFile::create(&link, 0o022).unwrap();
        writer.write_all(b"new").unwrap();
        assert_eq!(writer.commit().unwrap(), 3);
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(fs::metadata(&real).unwrap().mode() & 0o7777, 0o751);
    }

    #[test]
    fn a_staged_file_holds_no_descriptor_and_is_published_on_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.txt");
        fs::write(&target, "old").unwrap();
        let mut writer = AtomicFile::create(&target, 0o022).unwrap();
        writer.write_all(b"new").unwrap();
        let staged = writer.stage().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        let temp = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path != &target)
            .unwrap();
        let open_fds: Vec<PathBuf> = fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| fs::read_link(entry.unwrap().path()).ok())
            .collect();
        assert!(
            !open_fds.contains(&temp),
            "the staged temp file is still open"
        );
        assert_eq!(staged.commit().unwrap(), 3);
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut writer = AtomicFile::create(&target, 0o022).unwrap();
        writer.write_all(b"dropped").unwrap();
        drop(writer.stage().unwrap());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn special_files_are_refused_and_long_names_fit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let err = AtomicFile::create(&fifo, 0o022).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::InvalidPath);
        let long = dir.path().join("é".repeat(120));
        let mut writer = AtomicFile::create(&long, 0o022).unwrap();
        writer.write_all(b"x").unwrap();
        writer.commit().unwrap();
        assert_eq!(fs::read_to_string(&long).unwrap(), "x");
    }

    #[test]
    fn new_files_follow_the_umask_and_get_parents() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x/y/z.bin");
        let writer = AtomicFile::create(&target, 0o027).unwrap();
        writer.commit().unwrap();
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o640);
        assert_eq!(
            fs::metadata(dir.path().join("x")).unwrap().mode() & 0o777,
            0o755
        );
    }
}
