//! Which shape a client gets a command's log in (daytona-wire §4.2, §4.4), chosen from the SDK
//! version it announces, and the marker stripping the oldest shape and every JSON `output` need.
//!
//! * [`LogFormat::Split`]: SDK ≥ 0.167 (or a dev build): JSON `{output, stdout, stderr}`, with
//!   the markers removed from `output` (Daytona keeps them there, and both SDKs hand `output` to
//!   the user as it is); the WebSocket sends the raw log.
//! * [`LogFormat::Raw`]: SDK 0.27–0.166, an unparsable version, or no version with
//!   `X-Daytona-Split-Output: true`: the raw log (markers included) as `text/plain`, and as the
//!   `output` of a sync exec; the client demuxes.
//! * [`LogFormat::Combined`]: SDK < 0.27, or no version at all (curl): both streams in arrival
//!   order with the markers removed, as `text/plain`, and stripped on the WebSocket too. Never
//!   used for the entrypoint.

use super::log::{STDERR_MARK, STDOUT_MARK};

/// The shape of a command's log for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Markers stripped, both streams interleaved (`text/plain`).
    Combined,
    /// The log as stored, markers included (`text/plain`).
    Raw,
    /// JSON with `stdout` and `stderr` demuxed.
    Split,
}

impl LogFormat {
    /// The format for a client that sent `version` (`X-Daytona-SDK-Version` or its WebSocket
    /// subprotocol form) and `split_output` (`X-Daytona-Split-Output: true`).
    pub fn for_client(version: Option<&str>, split_output: bool, entrypoint: bool) -> LogFormat {
        let Some(version) = version.map(str::trim).filter(|v| !v.is_empty()) else {
            return if split_output || entrypoint {
                LogFormat::Raw
            } else {
                LogFormat::Combined
            };
        };
        if version.contains("dev") {
            return LogFormat::Split;
        }
        match parse_version(version) {
            None => LogFormat::Raw,
            Some(v) if v < (0, 27, 0) && !entrypoint => LogFormat::Combined,
            Some(v) if v < (0, 167, 0) => LogFormat::Raw,
            Some(_) => LogFormat::Split,
        }
    }
}

/// `major.minor.patch`, with an optional leading `v` and any pre-release or build suffix ignored.
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let mut next = || -> Option<u64> {
        match parts.next() {
            None => Some(0),
            Some(part) => part.parse().ok(),
        }
    };
    let version = (next()?, next()?, next()?);
    parts.next().is_none().then_some(version)
}

/// Removes the 3-byte stream markers from a log read in chunks, holding back a possible partial
/// marker at the end of a chunk until the next one shows what it is.
#[derive(Debug, Default)]
pub struct MarkerStripper {
    held: Vec<u8>,
}

impl MarkerStripper {
    /// The bytes of `chunk` (after any held back before) that are not markers.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            let byte = data[i];
            if byte == 1 || byte == 2 {
                let mark = if byte == 1 { STDOUT_MARK } else { STDERR_MARK };
                let rest = &data[i..];
                if rest.starts_with(mark) {
                    i += 3;
                    continue;
                }
                if rest.len() < 3 && mark.starts_with(rest) {
                    self.held = rest.to_vec();
                    break;
                }
            }
            out.push(byte);
            i += 1;
        }
        out
    }

    /// What is still held back once the log has ended (a lone 1 or 2 byte is data).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// `log` without its markers: both streams interleaved in arrival order, as plain text. The
/// bytes are compacted in place (a reply may hold `--max-output` of log). Scans like
/// [`MarkerStripper`] fed the whole log at once: a partial marker at the very end is data (a
/// capped reply never ends inside a marker, see `log::read_head`).
pub fn strip_markers(mut log: Vec<u8>) -> Vec<u8> {
    let mut kept = 0;
    let mut i = 0;
    while i < log.len() {
        let rest = &log[i..];
        if rest.starts_with(STDOUT_MARK) || rest.starts_with(STDERR_MARK) {
            i += 3;
            continue;
        }
        log[kept] = log[i];
        kept += 1;
        i += 1;
    }
    log.truncate(kept);
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_reference_gates() {
        use LogFormat::*;
        let f = LogFormat::for_client;
        assert_eq!(f(Some("0.226.1"), false, false), Split);
        assert_eq!(f(Some("0.167.0"), false, false), Split);
        assert_eq!(f(Some("0.166.9"), false, false), Raw);
        assert_eq!(f(Some("0.27.0"), false, false), Raw);
        assert_eq!(f(Some("0.26.3"), true, false), Combined);
        assert_eq!(f(Some("0.26.3"), false, true), Raw);
        assert_eq!(f(Some("v0.100.0-rc.1"), false, false), Raw);
        assert_eq!(f(Some("0.0.0-dev"), false, false), Split);
        assert_eq!(f(Some("garbage"), false, false), Raw);
        assert_eq!(f(Some("1.2.3.4"), false, false), Raw);
        assert_eq!(f(None, false, false), Combined);
        assert_eq!(f(Some(" "), false, false), Combined);
        assert_eq!(f(None, true, false), Raw);
        assert_eq!(f(None, false, true), Raw);
        assert_eq!(f(Some("1"), false, false), Split);
    }

    #[test]
    fn markers_are_stripped_across_chunk_boundaries() {
        let log = b"\x01\x01\x01out \x02\x02\x02err\x01\x01\x01\x01x\x02\x02";
        let whole = strip_markers(log.to_vec());
        assert_eq!(whole, b"out err\x01x\x02\x02");
        for cut in 0..=log.len() {
            for cut2 in cut..=log.len() {
                let mut s = MarkerStripper::default();
                let mut out = s.feed(&log[..cut]);
                out.extend(s.feed(&log[cut..cut2]));
                out.extend(s.feed(&log[cut2..]));
                out.extend(s.finish());
                assert_eq!(out, whole, "cuts at {cut} and {cut2}");
            }
        }
    }
}
