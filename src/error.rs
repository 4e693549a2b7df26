//! The one error type of toolboxd: a kind (which decides status and wire code) plus a message a
//! person can act on. Only `http::error` turns it into a wire body.

use std::io;
use std::path::Path;

/// Result alias used by every capability.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in the terms the Daytona SDKs map to typed errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A generic bad input (`BAD_REQUEST`, 400).
    BadRequest,
    /// A JSON body that does not parse or misses a field (`INVALID_REQUEST_BODY`, 400).
    InvalidBody,
    /// A path that is empty, malformed or of the wrong type (`INVALID_FILE_PATH`, 400).
    InvalidPath,
    /// A file or directory that does not exist (`FILE_NOT_FOUND`, 404).
    FileNotFound,
    /// Anything else that does not exist, routes included (`NOT_FOUND`, 404).
    NotFound,
    /// Missing or wrong credentials, e.g. a bad URL signature (`UNAUTHORIZED`, 401).
    Unauthorized,
    /// The request may not do this at all, e.g. from a foreign web origin (`FORBIDDEN`, 403).
    Forbidden,
    /// The OS refused access (`FILE_ACCESS_DENIED`, 403).
    AccessDenied,
    /// A command ran past its timeout and was killed (`PROCESS_EXECUTION_TIMEOUT`, 408).
    Timeout,
    /// The target already exists (`CONFLICT`, 409).
    Conflict,
    /// The target existed but has ended, e.g. input to a completed command
    /// (`COMMAND_ALREADY_COMPLETED`, 410).
    Gone,
    /// The target existed and has ended, e.g. a PTY whose shell exited (`GONE`, 410; the SDKs'
    /// `DaytonaGoneError`).
    Ended,
    /// The route exists but not for this method (`METHOD_NOT_ALLOWED`, 405).
    MethodNotAllowed,
    /// A request body past the size toolboxd buffers, e.g. a JSON body over its limit
    /// (`PAYLOAD_TOO_LARGE`, 413).
    PayloadTooLarge,
    /// A request URI past the HTTP parser's limit (`URI_TOO_LONG`, 414).
    UriTooLong,
    /// A range that lies outside the file (`RANGE_NOT_SATISFIABLE`, 416).
    RangeNotSatisfiable,
    /// A request head with too many or too large header fields
    /// (`REQUEST_HEADER_FIELDS_TOO_LARGE`, 431).
    HeadersTooLarge,
    /// The disk is full (`INSUFFICIENT_STORAGE`, 507).
    InsufficientStorage,
    /// A child cannot start for lack of processes, memory or descriptors; retrying later may
    /// work (`SERVICE_UNAVAILABLE`, 503).
    Unavailable,
    /// toolboxd is shutting down: the request's process was stopped, or no new one starts
    /// (`SHUTTING_DOWN`, 503).
    ShuttingDown,
    /// A file could not be read part way (`FILE_READ_FAILED`, 500).
    ReadFailed,
    /// A bug or an unexpected OS failure (`INTERNAL_SERVER_ERROR`, 500).
    Internal,
    /// An LSP request for a server that was not started (`LSP_SERVER_NOT_INITIALIZED`, 400).
    LspServerNotInitialized,
    /// A language server that exited or answered with an error (`LSP_SERVER_FAILED`, 502).
    LspServerFailed,
    /// Something toolboxd waited on did not answer in time, e.g. a language server
    /// (`REQUEST_TIMEOUT`, 408).
    RequestTimeout,
    /// A request that cannot be answered in any form the client accepts, e.g. `/mcp` without
    /// `Accept: text/event-stream` (`NOT_ACCEPTABLE`, 406).
    NotAcceptable,
    /// A request body of a content type the route does not take (`UNSUPPORTED_MEDIA_TYPE`, 415).
    UnsupportedMediaType,
    /// The client cancelled the request and toolboxd stopped what it started for it, e.g. an MCP
    /// `notifications/cancelled` (`CANCELLED`, 499 as nginx's "client closed request"). Only
    /// callers that pass a cancellation token ever get it.
    Cancelled,
    /// A git remote refused the credentials, or wants some (`GIT_AUTH_FAILED`, 401).
    GitAuthFailed,
    /// No repository at the path, or the remote has none (`GIT_REPO_NOT_FOUND`, 404).
    GitRepoNotFound,
    /// A branch or revision that does not exist (`GIT_BRANCH_NOT_FOUND`, 404).
    GitBranchNotFound,
    /// The branch exists already (`GIT_BRANCH_EXISTS`, 409).
    GitBranchExists,
    /// A push that is not a fast-forward (`GIT_PUSH_REJECTED`, 409).
    GitPushRejected,
    /// The remote refused a ref update, e.g. a hook (`GIT_REMOTE_REJECTED`, 422, as the SDKs'
    /// `DaytonaGitRemoteRejectedError` is an unprocessable-entity error).
    GitRemoteRejected,
    /// Local changes would be overwritten (`GIT_DIRTY_WORKTREE`, 409).
    GitDirtyWorktree,
    /// A merge with conflicts; nothing was changed (`GIT_MERGE_CONFLICT`, 409).
    GitMergeConflict,
    /// The remote could not be reached or spoke nonsense (`GIT_TRANSPORT_FAILED`, 502).
    GitTransportFailed,
    /// The preview proxy's upstream: nothing listens on the port, or it failed before answering
    /// (`BAD_GATEWAY`, 502).
    BadGateway,
}

impl ErrorKind {
    /// The HTTP status for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::InvalidBody
            | ErrorKind::InvalidPath
            | ErrorKind::LspServerNotInitialized => 400,
            ErrorKind::Unauthorized | ErrorKind::GitAuthFailed => 401,
            ErrorKind::AccessDenied | ErrorKind::Forbidden => 403,
            ErrorKind::FileNotFound
            | ErrorKind::NotFound
            | ErrorKind::GitRepoNotFound
            | ErrorKind::GitBranchNotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::NotAcceptable => 406,
            ErrorKind::Timeout | ErrorKind::RequestTimeout => 408,
            ErrorKind::Conflict
            | ErrorKind::GitBranchExists
            | ErrorKind::GitPushRejected
            | ErrorKind::GitDirtyWorktree
            | ErrorKind::GitMergeConflict => 409,
            ErrorKind::Gone | ErrorKind::Ended => 410,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::RangeNotSatisfiable => 416,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::GitRemoteRejected => 422,
            ErrorKind::Cancelled => 499,
            ErrorKind::ReadFailed | ErrorKind::Internal => 500,
            ErrorKind::GitTransportFailed | ErrorKind::LspServerFailed | ErrorKind::BadGateway => {
                502
            }
            ErrorKind::Unavailable | ErrorKind::ShuttingDown => 503,
            ErrorKind::InsufficientStorage => 507,
        }
    }

    /// The `code` field of the wire body (Daytona's `DaemonErrorCode` where one exists).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "BAD_REQUEST",
            ErrorKind::InvalidBody => "INVALID_REQUEST_BODY",
            ErrorKind::InvalidPath => "INVALID_FILE_PATH",
            ErrorKind::FileNotFound => "FILE_NOT_FOUND",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::Unauthorized => "UNAUTHORIZED",
            ErrorKind::AccessDenied => "FILE_ACCESS_DENIED",
            ErrorKind::Forbidden => "FORBIDDEN",
            ErrorKind::Timeout => "PROCESS_EXECUTION_TIMEOUT",
            ErrorKind::Conflict => "CONFLICT",
            ErrorKind::Gone => "COMMAND_ALREADY_COMPLETED",
            ErrorKind::Ended => "GONE",
            ErrorKind::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorKind::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorKind::UriTooLong => "URI_TOO_LONG",
            ErrorKind::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            ErrorKind::HeadersTooLarge => "REQUEST_HEADER_FIELDS_TOO_LARGE",
            ErrorKind::InsufficientStorage => "INSUFFICIENT_STORAGE",
            ErrorKind::Unavailable => "SERVICE_UNAVAILABLE",
            ErrorKind::ShuttingDown => "SHUTTING_DOWN",
            ErrorKind::ReadFailed => "FILE_READ_FAILED",
            ErrorKind::Internal => "INTERNAL_SERVER_ERROR",
            ErrorKind::LspServerNotInitialized => "LSP_SERVER_NOT_INITIALIZED",
            ErrorKind::LspServerFailed => "LSP_SERVER_FAILED",
            ErrorKind::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorKind::NotAcceptable => "NOT_ACCEPTABLE",
            ErrorKind::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorKind::Cancelled => "CANCELLED",
            ErrorKind::GitAuthFailed => "GIT_AUTH_FAILED",
            ErrorKind::GitRepoNotFound => "GIT_REPO_NOT_FOUND",
            ErrorKind::GitBranchNotFound => "GIT_BRANCH_NOT_FOUND",
            ErrorKind::GitBranchExists => "GIT_BRANCH_EXISTS",
            ErrorKind::GitPushRejected => "GIT_PUSH_REJECTED",
            ErrorKind::GitRemoteRejected => "GIT_REMOTE_REJECTED",
            ErrorKind::GitDirtyWorktree => "GIT_DIRTY_WORKTREE",
            ErrorKind::GitMergeConflict => "GIT_MERGE_CONFLICT",
            ErrorKind::GitTransportFailed => "GIT_TRANSPORT_FAILED",
            ErrorKind::BadGateway => "BAD_GATEWAY",
        }
    }
}

/// An error with its kind and a human message (lowercase, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Decides the status and the wire code.
    pub kind: ErrorKind,
    /// What a person reads.
    pub message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// A generic bad input.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadRequest, message)
    }

    /// A body that cannot be used.
    pub fn invalid_body(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidBody, message)
    }

    /// A path that cannot be used.
    pub fn invalid_path(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidPath, message)
    }

    /// Something other than a file is missing.
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    /// The target already exists.
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict, message)
    }

    /// An unexpected failure.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// A required query parameter or field that is missing or empty.
    pub fn missing(name: &str) -> Error {
        Error::bad_request(format!("missing required parameter `{name}`"))
    }

    /// Classifies an OS error met while doing `action` on `path`.
    pub fn io(action: &str, path: &Path, err: &io::Error) -> Error {
        let shown = path.display();
        let kind = io_kind(err);
        let message = match kind {
            ErrorKind::FileNotFound => format!("file not found: {shown}"),
            ErrorKind::AccessDenied => format!("permission denied: {action} {shown}"),
            ErrorKind::Conflict if err.raw_os_error() == Some(libc::EEXIST) => {
                format!("already exists: {shown}")
            }
            ErrorKind::InsufficientStorage => format!("no space left on device: {action} {shown}"),
            _ => format!("{action} {shown}: {}", plain_io_message(err)),
        };
        Error::new(kind, message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Which kind an OS error is.
pub fn io_kind(err: &io::Error) -> ErrorKind {
    match err.raw_os_error() {
        Some(libc::ENOENT) => return ErrorKind::FileNotFound,
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
            return ErrorKind::AccessDenied
        }
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) | Some(libc::EBUSY) | Some(libc::ETXTBSY) => {
            return ErrorKind::Conflict
        }
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => return ErrorKind::InsufficientStorage,
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOMEM) => {
            return ErrorKind::Unavailable
        }
        Some(libc::ENOTDIR)
        | Some(libc::EISDIR)
        | Some(libc::ENAMETOOLONG)
        | Some(libc::ELOOP)
        | Some(libc::EINVAL) => return ErrorKind::InvalidPath,
        _ => {}
    }
    match err.kind() {
        io::ErrorKind::NotFound => ErrorKind::FileNotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::AccessDenied,
        io::ErrorKind::AlreadyExists => ErrorKind::Conflict,
        // Wrappers such as tempfile's keep the kind but hide the errno.
        io::ErrorKind::ReadOnlyFilesystem => ErrorKind::AccessDenied,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::InsufficientStorage,
        io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::InvalidFilename => ErrorKind::InvalidPath,
        io::ErrorKind::DirectoryNotEmpty => ErrorKind::Conflict,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => ErrorKind::BadRequest,
        _ => ErrorKind::Internal,
    }
}

/// The OS message without Rust's " (os error N)" suffix, lowercased like the rest of our messages.
pub fn plain_io_message(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(idx) => text[..idx].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_wire_kinds() {
        let path = Path::new("/x");
        let enoent = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            Error::io("open", path, &enoent).kind,
            ErrorKind::FileNotFound
        );
        assert_eq!(
            Error::io("open", path, &enoent).message,
            "file not found: /x"
        );
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(Error::io("write", path, &enospc).kind.status(), 507);
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            Error::io("open", path, &eacces).kind.code(),
            "FILE_ACCESS_DENIED"
        );
        let wrapped = io::Error::new(io::ErrorKind::ReadOnlyFilesystem, "wrapped");
        assert_eq!(
            Error::io("create", path, &wrapped).kind,
            ErrorKind::AccessDenied
        );
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(
            Error::io("read", path, &eio).message,
            "read /x: input/output error"
        );
    }
}
