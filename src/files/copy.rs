//! Cross-filesystem move support: copy a tree beside the destination under a temp name, rename
//! it into place, then remove the source.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::parent_of;
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
    fs::rename(&staged, destination).map_err(|err| Error::io("move", destination, &err))?;
    Ok(())
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
