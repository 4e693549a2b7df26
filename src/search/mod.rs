//! Search: content grep (`find`, grep-searcher over a parallel `ignore` walk), name globs
//! (`glob`, globset) and in-place replace (`replace`, through the atomic writer).
//! Plain blocking Rust; callers run it off the async workers.

mod find;
mod glob;
mod replace;

pub use find::{find, FindOptions, FindOutcome, Match};
pub use glob::{glob, GlobOptions, GlobOutcome};
pub use replace::{replace, ReplaceOptions, ReplaceResult};

use std::path::{Path, PathBuf};

/// Shows `found` the way the caller named the root: `root_shown` joined with the part of
/// `found` below `root`.
fn display_path(root: &Path, root_shown: &Path, found: &Path) -> PathBuf {
    match found.strip_prefix(root) {
        Ok(rest) if rest.as_os_str().is_empty() => root_shown.to_path_buf(),
        Ok(rest) => root_shown.join(rest),
        Err(_) => found.to_path_buf(),
    }
}
