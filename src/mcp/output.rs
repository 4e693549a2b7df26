//! Tool results: data as structured content (and its JSON as text, as the MCP spec asks), a
//! capability's `Error` as an `isError` result whose text says what went wrong and what to do,
//! and the cap on text a result may carry so a `cat` of a huge file cannot flood an agent's
//! context.

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// The most text (bytes of UTF-8) one tool result carries: a command's output, a file's text, a
/// page of a session log. Past it the text is cut with a notice that says how to read the rest.
pub const MAX_TEXT: usize = 100 * 1024;

/// `value` as structured content, with its JSON as the text content.
pub fn data<T: Serialize>(value: &T) -> CallToolResult {
    match serde_json::to_value(value) {
        Ok(value) => CallToolResult::structured(value),
        Err(err) => failure(&Error::internal(format!("cannot encode the result: {err}"))),
    }
}

/// A tool's outcome: its data, or its error as an `isError` result.
pub fn outcome<T: Serialize>(result: Result<T>) -> CallToolResult {
    match result {
        Ok(value) => data(&value),
        Err(err) => failure(&err),
    }
}

/// An `isError` result: the capability's message, its wire code, and a hint where the kind has
/// an obvious next step.
pub fn failure(err: &Error) -> CallToolResult {
    let hint = match err.kind {
        ErrorKind::FileNotFound => {
            " (check the path with list_files; relative paths start at the work dir)"
        }
        ErrorKind::Timeout => {
            " (raise `timeout`, or run it with session_exec and read session_logs)"
        }
        ErrorKind::GitAuthFailed => " (give `username` and `password`, e.g. a token)",
        ErrorKind::ShuttingDown | ErrorKind::Unavailable => " (try again later)",
        _ => "",
    };
    CallToolResult::error(vec![ContentBlock::text(format!(
        "{} [{}]{hint}",
        err.message,
        err.kind.code()
    ))])
}

/// Bytes as text for a result, at most `max` bytes of it: the head and the tail are kept (a
/// command's first lines and its last, where errors are), with a notice in between. Invalid
/// UTF-8 becomes U+FFFD. The flag says whether anything was cut.
pub fn head_and_tail(bytes: &[u8], max: usize, what: &str) -> (String, bool) {
    if bytes.len() <= max {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let head = floor_char(bytes, max * 2 / 5);
    let tail = ceil_char(bytes, bytes.len() - (max - head));
    let omitted = tail - head;
    let text = format!(
        "{}\n[toolboxd: {omitted} bytes of {what} omitted here ({} in all; a result carries {} \
         KiB): redirect it to a file and read that in parts]\n{}",
        String::from_utf8_lossy(&bytes[..head]),
        bytes.len(),
        MAX_TEXT / 1024,
        String::from_utf8_lossy(&bytes[tail..]),
    );
    (text, true)
}

/// The largest index <= `at` that does not split a UTF-8 character of `bytes`.
pub fn floor_char(bytes: &[u8], at: usize) -> usize {
    let mut at = at.min(bytes.len());
    while at > 0 && at < bytes.len() && bytes[at] & 0b1100_0000 == 0b1000_0000 {
        at -= 1;
    }
    at
}

/// The smallest index >= `at` that does not split a UTF-8 character of `bytes`.
fn ceil_char(bytes: &[u8], at: usize) -> usize {
    let mut at = at.min(bytes.len());
    while at < bytes.len() && bytes[at] & 0b1100_0000 == 0b1000_0000 {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(
            head_and_tail(b"abc", 10, "output"),
            ("abc".to_string(), false)
        );
    }

    #[test]
    fn long_text_keeps_head_and_tail_within_the_cap() {
        let text: Vec<u8> = (0..1000u32)
            .flat_map(|i| format!("{i:04}\n").into_bytes())
            .collect();
        let (cut, truncated) = head_and_tail(&text, 1000, "output");
        assert!(truncated);
        assert!(cut.starts_with("0000\n0001\n"));
        assert!(cut.ends_with("0998\n0999\n"));
        assert!(cut.contains("bytes of output omitted here (5000 in all"));
        // The kept bytes are within the cap; only the notice comes on top.
        let notice = cut
            .lines()
            .find(|l| l.starts_with("[toolboxd"))
            .unwrap_or("");
        assert!(cut.len() <= 1000 + notice.len() + 2, "{}", cut.len());
    }

    #[test]
    fn cuts_never_split_a_character() {
        let text = "é".repeat(1000);
        let (cut, truncated) = head_and_tail(text.as_bytes(), 101, "output");
        assert!(truncated);
        assert!(!cut.contains('\u{FFFD}'));
        assert_eq!(floor_char("aé".as_bytes(), 2), 1);
        assert_eq!(ceil_char("aé".as_bytes(), 2), 3);
    }

    #[test]
    fn errors_are_tool_results_that_name_the_code() {
        let result = failure(&Error::new(ErrorKind::FileNotFound, "file not found: /w/x"));
        assert_eq!(result.is_error, Some(true));
        let text = result.content[0]
            .as_text()
            .map(|t| t.text.clone())
            .unwrap_or_default();
        assert!(
            text.starts_with("file not found: /w/x [FILE_NOT_FOUND]"),
            "{text}"
        );
        assert!(text.contains("list_files"), "{text}");
    }
}
