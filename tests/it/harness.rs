//! `Toolboxd::start()`: the daemon under test. Spawns the binary, reads the bound ports from its
//! stdout, owns the temp work dir and HOME, and kills the daemon on drop.
//! `TOOLBOXD_TEST_LOG=1` passes the daemon's logs through.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use reqwest::blocking::{Client, Response};
use serde_json::Value;

/// Options for `Toolboxd::start_with`.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// Also serve local SDK mode.
    pub sdk_api: bool,
    /// Use this work dir instead of a fresh temp dir.
    pub workdir: Option<PathBuf>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Variables taken out of the inherited environment.
    pub env_remove: Vec<String>,
    /// Pass no `--workdir`; set `DAYTONA_USER_HOME_AS_WORKDIR=true` so HOME is the work dir.
    pub home_as_workdir: bool,
    /// Trailing arguments (`-- CMD…`): the entrypoint.
    pub entrypoint: Vec<String>,
    /// Also serve the web terminal (on 127.0.0.1:0; otherwise `--terminal-addr off`).
    pub terminal: bool,
    /// Also serve SSH (on 127.0.0.1:0; otherwise `--ssh-addr off`).
    pub ssh: bool,
    /// Extra arguments before the entrypoint.
    pub args: Vec<String>,
    /// Write the daemon's stderr (its logs) to this file.
    pub stderr_file: Option<PathBuf>,
    /// A command the binary runs under, given the binary and its arguments after these (e.g.
    /// `unshare -rm sh -c '… exec "$@"' sh`); it must `exec` them, so the pid is the daemon's.
    pub wrapper: Vec<String>,
}

/// A running daemon.
pub struct Toolboxd {
    child: Child,
    /// `http://127.0.0.1:PORT` of the toolbox API.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the control plane, when started.
    pub sdk_base: Option<String>,
    /// `http://127.0.0.1:PORT` of the web terminal, when started.
    pub terminal_base: Option<String>,
    /// The SSH port, when started.
    pub ssh_port: Option<u16>,
    /// The work dir (relative paths resolve here).
    pub workdir: PathBuf,
    /// HOME of the daemon.
    pub home: PathBuf,
    /// A client that never uses proxies.
    pub client: Client,
    _temp: tempfile::TempDir,
}

/// The SDK version the test client announces.
pub const SDK_VERSION: &str = "0.226.1";

impl Toolboxd {
    /// A daemon with a fresh work dir and HOME.
    pub fn start() -> Toolboxd {
        Toolboxd::start_with(StartOptions::default())
    }

    /// A daemon with options.
    pub fn start_with(options: StartOptions) -> Toolboxd {
        let temp = tempfile::tempdir().expect("temp dir");
        let home = temp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let workdir = if options.home_as_workdir {
            Some(home.clone())
        } else {
            options.workdir.clone()
        };
        let workdir = workdir.unwrap_or_else(|| {
            let dir = temp.path().join("work");
            std::fs::create_dir_all(&dir).unwrap();
            dir
        });
        let mut command = match options.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary());
                command
            }
            None => Command::new(binary()),
        };
        command
            .arg("--toolbox-addr")
            .arg("127.0.0.1:0")
            .env("HOME", &home)
            .env_remove("TOOLBOXD_SDK_API_ADDR")
            .env_remove("TOOLBOXD_WORKDIR")
            .env_remove("DAYTONA_USER_HOME_AS_WORKDIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if options.home_as_workdir {
            command
                .env("DAYTONA_USER_HOME_AS_WORKDIR", "true")
                .current_dir(temp.path());
        } else {
            command.arg("--workdir").arg(&workdir);
        }
        if options.sdk_api {
            command.arg("--sdk-api-addr").arg("127.0.0.1:0");
        }
        command.arg("--terminal-addr").arg(if options.terminal {
            "127.0.0.1:0"
        } else {
            "off"
        });
        command
            .arg("--ssh-addr")
            .arg(if options.ssh { "127.0.0.1:0" } else { "off" });
        command.args(&options.args);
        if !options.entrypoint.is_empty() {
            command.arg("--").args(&options.entrypoint);
        }
        for (key, value) in &options.env {
            command.env(key, value);
        }
        for key in &options.env_remove {
            command.env_remove(key);
        }
        if let Some(path) = &options.stderr_file {
            command.stderr(std::fs::File::create(path).expect("create the stderr file"));
        } else if std::env::var_os("TOOLBOXD_TEST_LOG").is_none() {
            command.stderr(Stdio::null());
        }
        let mut child = command.spawn().expect("spawn toolboxd");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let wanted = 1
            + usize::from(options.sdk_api)
            + usize::from(options.terminal)
            + usize::from(options.ssh);
        let mut base = None;
        let mut sdk_base = None;
        let mut terminal_base = None;
        let mut ssh_port = None;
        for _ in 0..wanted {
            let line = receiver
                .recv_timeout(Duration::from_secs(20))
                .expect("toolboxd printed its address");
            let url = line.rsplit(' ').next().unwrap().to_string();
            if line.starts_with("toolboxd: toolbox listening on ") {
                base = Some(url);
            } else if line.starts_with("toolboxd: sdk-api listening on ") {
                sdk_base = Some(url);
            } else if line.starts_with("toolboxd: terminal listening on ") {
                terminal_base = Some(url);
            } else if line.starts_with("toolboxd: ssh listening on ") {
                ssh_port = Some(url.rsplit(':').next().unwrap().parse().unwrap());
            } else {
                panic!("unexpected stdout line: {line}");
            }
        }
        // Like the SDKs, announce a current SDK version (older ones get other log shapes).
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("X-Daytona-SDK-Version", SDK_VERSION.parse().unwrap());
        let client = Client::builder()
            .no_proxy()
            .default_headers(headers)
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Toolboxd {
            child,
            base: base.expect("toolbox address"),
            sdk_base,
            terminal_base,
            ssh_port,
            workdir,
            home,
            client,
            _temp: temp,
        }
    }

    /// The URL of `path_and_query` on the toolbox API.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// A path inside the work dir.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.workdir.join(relative)
    }

    /// GET.
    pub fn get(&self, path_and_query: &str) -> Response {
        self.client.get(self.url(path_and_query)).send().unwrap()
    }

    /// POST with no body.
    pub fn post(&self, path_and_query: &str) -> Response {
        self.client.post(self.url(path_and_query)).send().unwrap()
    }

    /// POST with a JSON body.
    pub fn post_json(&self, path_and_query: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path_and_query))
            .json(body)
            .send()
            .unwrap()
    }

    /// DELETE.
    pub fn delete(&self, path_and_query: &str) -> Response {
        self.client.delete(self.url(path_and_query)).send().unwrap()
    }

    /// The child's pid (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the daemon to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Toolboxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_toolboxd"))
}

/// Reads a JSON body, asserting the status first (and showing the body when it differs).
pub fn json(response: Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// Asserts a wire error: status, code, and the shape every error body has.
pub fn assert_error(response: Response, status: u16, code: &str) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = json(response, status);
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    assert_eq!(body["statusCode"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["source"], "DAYTONA_DAEMON", "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
    assert!(body["timestamp"].as_str().unwrap().contains('T'), "{body}");
    assert!(
        body["path"].is_string() && body["method"].is_string(),
        "{body}"
    );
    body
}

/// Percent-encodes a query value the way Python's `quote` does (space as %20).
pub fn q(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Percent-encodes a query value the way URLSearchParams does (space as `+`).
pub fn form(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// True when the tests run as root (some cases need it: tmpfs, chown).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Writes `content` to `path`, creating parents.
pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

/// True while `pid` runs (a zombie still has a /proc entry, so its state is checked).
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap();
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}

/// A client like `Toolboxd::client` that keeps no idle connection: once an answer is read the
/// connection closes, so the daemon's descriptors count only what is in flight (`Held`).
pub fn unpooled_client() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("X-Daytona-SDK-Version", SDK_VERSION.parse().unwrap());
    Client::builder()
        .no_proxy()
        .default_headers(headers)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// `(pid, ppid, state)` of every process in /proc.
fn process_table() -> Vec<(i32, i32, char)> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        table.push((
            pid,
            rest[1].parse().unwrap(),
            rest[0].chars().next().unwrap(),
        ));
    }
    table
}

/// Pids under `root` (children, grandchildren, …), zombies included.
pub fn descendants(root: u32) -> Vec<i32> {
    let mut parents = std::collections::HashMap::<i32, Vec<i32>>::new();
    for (pid, ppid, _) in process_table() {
        parents.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut queue = vec![root as i32];
    while let Some(pid) = queue.pop() {
        for child in parents.get(&pid).cloned().unwrap_or_default() {
            out.push(child);
            queue.push(child);
        }
    }
    out
}

/// Zombie children of `parent`.
pub fn zombie_children(parent: u32) -> Vec<i32> {
    process_table()
        .into_iter()
        .filter(|&(_, ppid, state)| state == 'Z' && ppid == parent as i32)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// A process's command line, arguments joined by spaces ("" once it is gone).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Pids of live processes whose environment holds `needle` (`NAME=value`).
pub fn marked(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .filter(|&pid| is_alive(pid))
        .collect()
}

/// The daemon's open descriptors, as `/proc/PID/fd` link targets.
pub fn open_fds(daemon: &Toolboxd) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.display().to_string())
        .collect()
}

/// What the daemon holds: its open descriptors and its descendant processes. The leak check of
/// the fault tests: `Held::of` before a fault, `assert_settled` after it.
#[derive(Debug)]
pub struct Held {
    /// Descriptor kinds (`socket`, `pipe`, `anon_inode:[eventfd]`, a path) and how many.
    pub fds: std::collections::BTreeMap<String, usize>,
    /// Descendant pids with their command lines.
    pub processes: std::collections::BTreeMap<i32, String>,
}

impl Held {
    /// What the daemon holds now.
    pub fn of(daemon: &Toolboxd) -> Held {
        let mut fds = std::collections::BTreeMap::new();
        for target in open_fds(daemon) {
            // `socket:[123]` and `pipe:[456]` differ by inode only: count them by kind.
            let kind = match target.split_once(":[") {
                Some((kind @ ("socket" | "pipe"), _)) => kind.to_string(),
                _ => target,
            };
            *fds.entry(kind).or_insert(0) += 1;
        }
        let processes = descendants(daemon.pid())
            .into_iter()
            .map(|pid| {
                let state = if is_alive(pid) { "" } else { " (zombie)" };
                (pid, format!("{}{state}", cmdline(pid)))
            })
            .collect();
        Held { fds, processes }
    }

    /// What the daemon holds now beyond `self`: descriptors past their kind's count, processes
    /// that were not there. Empty when nothing leaked.
    pub fn excess(&self, daemon: &Toolboxd) -> Vec<String> {
        let now = Held::of(daemon);
        let mut excess = Vec::new();
        for (kind, count) in &now.fds {
            let before = self.fds.get(kind).copied().unwrap_or(0);
            if *count > before {
                excess.push(format!("fd {kind} x{} (was {before})", count));
            }
        }
        for (pid, cmdline) in &now.processes {
            if !self.processes.contains_key(pid) {
                excess.push(format!("process {pid} {cmdline}"));
            }
        }
        excess
    }

    /// Waits (at most 10 s) until the daemon holds nothing beyond `self`; panics naming what it
    /// still holds.
    pub fn assert_settled(&self, daemon: &Toolboxd, after: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let excess = self.excess(daemon);
            if excess.is_empty() {
                let now = Held::of(daemon);
                eprintln!(
                    "settled after {after}: {} fds, {} processes (before: {} fds, {} processes)",
                    now.fds.values().sum::<usize>(),
                    now.processes.len(),
                    self.fds.values().sum::<usize>(),
                    self.processes.len()
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "after {after}, the daemon still holds {excess:?} (before: {self:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
