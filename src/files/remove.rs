//! The pre-flight of a removal that must happen whole or not at all: a recursive delete, and the
//! removal of a source that a cross-filesystem move has copied. `remove_dir_all` deletes until it
//! meets something it may not delete and stops there, half done; so before anything is deleted,
//! one walk (not following symlinks) proves that every entry can go:
//!
//! - every directory that has entries is writable and searchable for us (`access(W_OK|X_OK)`,
//!   which also answers EROFS on a read-only filesystem and EPERM for an immutable directory),
//!   and is neither immutable nor append-only;
//! - no entry is immutable or append-only (`statx` attributes; root cannot remove those either);
//! - no entry is a mount point (its mount id differs from its parent's; without `STATX_MNT_ID`,
//!   before Linux 5.8, a directory whose device differs): rmdir and unlink of one is EBUSY;
//! - in a sticky directory, for anyone but root, each entry is ours or the directory is.
//!
//! Not covered: a concurrent writer that adds a mount, changes a mode or an attribute between the
//! walk and the removal; refusals the walk cannot see in advance (an LSM policy, a network or FUSE
//! filesystem that refuses at unlink time, a busy swap file); root without `CAP_FOWNER` in a
//! sticky directory. Those still fail part way, and the answer then says how much is left.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Access, AtFlags, StatxAttributes, StatxFlags, CWD};
use walkdir::WalkDir;

use super::parent_of;
use crate::error::{io_kind, plain_io_message as plain, ErrorKind};

/// Why an entry cannot be removed, found before anything was.
#[derive(Debug)]
pub(super) struct Refusal {
    /// The kind the answer gets (403 for permissions and attributes, 409 for a mount point).
    pub(super) kind: ErrorKind,
    /// What stops the removal, naming the entry.
    pub(super) detail: String,
}

/// Walks `top` (a file, a symlink or a directory tree; symlinks are never followed) and proves
/// that all of it can be removed. Answers the number of entries, `top` included.
pub(super) fn check_removable(top: &Path) -> Result<u64, Refusal> {
    let euid = nix::unistd::geteuid().as_raw();
    let parent_path = parent_of(top);
    let parent = probe(&parent_path, true).map_err(|err| unreadable(&parent_path, &err))?;
    // `dirs[d]` is the directory that holds the entries at walk depth `d` (0 is `top`'s parent).
    let mut dirs = vec![Holder {
        path: parent_path,
        probe: parent,
        checked: false,
    }];
    let mut entries = 0u64;
    let walk = WalkDir::new(top)
        .follow_links(false)
        .follow_root_links(false);
    for item in walk {
        let entry = match item {
            Ok(entry) => entry,
            Err(err) => {
                let path = err.path().unwrap_or(top).to_path_buf();
                let err = io::Error::from(err);
                // Gone while we looked: one thing fewer to remove.
                if err.kind() == io::ErrorKind::NotFound {
                    continue;
                }
                return Err(unreadable(&path, &err));
            }
        };
        let probe = match probe(entry.path(), false) {
            Ok(probe) => probe,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(unreadable(entry.path(), &err)),
        };
        dirs.truncate(entry.depth() + 1);
        // The walk yields a directory before its entries, so the holder of an entry at depth `d`
        // sits at index `d`, unless that directory vanished (and came back) while we looked.
        if dirs.len() != entry.depth() + 1 {
            continue;
        }
        let Some(holder) = dirs.last_mut() else {
            continue;
        };
        if !holder.checked {
            may_remove_entries_of(holder)?;
            holder.checked = true;
        }
        may_remove(&holder.probe, &probe, entry.path(), euid)?;
        entries += 1;
        if probe.is_dir {
            dirs.push(Holder {
                path: entry.path().to_path_buf(),
                probe,
                checked: false,
            });
        }
    }
    Ok(entries)
}

/// Counts what is left of `top` after a removal stopped part way (unreadable parts count as
/// nothing).
pub(super) fn count_entries(top: &Path) -> u64 {
    WalkDir::new(top)
        .follow_links(false)
        .follow_root_links(false)
        .into_iter()
        .filter(|entry| entry.is_ok())
        .count() as u64
}

/// A directory whose entries are being checked.
struct Holder {
    path: PathBuf,
    probe: Probe,
    /// Whether we already proved that entries may be removed from it.
    checked: bool,
}

/// What the checks need to know about one entry.
struct Probe {
    is_dir: bool,
    mode: u32,
    uid: u32,
    /// The mount id, where the kernel reports one (Linux 5.8).
    mount_id: Option<u64>,
    dev: u64,
    immutable: bool,
    append_only: bool,
}

/// `statx` of `path` (following a final symlink only with `follow`; never triggering an
/// automount), falling back to `stat` where `statx` is missing or filtered (then without
/// attributes or mount id).
fn probe(path: &Path, follow: bool) -> io::Result<Probe> {
    let flags = if follow {
        AtFlags::NO_AUTOMOUNT
    } else {
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW
    };
    let mask = StatxFlags::TYPE | StatxFlags::MODE | StatxFlags::UID | StatxFlags::MNT_ID;
    match rustix::fs::statx(CWD, path, flags, mask) {
        Ok(stx) => {
            let mode = u32::from(stx.stx_mode);
            let known = stx.stx_attributes_mask;
            let has =
                |flag: StatxAttributes| known.contains(flag) && stx.stx_attributes.contains(flag);
            Ok(Probe {
                is_dir: mode & libc::S_IFMT == libc::S_IFDIR,
                mode,
                uid: stx.stx_uid,
                mount_id: StatxFlags::from_bits_retain(stx.stx_mask)
                    .contains(StatxFlags::MNT_ID)
                    .then_some(stx.stx_mnt_id),
                dev: (u64::from(stx.stx_dev_major) << 32) | u64::from(stx.stx_dev_minor),
                immutable: has(StatxAttributes::IMMUTABLE),
                append_only: has(StatxAttributes::APPEND),
            })
        }
        Err(errno) if errno == rustix::io::Errno::NOSYS || errno == rustix::io::Errno::PERM => {
            let metadata = if follow {
                std::fs::metadata(path)?
            } else {
                std::fs::symlink_metadata(path)?
            };
            Ok(Probe {
                is_dir: metadata.is_dir(),
                mode: metadata.mode(),
                uid: metadata.uid(),
                mount_id: None,
                dev: metadata.dev(),
                immutable: false,
                append_only: false,
            })
        }
        Err(errno) => Err(errno.into()),
    }
}

/// Whether entries may be removed from `dir`.
fn may_remove_entries_of(dir: &Holder) -> Result<(), Refusal> {
    let shown = dir.path.display();
    if dir.probe.immutable {
        return Err(denied(format!(
            "{shown} is immutable (chattr +i), nothing in it can be removed"
        )));
    }
    if dir.probe.append_only {
        return Err(denied(format!(
            "{shown} is append-only (chattr +a), nothing in it can be removed"
        )));
    }
    if let Err(errno) = rustix::fs::access(&dir.path, Access::WRITE_OK | Access::EXEC_OK) {
        let err = io::Error::from(errno);
        let detail = match err.raw_os_error() {
            Some(libc::EROFS) => format!("{shown} is on a read-only file system"),
            Some(libc::EACCES) | Some(libc::EPERM) => {
                format!("permission denied: no write permission on {shown}")
            }
            _ => format!("{shown}: {}", plain(&err)),
        };
        return Err(Refusal {
            kind: io_kind(&err),
            detail,
        });
    }
    Ok(())
}

/// Whether `entry` (at `path`) may be removed from the directory `holder`.
fn may_remove(holder: &Probe, entry: &Probe, path: &Path, euid: u32) -> Result<(), Refusal> {
    let shown = path.display();
    if entry.immutable {
        return Err(denied(format!("{shown} is immutable (chattr +i)")));
    }
    if entry.append_only {
        return Err(denied(format!("{shown} is append-only (chattr +a)")));
    }
    let mount_point = match (holder.mount_id, entry.mount_id) {
        (Some(outer), Some(inner)) => outer != inner,
        // Only a directory's device is the filesystem's: overlayfs reports the layer's device
        // for other files.
        _ => entry.is_dir && holder.dev != entry.dev,
    };
    if mount_point {
        return Err(Refusal {
            kind: ErrorKind::Conflict,
            detail: format!("{shown} is a mount point (unmount it first)"),
        });
    }
    let sticky = holder.mode & libc::S_ISVTX != 0;
    if sticky && euid != 0 && entry.uid != euid && holder.uid != euid {
        return Err(denied(format!(
            "permission denied: {shown} belongs to another user in a sticky directory"
        )));
    }
    Ok(())
}

fn denied(detail: String) -> Refusal {
    Refusal {
        kind: ErrorKind::AccessDenied,
        detail,
    }
}

/// An entry the walk could not read or stat (EACCES for a directory we may not list, …).
fn unreadable(path: &Path, err: &io::Error) -> Refusal {
    let shown = path.display();
    let detail = match err.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("permission denied: cannot read {shown}")
        }
        _ => format!("{shown}: {}", plain(err)),
    };
    Refusal {
        kind: io_kind(err),
        detail,
    }
}
