//! Content search with ripgrep's crates. Defaults keep Daytona's semantics: literal substring,
//! 1-based line numbers, files with a NUL byte skipped whole, nothing ignored (`.git` included).
//!
//! Matches come out one at a time, in the order of Daytona's `filepath.Walk`: files by path (a
//! walk that sorts each directory by name, so `a/x` comes before `a.txt`), lines ascending. One
//! thread walks and deals the files out in runs of [`FILES_PER_JOB`], a few threads search the
//! runs in parallel, and the caller's thread hands the matches to a [`FindSink`] in walk order.
//! Nothing is collected: at most [`JOBS_AHEAD`] runs beyond the one being handed out hold
//! matches, each at most one chunk ([`CHUNK_BYTES`] of lines, or one line of up to
//! [`MAX_CONTENT_BYTES`]) plus the chunk its searcher is filling, whatever the number of matches.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use ignore::WalkBuilder;

use super::display_path;
use crate::error::{Error, Result};

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

/// Where the matches go, in order, on the thread that runs the search.
pub trait FindSink {
    /// One matching line (`line` 1-based, `content` without its terminator, invalid UTF-8
    /// replaced). False stops the search.
    fn found(&mut self, file: &Path, line: u64, content: &str) -> bool;

    /// Asked between files and, while no match comes, every [`POLL`]: true stops the search
    /// (the reader went away).
    fn cancelled(&mut self) -> bool {
        false
    }
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindSummary {
    /// Matches handed to the sink.
    pub matches: usize,
    /// True when more matches existed than `max_results`.
    pub truncated: bool,
    /// True when a file handed out could not be searched to its end (a line longer than
    /// [`MAX_LINE_BYTES`], a read that failed): matches in the rest of it are missing.
    pub incomplete: bool,
}

/// A search whose inputs were checked: the pattern compiles and the root can be read. Run it
/// with [`Finder::run`]; what fails below the root (an unreadable or vanished file or
/// directory) is skipped.
#[derive(Debug)]
pub struct Finder {
    root: PathBuf,
    root_shown: PathBuf,
    matcher: RegexMatcher,
    options: FindOptions,
}

/// Runs of files that may hold matches ahead of the one being handed out.
pub const JOBS_AHEAD: usize = 32;

/// Consecutive files a searcher takes at once: the threads meet once per run, not per file.
pub const FILES_PER_JOB: usize = 16;

/// A searcher hands its matches on in chunks of about this many bytes of content.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// How often a waiting search asks [`FindSink::cancelled`].
pub const POLL: Duration = Duration::from_millis(50);

/// The most searcher threads, whatever the CPU count (ignore's parallel walk has the same cap).
const MAX_SEARCHERS: usize = 12;

impl Finder {
    /// Checks a search of every regular file under `root` (shown as `root_shown`) for
    /// `pattern`: a non-empty pattern that compiles, a root that exists and can be read.
    pub fn new(
        root: &Path,
        root_shown: &Path,
        pattern: &str,
        options: FindOptions,
    ) -> Result<Finder> {
        if pattern.is_empty() {
            return Err(Error::bad_request("pattern must not be empty"));
        }
        let metadata = std::fs::metadata(root).map_err(|err| Error::io("search", root, &err))?;
        let matcher = RegexMatcherBuilder::new()
            .fixed_strings(!options.regex)
            .case_insensitive(options.case_insensitive)
            .build(pattern)
            .map_err(|err| Error::bad_request(format!("invalid pattern: {err}")))?;
        // An unreadable root would otherwise search nothing and answer an empty list.
        if metadata.is_dir() {
            std::fs::read_dir(root).map_err(|err| Error::io("search", root, &err))?;
        } else if metadata.is_file() {
            std::fs::File::open(root).map_err(|err| Error::io("search", root, &err))?;
        }
        Ok(Finder {
            root: root.to_path_buf(),
            root_shown: root_shown.to_path_buf(),
            matcher,
            options,
        })
    }

    /// Runs the search, handing every match to `sink` in order, until the walk ends, `sink`
    /// says stop, or `max_results` matches were handed out and one more was found (then
    /// `truncated`). The threads it starts have ended when it returns. An error means no
    /// thread could be started: the matches handed out so far are not the whole answer.
    pub fn run(&self, sink: &mut dyn FindSink) -> Result<FindSummary> {
        let limit = self.options.max_results.unwrap_or(usize::MAX);
        let searchers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_SEARCHERS);
        let stop = AtomicBool::new(false);
        let (job_sender, jobs) = mpsc::sync_channel::<Job>(JOBS_AHEAD);
        let jobs = Mutex::new(jobs);
        let (order_sender, order) = mpsc::sync_channel::<Queued>(JOBS_AHEAD);
        // The threads write their log lines in the caller's span (the request's, with its id).
        let span = tracing::Span::current();
        std::thread::scope(|scope| {
            let mut started = 0;
            for _ in 0..searchers {
                let spawned = std::thread::Builder::new()
                    .name("toolboxd-find".into())
                    .spawn_scoped(scope, || span.in_scope(|| self.search_jobs(&jobs, &stop)));
                if spawned.is_ok() {
                    started += 1;
                }
            }
            let walker = if started > 0 {
                std::thread::Builder::new()
                    .name("toolboxd-walk".into())
                    .spawn_scoped(scope, || {
                        span.in_scope(|| self.walk(order_sender, job_sender, &stop))
                    })
                    .is_ok()
            } else {
                // Dropping the senders unblocks the searchers that did start.
                drop((order_sender, job_sender));
                false
            };
            if !walker {
                stop.store(true, Ordering::SeqCst);
                return Err(Error::internal(
                    "cannot start the search threads (thread limit reached?)",
                ));
            }
            let summary = self.hand_out(&order, limit, sink);
            // The walker and the searchers see the flag or their closed channels and end; the
            // scope waits for them.
            stop.store(true, Ordering::SeqCst);
            drop(order);
            Ok(summary)
        })
    }

    /// The walker: the regular files, in order, dealt out in runs that become a job for the
    /// searchers and a place in the queue the caller's thread hands matches out from.
    fn walk(&self, order: SyncSender<Queued>, jobs: SyncSender<Job>, stop: &AtomicBool) {
        let skip_git_dir = self.options.gitignore;
        let gitignore = self.options.gitignore;
        let walker = WalkBuilder::new(&self.root)
            .hidden(false)
            .ignore(gitignore)
            .git_ignore(gitignore)
            .git_exclude(gitignore)
            .git_global(false)
            .parents(gitignore)
            .require_git(false)
            .follow_links(false)
            // With gitignore on, `.git` itself is skipped as git would; otherwise nothing is special.
            .filter_entry(move |entry| !(skip_git_dir && entry.file_name() == ".git"))
            .sort_by_file_name(|a, b| a.cmp(b))
            .build();
        let deal = |files: Vec<PathBuf>| {
            let files = Arc::new(files);
            let (chunks, receiver) = mpsc::sync_channel(1);
            order.send((files.clone(), receiver)).is_ok()
                && jobs.send(Job { files, chunks }).is_ok()
        };
        let mut run = Vec::with_capacity(FILES_PER_JOB);
        for entry in walker {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(entry) = entry else {
                continue;
            };
            if !entry.file_type().is_some_and(|kind| kind.is_file()) {
                continue;
            }
            run.push(entry.into_path());
            if run.len() == FILES_PER_JOB
                && !deal(std::mem::replace(
                    &mut run,
                    Vec::with_capacity(FILES_PER_JOB),
                ))
            {
                return;
            }
        }
        if !run.is_empty() {
            deal(run);
        }
    }

    /// A searcher: takes runs of files in walk order and sends each run's matches in chunks.
    fn search_jobs(&self, jobs: &Mutex<Receiver<Job>>, stop: &AtomicBool) {
        let mut searcher = SearcherBuilder::new()
            .line_number(true)
            // Binary files are recognised up front (a NUL in the first 512 bytes, as Daytona
            // does); past that, bytes are searched as they are.
            .binary_detection(BinaryDetection::none())
            .heap_limit(Some(MAX_LINE_BYTES))
            .build();
        let mut head = vec![0u8; HEAD_BYTES];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let job = {
                let jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
                jobs.recv()
            };
            let Ok(job) = job else {
                return;
            };
            let mut sink = ChunkSink {
                file: 0,
                lines: Vec::new(),
                bytes: 0,
                chunks: &job.chunks,
                stop,
                gone: false,
            };
            for (idx, path) in job.files.iter().enumerate() {
                if sink.gone || stop.load(Ordering::Relaxed) {
                    break;
                }
                sink.file = idx as u32;
                search_text_file(
                    &mut searcher,
                    &self.matcher,
                    path,
                    &mut head,
                    stop,
                    &mut sink,
                );
            }
            sink.send();
        }
    }
}

/// A run of files to search, in order, and where their matches go.
struct Job {
    files: Arc<Vec<PathBuf>>,
    chunks: SyncSender<Chunk>,
}

/// A run of files as the caller's thread waits for it.
type Queued = (Arc<Vec<PathBuf>>, Receiver<Chunk>);

/// Some of a run's findings, in order.
type Chunk = Vec<Found>;

/// What a searcher found in a run; files are named by their index in the run.
enum Found {
    /// A matching line: the file, its 1-based line number, its content.
    Line(u32, u64, String),
    /// The search of this file stopped before its end.
    Cut,
}

impl Finder {
    /// The caller's side: takes the runs in walk order and hands their matches to `sink`.
    fn hand_out(
        &self,
        order: &Receiver<Queued>,
        limit: usize,
        sink: &mut dyn FindSink,
    ) -> FindSummary {
        let mut summary = FindSummary {
            matches: 0,
            truncated: false,
            incomplete: false,
        };
        loop {
            if sink.cancelled() {
                return summary;
            }
            let (files, chunks) = match order.recv_timeout(POLL) {
                Ok(next) => next,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return summary,
            };
            // The file being handed out, as the caller named the root.
            let mut shown: Option<(u32, PathBuf)> = None;
            loop {
                let chunk = match chunks.recv_timeout(POLL) {
                    Ok(chunk) => chunk,
                    Err(RecvTimeoutError::Timeout) if sink.cancelled() => return summary,
                    Err(RecvTimeoutError::Timeout) => continue,
                    // The run is done.
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                for found in &chunk {
                    let (idx, line, content) = match found {
                        Found::Line(idx, line, content) => (idx, line, content),
                        Found::Cut => {
                            summary.incomplete = true;
                            continue;
                        }
                    };
                    if summary.matches == limit {
                        summary.truncated = true;
                        return summary;
                    }
                    let file = match &shown {
                        Some((at, file)) if at == idx => file,
                        _ => {
                            let path = &files[*idx as usize];
                            let file = display_path(&self.root, &self.root_shown, path);
                            &shown.insert((*idx, file)).1
                        }
                    };
                    if !sink.found(file, *line, content) {
                        return summary;
                    }
                    summary.matches += 1;
                }
            }
        }
    }
}

/// Lines longer than this cannot be searched (the searcher's buffer is bounded); ripgrep has
/// the same trade-off. Daytona stops at 64 KiB.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The `content` of a match is cut to this many bytes (on a character boundary).
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;

/// How far into a file a NUL byte marks it binary.
const BINARY_PROBE_BYTES: usize = 512;

/// The first read of each file is this large, so a small file is read in one call and probed
/// for NULs from the same buffer.
const HEAD_BYTES: usize = 64 * 1024;

/// Searches one file unless its first 512 bytes hold a NUL; an unreadable file is skipped. The
/// search ends early once `stop` is set.
fn search_text_file(
    searcher: &mut Searcher,
    matcher: &RegexMatcher,
    path: &Path,
    head: &mut [u8],
    stop: &AtomicBool,
    sink: &mut ChunkSink<'_>,
) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return;
    };
    let mut n_head = 0;
    // Fill at least the probe window (a read may return less than asked).
    while n_head < BINARY_PROBE_BYTES {
        match file.read(&mut head[n_head..]) {
            Ok(0) => break,
            Ok(n) => n_head += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    if head[..n_head.min(BINARY_PROBE_BYTES)].contains(&0) {
        return;
    }
    let reader = UntilStopped {
        inner: (&head[..n_head]).chain(file),
        stop,
    };
    // A read error, or a line longer than the searcher may hold (its heap limit), ends this
    // file's search: what was found before it stands, and the answer says it is incomplete.
    if let Err(err) = searcher.search_reader(matcher, reader, &mut *sink) {
        tracing::debug!(path = %path.display(), "search of a file cut short: {err}");
        sink.lines.push(Found::Cut);
    }
}

/// A reader that ends (EOF) once `stop` is set, so a large file without matches does not keep
/// a stopped search busy.
struct UntilStopped<'a, R> {
    inner: R,
    stop: &'a AtomicBool,
}

impl<R: Read> Read for UntilStopped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        self.inner.read(buf)
    }
}

/// Collects a run's matching lines and sends them on in chunks of about [`CHUNK_BYTES`].
struct ChunkSink<'a> {
    /// The file being searched: its index in the run.
    file: u32,
    lines: Chunk,
    bytes: usize,
    chunks: &'a SyncSender<Chunk>,
    stop: &'a AtomicBool,
    /// The receiving side is gone: nothing more is wanted from this file.
    gone: bool,
}

impl ChunkSink<'_> {
    /// Sends what was collected (blocking while the previous chunk is still waiting).
    fn send(&mut self) {
        if self.lines.is_empty() || self.gone {
            return;
        }
        self.bytes = 0;
        if self.chunks.send(std::mem::take(&mut self.lines)).is_err() {
            self.gone = true;
        }
    }
}

impl Sink for ChunkSink<'_> {
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
            self.bytes += content.len();
            self.lines
                .push(Found::Line(self.file, line_number + idx as u64, content));
        }
        if self.bytes >= CHUNK_BYTES {
            self.send();
        }
        Ok(!self.gone && !self.stop.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every match as `(file, line, content)`, and the summary.
    struct Collect(Vec<(String, u64, String)>);

    impl FindSink for Collect {
        fn found(&mut self, file: &Path, line: u64, content: &str) -> bool {
            self.0.push((
                file.to_str().unwrap().to_string(),
                line,
                content.to_string(),
            ));
            true
        }
    }

    fn find(
        root: &Path,
        shown: &Path,
        pattern: &str,
        options: FindOptions,
    ) -> (Vec<(String, u64, String)>, FindSummary) {
        let finder = Finder::new(root, shown, pattern, options).unwrap();
        let mut sink = Collect(Vec::new());
        let summary = finder.run(&mut sink).unwrap();
        assert_eq!(summary.matches, sink.0.len());
        (sink.0, summary)
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
        let (found, summary) = find(dir.path(), shown, "hello", FindOptions::default());
        let files: Vec<_> = found
            .iter()
            .map(|(file, line, _)| (file.as_str(), *line))
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
        assert!(!summary.truncated);
        let (regexish, _) = find(dir.path(), shown, "h.llo", FindOptions::default());
        assert!(regexish.is_empty());
    }

    #[test]
    fn options_switch_on_regex_case_and_limits() {
        let dir = tree();
        let options = FindOptions {
            regex: true,
            case_insensitive: true,
            ..Default::default()
        };
        let (found, _) = find(dir.path(), dir.path(), "^(say )?h.llo$", options);
        assert_eq!(found.len(), 2);
        let limited = FindOptions {
            max_results: Some(1),
            ..Default::default()
        };
        let (found, summary) = find(dir.path(), dir.path(), "hello", limited);
        assert_eq!(found.len(), 1);
        assert!(found[0].0.ends_with(".git/config"), "the first in order");
        assert!(summary.truncated);
        let exact = FindOptions {
            max_results: Some(4),
            ..Default::default()
        };
        let (found, summary) = find(dir.path(), dir.path(), "hello", exact);
        assert_eq!((found.len(), summary.truncated), (4, false));
        let long_line = format!("{}hello", "y".repeat(2 * MAX_CONTENT_BYTES));
        std::fs::write(dir.path().join("long.txt"), long_line).unwrap();
        let options = FindOptions {
            regex: true,
            ..Default::default()
        };
        let (found, _) = find(dir.path(), dir.path(), "hello", options);
        let long = found.iter().find(|m| m.0.ends_with("long.txt")).unwrap();
        assert_eq!(long.2.len(), MAX_CONTENT_BYTES);
    }

    #[test]
    fn order_is_the_sorted_walk_across_many_files_and_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        // Names that sort differently as strings and as paths ("a/x" < "a-b" < "a.txt").
        for sub in ["a", "a-b", "a.txt.d", "b/c"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        for (idx, name) in ["a/x", "a-b/y", "a.txt", "a.txt.d/z", "b/c/w", "b0"]
            .iter()
            .enumerate()
        {
            // Enough lines that one file spans several chunks.
            let lines = 1 + idx * 1500;
            let text: String = (1..=lines).map(|n| format!("match {n:05}\n")).collect();
            std::fs::write(dir.path().join(name), text).unwrap();
            expected.extend((1..=lines as u64).map(|n| (name.to_string(), n)));
        }
        let (found, summary) = find(dir.path(), Path::new(""), "match", FindOptions::default());
        let got: Vec<_> = found.iter().map(|(f, l, _)| (f.clone(), *l)).collect();
        assert_eq!(got, expected);
        assert!(!summary.truncated);
    }

    #[test]
    fn a_file_root_is_named_as_given_and_the_root_is_checked_first() {
        let dir = tree();
        let (found, _) = find(
            &dir.path().join("a.txt"),
            Path::new("./a.txt"),
            "hello",
            FindOptions::default(),
        );
        assert_eq!(found[0].0, "a.txt");
        let missing = Finder::new(
            &dir.path().join("nope"),
            Path::new("nope"),
            "x",
            FindOptions::default(),
        );
        assert_eq!(
            missing.unwrap_err().kind,
            crate::error::ErrorKind::FileNotFound
        );
        let bad = Finder::new(
            dir.path(),
            dir.path(),
            "(",
            FindOptions {
                regex: true,
                ..Default::default()
            },
        );
        assert_eq!(bad.unwrap_err().kind, crate::error::ErrorKind::BadRequest);
    }

    #[test]
    fn a_line_past_the_limit_makes_the_result_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "needle\n").unwrap();
        let mut long = vec![b'x'; MAX_LINE_BYTES + 1024];
        long.extend_from_slice(b"needle\n");
        std::fs::write(dir.path().join("b.txt"), long).unwrap();
        std::fs::write(dir.path().join("c.txt"), "needle\n").unwrap();
        let (found, summary) = find(dir.path(), Path::new(""), "needle", FindOptions::default());
        let files: Vec<_> = found.iter().map(|(file, _, _)| file.as_str()).collect();
        assert_eq!(files, ["a.txt", "c.txt"]);
        assert!(summary.incomplete);
        assert!(!summary.truncated);
        let (_, summary) = find(
            &dir.path().join("a.txt"),
            Path::new("a.txt"),
            "needle",
            FindOptions::default(),
        );
        assert!(!summary.incomplete);
    }

    #[test]
    fn a_sink_that_stops_or_is_cancelled_ends_the_search() {
        struct StopAfter(usize);
        impl FindSink for StopAfter {
            fn found(&mut self, _file: &Path, _line: u64, _content: &str) -> bool {
                self.0 -= 1;
                self.0 > 0
            }
        }
        struct Cancelled;
        impl FindSink for Cancelled {
            fn found(&mut self, _file: &Path, _line: u64, _content: &str) -> bool {
                panic!("a cancelled search hands nothing out");
            }
            fn cancelled(&mut self) -> bool {
                true
            }
        }
        let dir = tempfile::tempdir().unwrap();
        for idx in 0..200 {
            std::fs::write(dir.path().join(format!("f{idx:03}")), "x\nx\nx\n").unwrap();
        }
        let finder = Finder::new(dir.path(), dir.path(), "x", FindOptions::default()).unwrap();
        let summary = finder.run(&mut StopAfter(5)).unwrap();
        assert_eq!(summary.matches, 4);
        assert_eq!(finder.run(&mut Cancelled).unwrap().matches, 0);
    }
}
