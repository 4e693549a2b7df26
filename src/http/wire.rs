//! Daytona's wire formats that come from Go: `FileMode.String()`, `time.Time.String()`,
//! RFC 3339 with trimmed nanoseconds, and the Content-Disposition of downloads.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Go's `FileMode.String()` for a Unix `st_mode`: type letters (`d`, `L`, `p`, `S`, `D`, `c`,
/// `u`, `g`, `t`) or `-`, then `rwxrwxrwx`.
pub fn go_mode_string(mode: u32) -> String {
    let file_type = mode & libc::S_IFMT;
    let mut out = String::new();
    if file_type == libc::S_IFDIR {
        out.push('d');
    }
    if file_type == libc::S_IFLNK {
        out.push('L');
    }
    if file_type == libc::S_IFBLK || file_type == libc::S_IFCHR {
        out.push('D');
    }
    if file_type == libc::S_IFIFO {
        out.push('p');
    }
    if file_type == libc::S_IFSOCK {
        out.push('S');
    }
    if mode & libc::S_ISUID != 0 {
        out.push('u');
    }
    if mode & libc::S_ISGID != 0 {
        out.push('g');
    }
    if file_type == libc::S_IFCHR {
        out.push('c');
    }
    if mode & libc::S_ISVTX != 0 {
        out.push('t');
    }
    if out.is_empty() {
        out.push('-');
    }
    for (idx, letter) in "rwxrwxrwx".chars().enumerate() {
        let bit = 1 << (8 - idx);
        out.push(if mode & bit != 0 { letter } else { '-' });
    }
    out
}

/// `%04o` of the permission bits (Go's `Perm()`), e.g. `0644`.
pub fn permissions_string(mode: u32) -> String {
    format!("{:04o}", mode & 0o777)
}

/// Go's `time.Time.String()` in UTC: `2026-06-23 15:33:38.123 +0000 UTC`.
pub fn go_time_string(time: SystemTime) -> String {
    let time = utc(time);
    format!(
        "{}{} +0000 UTC",
        time.format("%Y-%m-%d %H:%M:%S"),
        trimmed_fraction(time.timestamp_subsec_nanos())
    )
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed (Go's `RFC3339Nano`), in UTC.
pub fn rfc3339_nano(time: SystemTime) -> String {
    let time = utc(time);
    format!(
        "{}{}Z",
        time.format("%Y-%m-%dT%H:%M:%S"),
        trimmed_fraction(time.timestamp_subsec_nanos())
    )
}

/// `time` in UTC, clamped to what chrono can represent (a file may claim any mtime; a bogus
/// one must not fail the listing it appears in).
fn utc(time: SystemTime) -> DateTime<Utc> {
    let (secs, nanos) = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => (
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            after.subsec_nanos(),
        ),
        Err(before) => {
            let before = before.duration();
            let secs = -i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (secs, 0),
                nanos => (secs - 1, 1_000_000_000 - nanos),
            }
        }
    };
    DateTime::from_timestamp(secs, nanos).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

fn trimmed_fraction(nanos: u32) -> String {
    if nanos == 0 {
        return String::new();
    }
    let digits = format!("{nanos:09}");
    format!(".{}", digits.trim_end_matches('0'))
}

/// Characters RFC 5987 lets through unescaped (`attr-char`).
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `filename="<latin-1 safe>"; filename*=utf-8''<pct>` for a name.
pub fn disposition_filenames(name: &str) -> String {
    format!(
        "filename=\"{}\"; filename*=utf-8''{}",
        latin1_quoted(name),
        utf8_percent_encode(name, ATTR_CHAR_ESCAPES)
    )
}

/// Bytes a `rawPath` keeps as they are: RFC 3986's unreserved characters and `/`.
const RAW_PATH_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// For a path that is not valid UTF-8 (so its JSON `path` had bytes replaced by U+FFFD), its
/// bytes percent-encoded, ready to be put in a query as they are (`?path=<rawPath>`); `None` for
/// every other path.
pub fn raw_path(path: &std::path::Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    if path.to_str().is_some() {
        return None;
    }
    Some(
        percent_encoding::percent_encode(path.as_os_str().as_bytes(), RAW_PATH_ESCAPES).to_string(),
    )
}

/// The quoted-string form: `\` and `"` escaped, CR/LF/NUL dropped, other control characters and
/// anything outside Latin-1 replaced by `_`. The result is pure ASCII so it is a valid header.
fn latin1_quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars() {
        match ch {
            '\r' | '\n' | '\0' => {}
            '\\' | '"' => {
                out.push('\\');
                out.push(ch);
            }
            ch if (ch as u32) < 0x20 || ch as u32 == 0x7f || (ch as u32) > 0x7e => out.push('_'),
            ch => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn modes_read_like_go() {
        assert_eq!(go_mode_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(go_mode_string(libc::S_IFDIR | 0o750), "drwxr-x---");
        assert_eq!(go_mode_string(libc::S_IFLNK | 0o777), "Lrwxrwxrwx");
        assert_eq!(
            go_mode_string(libc::S_IFREG | libc::S_ISUID | 0o755),
            "urwxr-xr-x"
        );
        assert_eq!(
            go_mode_string(libc::S_IFDIR | libc::S_ISVTX | 0o777),
            "dtrwxrwxrwx"
        );
        assert_eq!(go_mode_string(libc::S_IFCHR | 0o666), "Dcrw-rw-rw-");
        assert_eq!(
            permissions_string(libc::S_IFREG | libc::S_ISUID | 0o755),
            "0755"
        );
    }

    #[test]
    fn times_read_like_go() {
        let time = SystemTime::UNIX_EPOCH + Duration::new(1_782_228_818, 123_000_000);
        assert_eq!(go_time_string(time), "2026-06-23 15:33:38.123 +0000 UTC");
        assert_eq!(rfc3339_nano(time), "2026-06-23T15:33:38.123Z");
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_782_228_818);
        assert_eq!(rfc3339_nano(whole), "2026-06-23T15:33:38Z");
        let before = SystemTime::UNIX_EPOCH - Duration::new(1, 500_000_000);
        assert_eq!(rfc3339_nano(before), "1969-12-31T23:59:58.5Z");
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000_000_000_000);
        assert!(go_time_string(far).ends_with(" +0000 UTC"));
    }

    #[test]
    fn dispositions_carry_both_forms() {
        assert_eq!(
            disposition_filenames("/tmp/a b\"é.txt"),
            "filename=\"/tmp/a b\\\"_.txt\"; filename*=utf-8''%2Ftmp%2Fa%20b%22%C3%A9.txt"
        );
    }

    #[test]
    fn raw_paths_only_for_names_that_are_not_utf8() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(raw_path(std::path::Path::new("/w/é a.txt")), None);
        let bad = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/w/bad\xff\xfe a+b.txt"));
        assert_eq!(raw_path(bad).as_deref(), Some("/w/bad%FF%FE%20a%2Bb.txt"));
    }
}
