//! Search tools: `search_files` (file contents, literal by default, or names by glob) and
//! `replace_in_files`.

use std::path::{Path, PathBuf};

use super::Parameters;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::CallToolResult;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::super::output::{self, floor_char, MAX_TEXT};
use super::super::{blocking, Toolbox};
use crate::search::{self, FindOptions, FindSink, Finder, GlobOptions, ReplaceOptions};

/// Matches (or names) `search_files` returns unless `max_results` says otherwise.
pub const DEFAULT_RESULTS: usize = 100;
/// The most `max_results` may ask for.
pub const MAX_RESULTS: usize = 1000;
/// A matching line longer than this is cut (with `…`).
pub const MAX_LINE: usize = 400;

/// `search_files`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// Text to look for in file contents (a literal string unless `regex`), or with `mode` `name`
    /// a glob for file names: without `/` it matches base names at any depth (`*.rs`), with `/`
    /// or `**` the path below `path` (`src/**/*.rs`).
    pub pattern: String,
    /// The directory (or file) to search (default: the work dir).
    pub path: Option<String>,
    /// `content` (default) searches inside files; `name` matches file names.
    pub mode: Option<SearchMode>,
    /// Content search: treat `pattern` as a regular expression (Rust regex syntax).
    pub regex: Option<bool>,
    /// Content search: ignore case.
    pub case_insensitive: Option<bool>,
    /// Content search: skip what `.gitignore`/`.ignore` exclude and `.git` itself (default
    /// true).
    pub gitignore: Option<bool>,
    /// The most matches or names to return (default 100, at most 1000).
    pub max_results: Option<usize>,
}

/// What `search_files` looks at.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// File contents.
    Content,
    /// File and directory names.
    Name,
}

/// One matching line.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Match {
    /// The file, as `path` plus the part below it.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// The line (cut at 400 characters).
    pub content: String,
}

/// What `search_files` found.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResults {
    /// Content search: matching lines, files in path order, lines ascending.
    pub matches: Vec<Match>,
    /// Name search: matching paths, sorted.
    pub files: Vec<String>,
    /// True when there were more results than returned (raise `max_results`, or narrow `path`
    /// or `pattern`).
    pub truncated: bool,
}

/// `replace_in_files`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReplaceArgs {
    /// The files to rewrite (relative to the work dir unless absolute).
    pub files: Vec<String>,
    /// Text to replace (a literal string unless `regex`).
    pub pattern: String,
    /// The replacement (`""` deletes the matches; with `regex`, `$1` names a group).
    pub new_value: String,
    /// Treat `pattern` as a regular expression.
    pub regex: Option<bool>,
}

/// What happened to one file.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileReplaced {
    /// The file as given.
    pub file: String,
    /// True when the file was read (and, if anything matched, rewritten).
    pub success: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Occurrences replaced.
    pub replacements: usize,
}

/// What `replace_in_files` did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Replaced {
    /// One result per file, in the order given.
    pub results: Vec<FileReplaced>,
}

/// Collects matches up to a count and a byte budget; stops when the request is cancelled.
struct Collect {
    limit: usize,
    bytes: usize,
    matches: Vec<Match>,
    truncated: bool,
    cancel: CancellationToken,
}

impl FindSink for Collect {
    fn found(&mut self, file: &Path, line: u64, content: &str) -> bool {
        if self.matches.len() >= self.limit || self.bytes >= MAX_TEXT {
            self.truncated = true;
            return false;
        }
        let mut content = content.to_string();
        if content.len() > MAX_LINE {
            content.truncate(floor_char(content.as_bytes(), MAX_LINE));
            content.push('…');
        }
        let file = file.to_string_lossy().into_owned();
        self.bytes += file.len() + content.len() + 32;
        self.matches.push(Match {
            file,
            line,
            content,
        });
        true
    }

    fn cancelled(&mut self) -> bool {
        self.cancel.is_cancelled()
    }
}

#[rmcp::tool_router(router = search_router, vis = "pub(crate)")]
impl Toolbox {
    /// Searches file contents (literal text by default, `regex` for a regular expression;
    /// binary files skipped, .gitignore honoured) or, with `mode` `name`, file names by glob.
    /// Returns at most `max_results` (default 100) results.
    #[rmcp::tool(
        annotations(
            title = "Search files",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<SearchResults>()
    )]
    async fn search_files(
        &self,
        Parameters(args): Parameters<SearchArgs>,
        cancel: CancellationToken,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let search = async move {
            let shown = args
                .path
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| ".".into());
            let root = files.resolve(&shown)?;
            let limit = args
                .max_results
                .unwrap_or(DEFAULT_RESULTS)
                .clamp(1, MAX_RESULTS);
            if args.mode == Some(SearchMode::Name) {
                let options = GlobOptions {
                    max_results: Some(limit),
                };
                let pattern = args.pattern;
                let found = blocking(move || {
                    search::glob(&root, &PathBuf::from(shown), &pattern, &options)
                })
                .await?;
                return Ok(SearchResults {
                    matches: Vec::new(),
                    files: found
                        .paths
                        .into_iter()
                        .map(|p| p.to_string_lossy().into_owned())
                        .collect(),
                    truncated: found.truncated,
                });
            }
            let options = FindOptions {
                regex: args.regex.unwrap_or(false),
                case_insensitive: args.case_insensitive.unwrap_or(false),
                gitignore: args.gitignore.unwrap_or(true),
                max_results: None,
            };
            let pattern = args.pattern;
            let collected = blocking(move || {
                let finder = Finder::new(&root, Path::new(&shown), &pattern, options)?;
                let mut sink = Collect {
                    limit,
                    bytes: 0,
                    matches: Vec::new(),
                    truncated: false,
                    cancel,
                };
                finder.run(&mut sink)?;
                Ok(sink)
            })
            .await?;
            Ok(SearchResults {
                matches: collected.matches,
                files: Vec::new(),
                truncated: collected.truncated,
            })
        };
        Ok(output::outcome(search.await))
    }

    /// Replaces text in the given files (literal unless `regex`), each rewritten atomically;
    /// one result per file.
    #[rmcp::tool(
        annotations(
            title = "Replace in files",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<Replaced>()
    )]
    async fn replace_in_files(
        &self,
        Parameters(args): Parameters<ReplaceArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let replace = async move {
            if args.files.is_empty() {
                return Err(crate::error::Error::bad_request(
                    "`files` must list at least one file",
                ));
            }
            let options = ReplaceOptions {
                regex: args.regex.unwrap_or(false),
            };
            let results = blocking(move || {
                search::replace(
                    &files,
                    &args.files,
                    &args.pattern,
                    &args.new_value,
                    &options,
                )
            })
            .await?;
            Ok(Replaced {
                results: results
                    .into_iter()
                    .map(|r| FileReplaced {
                        file: r.file,
                        success: r.success,
                        error: r.error,
                        replacements: r.replacements,
                    })
                    .collect(),
            })
        };
        Ok(output::outcome(replace.await))
    }
}
