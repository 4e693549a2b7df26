//! Content search with ripgrep's crates. Defaults keep Daytona's semantics: literal substring,
//! 1-based line numbers, files with a NUL byte skipped whole, nothing ignored (`.git` included).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use grep_regex::RegexMatcherBuilder;
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use ignore::{WalkBuilder, WalkState};

use super::display_path;
use crate::error::{Error, Result};

/// The matching lines of one file, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMatches {
    /// The file, named relative to how the caller named the root.
    pub file: PathBuf,
    /// `(1-based line number, the line without its terminator, invalid UTF-8 replaced)`.
    pub lines: Vec<(u64, String)>,
}

impl FileMatches {
    /// Every match as `(file, line, content)`.
    pub fn iter(&self) -> impl Iterator<Item = (&std::path::Path, u64, &str)> {
        self.lines
            .iter()
            .map(|(line, content)| (self.file.as_path(), *line, content.as_str()))
    }
}

/// Opt-in behaviour beyond Daytona's.
#[derive(Debug, Default, Clone)]
pub struct FindOptions {
    /// Treat the pattern as a regular expression instead of a literal.
    pub regex: bool,
    /// Match without regard to case.
    pub case_insensitive: bool,
    /// Skip what `.gitignore`, `.ignore` and `.git/info/exclude` exclude.
    pub gitignore: bool,
    /// Stop after this many matches.
    pub max_results: Option<usize>,
}

/// The matches, sorted by file then line, and whether `max_results` cut them.
#[derive(Debug)]
pub struct FindOutcome {
    /// Matches grouped by file, files sorted, lines in order (a file's path is stored once).
    pub files: Vec<FileMatches>,
    /// True when more matches existed than `max_results`.
    pub truncated: bool,
}

/// Searches every regular file under `root` (shown as `root_shown`) for `pattern`.
pub fn find(
    root: &Path,
    root_shown: &Path,
    pattern: &str,
    options: &FindOptions,
) -> Result<FindOutcome> {
    if pattern.is_empty() {
        return Err(Error::bad_request("pattern must not be empty"));
    }
    std::fs::metadata(root).map_err(|err| Error::io("search", root, &err))?;
    let matcher = RegexMatcherBuilder::new()
        .fixed_strings(!options.regex)
        .case_insensitive(options.case_insensitive)
        .build(pattern)
        .map_err(|err| Error::bad_request(format!("invalid pattern: {err}")))?;
    let limit = options.max_results.unwrap_or(usize::MAX);
    let found = Mutex::new(Vec::new());
    let n_found = AtomicUsize::new(0);
    let truncated = AtomicBool::new(false);

    let skip_git_dir = options.gitignore;
    let walker = WalkBuilder::new(root)
        .hidden(false)
        .ignore(options.gitignore)
        .git_ignore(options.gitignore)
        .git_exclude(options.gitignore)
        .git_global(false)
        .parents(options.gitignore)
        .require_git(false)
        .follow_links(false)
        // With gitignore on, `.git` itself is skipped as git would; otherwise nothing is special.
        .filter_entry(move |entry| !(skip_git_dir && entry.file_name() == ".git"))
        .build_parallel();
    walker.run(|| {
        let matcher = matcher.clone();
        let mut searcher = SearcherBuilder::new()
            .line_number(true)
            // Binary files are recognised up front (a NUL in the first 512 bytes, as Daytona
            // does); past that, bytes are searched as they are.
            .binary_detection(BinaryDetection::none())
            .heap_limit(Some(MAX_LINE_BYTES))
            .build();
        let mut head = vec![0u8; HEAD_BYTES];
        let found = &found;
        let n_found = &n_found;
        let truncated = &truncated;
        Box::new(move |entry| {
            let Ok(entry) = entry else {
                return WalkState::Continue;
            };
            if !entry.file_type().is_some_and(|kind| kind.is_file()) {
                return WalkState::Continue;
            }
            let mut sink = FileSink { lines: Vec::new() };
            if !search_text_file(&mut searcher, &matcher, entry.path(), &mut head, &mut sink) {
                return WalkState::Continue;
            }
            if sink.lines.is_empty() {
                return WalkState::Continue;
            }
            let start = n_found.fetch_add(sink.lines.len(), Ordering::SeqCst);
            let room = limit.saturating_sub(start);
            if room < sink.lines.len() {
                truncated.store(true, Ordering::SeqCst);
                sink.lines.truncate(room);
            }
            let file = display_path(root, root_shown, entry.path());
            let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
            found.push(FileMatches {
                file,
                lines: sink.lines,
            });
            drop(found);
            if truncated.load(Ordering::SeqCst) {
                WalkState::Quit
            } else {
                WalkState::Continue
            }
        })
    });
    let mut files = found.into_inner().unwrap_or_else(|e| e.into_inner());
    files.sort_unstable_by(|a, b| a.file.cmp(&b.file));
    Ok(FindOutcome {
        files,
        truncated: truncated.into_inner(),
    })
}

/// Lines longer than this cannot be searched (the searcher's buffer is bounded); ripgrep has
/// the same trade-off. Daytona stops at 64 KiB.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The `content` of a match is cut to this many bytes (on a character boundary).
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;

/// How far into a file a NUL byte marks it binary.
const BINARY_PROBE_BYTES: usize = 512;

/// Searches one file unless its first 512 bytes hold a NUL. False when skipped or unreadable.
/// The first read of each file is this large, so a small file is read in one call and probed
/// for NULs from the same buffer.
const HEAD_BYTES: usize = 64 * 1024;

fn search_text_file(
    searcher: &mut Searcher,
    matcher: &grep_regex::RegexMatcher,
    path: &Path,
    head: &mut [u8],
    sink: &mut FileSink,
) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut n_head = 0;
    // Fill at least the probe window (a read may return less than asked).
    while n_head < BINARY_PROBE_BYTES {
        match file.read(&mut head[n_head..]) {
            Ok(0) => break,
            Ok(n) => n_head += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    if head[..n_head.min(BINARY_PROBE_BYTES)].contains(&0) {
        return false;
    }
    searcher
        .search_reader(matcher, (&head[..n_head]).chain(file), sink)
        .is_ok()
}

/// Collects one file's matching lines.
struct FileSink {
    lines: Vec<(u64, String)>,
}

impl Sink for FileSink {
    type Error = std::io::Error;

    fn matched(
        &mut self,
        _searcher: &Searcher,
        found: &SinkMatch<'_>,
    ) -> Result<bool, Self::Error> {
        let line_number = found.line_number().unwrap_or(0);
        // A match may span several lines (regex with \n); report each line, as grep does.
        for (idx, line) in found.lines().enumerate() {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = &line[..line.len().min(MAX_CONTENT_BYTES)];
            let mut content = String::from_utf8_lossy(line).into_owned();
            if content.len() > MAX_CONTENT_BYTES {
                // Replacement characters can make the text longer than the bytes it came from.
                let mut end = MAX_CONTENT_BYTES;
                while !content.is_char_boundary(end) {
                    end -= 1;
                }
                content.truncate(end);
            }
            self.lines.push((line_number + idx as u64, content));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(outcome: &FindOutcome) -> usize {
        outcome.files.iter().map(|f| f.lines.len()).sum()
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello\nsay Hello\nnothing\n").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/config"), "hello git\n").unwrap();
        std::fs::write(dir.path().join("bin.dat"), b"hello\0world").unwrap();
        let mut late_nul = b"hello late\n".to_vec();
        late_nul.extend(vec![b'x'; 600]);
        late_nul.push(0);
        std::fs::write(dir.path().join("late.dat"), late_nul).unwrap();
        std::fs::write(
            dir.path().join("long.txt"),
            format!("{}hello", "x".repeat(200_000)),
        )
        .unwrap();
        dir
    }

    #[test]
    fn literal_by_default_with_git_long_lines_and_binaries_by_their_head() {
        let dir = tree();
        let shown = Path::new("rel");
        let outcome = find(dir.path(), shown, "hello", &FindOptions::default()).unwrap();
        let files: Vec<_> = outcome
            .files
            .iter()
            .flat_map(FileMatches::iter)
            .map(|(file, line, _)| (file.to_str().unwrap(), line))
            .collect();
        assert_eq!(
            files,
            vec![
                ("rel/.git/config", 1),
                ("rel/a.txt", 1),
                ("rel/late.dat", 1),
                ("rel/long.txt", 1)
            ]
        );
        assert!(!outcome.truncated);
        let regexish = find(dir.path(), shown, "h.llo", &FindOptions::default()).unwrap();
        assert!(regexish.files.is_empty());
    }

    #[test]
    fn options_switch_on_regex_case_and_limits() {
        let dir = tree();
        let options = FindOptions {
            regex: true,
            case_insensitive: true,
            ..Default::default()
        };
        let outcome = find(dir.path(), dir.path(), "^(say )?h.llo$", &options).unwrap();
        assert_eq!(count(&outcome), 2);
        let limited = FindOptions {
            max_results: Some(1),
            ..Default::default()
        };
        let outcome = find(dir.path(), dir.path(), "hello", &limited).unwrap();
        assert_eq!(count(&outcome), 1);
        assert!(outcome.truncated);
        let long_line = format!("{}hello", "y".repeat(2 * MAX_CONTENT_BYTES));
        std::fs::write(dir.path().join("long.txt"), long_line).unwrap();
        let outcome = find(
            dir.path(),
            dir.path(),
            "hello",
            &FindOptions {
                regex: true,
                ..Default::default()
            },
        )
        .unwrap();
        let long = outcome
            .files
            .iter()
            .find(|m| m.file.ends_with("long.txt"))
            .unwrap();
        assert_eq!(long.lines[0].1.len(), MAX_CONTENT_BYTES);
    }
}
