//! Fixtures for the git tests: a git CLI isolated from the user's config, seeded bare remotes, a
//! daemon whose PATH has no git, and a smart-HTTP remote on loopback (`git http-backend` as CGI
//! behind Basic auth) for the authenticated cases, TLS in front of it (a self-signed certificate,
//! `openssl` CLI + a Python `ssl` pipe), and a recording forward proxy.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::*;

/// The user the HTTP remote accepts.
pub(crate) const USER: &str = "alice";
/// Its password.
pub(crate) const PASSWORD: &str = "s3cret-pw";

/// A temp root holding an isolated HOME for the git CLI, a `bin` dir without git (the daemon's
/// PATH), and the served repositories (`srv/`).
pub(crate) struct Fixtures {
    dir: tempfile::TempDir,
    /// Seconds added to the fixture commits' dates, so they are ordered and in the past.
    clock: Cell<u64>,
    base_time: u64,
}

/// A bare repository with history, and the working repository that seeded it (its `origin`).
///
/// main: `c1` (README.md, a.txt … d.txt) ← `c2` (a.txt changed, notes.txt added).
/// feature: `c2` ← `feature` (feature.txt added, README.md changed).
pub(crate) struct Remote {
    /// The bare repository.
    pub(crate) bare: PathBuf,
    /// A working clone that pushes to `bare` (stands for another user).
    pub(crate) seed: PathBuf,
    pub(crate) c1: String,
    pub(crate) c2: String,
    pub(crate) feature: String,
}

impl Remote {
    /// The `file://` URL of the bare repository.
    pub(crate) fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// The repository's name under `srv/` (its path on the HTTP remote).
    pub(crate) fn name(&self) -> String {
        self.bare.file_name().unwrap().to_str().unwrap().to_string()
    }
}

/// The git CLI's README.md of `c1`.
pub(crate) const README: &str = "# demo\n";
/// d.txt: long enough for rename detection.
pub(crate) const DELTA: &str = "delta 1\ndelta 2\ndelta 3\ndelta 4\ndelta 5\ndelta 6\n";

impl Fixtures {
    pub(crate) fn new() -> Fixtures {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home", "bin", "srv"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        for shell in ["bash", "sh"] {
            let real = which(shell);
            std::os::unix::fs::symlink(real, dir.path().join("bin").join(shell)).unwrap();
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Fixtures {
            dir,
            clock: Cell::new(0),
            base_time: now - 86_400,
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The git CLI's HOME (empty: no user config).
    pub(crate) fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// A directory with bash and sh only: the daemon's PATH.
    pub(crate) fn bin(&self) -> PathBuf {
        self.root().join("bin")
    }

    /// Served repositories (GIT_PROJECT_ROOT of the HTTP remote).
    pub(crate) fn srv(&self) -> PathBuf {
        self.root().join("srv")
    }

    /// A `git` command in `dir`, isolated from the user's and the system's config.
    pub(crate) fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LANG", "C")
            .env("GIT_AUTHOR_NAME", "Fixture Author")
            .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
            .env("GIT_COMMITTER_NAME", "Fixture Committer")
            .env("GIT_COMMITTER_EMAIL", "committer@example.com")
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "advice.detachedHead=false",
            ])
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs git; returns its output whatever the exit status.
    pub(crate) fn git_output(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(dir, args).output().expect("run git")
    }

    /// Runs git, which must succeed; returns stdout without the trailing newline.
    pub(crate) fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git_output(dir, args);
        assert!(
            out.status.success(),
            "git {args:?} in {} failed: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end_matches('\n')
            .to_string()
    }

    /// `git` output split into lines.
    pub(crate) fn lines(&self, dir: &Path, args: &[&str]) -> Vec<String> {
        let out = self.git(dir, args);
        out.lines().map(str::to_string).collect()
    }

    /// Writes `files`, stages and commits them (ordered, past dates); returns the new HEAD.
    pub(crate) fn commit(&self, dir: &Path, files: &[(&str, &str)], message: &str) -> String {
        for (name, content) in files {
            write(&dir.join(name), content);
            self.git(dir, &["add", "--", name]);
        }
        let tick = self.clock.get() + 1;
        self.clock.set(tick);
        let date = format!("@{} +0000", self.base_time + tick * 60);
        let out = self
            .command(dir, &["commit", "-q", "--allow-empty", "-m", message])
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.git(dir, &["rev-parse", "HEAD"])
    }

    /// A bare repository `srv/NAME.git` with the history described on `Remote`, served over
    /// HTTP too (receive-pack enabled).
    pub(crate) fn remote(&self, name: &str) -> Remote {
        let seed = self.root().join(format!("{name}-seed"));
        let bare = self.srv().join(format!("{name}.git"));
        self.git(
            self.root(),
            &["init", "-q", "-b", "main", seed.to_str().unwrap()],
        );
        let c1 = self.commit(
            &seed,
            &[
                ("README.md", README),
                ("a.txt", "a\n"),
                ("b.txt", "b\n"),
                ("c.txt", "c\n"),
                ("d.txt", DELTA),
            ],
            "first commit",
        );
        let c2 = self.commit(
            &seed,
            &[("a.txt", "a\nmore a\n"), ("notes.txt", "notes\n")],
            "second commit",
        );
        self.git(&seed, &["checkout", "-q", "-b", "feature"]);
        let feature = self.commit(
            &seed,
            &[
                ("feature.txt", "feature\n"),
                ("README.md", "# demo (feature)\n"),
            ],
            "feature work",
        );
        self.git(&seed, &["checkout", "-q", "main"]);
        let bare_arg = bare.to_str().unwrap();
        self.git(
            self.root(),
            &["init", "-q", "--bare", "-b", "main", bare_arg],
        );
        self.git(&bare, &["config", "http.receivepack", "true"]);
        self.git(&seed, &["remote", "add", "origin", bare_arg]);
        self.git(&seed, &["push", "-q", "-u", "origin", "main", "feature"]);
        Remote {
            bare,
            seed,
            c1,
            c2,
            feature,
        }
    }

    /// Commits in the remote's seed clone and pushes it to the bare remote: another user's work.
    pub(crate) fn push_upstream(
        &self,
        remote: &Remote,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        let sha = self.commit(&remote.seed, files, message);
        self.git(&remote.seed, &["push", "-q", "origin", "main"]);
        sha
    }

    /// Where a ref of the bare remote points.
    pub(crate) fn remote_ref(&self, remote: &Remote, name: &str) -> String {
        self.git(&remote.bare, &["rev-parse", name])
    }

    /// A value of the daemon's global git config (`$HOME/.gitconfig`), None when unset.
    pub(crate) fn daemon_global(&self, daemon: &Toolboxd, key: &str) -> Option<String> {
        let file = daemon.home.join(".gitconfig");
        let out = self.git_output(
            self.root(),
            &["config", "--file", file.to_str().unwrap(), "--get", key],
        );
        out.status.success().then(|| {
            String::from_utf8(out.stdout)
                .unwrap()
                .trim_end()
                .to_string()
        })
    }

    /// The smart-HTTP remote serving `srv/`.
    pub(crate) fn http(&self) -> GitHttp {
        GitHttp::start(self.srv(), self.home())
    }
}

/// The absolute path of a program on the test's PATH.
fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} not on PATH"))
}

// ---------------------------------------------------------------------------------------------
// The daemon and its routes
// ---------------------------------------------------------------------------------------------

/// A daemon whose PATH holds only bash and sh (no git).
pub(crate) fn start_daemon(fx: &Fixtures) -> Toolboxd {
    Toolboxd::start_with(StartOptions {
        env: vec![("PATH".to_string(), fx.bin().to_str().unwrap().to_string())],
        ..StartOptions::default()
    })
}

/// POSTs `body` to `route`, asserting `status`; returns the JSON answer.
pub(crate) fn call(daemon: &Toolboxd, route: &str, body: Value, status: u16) -> Value {
    json(daemon.post_json(route, &body), status)
}

/// POSTs `body` to `route`, asserting 200 `{}`.
pub(crate) fn ok(daemon: &Toolboxd, route: &str, body: Value) {
    assert_eq!(call(daemon, route, body, 200), json!({}), "{route}");
}

/// DELETE with a JSON body.
pub(crate) fn delete_json(daemon: &Toolboxd, route: &str, body: &Value) -> Response {
    daemon
        .client
        .delete(daemon.url(route))
        .json(body)
        .send()
        .unwrap()
}

/// Clones `url` into `path` (relative to the work dir) through the daemon.
pub(crate) fn clone(daemon: &Toolboxd, url: &str, path: &str) -> PathBuf {
    ok(daemon, "/git/clone", json!({"url": url, "path": path}));
    daemon.path(path)
}

/// How the daemon reaches a test's remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `file://` of the bare repository.
    File,
    /// The authenticated smart-HTTP remote (`GitHttp`).
    Http,
}

/// A remote as the daemon reaches it: its URL and the credentials a request needs.
pub(crate) enum Access {
    File,
    Http(GitHttp),
}

impl Access {
    /// Starts the HTTP remote for `Transport::Http`.
    pub(crate) fn new(fx: &Fixtures, transport: Transport) -> Access {
        match transport {
            Transport::File => Access::File,
            Transport::Http => Access::Http(fx.http()),
        }
    }

    /// The URL of `remote`.
    pub(crate) fn url(&self, remote: &Remote) -> String {
        match self {
            Access::File => remote.file_url(),
            Access::Http(http) => http.url(&remote.name()),
        }
    }

    /// `body` with the credentials the remote wants (none over file://).
    pub(crate) fn auth(&self, mut body: Value) -> Value {
        if let Access::Http(_) = self {
            body["username"] = json!(USER);
            body["password"] = json!(PASSWORD);
        }
        body
    }

    /// A `/git/clone` body for `remote` into `path`, with `extra` fields.
    pub(crate) fn clone_body(&self, remote: &Remote, path: &str, extra: Value) -> Value {
        let mut body = json!({"url": self.url(remote), "path": path});
        for (key, value) in extra.as_object().expect("extra is an object") {
            body[key] = value.clone();
        }
        self.auth(body)
    }

    /// The HTTP remote (panics over file://).
    pub(crate) fn http(&self) -> &GitHttp {
        match self {
            Access::Http(http) => http,
            Access::File => panic!("not an HTTP remote"),
        }
    }
}

/// A daemon, its fixtures, a seeded remote and a clone of it at `repo`.
pub(crate) struct Cloned {
    pub(crate) daemon: Toolboxd,
    pub(crate) fx: Fixtures,
    pub(crate) remote: Remote,
    /// The clone (work dir `repo`).
    pub(crate) dir: PathBuf,
    /// How the clone reaches `remote` (its `origin`).
    pub(crate) access: Access,
}

impl Cloned {
    /// Cloned over file://.
    pub(crate) fn new() -> Cloned {
        Cloned::over(Transport::File)
    }

    /// Cloned over `transport` (with the right credentials over HTTP).
    pub(crate) fn over(transport: Transport) -> Cloned {
        let fx = Fixtures::new();
        let daemon = start_daemon(&fx);
        let remote = fx.remote("origin");
        let access = Access::new(&fx, transport);
        ok(
            &daemon,
            "/git/clone",
            access.clone_body(&remote, "repo", json!({})),
        );
        let dir = daemon.path("repo");
        Cloned {
            daemon,
            fx,
            remote,
            dir,
            access,
        }
    }

    /// POSTs `body` to `route` with the credentials the remote wants.
    pub(crate) fn post(&self, route: &str, body: Value) -> Response {
        self.daemon.post_json(route, &self.access.auth(body))
    }

    /// git CLI in the clone.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        self.fx.git(&self.dir, args)
    }

    pub(crate) fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// `git status --porcelain` lines (untracked files listed one by one).
    pub(crate) fn porcelain(&self) -> Vec<String> {
        self.fx.lines(
            &self.dir,
            &["status", "--porcelain", "--untracked-files=all"],
        )
    }

    pub(crate) fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }

    pub(crate) fn write(&self, name: &str, content: &str) {
        write(&self.dir.join(name), content);
    }

    /// GET /git/status of the clone.
    pub(crate) fn status(&self) -> Value {
        json(self.daemon.get("/git/status?path=repo"), 200)
    }

    /// Commits what is staged through the daemon; returns the hash.
    pub(crate) fn api_commit(&self, message: &str) -> String {
        let out = call(
            &self.daemon,
            "/git/commit",
            json!({"path": "repo", "message": message, "author": "Ada Lovelace", "email": "ada@example.com"}),
            200,
        );
        out["hash"].as_str().unwrap().to_string()
    }

    /// Writes and stages files with the CLI, commits them through the daemon.
    pub(crate) fn commit_files(&self, files: &[(&str, &str)], message: &str) -> String {
        for (name, content) in files {
            self.write(name, content);
            self.git(&["add", "--", name]);
        }
        self.api_commit(message)
    }
}

/// `fileStatus` as sorted `(name, staging, worktree, extra)` tuples.
pub(crate) fn file_statuses(status: &Value) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = status["fileStatus"]
        .as_array()
        .unwrap_or_else(|| panic!("no fileStatus: {status}"))
        .iter()
        .map(|entry| {
            let field = |key: &str| {
                entry[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} not a string: {entry}"))
                    .to_string()
            };
            (
                field("name"),
                field("staging"),
                field("worktree"),
                field("extra"),
            )
        })
        .collect();
    out.sort();
    out
}

/// One expected `fileStatus` entry.
pub(crate) fn entry(
    name: &str,
    staging: &str,
    worktree: &str,
    extra: &str,
) -> (String, String, String, String) {
    (name.into(), staging.into(), worktree.into(), extra.into())
}

/// Asserts an error body does not leak `secret`.
pub(crate) fn assert_no_secret(body: &Value, secret: &str) {
    let text = body.to_string();
    assert!(!text.contains(secret), "the password leaked: {text}");
}

// ---------------------------------------------------------------------------------------------
// Smart-HTTP remote: `git http-backend` as CGI behind Basic auth
// ---------------------------------------------------------------------------------------------

/// A loopback HTTP/1.1 server in front of `git http-backend`; every request needs
/// `alice:s3cret-pw` (else 401 with a Basic challenge).
pub(crate) struct GitHttp {
    pub(crate) port: u16,
    /// Slept before answering each request (for the slow-clone case).
    pub(crate) delay: Arc<Mutex<Duration>>,
    _server: Server,
}

struct Served {
    root: PathBuf,
    home: PathBuf,
    backend: PathBuf,
    delay: Arc<Mutex<Duration>>,
}

impl GitHttp {
    fn start(root: PathBuf, home: PathBuf) -> GitHttp {
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let served = Served {
            root,
            home,
            backend: http_backend(),
            delay: delay.clone(),
        };
        let server = Server::start(move |stream| {
            let _ = serve_connection(stream, &|request| answer_git(&served, request));
        });
        GitHttp {
            port: server.port,
            delay,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT/NAME`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// `$(git --exec-path)/git-http-backend`, else Debian's location.
fn http_backend() -> PathBuf {
    let out = Command::new("git").arg("--exec-path").output();
    if let Ok(out) = out {
        let candidate =
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-http-backend");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("/usr/lib/git-core/git-http-backend")
}

/// A loopback listener that hands every connection to `handle` on a thread of its own;
/// stopped on drop.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let handle = handle.clone();
                std::thread::spawn(move || handle(stream));
            }
        });
        Server { port, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request as read off the wire (header names lowercased, the body de-chunked).
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

/// Serves requests on one keep-alive connection until the client closes it, answering each
/// with the raw response `answer` returns.
fn serve_connection(
    stream: TcpStream,
    answer: &dyn Fn(&Request) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader, &mut writer)? {
        writer.write_all(&answer(&request)?)?;
        writer.flush()?;
        if request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            break;
        }
    }
    Ok(())
}

/// The next request on a connection (answering `Expect: 100-continue` on `writer`); None once
/// the client has closed it.
fn read_request(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    let request_line = loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim_end().is_empty() {
            break line.trim_end().to_string();
        }
    };
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut request = Request {
        method,
        target,
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            request
                .headers
                .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    request.body = if request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(reader)?
    } else {
        let length: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(request))
}

/// The smart-HTTP answer to one request: 401 without the right Basic credentials, else what
/// `git http-backend` says.
fn answer_git(served: &Served, request: &Request) -> std::io::Result<Vec<u8>> {
    let delay = *served.delay.lock().unwrap();
    std::thread::sleep(delay);
    let authorized = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Basic ").map(str::to_string))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .is_some_and(|decoded| decoded == format!("{USER}:{PASSWORD}").as_bytes());
    if !authorized {
        let body = "authentication required\n";
        return Ok(format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes());
    }
    let (status, cgi_headers, cgi_body) = run_cgi(served, request)?;
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n",
        cgi_body.len()
    );
    for (name, value) in cgi_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    response.extend_from_slice(&cgi_body);
    Ok(response)
}

/// Reads a chunked request body (trailers dropped).
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_text = size_line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf)?;
    }
}

/// A CGI answer: status line, headers, body.
type CgiAnswer = (String, Vec<(String, String)>, Vec<u8>);

/// Runs `git http-backend` for one request.
fn run_cgi(served: &Served, request: &Request) -> std::io::Result<CgiAnswer> {
    // Servers must take absolute-form targets too (RFC 9112 3.2.2).
    let target = split_absolute(&request.target).map_or(request.target.as_str(), |(_, path)| path);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let header = |name: &str| request.header(name);
    let body = request.body.clone();
    let mut command = Command::new(&served.backend);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &served.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &served.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(encoding) = header("content-encoding") {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(protocol) = header("git-protocol") {
        command.env("GIT_PROTOCOL", protocol);
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output()?;
    let _ = feeder.join();
    let raw = output.stdout;
    let (head_end, body_start) = match find(&raw, b"\r\n\r\n") {
        Some(at) => (at, at + 4),
        None => match find(&raw, b"\n\n") {
            Some(at) => (at, at + 2),
            None => (raw.len(), raw.len()),
        },
    };
    let mut status = "200 OK".to_string();
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&raw[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            status = value.to_string();
        } else if !name.eq_ignore_ascii_case("content-length") {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    Ok((status, headers, raw[body_start..].to_vec()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A wire error 400 whose code is `BAD_REQUEST` or `INVALID_REQUEST_BODY` (the contract allows
/// either for a missing field).
pub(crate) fn assert_bad_request(response: Response) {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["source"], "DAYTONA_DAEMON", "{body}");
    let code = body["code"].as_str().unwrap_or_default();
    assert!(
        code == "BAD_REQUEST" || code == "INVALID_REQUEST_BODY",
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// A recording forward proxy, and TLS in front of the HTTP remote
// ---------------------------------------------------------------------------------------------

/// A forward proxy on loopback that records the request lines it is sent: absolute-form
/// requests (`GET http://host/…`, for http:// remotes) go to their origin on a connection of
/// their own; `CONNECT host:port` (for https:// remotes) opens a tunnel. Loopback origins only.
pub(crate) struct Proxy {
    seen: Arc<Mutex<Vec<String>>>,
    server: Server,
}

impl Proxy {
    pub(crate) fn start() -> Proxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recording = seen.clone();
        let server = Server::start(move |stream| {
            let _ = proxy_connection(stream, &recording);
        });
        Proxy { seen, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// The request lines (`METHOD TARGET`) it was sent, in order.
    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Proxies the requests of one client connection.
fn proxy_connection(stream: TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader, &mut writer)? {
        let line = format!("{} {}", request.method, request.target);
        seen.lock().unwrap().push(line);
        if request.method == "CONNECT" {
            return tunnel(&request.target, reader, writer);
        }
        writer.write_all(&forward(&request)?)?;
        writer.flush()?;
    }
    Ok(())
}

/// `(authority, path)` of an absolute-form `http://` target.
fn split_absolute(target: &str) -> Option<(&str, &str)> {
    let rest = target.strip_prefix("http://")?;
    Some(rest.split_at(rest.find('/').unwrap_or(rest.len())))
}

/// A raw response with no body.
fn bare_response(status: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// Sends an absolute-form `request` to its origin in origin form and returns the answer.
fn forward(request: &Request) -> std::io::Result<Vec<u8>> {
    let Some((authority, path)) = split_absolute(&request.target) else {
        return Ok(bare_response("400 Bad Request"));
    };
    // Everything stays on loopback.
    if !authority.starts_with("127.0.0.1:") {
        return Ok(bare_response("403 Forbidden"));
    }
    let Ok(mut upstream) = TcpStream::connect(authority) else {
        return Ok(bare_response("502 Bad Gateway"));
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut head = format!("{} {path} HTTP/1.1\r\n", request.method);
    let hop_by_hop = [
        "connection",
        "proxy-connection",
        "proxy-authorization",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "expect",
    ];
    for (name, value) in &request.headers {
        if !hop_by_hop.contains(&name.as_str()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        request.body.len()
    ));
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&request.body)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    Ok(response)
}

/// Answers `CONNECT authority` and pipes bytes both ways until either side closes.
fn tunnel(
    authority: &str,
    mut reader: BufReader<TcpStream>,
    mut writer: TcpStream,
) -> std::io::Result<()> {
    if !authority.starts_with("127.0.0.1:") {
        return writer.write_all(&bare_response("403 Forbidden"));
    }
    let Ok(upstream) = TcpStream::connect(authority) else {
        return writer.write_all(&bare_response("502 Bad Gateway"));
    };
    writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let mut to_upstream = upstream.try_clone()?;
    let outbound = std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut &upstream, &mut writer);
    let _ = writer.shutdown(Shutdown::Both);
    let _ = outbound.join();
    Ok(())
}

/// Terminates TLS and pipes the bytes to a plain port: `tls_pipe.py CERT KEY PORT`.
const TLS_PIPE: &str = include_str!("tls_pipe.py");

/// `https://127.0.0.1:PORT/…` in front of a `GitHttp`, with a self-signed certificate for
/// 127.0.0.1 made by the openssl CLI (a Python `ssl` pipe; killed on drop).
pub(crate) struct Tls {
    pub(crate) port: u16,
    child: Child,
}

impl Tls {
    /// `https://127.0.0.1:PORT/NAME`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fixtures {
    /// TLS in front of `http`.
    pub(crate) fn https(&self, http: &GitHttp) -> Tls {
        let dir = self.root().join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key, log) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("pipe.log"),
        );
        let out = Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()
            .expect("run the openssl CLI");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(TLS_PIPE)
            .arg(&cert)
            .arg(&key)
            .arg(http.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the TLS pipe did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Tls { port, child }
    }
}
