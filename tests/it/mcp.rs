//! The MCP edge in raw HTTP and raw stdio: initialize, tools/list, calls, cancellation, the
//! Origin check, wire error bodies for what rmcp answers in plain text, shutdown, and
//! `toolboxd mcp`. (The official SDKs drive it in tests/sdk.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{assert_error, binary, is_alive, Toolboxd};

pub(crate) const ACCEPT: &str = "application/json, text/event-stream";

/// A session opened with `initialize` (2025-11-25) and `notifications/initialized`.
pub(crate) struct Session<'a> {
    daemon: &'a Toolboxd,
    pub(crate) id: String,
}

impl<'a> Session<'a> {
    pub(crate) fn open(daemon: &'a Toolboxd) -> Session<'a> {
        let response = daemon
            .client
            .post(daemon.url("/mcp"))
            .header("accept", ACCEPT)
            .json(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "it", "version": "1"}}}),
            )
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let init = message(&response.text().unwrap(), 0);
        assert_eq!(init["result"]["serverInfo"]["name"], "toolboxd", "{init}");
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
        let session = Session { daemon, id };
        let ack = session.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert_eq!(ack.status(), 202);
        session
    }

    pub(crate) fn post(&self, body: &Value) -> reqwest::blocking::Response {
        self.daemon
            .client
            .post(self.daemon.url("/mcp"))
            .header("accept", ACCEPT)
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-11-25")
            .json(body)
            .send()
            .unwrap()
    }

    /// Sends request `id` and returns its JSON-RPC answer (from the SSE stream).
    fn request(&self, id: u64, method: &str, params: Value) -> Value {
        let response =
            self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        assert_eq!(response.status(), 200);
        message(&response.text().unwrap(), id)
    }

    fn call(&self, id: u64, tool: &str, arguments: Value) -> Value {
        self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
    }
}

/// `toolboxd mcp --workdir WORK` (HOME there too) with piped stdin and stdout.
pub(crate) fn stdio_server(work: &std::path::Path) -> std::process::Child {
    Command::new(binary())
        .args(["mcp", "--workdir"])
        .arg(work)
        .env("HOME", work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The JSON-RPC message with `id` among an SSE body's `data:` lines.
fn message(body: &str, id: u64) -> Value {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|message| message["id"] == id)
        .unwrap_or_else(|| panic!("no message {id} in: {body}"))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn initialize_list_and_call() {
    let daemon = Toolboxd::start();
    let session = Session::open(&daemon);
    let listed = session.request(1, "tools/list", json!({}));
    let tools = listed["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 18, "{listed}");
    let execute = tools
        .iter()
        .find(|t| t["name"] == "execute_command")
        .unwrap();
    assert_eq!(execute["inputSchema"]["required"], json!(["command"]));
    assert_eq!(execute["annotations"]["openWorldHint"], true);

    let called = session.call(
        2,
        "execute_command",
        json!({"command": "echo out; echo err >&2; exit 5"}),
    );
    let result = &called["result"];
    assert_eq!(result["isError"], false, "{called}");
    assert_eq!(
        result["structuredContent"],
        json!({"exit_code": 5, "stdout": "out\n", "stderr": "err\n", "truncated": false})
    );

    // The same capability code as the HTTP routes: a file written by a tool is there.
    let up = session.call(
        3,
        "upload_file",
        json!({"file_path": "dir/a.txt", "content": "hi"}),
    );
    assert_eq!(up["result"]["structuredContent"]["bytes"], 2, "{up}");
    assert_eq!(
        std::fs::read_to_string(daemon.path("dir/a.txt")).unwrap(),
        "hi"
    );

    // A failing tool is a result; arguments that do not fit are a protocol error.
    let missing = session.call(4, "get_file_info", json!({"file_path": "nope"}));
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    assert!(missing["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("FILE_NOT_FOUND"));
    let bad = session.call(5, "list_files", json!({"depth": "deep"}));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`depth`"),
        "{bad}"
    );
}

#[test]
fn cancelled_notification_kills_the_command_tree() {
    let daemon = Toolboxd::start();
    let session = Session::open(&daemon);
    let pids = daemon.path("pids");
    let command = format!(
        "(sleep 100 & echo $! >> {p}; wait) & echo $! >> {p}; echo $$ >> {p}; wait",
        p = pids.display()
    );
    let call = {
        let (client, url, id) = (
            daemon.client.clone(),
            daemon.url("/mcp"),
            session.id.clone(),
        );
        std::thread::spawn(move || {
            client
                .post(url)
                .header("accept", ACCEPT)
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-11-25")
                .json(
                    &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
                    "name": "execute_command", "arguments": {"command": command}}}),
                )
                .send()
                .and_then(|r| r.text())
        })
    };
    let read = || std::fs::read_to_string(&pids).unwrap_or_default();
    wait_for("the tree to start", || read().lines().count() == 3);
    let tree: Vec<i32> = read().lines().map(|l| l.parse().unwrap()).collect();
    let cancel = session.post(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "test"}}),
    );
    assert_eq!(cancel.status(), 202);
    wait_for("the cancelled tree to end", || {
        tree.iter().all(|&pid| !is_alive(pid))
    });
    // The request's stream ends too (no hang).
    call.join().unwrap().unwrap();
}

#[test]
fn origin_is_checked_and_plain_errors_get_the_wire_body() {
    let daemon = Toolboxd::start();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    let post = |origin: Option<&str>, accept: &str| {
        let mut request = daemon
            .client
            .post(daemon.url("/mcp"))
            .header("accept", accept)
            .json(&init);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send().unwrap()
    };
    let refused = assert_error(
        post(Some("http://evil.example:2280"), ACCEPT),
        403,
        "FORBIDDEN",
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("evil.example"),
        "{refused}"
    );
    assert_eq!(refused["path"], "/mcp");
    assert_eq!(post(Some("http://localhost:6274"), ACCEPT).status(), 200);
    assert_eq!(post(Some(&daemon.base), ACCEPT).status(), 200);
    assert_error(post(None, "application/json"), 406, "NOT_ACCEPTABLE");
    let put = daemon.client.put(daemon.url("/mcp")).send().unwrap();
    assert_eq!(put.headers()["allow"], "GET, POST, DELETE");
    assert_error(put, 405, "METHOD_NOT_ALLOWED");
    let unknown = daemon
        .client
        .post(daemon.url("/mcp"))
        .header("accept", ACCEPT)
        .header("mcp-session-id", "no-such-session")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .unwrap();
    assert_error(unknown, 404, "NOT_FOUND");
}

#[test]
fn shutdown_ends_what_mcp_started_and_open_streams() {
    let mut daemon = Toolboxd::start();
    let session = Session::open(&daemon);
    // A standalone SSE stream, held open by the client.
    let stream = daemon
        .client
        .get(daemon.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session.id)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .unwrap();
    assert_eq!(stream.status(), 200);
    let pidfile = daemon.path("pid");
    let started = session.call(1, "session_start", json!({"session_id": "s"}));
    assert_eq!(started["result"]["isError"], false, "{started}");
    let exec = session.call(
        2,
        "session_exec",
        json!({"session_id": "s", "command": format!("echo $$ > {}; sleep 300", pidfile.display())}),
    );
    assert_eq!(exec["result"]["isError"], false, "{exec}");
    wait_for("the session command", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n'))
    });
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("toolboxd exited");
    assert!(status.success(), "{status:?}");
    assert!(!is_alive(pid), "the session shell outlived toolboxd");
    drop(stream);
}

#[test]
fn stdio_mode_speaks_only_the_protocol_on_stdout() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("hello.txt"), "hello\n").unwrap();
    let mut child = stdio_server(work.path());
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |message: Value| {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    };
    let mut next = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // Every line on stdout is a JSON-RPC message.
        serde_json::from_str::<Value>(&line).unwrap_or_else(|err| panic!("{err}: {line:?}"))
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}),
    );
    assert_eq!(next()["result"]["serverInfo"]["name"], "toolboxd");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "download_file", "arguments": {"file_path": "hello.txt"}}}),
    );
    let read = next();
    assert_eq!(read["id"], 2);
    assert_eq!(read["result"]["content"][0]["text"], "hello\n", "{read}");
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "execute_command", "arguments": {"command": "pwd"}}}),
    );
    let pwd = next();
    assert_eq!(
        pwd["result"]["structuredContent"]["stdout"],
        format!("{}\n", work.path().canonicalize().unwrap().display())
    );
    // Closing stdin ends the session and toolboxd.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "toolboxd mcp did not exit when stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
