//! Listing: a directory's entries sorted by name, `depth` levels deep, parents before their
//! children, produced one at a time so the caller can send each as it comes.
//!
//! Memory is the names of the directories on the current path (each level's sorted names still
//! to visit), never the whole tree.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};

use super::FileInfo;
use crate::error::{Error, Result};

/// A directory opened for listing; iterate it for the entries. Opening reads the top level, so
/// a missing, unreadable or non-directory path is an error before the first entry. Below it,
/// entries that vanish are skipped and a subdirectory that may not be read is listed but not
/// entered. Symlinked directories are described but not entered, so a link loop cannot recurse.
#[derive(Debug)]
pub struct Listing {
    /// The directories being listed, innermost last.
    stack: Vec<Level>,
}

#[derive(Debug)]
struct Level {
    dir: PathBuf,
    /// Names still to visit, sorted.
    names: std::vec::IntoIter<OsString>,
    /// Levels this directory's entries may still descend (1 = the entries only).
    depth: u32,
}

impl Listing {
    /// Opens `dir` for a listing `depth` levels deep (at least 1: the children only).
    pub(super) fn open(dir: &Path, depth: u32) -> Result<Listing> {
        let metadata = fs::metadata(dir).map_err(|err| Error::io("list", dir, &err))?;
        if !metadata.is_dir() {
            return Err(Error::invalid_path(format!(
                "invalid file path: not a directory: {}",
                dir.display()
            )));
        }
        let names = sorted_names(dir).map_err(|err| Error::io("list", dir, &err))?;
        Ok(Listing {
            stack: vec![Level {
                dir: dir.to_path_buf(),
                names,
                depth: depth.max(1),
            }],
        })
    }
}

impl Iterator for Listing {
    type Item = FileInfo;

    fn next(&mut self) -> Option<FileInfo> {
        loop {
            let level = self.stack.last_mut()?;
            let Some(name) = level.names.next() else {
                self.stack.pop();
                continue;
            };
            let path = level.dir.join(&name);
            let depth = level.depth;
            let Ok(metadata) = stat_or_lstat(&path) else {
                continue;
            };
            if depth > 1 && metadata.is_dir() && is_real_dir(&path) {
                // A subdirectory we may not read is listed but not entered.
                if let Ok(names) = sorted_names(&path) {
                    self.stack.push(Level {
                        dir: path.clone(),
                        names,
                        depth: depth - 1,
                    });
                }
            }
            return Some(FileInfo::from_metadata(path, &metadata));
        }
    }
}

/// The names in `dir`, sorted bytewise (entries that fail to read are left out).
fn sorted_names(dir: &Path) -> std::io::Result<std::vec::IntoIter<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name())
        .collect();
    names.sort();
    Ok(names.into_iter())
}

/// True when `path` itself is a directory, not a symlink to one.
fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .unwrap_or(false)
}

/// `stat`, or `lstat` for a dangling symlink (listed, not dropped).
fn stat_or_lstat(path: &Path) -> std::io::Result<Metadata> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(metadata),
        Err(err) => match fs::symlink_metadata(path) {
            Ok(metadata) if metadata.file_type().is_symlink() => Ok(metadata),
            _ => Err(err),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(listing: Listing, root: &Path) -> Vec<String> {
        listing
            .map(|info| {
                info.path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn sorted_parents_first_to_the_depth_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["b/c/d", "a-b", "a/x"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        fs::write(root.join("a.txt"), "1").unwrap();
        fs::write(root.join("b/c/d/deep.txt"), "1").unwrap();
        std::os::unix::fs::symlink(root, root.join("loop")).unwrap();
        assert_eq!(
            names(Listing::open(root, 1).unwrap(), root),
            ["a", "a-b", "a.txt", "b", "loop"]
        );
        assert_eq!(
            names(Listing::open(root, 3).unwrap(), root),
            ["a", "a/x", "a-b", "a.txt", "b", "b/c", "b/c/d", "loop"]
        );
        assert_eq!(
            names(Listing::open(root, u32::MAX).unwrap(), root),
            [
                "a",
                "a/x",
                "a-b",
                "a.txt",
                "b",
                "b/c",
                "b/c/d",
                "b/c/d/deep.txt",
                "loop"
            ]
        );
    }

    #[test]
    fn the_top_level_fails_before_any_entry() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "1").unwrap();
        let err = Listing::open(&dir.path().join("f"), 1).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::InvalidPath);
        let err = Listing::open(&dir.path().join("missing"), 1).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::FileNotFound);
    }
}
