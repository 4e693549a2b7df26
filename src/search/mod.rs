//! Search: content grep (`find`: grep-searcher over a sorted `ignore` walk, files searched in
//! parallel, matches handed out in walk order), name globs (`glob`, globset) and in-place
//! replace (`replace`, through the atomic writer). Plain blocking Rust; callers run it off the
//! async workers.

mod find;
mod glob;
mod replace;

pub use find::{FindOptions, FindSink, FindSummary, Finder};
pub use glob::{glob, GlobOptions, GlobOutcome};
pub use replace::{replace, ReplaceOptions, ReplaceResult};

use std::path::{Path, PathBuf};

use std::path::Component;

/// Shows `found` the way the caller named the root, cleaned as Go's `filepath.Join` would:
/// `root_shown` without `.` components, joined with the part of `found` below `root`
/// (`path=.` gives `a.txt`, `path=./src` gives `src/b.txt`, a file root is its own name).
fn display_path(root: &Path, root_shown: &Path, found: &Path) -> PathBuf {
    let shown: PathBuf = root_shown
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    match found.strip_prefix(root) {
        Ok(rest) if rest.as_os_str().is_empty() && shown.as_os_str().is_empty() => {
            PathBuf::from(".")
        }
        // Joining "" would add a trailing `/`.
        Ok(rest) if rest.as_os_str().is_empty() => shown,
        Ok(rest) => shown.join(rest),
        Err(_) => found.to_path_buf(),
    }
}
