//! Cross-filesystem move support: copy a tree beside the destination under a temp name, rename
//! it into place, then remove the source; or, when the source cannot be removed, the copy.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use walkdir::WalkDir;

use super::{parent_of, rename_no_replace};
use crate::error::{Error, Result};

/// Copies `source` (file, symlink or directory tree) to `destination` atomically: the copy is
/// built under a temp name in the destination's directory and renamed in one step.
pub(super) fn copy_into_place(source: &Path, destination: &Path) -> Result<()> {
    let parent = parent_of(destination);
    let staging = tempfile::Builder::new()
        .prefix(".toolboxd-move-")
        .tempdir_in(&parent)
        .map_err(|err| Error::io("create temp dir in", &parent, &err))?;
    let staged = staging.path().join("item");
    copy_tree(source, &staged).map_err(|err| Error::io("copy", source, &err))?;
    // No replace: something that appeared at the destination during the copy is kept.
    rename_no_replace(&staged, destination).map_err(|err| Error::io("move", destination, &err))?;
    Ok(())
}

/// The answer to a move whose copy is in place but whose source could not be removed (`err`).
/// When the source still holds every entry of the copy, the copy is removed, so the error has
/// changed nothing. When the removal stopped part way, the copy is the only whole version and
/// stays; the error says where each part is.
pub(super) fn undo_copy(source: &Path, destination: &Path, err: &io::Error) -> Error {
    let cause = Error::io("delete", source, err);
    let (src, dst) = (source.display(), destination.display());
    if !source_still_whole(source, destination) {
        return Error::new(
            cause.kind,
            format!(
                "moving {src} to {dst}: the copy is complete but deleting the source stopped part \
                 way ({}); the whole tree is at {dst}, what is left of the source at {src}",
                cause.message
            ),
        );
    }
    match remove_any(destination) {
        Ok(()) => Error::new(
            cause.kind,
            format!(
                "cannot move {src} to {dst}: {}; the copy was removed, nothing was moved",
                cause.message
            ),
        ),
        Err(second) => Error::new(
            cause.kind,
            format!(
                "cannot move {src} to {dst}: {}; the copy at {dst} could not be removed either \
                 ({}), so the source is now at both places",
                cause.message,
                crate::error::plain_io_message(&second)
            ),
        ),
    }
}

/// True when every entry of `copy` still exists at the same place under `source` (by `lstat`):
/// then removing the copy loses nothing. Anything unreadable counts as missing.
fn source_still_whole(source: &Path, copy: &Path) -> bool {
    if fs::symlink_metadata(source).is_err() {
        return false;
    }
    let walk = WalkDir::new(copy)
        .follow_links(false)
        .follow_root_links(false)
        .min_depth(1);
    for entry in walk {
        let Ok(entry) = entry else {
            return false;
        };
        let Ok(relative) = entry.path().strip_prefix(copy) else {
            return false;
        };
        if fs::symlink_metadata(source.join(relative)).is_err() {
            return false;
        }
    }
    true
}

/// Removes a file, symlink or directory tree.
pub(super) fn remove_any(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn copy_tree(source: &Path, destination: &Path) -> io::Result<()> {
    let metadata = fs::symlink_metadata(source)?;
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(source)?, destination)?;
    } else if file_type.is_dir() {
        fs::create_dir(destination)?;
        for entry in fs::read_dir(source)? {
            let entry = entry?;
            copy_tree(&entry.path(), &destination.join(entry.file_name()))?;
        }
    } else if file_type.is_file() {
        fs::copy(source, destination)?;
    } else {
        // Reading a FIFO would block forever and devices have no content to copy.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot move special file {} across filesystems",
                source.display()
            ),
        ));
    }
    // Ownership follows when we may set it (root); otherwise the copy is ours. chown clears
    // setuid/setgid, so the mode is set after it.
    let _ = std::os::unix::fs::lchown(destination, Some(metadata.uid()), Some(metadata.gid()));
    if !file_type.is_symlink() {
        fs::set_permissions(
            destination,
            fs::Permissions::from_mode(metadata.mode() & 0o7777),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        fs::write(root.join("sub/b.txt"), "b").unwrap();
    }

    #[test]
    fn a_copy_whose_source_is_whole_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (source, destination) = (dir.path().join("src"), dir.path().join("dst"));
        tree(&source);
        copy_into_place(&source, &destination).unwrap();
        let refused = io::Error::from_raw_os_error(libc::EACCES);
        let error = undo_copy(&source, &destination, &refused);
        assert_eq!(error.kind, ErrorKind::AccessDenied);
        assert!(error.message.contains("nothing was moved"), "{error}");
        assert!(!destination.exists());
        assert_eq!(fs::read_to_string(source.join("sub/b.txt")).unwrap(), "b");
    }

    #[test]
    fn a_copy_whose_source_was_partly_removed_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (source, destination) = (dir.path().join("src"), dir.path().join("dst"));
        tree(&source);
        copy_into_place(&source, &destination).unwrap();
        fs::remove_file(source.join("sub/b.txt")).unwrap();
        let busy = io::Error::from_raw_os_error(libc::EBUSY);
        let error = undo_copy(&source, &destination, &busy);
        assert_eq!(error.kind, ErrorKind::Conflict);
        assert!(error.message.contains("stopped part way"), "{error}");
        assert_eq!(
            fs::read_to_string(destination.join("sub/b.txt")).unwrap(),
            "b"
        );
    }

    #[test]
    fn a_single_file_copy_is_removed_when_its_source_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (source, destination) = (dir.path().join("f"), dir.path().join("g"));
        fs::write(&source, "f").unwrap();
        copy_into_place(&source, &destination).unwrap();
        let error = undo_copy(
            &source,
            &destination,
            &io::Error::from_raw_os_error(libc::EROFS),
        );
        assert_eq!(error.kind, ErrorKind::AccessDenied);
        assert!(!destination.exists());
        assert!(source.exists());
    }
}
