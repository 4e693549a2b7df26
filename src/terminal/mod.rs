//! The web terminal (`--terminal-addr`, :22222): a full-window xterm.js page and, per socket, a
//! login shell on an unlisted PTY (`crate::pty`) in the work dir with `TERM=xterm-256color`,
//! hung up when the socket closes.
//!
//! Everything the page loads is embedded: `page/` is ours, `assets/` holds the pinned npm
//! packages (`@xterm/xterm`, `@xterm/addon-fit`, `@xterm/addon-web-links`,
//! `@xterm/addon-unicode11`) as `packaging/refresh-terminal-assets.sh` copies them. The page uses
//! relative URLs only, so it works at `/` and under any prefix (`/proxy/22222/`).
//!
//! The socket: output as binary frames; a text frame that is a JSON object with exactly the
//! numeric fields `rows` and `cols` is a resize, and every other frame is typed (the page sends
//! keystrokes as binary frames, so nothing the user types or pastes is ever taken for a resize).

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::pty::{Attachment, Pty, PtyOptions, Ptys, MAX_SIZE};

/// How long a hung-up shell's tree gets before SIGKILL when its socket closes.
pub const HANG_UP_GRACE: Duration = Duration::from_secs(2);

/// One file the page loads.
#[derive(Debug)]
pub struct Asset {
    /// Its path under the page's directory (`""` for the page itself).
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: [Asset; 7] = [
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("page/index.html"),
    },
    Asset {
        path: "terminal.js",
        content_type: JS,
        body: include_bytes!("page/terminal.js"),
    },
    Asset {
        path: "assets/xterm.js",
        content_type: JS,
        body: include_bytes!("assets/xterm.js"),
    },
    Asset {
        path: "assets/xterm.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/xterm.css"),
    },
    Asset {
        path: "assets/addon-fit.js",
        content_type: JS,
        body: include_bytes!("assets/addon-fit.js"),
    },
    Asset {
        path: "assets/addon-web-links.js",
        content_type: JS,
        body: include_bytes!("assets/addon-web-links.js"),
    },
    Asset {
        path: "assets/addon-unicode11.js",
        content_type: JS,
        body: include_bytes!("assets/addon-unicode11.js"),
    },
];

/// The file at `path` (without the leading `/`; `""` is the page).
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// Every embedded file.
pub fn assets() -> &'static [Asset] {
    &ASSETS
}

/// What a text frame from the page means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A new size, clamped to 1–`MAX_SIZE`.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Anything else: typed as it is.
    Input,
}

/// A JSON object with exactly the numeric fields `rows` and `cols` is a resize; anything else
/// (other fields, strings, `{}`, `null`, text) is input.
pub fn classify(text: &str) -> Frame {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Frame::Input;
    };
    if fields.len() != 2 {
        return Frame::Input;
    }
    let size = |name: &str| {
        let value = fields.get(name)?.as_f64()?;
        Some(value.clamp(1.0, f64::from(MAX_SIZE)) as u16)
    };
    match (size("cols"), size("rows")) {
        (Some(cols), Some(rows)) => Frame::Resize { cols, rows },
        _ => Frame::Input,
    }
}

/// A terminal connection's shell.
#[derive(Debug)]
pub struct Session {
    /// The PTY (unlisted).
    pub pty: Arc<Pty>,
    /// Its output and input.
    pub attachment: Attachment,
}

/// Starts a login shell in the work dir for a new connection. Blocking (it spawns).
pub fn open(ptys: &Ptys, cols: Option<u16>, rows: Option<u16>) -> Result<Session> {
    let clamp = |value: Option<u16>| value.map(|v| v.clamp(1, MAX_SIZE));
    let (pty, attachment) = ptys.open_unlisted(PtyOptions {
        cols: clamp(cols),
        rows: clamp(rows),
        ..PtyOptions::default()
    })?;
    Ok(Session { pty, attachment })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exactly_rows_and_cols_numbers_resize() {
        assert_eq!(
            classify(r#"{"rows":30,"cols":100}"#),
            Frame::Resize {
                cols: 100,
                rows: 30
            }
        );
        assert_eq!(
            classify(r#" {"cols": 5000, "rows": 0} "#),
            Frame::Resize {
                cols: MAX_SIZE,
                rows: 1
            }
        );
        for typed in [
            r#"{"rows":30,"cols":100,"x":1}"#,
            r#"{"rows":"30","cols":100}"#,
            r#"{"rows":30}"#,
            r#"{}"#,
            "null",
            r#"[30,100]"#,
            "ls -la\r",
            r#"{"rows":30,"cols":null}"#,
        ] {
            assert_eq!(classify(typed), Frame::Input, "{typed}");
        }
    }

    #[test]
    fn every_asset_is_embedded_and_relative() {
        for asset in assets() {
            assert!(!asset.body.is_empty(), "{}", asset.path);
            assert!(!asset.path.starts_with('/'));
        }
        let page = std::str::from_utf8(asset("").unwrap().body).unwrap();
        for reference in ["assets/xterm.js", "assets/addon-fit.js", "terminal.js"] {
            assert!(page.contains(&format!("\"{reference}\"")), "{reference}");
            assert!(asset(reference).is_some(), "{reference}");
        }
        assert!(!page.contains("src=\"/") && !page.contains("href=\"/") && !page.contains("http"));
    }
}
