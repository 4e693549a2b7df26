//! File-name search with globset. A pattern without `/` matches base names at any depth
//! (Daytona's behaviour); a pattern with `/` or `**` matches the path relative to the root.

use std::path::{Path, PathBuf};

use globset::GlobBuilder;
use walkdir::WalkDir;

use super::display_path;
use crate::error::{Error, Result};

/// Opt-in behaviour beyond Daytona's.
#[derive(Debug, Default, Clone)]
pub struct GlobOptions {
    /// Stop after this many results.
    pub max_results: Option<usize>,
}

/// Sorted paths and whether `max_results` cut them.
#[derive(Debug)]
pub struct GlobOutcome {
    /// Matching files and directories, sorted.
    pub paths: Vec<PathBuf>,
    /// True when more entries matched than `max_results`.
    pub truncated: bool,
}

/// Finds entries (files and directories) under `root` (shown as `root_shown`) matching `pattern`.
pub fn glob(
    root: &Path,
    root_shown: &Path,
    pattern: &str,
    options: &GlobOptions,
) -> Result<GlobOutcome> {
    if pattern.is_empty() {
        return Err(Error::bad_request("pattern must not be empty"));
    }
    let metadata = std::fs::metadata(root).map_err(|err| Error::io("search", root, &err))?;
    if !metadata.is_dir() {
        return Err(Error::invalid_path(format!(
            "invalid file path: not a directory: {}",
            root.display()
        )));
    }
    let by_relative_path = pattern.contains('/') || pattern.contains("**");
    let pattern_text = pattern.trim_start_matches("./");
    let matcher = GlobBuilder::new(pattern_text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|err| Error::bad_request(format!("invalid glob pattern: {err}")))?
        .compile_matcher();
    let limit = options.max_results.unwrap_or(usize::MAX);
    let mut paths = Vec::new();
    let mut truncated = false;
    for entry in WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let Ok(entry) = entry else { continue };
        let hit = if by_relative_path {
            entry
                .path()
                .strip_prefix(root)
                .is_ok_and(|rel| matcher.is_match(rel))
        } else {
            matcher.is_match(Path::new(entry.file_name()))
        };
        if hit {
            if paths.len() == limit {
                truncated = true;
                break;
            }
            paths.push(display_path(root, root_shown, entry.path()));
        }
    }
    paths.sort();
    Ok(GlobOutcome { paths, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_anywhere_and_relative_paths_with_slashes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/deep")).unwrap();
        for file in ["a.py", "src/b.py", "src/deep/c.py", "src/deep/d.rs"] {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        let shown = Path::new("w");
        let names = |pattern: &str| -> Vec<String> {
            glob(dir.path(), shown, pattern, &GlobOptions::default())
                .unwrap()
                .paths
                .into_iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("*.py"), ["w/a.py", "w/src/b.py", "w/src/deep/c.py"]);
        assert_eq!(names("src/*.py"), ["w/src/b.py"]);
        assert_eq!(names("src/**/*.py"), ["w/src/b.py", "w/src/deep/c.py"]);
        assert_eq!(names("deep"), ["w/src/deep"]);
        let limited = glob(
            dir.path(),
            shown,
            "*",
            &GlobOptions {
                max_results: Some(2),
            },
        )
        .unwrap();
        assert_eq!(limited.paths.len(), 2);
        assert!(limited.truncated);
    }
}
