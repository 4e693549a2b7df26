//! Replace in files: literal by default, regex on request; each file is rewritten through the
//! atomic writer, so it keeps its mode and a failure leaves it as it was.

use std::io::Read;
use std::path::Path;

use regex::bytes::{NoExpand, Regex};

use crate::error::{Error, Result};
use crate::files::{open_regular, Files};

/// Replace reads a whole file (a regex may span anything); larger files are refused.
pub const MAX_REPLACE_BYTES: u64 = 256 * 1024 * 1024;

/// How to replace.
#[derive(Debug, Default, Clone)]
pub struct ReplaceOptions {
    /// Treat the pattern as a regular expression; `$1` in the replacement refers to groups.
    pub regex: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceResult {
    /// The file as the caller named it.
    pub file: String,
    /// Whether the file was read and (when it changed) written.
    pub success: bool,
    /// Why not.
    pub error: Option<String>,
    /// How many occurrences were replaced.
    pub replacements: usize,
}

/// Replaces `pattern` with `new_value` in each file. Never fails as a whole once the pattern is
/// valid: per-file problems are reported per file.
pub fn replace(
    files: &Files,
    names: &[String],
    pattern: &str,
    new_value: &str,
    options: &ReplaceOptions,
) -> Result<Vec<ReplaceResult>> {
    if pattern.is_empty() {
        return Err(Error::bad_request("pattern must not be empty"));
    }
    let regex_text = if options.regex {
        pattern.to_string()
    } else {
        regex::escape(pattern)
    };
    let regex = Regex::new(&regex_text)
        .map_err(|err| Error::bad_request(format!("invalid pattern: {err}")))?;
    Ok(names
        .iter()
        .map(|name| {
            let outcome = files
                .resolve(name)
                .and_then(|path| replace_one(files, &path, &regex, new_value, options.regex));
            match outcome {
                Ok(replacements) => ReplaceResult {
                    file: name.clone(),
                    success: true,
                    error: None,
                    replacements,
                },
                Err(err) => ReplaceResult {
                    file: name.clone(),
                    success: false,
                    error: Some(err.message),
                    replacements: 0,
                },
            }
        })
        .collect())
}

fn replace_one(
    files: &Files,
    path: &Path,
    regex: &Regex,
    new_value: &str,
    expand: bool,
) -> Result<usize> {
    let (mut file, metadata) = open_regular(path)?;
    if metadata.len() > MAX_REPLACE_BYTES {
        return Err(Error::bad_request(format!(
            "{} is {} bytes; replace handles files up to {} bytes",
            path.display(),
            metadata.len(),
            MAX_REPLACE_BYTES
        )));
    }
    let mut content = Vec::with_capacity(metadata.len() as usize);
    file.read_to_end(&mut content)
        .map_err(|err| Error::io("read", path, &err))?;
    let replacements = regex.find_iter(&content).count();
    if replacements == 0 {
        return Ok(0);
    }
    let replaced = if expand {
        regex.replace_all(&content, new_value.as_bytes())
    } else {
        regex.replace_all(&content, NoExpand(new_value.as_bytes()))
    };
    let mut writer = files.create_atomic(path)?;
    writer.write_all(&replaced)?;
    writer.commit()?;
    Ok(replacements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn literal_replace_counts_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path().to_path_buf(), 0o022);
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "a.b a.b axb $1").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let names = vec!["run.sh".to_string(), "missing.txt".to_string()];
        let results = replace(&files, &names, "a.b", "$1", &ReplaceOptions::default()).unwrap();
        assert_eq!(results[0].replacements, 2);
        assert!(results[0].success);
        assert!(!results[1].success);
        assert!(results[1].error.as_deref().unwrap().contains("not found"));
        assert_eq!(std::fs::read_to_string(&script).unwrap(), "$1 $1 axb $1");
        assert_eq!(
            std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn regex_replace_expands_groups() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path().to_path_buf(), 0o022);
        std::fs::write(dir.path().join("x.txt"), "k1=v1\nk2=v2\n").unwrap();
        let options = ReplaceOptions { regex: true };
        let names = vec!["x.txt".to_string()];
        let results = replace(&files, &names, r"(\w+)=(\w+)", "$2=$1", &options).unwrap();
        assert_eq!(results[0].replacements, 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.txt")).unwrap(),
            "v1=k1\nv2=k2\n"
        );
    }
}
