//! Language servers: one per (languageId, project root), started on `start`, shared by the REST
//! routes and the relay. `transport` is the JSON-RPC client over the child's stdio, `server` one
//! running server, `project` its documents, diagnostics and relay clients, `relay` one editor on
//! the relay WebSocket.

mod project;
mod relay;
mod server;
pub mod transport;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lsp_types::{
    CompletionContext, CompletionParams, CompletionResponse, DocumentSymbol, DocumentSymbolParams,
    DocumentSymbolResponse, Location, OneOf, Position, Range, SymbolInformation,
    TextDocumentIdentifier, TextDocumentPositionParams, Url, WorkspaceSymbolParams,
    WorkspaceSymbolResponse,
};
use serde_json::Value;
use tokio::sync::mpsc;

use project::{not_initialized, Project};
pub use project::{Published, RelayOut};
pub use relay::Relay;
use transport::{RequestError, METHOD_NOT_FOUND};

use crate::error::{Error, ErrorKind, Result};
use crate::process::Process;

/// How long a REST request may wait for the server.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// The languages toolboxd starts servers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// `python`: pylsp (or basedpyright / pyright).
    Python,
    /// `typescript`: typescript-language-server.
    TypeScript,
    /// `javascript`: typescript-language-server.
    JavaScript,
}

impl Language {
    /// Parses a `languageId`.
    pub fn parse(id: &str) -> Result<Language> {
        match id {
            "python" => Ok(Language::Python),
            "typescript" => Ok(Language::TypeScript),
            "javascript" => Ok(Language::JavaScript),
            "" => Err(Error::missing("languageId")),
            other => Err(Error::bad_request(format!(
                "unsupported languageId {other:?}: use python, typescript or javascript"
            ))),
        }
    }

    /// How to install the default server.
    pub fn install(self) -> &'static str {
        match self {
            Language::Python => "pip install 'python-lsp-server[pyflakes]'",
            Language::TypeScript | Language::JavaScript => {
                "npm i -g typescript@5 typescript-language-server"
            }
        }
    }

    /// The `languageId` it came from.
    pub fn id(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::TypeScript => "typescript",
            Language::JavaScript => "javascript",
        }
    }
}

/// Server commands from the configuration (`None`: the defaults, looked up on PATH).
#[derive(Debug, Clone, Default)]
pub struct Commands {
    /// The Python server command.
    pub python: Option<Vec<String>>,
    /// The TypeScript/JavaScript server command.
    pub typescript: Option<Vec<String>>,
}

/// Parses a configured server command: a JSON array of strings, or words split at whitespace.
pub fn parse_command(text: &str) -> std::result::Result<Vec<String>, String> {
    let trimmed = text.trim();
    let words: Vec<String> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed)
            .map_err(|err| format!("not a JSON array of strings: {err}"))?
    } else {
        trimmed.split_whitespace().map(str::to_string).collect()
    };
    if words.first().is_none_or(|w| w.is_empty()) {
        return Err("the command is empty".to_string());
    }
    Ok(words)
}

/// The LSP capability.
#[derive(Debug, Clone)]
pub struct Lsp {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    process: Process,
    workdir: PathBuf,
    commands: Commands,
    projects: Mutex<HashMap<(Language, PathBuf), Arc<Project>>>,
    next_relay: AtomicU64,
}

impl Lsp {
    /// No servers yet; project paths resolve against `workdir`.
    pub fn new(process: Process, workdir: PathBuf, commands: Commands) -> Lsp {
        Lsp {
            inner: Arc::new(Inner {
                process,
                workdir,
                commands,
                projects: Mutex::new(HashMap::new()),
                next_relay: AtomicU64::new(1),
            }),
        }
    }

    /// The project root `path` names (absolute, or relative to the work dir), lexically
    /// normalized; it must be a directory.
    pub fn root(&self, path: &str) -> Result<PathBuf> {
        if path.is_empty() {
            return Err(Error::missing("pathToProject"));
        }
        if path.contains('\0') {
            return Err(Error::invalid_path("pathToProject contains a NUL byte"));
        }
        let root: PathBuf = normalize(&self.inner.workdir.join(path));
        match std::fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => Ok(root),
            Ok(_) => Err(Error::invalid_path(format!(
                "pathToProject is not a directory: {}",
                root.display()
            ))),
            Err(err) => Err(Error::io("open project", &root, &err)),
        }
    }

    /// The server command for `language`: the configured one, else the first default found on
    /// the PATH children get; none is a 400 that says how to install one.
    fn command(&self, language: Language) -> Result<Vec<String>> {
        let (configured, defaults, install): (_, &[&[&str]], _) = match language {
            Language::Python => (
                &self.inner.commands.python,
                &[
                    &["pylsp"],
                    &["basedpyright-langserver", "--stdio"],
                    &["pyright-langserver", "--stdio"],
                ],
                language.install(),
            ),
            Language::TypeScript | Language::JavaScript => (
                &self.inner.commands.typescript,
                &[&["typescript-language-server", "--stdio"]],
                language.install(),
            ),
        };
        if let Some(command) = configured {
            return Ok(command.clone());
        }
        for candidate in defaults {
            if let Some(path) = self.inner.process.find_program(candidate[0]) {
                let mut command = vec![path.to_string_lossy().into_owned()];
                command.extend(candidate[1..].iter().map(|a| a.to_string()));
                return Ok(command);
            }
        }
        Err(Error::bad_request(format!(
            "no {} language server is installed: `{}` is not on PATH; install it with `{install}`",
            language.id(),
            defaults[0][0],
        )))
    }

    fn project(&self, language: Language, root: &Path) -> Result<Arc<Project>> {
        self.inner
            .projects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(language, root.to_path_buf()))
            .cloned()
            .ok_or_else(|| not_initialized(language.id(), root))
    }

    /// Starts the server for (`language`, `root`) unless it runs already.
    pub async fn start(&self, language: Language, root: &Path) -> Result<()> {
        let key = (language, root.to_path_buf());
        let existing = self
            .inner
            .projects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let project = match existing {
            Some(project) => project,
            None => {
                let lsp = self.clone();
                // Looks at PATH entries on disk: not on an async worker.
                let command = tokio::task::spawn_blocking(move || lsp.command(language))
                    .await
                    .map_err(|err| Error::internal(format!("lookup task failed: {err}")))??;
                let project = Arc::new(Project::new(
                    language.id(),
                    root.to_path_buf(),
                    command,
                    self.inner.process.clone(),
                ));
                self.inner
                    .projects
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key.clone())
                    .or_insert(project)
                    .clone()
            }
        };
        if let Err(mut err) = project.server().await {
            if err.message.ends_with("not found on PATH") {
                err.message = format!("{}; install it with `{}`", err.message, language.install());
            }
            // A failed start leaves nothing behind.
            let mut projects = self
                .inner
                .projects
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if projects.get(&key).is_some_and(|p| Arc::ptr_eq(p, &project)) {
                projects.remove(&key);
            }
            return Err(err);
        }
        Ok(())
    }

    /// Stops the server for (`language`, `root`): shutdown, exit, grace, kill; reaped before
    /// this returns. Stopping one that is not running is not an error.
    pub async fn stop(&self, language: Language, root: &Path) -> Result<()> {
        let project = self
            .inner
            .projects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(language, root.to_path_buf()));
        if let Some(project) = project {
            project.stop().await;
        }
        Ok(())
    }

    /// Stops every server (daemon shutdown).
    pub async fn stop_all(&self) {
        let projects: Vec<Arc<Project>> = self
            .inner
            .projects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for project in projects {
            tasks.spawn(async move { project.stop().await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// The pids of the running servers (for tests and diagnostics).
    pub fn server_pids(&self) -> Vec<i32> {
        self.inner
            .projects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|p| p.current().map(|s| s.pid))
            .collect()
    }

    /// `didOpen` for `uri` with the file's current content (or `didChange` if it was open).
    pub async fn did_open(&self, language: Language, root: &Path, uri: &str) -> Result<()> {
        let project = self.project(language, root)?;
        let path = resolve_document(root, uri).await?;
        let server = project.server().await?;
        project.sync(&server, &path, true).await?;
        Ok(())
    }

    /// `didClose` for `uri`.
    pub async fn did_close(&self, language: Language, root: &Path, uri: &str) -> Result<()> {
        let project = self.project(language, root)?;
        let path = resolve_document(root, uri).await?;
        let server = project.server().await?;
        project.close(&server, &path);
        Ok(())
    }

    /// Completions at `position` in `uri` (the file is synced first).
    pub async fn completions(
        &self,
        language: Language,
        root: &Path,
        uri: &str,
        position: Position,
        context: Option<CompletionContext>,
    ) -> Result<Option<CompletionResponse>> {
        let project = self.project(language, root)?;
        let path = resolve_document(root, uri).await?;
        let server = project.server().await?;
        let uri = project.sync(&server, &path, false).await?;
        let params = CompletionParams {
            text_document_position: TextDocumentPositionParams {
                text_document: TextDocumentIdentifier { uri },
                position,
            },
            work_done_progress_params: Default::default(),
            partial_result_params: Default::default(),
            context,
        };
        let value = request(&server, "textDocument/completion", to_value(&params)).await?;
        parse(&server, "textDocument/completion", value)
    }

    /// The symbols of `uri`, flattened (a hierarchy becomes one entry per symbol).
    pub async fn document_symbols(
        &self,
        language: Language,
        root: &Path,
        uri: &str,
    ) -> Result<Vec<SymbolInformation>> {
        let project = self.project(language, root)?;
        let path = resolve_document(root, uri).await?;
        let server = project.server().await?;
        let uri = project.sync(&server, &path, false).await?;
        let params = DocumentSymbolParams {
            text_document: TextDocumentIdentifier { uri: uri.clone() },
            work_done_progress_params: Default::default(),
            partial_result_params: Default::default(),
        };
        let value = request(&server, "textDocument/documentSymbol", to_value(&params)).await?;
        let response: Option<DocumentSymbolResponse> =
            parse(&server, "textDocument/documentSymbol", value)?;
        Ok(match response {
            None => Vec::new(),
            Some(DocumentSymbolResponse::Flat(symbols)) => symbols,
            Some(DocumentSymbolResponse::Nested(symbols)) => {
                let mut flat = Vec::new();
                flatten(&uri, symbols, None, &mut flat);
                flat
            }
        })
    }

    /// Workspace symbols matching `query`; a server without `workspace/symbol` gives none.
    pub async fn workspace_symbols(
        &self,
        language: Language,
        root: &Path,
        query: &str,
    ) -> Result<Vec<SymbolInformation>> {
        let project = self.project(language, root)?;
        let server = project.server().await?;
        let supported = server
            .init
            .pointer("/capabilities/workspaceSymbolProvider")
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false));
        if !supported {
            return Ok(Vec::new());
        }
        project.sync_all(&server).await;
        let params = WorkspaceSymbolParams {
            query: query.to_string(),
            work_done_progress_params: Default::default(),
            partial_result_params: Default::default(),
        };
        let value = match server
            .conn
            .request("workspace/symbol", to_value(&params), REQUEST_DEADLINE)
            .await
        {
            Ok(value) => value,
            Err(RequestError::Rpc(rpc)) if rpc.code == METHOD_NOT_FOUND => return Ok(Vec::new()),
            Err(err) => return Err(server.failure("workspace/symbol", &err)),
        };
        let response: Option<WorkspaceSymbolResponse> = parse(&server, "workspace/symbol", value)?;
        #[allow(deprecated)]
        Ok(match response {
            None => Vec::new(),
            Some(WorkspaceSymbolResponse::Flat(symbols)) => symbols,
            Some(WorkspaceSymbolResponse::Nested(symbols)) => symbols
                .into_iter()
                .map(|symbol| SymbolInformation {
                    name: symbol.name,
                    kind: symbol.kind,
                    tags: symbol.tags,
                    deprecated: None,
                    location: match symbol.location {
                        OneOf::Left(location) => location,
                        OneOf::Right(location) => Location {
                            uri: location.uri,
                            range: Range::default(),
                        },
                    },
                    container_name: symbol.container_name,
                })
                .collect(),
        })
    }

    /// The latest diagnostics for `uri` (opened if it was not), waiting up to `wait` for ones
    /// published after its last open or change.
    pub async fn diagnostics(
        &self,
        language: Language,
        root: &Path,
        uri: &str,
        wait: Duration,
    ) -> Result<(Url, Option<Published>)> {
        let project = self.project(language, root)?;
        let path = resolve_document(root, uri).await?;
        let server = project.server().await?;
        let uri = project.sync(&server, &path, false).await?;
        Ok((uri, project.diagnostics(&path, wait).await))
    }

    /// A relay client on (`language`, `root`); the server is started if it is not running.
    pub async fn relay(
        &self,
        language: Language,
        root: &Path,
    ) -> Result<(Relay, mpsc::UnboundedReceiver<RelayOut>)> {
        self.start(language, root).await?;
        let project = self.project(language, root)?;
        let server = project.server().await?;
        let id = self.inner.next_relay.fetch_add(1, Ordering::SeqCst);
        Ok(Relay::new(id, project, server))
    }
}

async fn request(server: &server::Server, method: &str, params: Value) -> Result<Value> {
    server
        .conn
        .request(method, params, REQUEST_DEADLINE)
        .await
        .map_err(|err| server.failure(method, &err))
}

fn to_value<T: serde::Serialize>(params: &T) -> Value {
    serde_json::to_value(params).unwrap_or(Value::Null)
}

fn parse<T: serde::de::DeserializeOwned>(
    server: &server::Server,
    method: &str,
    value: Value,
) -> Result<T> {
    serde_json::from_value(value).map_err(|err| {
        Error::new(
            ErrorKind::LspServerFailed,
            format!(
                "the language server `{}` answered {method} with something that is not LSP: {err}",
                server.program
            ),
        )
    })
}

#[allow(deprecated)]
fn flatten(
    uri: &Url,
    symbols: Vec<DocumentSymbol>,
    container: Option<&str>,
    out: &mut Vec<SymbolInformation>,
) {
    for symbol in symbols {
        out.push(SymbolInformation {
            name: symbol.name.clone(),
            kind: symbol.kind,
            tags: symbol.tags.clone(),
            deprecated: None,
            location: Location {
                uri: uri.clone(),
                range: symbol.range,
            },
            container_name: container.map(str::to_string),
        });
        if let Some(children) = symbol.children {
            flatten(uri, children, Some(&symbol.name), out);
        }
    }
}

/// `document_path` on a blocking thread (it may stat the file).
async fn resolve_document(root: &Path, uri: &str) -> Result<PathBuf> {
    let (root, uri) = (root.to_path_buf(), uri.to_string());
    tokio::task::spawn_blocking(move || document_path(&root, &uri))
        .await
        .map_err(|err| Error::internal(format!("path task failed: {err}")))?
}

/// The file a request's `uri` names. The SDKs send `"file://" + path` with the path as the user
/// gave it: absolute, or relative to the project. A URI that is properly percent-encoded works
/// too (the literal path is tried first).
pub fn document_path(root: &Path, uri: &str) -> Result<PathBuf> {
    if uri.is_empty() {
        return Err(Error::missing("uri"));
    }
    if uri.contains('\0') {
        return Err(Error::invalid_path("uri contains a NUL byte"));
    }
    let raw = uri.strip_prefix("file://").unwrap_or(uri);
    if raw.is_empty() {
        return Err(Error::invalid_path(format!("uri {uri:?} names no file")));
    }
    let literal = normalize(&root.join(raw));
    if literal.exists() || !raw.contains('%') {
        return Ok(literal);
    }
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    Ok(normalize(&root.join(decoded.as_ref())))
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A position, for callers that build one from the wire.
pub fn position(line: u32, character: u32) -> Position {
    Position { line, character }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_uris_resolve_absolute_and_relative() {
        let root = Path::new("/proj");
        assert_eq!(
            document_path(root, "file:///abs/a.py").unwrap(),
            PathBuf::from("/abs/a.py")
        );
        assert_eq!(
            document_path(root, "file://src/a.py").unwrap(),
            PathBuf::from("/proj/src/a.py")
        );
        assert_eq!(
            document_path(root, "file:///proj/x/../a b.py").unwrap(),
            PathBuf::from("/proj/a b.py")
        );
        assert_eq!(
            document_path(root, "file:///nowhere/a%20b.py").unwrap(),
            PathBuf::from("/nowhere/a b.py")
        );
        assert!(document_path(root, "").is_err());
        assert!(document_path(root, "file://").is_err());
    }

    #[test]
    fn commands_parse_as_words_or_json() {
        assert_eq!(
            parse_command("pyright-langserver --stdio").unwrap(),
            vec!["pyright-langserver", "--stdio"]
        );
        assert_eq!(
            parse_command(r#"["/opt/my server", "--stdio"]"#).unwrap(),
            vec!["/opt/my server", "--stdio"]
        );
        assert!(parse_command("  ").is_err());
        assert!(parse_command("[1]").is_err());
    }
}
