//! Git on libgit2, in-process: no git CLI. Every function here blocks (the HTTP edge runs them on
//! the blocking pool). Errors come out as the `GIT_*` kinds the SDKs know, and never carry a
//! password.
//!
//! * `remote.rs`: clone, pull (fast-forward or merge), push, credentials and transport options.
//! * `shallow.rs`: shallow clones of `file://` repositories; shallow roots kept across local
//!   fetches.
//! * `status.rs`: status words, ahead/behind, branches, history.
//! * `worktree.rs`: add, commit, branches, checkout, reset, restore, init.
//! * `config.rs`: config at each scope, remotes, the credential store.

mod config;
mod remote;
mod shallow;
mod status;
mod worktree;

use std::path::{Path, PathBuf};

use git2::{ErrorClass, ErrorCode, Repository, RepositoryOpenFlags};

pub use config::{ConfigScope, CredentialStore};
pub use remote::{
    CloneObserver, CloneProgress, CloneReport, CloneRequest, CloneStage, PullRequest, PushRequest,
};
pub use status::{CommitInfo, FileStatus, Status};
pub use worktree::{ResetMode, RestoreRequest};

use crate::error::{Error, ErrorKind, Result};

/// The git capability: where relative paths start and where the global config and the
/// credential store live.
#[derive(Debug, Clone)]
pub struct Git {
    workdir: PathBuf,
    home: PathBuf,
}

/// Username and password for a remote, as a request gives them.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// The user name (some hosts accept anything with a token).
    pub username: Option<String>,
    /// The password or token.
    pub password: Option<String>,
}

impl Git {
    /// The capability for repositories under `workdir`, with global config under `home`.
    /// libgit2 (and OpenSSL under it) is set up on first use, not here: a daemon that never
    /// touches git never pays its memory.
    pub fn new(workdir: PathBuf, home: PathBuf) -> Git {
        Git { workdir, home }
    }

    /// Sets libgit2's global options once, before the first libgit2 call; every entry point
    /// (`open`, `clone_repo`, `init`, config files) calls it first.
    fn libgit2(&self) {
        static OPTIONS: std::sync::Once = std::sync::Once::new();
        OPTIONS.call_once(|| {
            let home = &self.home;
            // libgit2 reads the global config from $HOME unless told; point it at our home so
            // `scope: global` and the config commits use agree.
            // SAFETY: libgit2 requires global options to be set while no other thread uses
            // it; every use goes through an entry point that waits on this `Once` first.
            unsafe {
                let _ = git2::opts::set_search_path(git2::ConfigLevel::Global, home);
                let _ =
                    git2::opts::set_search_path(git2::ConfigLevel::XDG, home.join(".config/git"));
                // The daemon serves repositories that sandbox users made (often as another
                // uid): like the reference daemon, do not refuse them for their owner.
                let _ = git2::opts::set_verify_owner_validation(false);
                // Bound the pack files mapped at once (default: 8 GiB in windows of 1 GiB, so
                // a whole pack stays mapped and every page a checkout touches stays resident):
                // small windows under a small limit keep big clones and status at a steady
                // footprint.
                let _ = git2::opts::set_mwindow_size(4 * 1024 * 1024);
                let _ = git2::opts::set_mwindow_mapped_limit(16 * 1024 * 1024);
            }
        });
    }

    /// `path` made absolute against the work dir. The path is bytes (a query may name a
    /// directory whose name is not UTF-8).
    pub fn resolve(&self, path: impl AsRef<std::ffi::OsStr>) -> Result<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let path = path.as_ref();
        if path.as_bytes().trim_ascii().is_empty() {
            return Err(Error::missing("path"));
        }
        if path.as_bytes().contains(&0) {
            return Err(Error::invalid_path("path contains a NUL byte"));
        }
        Ok(self.workdir.join(path).components().collect())
    }

    /// The repository exactly at `path` (no search upwards: a plain directory inside some other
    /// repository is not a repository).
    pub fn open(&self, path: impl AsRef<std::ffi::OsStr>) -> Result<Repository> {
        self.libgit2();
        let dir = self.resolve(path)?;
        Repository::open_ext(
            &dir,
            RepositoryOpenFlags::NO_SEARCH,
            &[] as &[&std::ffi::OsStr],
        )
        .map_err(|_| {
            Error::new(
                ErrorKind::GitRepoNotFound,
                format!(
                    "repository not found: {} is not a git repository",
                    dir.display()
                ),
            )
        })
    }

    /// The home whose `.gitconfig` and `.git-credentials` are the global ones.
    pub fn home(&self) -> &Path {
        &self.home
    }
}

/// The work tree of `repo`, or a 400 for a bare repository.
fn workdir(repo: &Repository) -> Result<&Path> {
    repo.workdir()
        .ok_or_else(|| Error::bad_request("the repository is bare: it has no work tree"))
}

/// Maps a libgit2 error to our kinds, removing `secrets` from the message.
fn git_error(err: git2::Error, secrets: &[&str]) -> Error {
    let message = redact(err.message(), secrets);
    let kind = match (err.code(), err.class()) {
        (ErrorCode::Auth, _) => ErrorKind::GitAuthFailed,
        (ErrorCode::Certificate, _) => ErrorKind::GitTransportFailed,
        (ErrorCode::NotFastForward, _) => ErrorKind::GitPushRejected,
        (ErrorCode::Conflict, _) | (ErrorCode::Uncommitted, _) | (ErrorCode::Modified, _) => {
            ErrorKind::GitDirtyWorktree
        }
        (ErrorCode::Exists, _) => ErrorKind::Conflict,
        (ErrorCode::InvalidSpec, _) => ErrorKind::BadRequest,
        (ErrorCode::UnbornBranch, _) => ErrorKind::GitBranchNotFound,
        (ErrorCode::NotFound, ErrorClass::Reference) => ErrorKind::GitBranchNotFound,
        (ErrorCode::NotFound, ErrorClass::Repository) => ErrorKind::GitRepoNotFound,
        (ErrorCode::NotFound, _) => ErrorKind::NotFound,
        // A remote URL git cannot use at all is the request's fault, not the network's.
        _ if message.contains("unsupported URL protocol") || message.contains("malformed URL") => {
            ErrorKind::BadRequest
        }
        (_, ErrorClass::Http) | (_, ErrorClass::Net) | (_, ErrorClass::Ssl) => {
            transport_kind(&message)
        }
        (_, ErrorClass::Os) if message.contains("ENOSPC") || message.contains("No space") => {
            ErrorKind::InsufficientStorage
        }
        // Something of the wrong kind in the way (`.git/config` a directory, a file where a
        // directory should be): the request conflicts with what is there.
        _ if message.to_ascii_lowercase().contains("is a directory")
            || message.contains("Not a directory") =>
        {
            ErrorKind::Conflict
        }
        // A repository left damaged (a ref file that is not one, a config git cannot write):
        // what is there is the problem, not the server.
        _ if message.contains("corrupted")
            || message.contains("configuration is read-only")
            || message.contains("failed to parse config file") =>
        {
            ErrorKind::Conflict
        }
        (_, ErrorClass::Os) if message.contains("Permission denied") => ErrorKind::AccessDenied,
        // Another request holds the file (`~/.gitconfig.lock`): try again.
        _ if message.contains("failed to lock file") || message.contains("locked file") => {
            ErrorKind::Conflict
        }
        // A path the index cannot hold (inside a nested `.git`, a repository's own directory).
        _ if message.starts_with("invalid path") => ErrorKind::InvalidPath,
        // git2 refuses a string with a NUL byte before libgit2 sees it.
        _ if message.contains("nul byte") => ErrorKind::BadRequest,
        _ if message.contains("unexpected http status code: 401")
            || message.contains("authentication") =>
        {
            ErrorKind::GitAuthFailed
        }
        // A local remote that is not there (`file://…/missing.git`).
        _ if message.contains("failed to resolve path") => ErrorKind::GitRepoNotFound,
        // Sockets fail with OS-class errors: refused, unreachable, DNS.
        _ if message.contains("failed to connect")
            || message.contains("Connection refused")
            || message.contains("failed to resolve address")
            || message.contains("timed out") =>
        {
            ErrorKind::GitTransportFailed
        }
        _ => ErrorKind::Internal,
    };
    Error::new(kind, message)
}

/// A transport failure by its message: missing repositories and refused credentials come back
/// as HTTP statuses.
fn transport_kind(message: &str) -> ErrorKind {
    if message.contains("401") || message.contains("too many redirects or authentication") {
        ErrorKind::GitAuthFailed
    } else if message.contains("404") || message.contains("not found") {
        ErrorKind::GitRepoNotFound
    } else if message.contains("403") {
        ErrorKind::Forbidden
    } else {
        ErrorKind::GitTransportFailed
    }
}

/// `text` with every secret, and any `user:password@` in a URL, replaced by `***`.
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
        let encoded = percent_encoding::utf8_percent_encode(secret, USERINFO).to_string();
        if encoded != *secret {
            text = text.replace(&encoded, "***");
        }
    }
    // URLs with credentials inside: scheme://user:secret@host.
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) if authority[..at].contains(':') => {
                let user = &authority[..authority[..at].find(':').unwrap_or(0)];
                out.push_str(user);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `url` carries a password in its user info (`scheme://user:password@host/…`).
fn url_has_password(url: &str) -> bool {
    let Some(start) = url.find("://") else {
        return false;
    };
    let rest = &url[start + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => authority[..at]
            .split_once(':')
            .is_some_and(|(_, password)| !password.is_empty()),
        None => false,
    }
}

/// Characters escaped in the user-info part of a URL.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The message of an error of `kind` built with an extra hint.
fn error(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_messages() {
        let text = "failed for https://bob:p%40ss@host/x.git: bad p@ss";
        assert_eq!(
            redact(text, &["p@ss"]),
            "failed for https://bob:***@host/x.git: bad ***"
        );
        assert_eq!(
            redact("see http://u:tok@h/x and ftp://h/y", &[]),
            "see http://u:***@h/x and ftp://h/y"
        );
        assert_eq!(redact("no url here", &["x"]), "no url here");
    }

    #[test]
    fn passwords_in_urls_are_noticed() {
        assert!(url_has_password("https://bob:tok@host/x.git"));
        assert!(url_has_password("http://bob:p@ss@host:8080/x.git"));
        assert!(!url_has_password("https://bob@host/x.git"));
        assert!(!url_has_password("https://bob:@host/x.git"));
        assert!(!url_has_password("https://host/a:b@c"));
        assert!(!url_has_password("file:///srv/x.git"));
    }
}
