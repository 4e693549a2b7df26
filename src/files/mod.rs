//! Files: stat, list, create, delete, move, permissions, the chunked reader downloads stream from,
//! and the atomic writer every upload and replace goes through. Plain blocking Rust; the HTTP
//! edge calls it off the async workers.
//!
//! Invariant: nothing here replaces a target in place. Content goes to a temp file in the target's
//! directory and is renamed over it, so a failed write leaves the old content and no temp file.
//! The one in-place writer is `OpenFile` opened for update (random access or append without
//! truncation, as SFTP clients that change part of a file ask for); an SFTP open that replaces
//! a file is staged like an upload (`open.rs`).
//!
//! Invariant: a delete or move that answers an error has changed nothing. Both act on the entry a
//! path names, never through it: `link/` is the link (see `entry_of`). A recursive delete and
//! the source removal of a cross-filesystem move are proved possible before anything is removed
//! (`remove.rs`), and a move whose source still cannot be removed drops its copy (`copy.rs`).

mod copy;
mod list;
mod open;
mod read;
mod remove;
mod write;

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result};

pub use list::Listing;
pub use open::{OpenFile, OpenMode};
pub use read::{extent, Chunks, Extent};
pub use write::{AtomicFile, StagedFile};

/// What a stat says about one entry.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Base name.
    pub name: String,
    /// The entry's absolute path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Last modification.
    pub modified: SystemTime,
    /// True for a directory (after following a symlink).
    pub is_dir: bool,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
}

impl FileInfo {
    fn from_metadata(path: PathBuf, metadata: &Metadata) -> FileInfo {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_string_lossy().into_owned());
        FileInfo {
            name,
            size: metadata.len(),
            mode: metadata.mode(),
            modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            is_dir: metadata.is_dir(),
            uid: metadata.uid(),
            gid: metadata.gid(),
            path,
        }
    }
}

/// Who should own a file after `set_permissions`.
#[derive(Debug, Default, Clone)]
pub struct PermissionsChange {
    /// Octal mode such as `755` or `0644`.
    pub mode: Option<String>,
    /// User name or numeric uid.
    pub owner: Option<String>,
    /// Group name or numeric gid.
    pub group: Option<String>,
}

/// The file capability: path resolution against the work dir plus the operations.
#[derive(Debug, Clone)]
pub struct Files {
    workdir: PathBuf,
    umask: u32,
}

impl Files {
    /// Files rooted at `workdir`; new files get `0o666 & !umask`.
    pub fn new(workdir: PathBuf, umask: u32) -> Files {
        Files { workdir, umask }
    }

    /// The work dir.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Resolves a caller's path: relative paths join the work dir, `.` components drop out (so
    /// `./a` lists as `/work/a`). `..` stays for the OS to resolve. A trailing `/` or `/.` is
    /// kept as a trailing `/`, so the OS still insists on a directory there. Empty is an error.
    /// The path is bytes (a query may name a file whose name is not UTF-8); only NUL is refused.
    pub fn resolve(&self, path: impl AsRef<OsStr>) -> Result<PathBuf> {
        let path = path.as_ref();
        let bytes = path.as_bytes();
        if bytes.is_empty() {
            return Err(Error::invalid_path("invalid file path: path is empty"));
        }
        if bytes.contains(&0) {
            return Err(Error::invalid_path(
                "invalid file path: path contains a NUL byte",
            ));
        }
        let mut resolved: PathBuf = self.workdir.join(path).components().collect();
        let names_dir = bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes == b".";
        if names_dir && resolved.as_os_str() != "/" {
            // Joining "" appends the separator.
            resolved.push("");
        }
        Ok(resolved)
    }

    /// Stats one path, following symlinks (a dangling link is not found, as `stat(2)` says).
    pub fn info(&self, path: &Path) -> Result<FileInfo> {
        let metadata = fs::metadata(path).map_err(|err| Error::io("stat", path, &err))?;
        Ok(FileInfo::from_metadata(path.to_path_buf(), &metadata))
    }

    /// Opens a directory for a listing `depth` levels deep (1 = children only): iterate the
    /// [`Listing`] for the entries, sorted by name, parents before their children. The top level
    /// is read here, so a missing, unreadable or non-directory path fails before any entry.
    pub fn open_listing(&self, dir: &Path, depth: u32) -> Result<Listing> {
        Listing::open(dir, depth)
    }

    /// `mkdir -p` with `mode` (octal string, default 0755) applied to the directories it creates.
    pub fn create_folder(&self, path: &Path, mode: Option<&str>) -> Result<()> {
        let mode = match mode {
            Some(text) => parse_mode(text)?,
            None => 0o755,
        };
        if let Ok(metadata) = fs::metadata(path) {
            if metadata.is_dir() {
                return Ok(());
            }
            return Err(Error::conflict(format!(
                "a file already exists at {}",
                path.display()
            )));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .map_err(|err| Error::io("create folder", path, &err))?;
        // DirBuilder's mode passes through the umask; an explicit mode is what the caller asked for.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|err| Error::io("chmod", path, &err))
    }

    /// Deletes a file, a symlink (as a link, also when named `link/`), or (with `recursive`) a
    /// directory tree. A tree is deleted only once a walk proved all of it can be; a refusal has
    /// deleted nothing.
    pub fn delete(&self, path: &Path, recursive: bool) -> Result<()> {
        let (entry, metadata) = entry_of(path, "delete")?;
        if !metadata.is_dir() {
            return fs::remove_file(&entry).map_err(|err| Error::io("delete", &entry, &err));
        }
        if !recursive {
            return Err(Error::bad_request(format!(
                "cannot delete directory without recursive flag: {}",
                entry.display()
            )));
        }
        let entries = remove::check_removable(&entry).map_err(|refusal| {
            Error::new(
                refusal.kind,
                format!(
                    "cannot delete {}: {}; nothing was deleted",
                    entry.display(),
                    refusal.detail
                ),
            )
        })?;
        // std's remove_dir_all unlinks symlinks inside the tree as links (it opens every
        // directory with O_NOFOLLOW) and stops at the first failure.
        fs::remove_dir_all(&entry).map_err(|err| {
            let mut error = Error::io("delete", &entry, &err);
            let left = remove::count_entries(&entry);
            error.message = format!(
                "{}; the delete stopped part way, {left} of {entries} entries are left",
                error.message
            );
            error
        })
    }

    /// Moves `source` to `destination`, which must not exist (checked atomically where the
    /// filesystem supports `RENAME_NOREPLACE`). A symlink moves as a link, also when named
    /// `link/`. Across filesystems the source is first proved removable, then copied beside the
    /// destination under a temp name, renamed into place, and removed; if it still cannot be
    /// removed, the copy goes and the answer is the error.
    pub fn move_path(&self, source: &Path, destination: &Path) -> Result<()> {
        let (source, _) = entry_of(source, "move")?;
        if fs::symlink_metadata(destination).is_ok() {
            return Err(destination_exists(destination));
        }
        let parent = parent_of(destination);
        let parent_metadata =
            fs::metadata(&parent).map_err(|err| Error::io("move into", &parent, &err))?;
        if !parent_metadata.is_dir() {
            return Err(Error::invalid_path(format!(
                "invalid file path: not a directory: {}",
                parent.display()
            )));
        }
        match rename_no_replace(&source, destination) {
            Ok(()) => Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                Err(destination_exists(destination))
            }
            Err(err) if err.raw_os_error() == Some(libc::EXDEV) => {
                move_across_filesystems(&source, destination)
            }
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                Err(Error::invalid_path(format!(
                    "cannot move {} into itself or onto {}",
                    source.display(),
                    destination.display()
                )))
            }
            Err(err) => Err(Error::io("move", &source, &err)),
        }
    }

    /// Changes mode, owner and group; at least one must be given.
    pub fn set_permissions(&self, path: &Path, change: &PermissionsChange) -> Result<()> {
        let mode = change
            .mode
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(parse_mode)
            .transpose()?;
        let uid = change
            .owner
            .as_deref()
            .filter(|o| !o.is_empty())
            .map(lookup_user)
            .transpose()?;
        let gid = change
            .group
            .as_deref()
            .filter(|g| !g.is_empty())
            .map(lookup_group)
            .transpose()?;
        fs::metadata(path).map_err(|err| Error::io("stat", path, &err))?;
        if uid.is_some() || gid.is_some() {
            nix::unistd::chown(path, uid, gid).map_err(|errno| {
                Error::io(
                    "chown",
                    path,
                    &std::io::Error::from_raw_os_error(errno as i32),
                )
            })?;
        }
        if let Some(mode) = mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|err| Error::io("chmod", path, &err))?;
        }
        Ok(())
    }

    /// Opens a regular file for a download and finds out how much it holds: its size, or, for a
    /// file whose size the kernel does not report, its content when it ends within `read_ahead`
    /// bytes (see [`Extent`]). The open does not block (a FIFO cannot pin a thread); anything
    /// but a regular file is refused, and so is a file that cannot be read without waiting (a
    /// pseudo file that streams events), with a 400.
    pub fn open_download(
        &self,
        path: &Path,
        read_ahead: usize,
    ) -> Result<(File, Metadata, Extent)> {
        let (file, metadata) = open_regular(path)?;
        let extent = read::extent(&file, &metadata, read_ahead).map_err(|err| {
            if err.kind() == std::io::ErrorKind::WouldBlock {
                return Error::invalid_path(format!(
                    "invalid file path: {} cannot be read without waiting (it streams, it is \
                     not a file to download)",
                    path.display()
                ));
            }
            let err = Error::io("read", path, &err);
            match err.kind {
                ErrorKind::Internal => Error::new(
                    ErrorKind::ReadFailed,
                    format!("failed to read file: {}", err.message),
                ),
                _ => err,
            }
        })?;
        Ok((file, metadata, extent))
    }

    /// Blocking. The first `max` bytes of a regular file, and its size.
    pub fn read_head(&self, path: &Path, max: usize) -> Result<(Vec<u8>, u64)> {
        let (file, metadata) = open_regular(path)?;
        let mut head = Vec::with_capacity(metadata.len().min(max as u64) as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, max as u64), &mut head).map_err(
            |err| {
                Error::new(
                    ErrorKind::ReadFailed,
                    format!(
                        "failed to read {}: {}",
                        path.display(),
                        crate::error::plain_io_message(&err)
                    ),
                )
            },
        )?;
        Ok((head, metadata.len()))
    }

    /// Opens `path` for random access (see [`OpenFile`]); a file it creates gets `new_mode`
    /// (default 0666) less the umask.
    pub fn open_file(
        &self,
        path: &Path,
        mode: OpenMode,
        new_mode: Option<u32>,
    ) -> Result<OpenFile> {
        OpenFile::open(path, mode, new_mode, self.umask)
    }

    /// Starts an atomic write of `target` (see [`AtomicFile`]).
    pub fn create_atomic(&self, target: &Path) -> Result<AtomicFile> {
        AtomicFile::create(target, self.umask)
    }
}

/// Opens `path` read-only without blocking and insists on a regular file.
pub fn open_regular(path: &Path) -> Result<(File, Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| {
            // open(2) of a UNIX socket (and of a device without a driver) fails with ENXIO: it
            // is not a file to read, like a FIFO or a device that does open.
            if err.raw_os_error() == Some(libc::ENXIO)
                && fs::metadata(path).is_ok_and(|metadata| !metadata.is_file())
            {
                return not_regular(path);
            }
            let err = Error::io("open", path, &err);
            match err.kind {
                // An open that fails for another reason than absence or access is a read failure.
                ErrorKind::Internal => Error::new(
                    ErrorKind::ReadFailed,
                    format!("failed to open file: {}", err.message),
                ),
                _ => err,
            }
        })?;
    let metadata = file
        .metadata()
        .map_err(|err| Error::io("stat", path, &err))?;
    if metadata.is_dir() {
        return Err(Error::invalid_path(format!(
            "invalid file path: path points to a directory: {}",
            path.display()
        )));
    }
    if !metadata.is_file() {
        return Err(not_regular(path));
    }
    Ok((file, metadata))
}

/// The 400 for a device, FIFO or socket where a regular file is needed.
fn not_regular(path: &Path) -> Error {
    Error::invalid_path(format!(
        "invalid file path: not a regular file (device, FIFO or socket): {}",
        path.display()
    ))
}

/// The entry a delete or move acts on, and its `lstat`. A trailing slash (`dir/`, `dir/.`) still
/// insists on a directory, after following a symlink as the kernel does, but the entry is the
/// name itself: `link/` is the link, never the directory it points to (the kernel would follow
/// it, and `remove_dir_all("link/")` empties the target before failing on the link). A path whose
/// last component is `..`, or `/` itself, names no entry that could be removed or renamed.
fn entry_of(path: &Path, action: &str) -> Result<(PathBuf, Metadata)> {
    let entry: PathBuf = path.components().collect();
    if !matches!(entry.components().next_back(), Some(Component::Normal(_))) {
        return Err(Error::invalid_path(format!(
            "invalid file path: cannot {action} {}: name the entry itself, not `/` or `..`",
            path.display()
        )));
    }
    if path.as_os_str().as_bytes().ends_with(b"/") {
        // stat("x/") fails with ENOTDIR unless x is (or points to) a directory.
        fs::metadata(path).map_err(|err| Error::io(action, path, &err))?;
    }
    let metadata = fs::symlink_metadata(&entry).map_err(|err| Error::io(action, &entry, &err))?;
    Ok((entry, metadata))
}

/// The EXDEV half of `move_path`: prove the source can be removed (nothing is copied for a move
/// that cannot finish), copy it into place, remove it; if that still fails, undo the copy.
fn move_across_filesystems(source: &Path, destination: &Path) -> Result<()> {
    remove::check_removable(source).map_err(|refusal| {
        Error::new(
            refusal.kind,
            format!(
                "cannot move {} to {}: {}; nothing was moved",
                source.display(),
                destination.display(),
                refusal.detail
            ),
        )
    })?;
    copy::copy_into_place(source, destination)?;
    match copy::remove_any(source) {
        Ok(()) => Ok(()),
        Err(err) => Err(copy::undo_copy(source, destination, &err)),
    }
}

fn destination_exists(destination: &Path) -> Error {
    Error::conflict(format!(
        "destination already exists: {}",
        destination.display()
    ))
}

/// `renameat2(RENAME_NOREPLACE)`, falling back to a plain rename where the filesystem does not
/// support the flag (the caller checked the destination just before).
fn rename_no_replace(source: &Path, destination: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(
        None,
        source,
        None,
        destination,
        RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => {
            match fs::symlink_metadata(destination) {
                Ok(_) => Err(std::io::Error::from_raw_os_error(libc::EEXIST)),
                Err(_) => fs::rename(source, destination),
            }
        }
        Err(errno) => Err(std::io::Error::from_raw_os_error(errno as i32)),
    }
}

/// Parses an octal mode such as `755`, `0644` or `0o700`.
pub fn parse_mode(text: &str) -> Result<u32> {
    // Exactly what the documented pattern `^(0o)?0*[0-7]{1,4}$` allows: no sign, no spaces.
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let octal = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits.trim_start_matches('0'), 8) {
        _ if !octal => Err(invalid_mode(text)),
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        Err(_) if digits.trim_start_matches('0').is_empty() => Ok(0),
        _ => Err(invalid_mode(text)),
    }
}

fn invalid_mode(text: &str) -> Error {
    Error::bad_request(format!(
        "invalid mode format: {text:?} (expected octal such as 755 or 0644)"
    ))
}

/// The directory a path lives in (`.`-free: a bare name lives in itself's parent or `/`).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("/"),
    }
}

fn lookup_user(text: &str) -> Result<nix::unistd::Uid> {
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(nix::unistd::Uid::from_raw(uid));
    }
    match nix::unistd::User::from_name(text) {
        Ok(Some(user)) => Ok(user.uid),
        _ => Err(Error::bad_request(format!("user not found: {text}"))),
    }
}

fn lookup_group(text: &str) -> Result<nix::unistd::Gid> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(gid));
    }
    match nix::unistd::Group::from_name(text) {
        Ok(Some(group)) => Ok(group.gid),
        _ => Err(Error::bad_request(format!("group not found: {text}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("0o700").unwrap(), 0o700);
        assert!(parse_mode("9").is_err());
        assert!(parse_mode("").is_err());
        assert!(parse_mode("rwx").is_err());
        assert!(parse_mode("77777").is_err());
        assert_eq!(parse_mode("000755").unwrap(), 0o755);
        assert_eq!(parse_mode("0").unwrap(), 0);
        assert!(parse_mode("+755").is_err());
        assert!(parse_mode(" 755").is_err());
        assert!(parse_mode("0o").is_err());
    }

    #[test]
    fn the_entry_of_a_path_is_the_name_itself() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("target")).unwrap();
        std::os::unix::fs::symlink("target", dir.path().join("link")).unwrap();
        let slashed = PathBuf::from(format!("{}/link/", dir.path().display()));
        let (entry, metadata) = entry_of(&slashed, "delete").unwrap();
        assert_eq!(entry, dir.path().join("link"));
        assert!(metadata.file_type().is_symlink());
        for path in ["/", "/..", "/tmp/..", "/tmp/x/../.."] {
            let err = entry_of(Path::new(path), "delete").unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidPath, "{path}");
        }
    }
}

/// Property tests of path resolution (`PROPTEST_CASES` sets how many cases run; 256 by default).
#[cfg(test)]
mod proptests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Component, Path, PathBuf};

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::Files;

    /// Paths built from what matters to resolution: separators, `.`, `..`, names (not UTF-8
    /// too), and now and then a NUL.
    fn path() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => Just(b"/".to_vec()),
            2 => Just(b".".to_vec()),
            2 => Just(b"..".to_vec()),
            3 => Just(b"a".to_vec()),
            1 => Just(b"\xff\xfe".to_vec()),
            1 => Just(b" ".to_vec()),
            1 => Just(b"\0".to_vec()),
            1 => vec(any::<u8>(), 0..4),
        ];
        vec(piece, 0..10).prop_map(|pieces| pieces.concat())
    }

    fn workdir() -> impl Strategy<Value = PathBuf> {
        prop_oneof![
            Just("/"),
            Just("/work"),
            Just("/home/user/my dir"),
            Just("/w/./x/")
        ]
        .prop_map(PathBuf::from)
    }

    /// The components of `p` but `.`.
    fn named(p: &Path) -> Vec<Component<'_>> {
        p.components().filter(|c| *c != Component::CurDir).collect()
    }

    proptest! {
        /// Never panics; refuses exactly the empty path and paths with a NUL; gives an absolute
        /// path without `.` components, under the work dir when the input was relative (`..`
        /// is left for the OS, as promised), with a trailing `/` exactly when the input named a
        /// directory that way; and resolving the result again gives it back.
        #[test]
        fn resolution_keeps_its_promises(workdir in workdir(), bytes in path()) {
            let files = Files::new(workdir.clone(), 0o022);
            let resolved = files.resolve(OsStr::from_bytes(&bytes));
            if bytes.is_empty() || bytes.contains(&0) {
                prop_assert!(resolved.is_err());
                return Ok(());
            }
            let resolved = resolved.unwrap();
            prop_assert!(resolved.is_absolute());
            prop_assert!(!resolved.components().any(|c| c == Component::CurDir));
            if !bytes.starts_with(b"/") {
                let base: PathBuf = workdir.components().collect();
                prop_assert!(resolved.starts_with(&base), "{:?} is not under {:?}", resolved, base);
            }
            let out = resolved.as_os_str().as_bytes();
            let names_dir = bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes == b".";
            prop_assert_eq!(out.ends_with(b"/"), names_dir || out == b"/");
            // The same names in the same order, `.` aside.
            let joined = workdir.join(OsStr::from_bytes(&bytes));
            prop_assert_eq!(named(&resolved), named(&joined));
            let again = files.resolve(resolved.as_os_str()).unwrap();
            prop_assert_eq!(again.as_os_str().as_bytes(), out);
        }
    }
}
