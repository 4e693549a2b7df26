//! `/lsp/*`: real pylsp and typescript-language-server (from `target/sdk-venv` and
//! `tests/sdk/ts/node_modules`, which `tests/run.sh` installs), started through the daemon.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::code::daemon_with_path;
use crate::harness::*;

/// The directories holding pylsp and typescript-language-server.
pub(crate) fn lsp_bins() -> Vec<PathBuf> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("TOOLBOXD_TEST_CHARTS_PYTHON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/sdk-venv/bin"));
    let node = repo.join("tests/sdk/ts/node_modules/.bin");
    assert!(
        python.join("pylsp").exists() && node.join("typescript-language-server").exists(),
        "pylsp or typescript-language-server missing: run tests/run.sh (it installs both)"
    );
    vec![python, node]
}

fn lsp_daemon() -> Toolboxd {
    daemon_with_path(&lsp_bins())
}

fn project(daemon: &Toolboxd, name: &str, files: &[(&str, &str)]) -> String {
    for (file, content) in files {
        write(&daemon.path(&format!("{name}/{file}")), content);
    }
    daemon.path(name).to_string_lossy().into_owned()
}

fn start(daemon: &Toolboxd, language: &str, root: &str) {
    let response = daemon.post_json(
        "/lsp/start",
        &json!({"languageId": language, "pathToProject": root}),
    );
    let status = response.status().as_u16();
    assert_eq!(status, 200, "{}", response.text().unwrap());
}

fn open(daemon: &Toolboxd, language: &str, root: &str, file: &str) {
    let response = daemon.post_json(
        "/lsp/did-open",
        &json!({"languageId": language, "pathToProject": root, "uri": format!("file://{root}/{file}")}),
    );
    let status = response.status().as_u16();
    assert_eq!(status, 200, "{}", response.text().unwrap());
}

fn completions(
    daemon: &Toolboxd,
    language: &str,
    root: &str,
    file: &str,
    line: u32,
    character: u32,
) -> Value {
    json(
        daemon.post_json(
            "/lsp/completions",
            &json!({"languageId": language, "pathToProject": root,
                "uri": format!("file://{root}/{file}"),
                "position": {"line": line, "character": character}}),
        ),
        200,
    )
}

fn labels(list: &Value) -> Vec<String> {
    assert!(list["isIncomplete"].is_boolean(), "{list}");
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items is not a list: {list}"))
        .iter()
        .map(|item| {
            assert!(item["label"].is_string(), "{item}");
            if let Some(kind) = item.get("kind") {
                assert!(kind.is_i64(), "kind is not a number: {item}");
            }
            if let Some(doc) = item.get("documentation") {
                assert!(doc.is_object(), "documentation is not an object: {item}");
            }
            item["label"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_missing_server_is_a_400_that_says_how_to_install_it() {
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("PATH".to_string(), "/usr/bin:/bin".to_string())],
        ..StartOptions::default()
    });
    let root = project(&daemon, "p", &[("a.py", "x = 1\n")]);
    let body = assert_error(
        daemon.post_json(
            "/lsp/start",
            &json!({"languageId": "python", "pathToProject": root}),
        ),
        400,
        "BAD_REQUEST",
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("pylsp") && message.contains("pip install 'python-lsp-server[pyflakes]'"),
        "{message}"
    );
    let body = assert_error(
        daemon.post_json(
            "/lsp/start",
            &json!({"languageId": "typescript", "pathToProject": root}),
        ),
        400,
        "BAD_REQUEST",
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("typescript-language-server")
            && message.contains("npm i -g typescript@5 typescript-language-server"),
        "{message}"
    );
    // A configured server that is not there is named too.
    let configured = Toolboxd::start_with(StartOptions {
        env: vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            (
                "TOOLBOXD_LSP_TYPESCRIPT".to_string(),
                "no-such-server --stdio".to_string(),
            ),
        ],
        ..StartOptions::default()
    });
    let root2 = project(&configured, "p", &[("a.ts", "x\n")]);
    let body = assert_error(
        configured.post_json(
            "/lsp/start",
            &json!({"languageId": "typescript", "pathToProject": root2}),
        ),
        400,
        "BAD_REQUEST",
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("no-such-server") && message.contains("npm i -g"),
        "{message}"
    );
    // Nothing was started, so requests are refused as before a start.
    assert_error(
        daemon.post_json(
            "/lsp/did-open",
            &json!({"languageId": "python", "pathToProject": root, "uri": format!("file://{root}/a.py")}),
        ),
        400,
        "LSP_SERVER_NOT_INITIALIZED",
    );
    assert_error(
        daemon.post_json(
            "/lsp/start",
            &json!({"languageId": "cobol", "pathToProject": root}),
        ),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn requests_before_start_are_lsp_server_not_initialized() {
    let daemon = lsp_daemon();
    let root = project(&daemon, "p", &[("a.py", "x = 1\n")]);
    let uri = format!("file://{root}/a.py");
    assert_error(
        daemon.post_json(
            "/lsp/completions",
            &json!({"languageId": "python", "pathToProject": root, "uri": uri,
                "position": {"line": 0, "character": 0}}),
        ),
        400,
        "LSP_SERVER_NOT_INITIALIZED",
    );
    assert_error(
        daemon.get(&format!(
            "/lsp/document-symbols?languageId=python&pathToProject={}&uri={}",
            q(&root),
            q(&uri)
        )),
        400,
        "LSP_SERVER_NOT_INITIALIZED",
    );
    // Stopping what is not running is fine.
    json_or_empty(daemon.post_json(
        "/lsp/stop",
        &json!({"languageId": "python", "pathToProject": root}),
    ));
}

fn json_or_empty(response: Response) {
    let status = response.status().as_u16();
    assert_eq!(status, 200, "{}", response.text().unwrap());
}

#[test]
fn python_completions_at_position_zero_and_mid_file() {
    let daemon = lsp_daemon();
    let root = project(&daemon, "p", &[("a.py", "import os\nos.pa")]);
    start(&daemon, "python", &root);
    open(&daemon, "python", &root, "a.py");
    let mid = completions(&daemon, "python", &root, "a.py", 1, 5);
    assert!(labels(&mid).contains(&"path".to_string()), "{mid}");
    // Line 0, character 0 is a valid position (Daytona's daemon rejects it).
    let zero = completions(&daemon, "python", &root, "a.py", 0, 0);
    labels(&zero);
    // A relative uri resolves against the project, as the SDKs document.
    let relative = json(
        daemon.post_json(
            "/lsp/completions",
            &json!({"languageId": "python", "pathToProject": root, "uri": "file://a.py",
                "position": {"line": 1, "character": 5}}),
        ),
        200,
    );
    assert!(
        labels(&relative).contains(&"path".to_string()),
        "{relative}"
    );
}

#[test]
fn python_document_symbols_list_functions_and_classes() {
    let daemon = lsp_daemon();
    let root = project(
        &daemon,
        "p",
        &[(
            "m.py",
            "def top_level(x):\n    return x\n\n\nclass Widget:\n    def spin(self):\n        pass\n",
        )],
    );
    start(&daemon, "python", &root);
    open(&daemon, "python", &root, "m.py");
    let symbols = json(
        daemon.get(&format!(
            "/lsp/document-symbols?languageId=python&pathToProject={}&uri={}",
            q(&root),
            q(&format!("file://{root}/m.py"))
        )),
        200,
    );
    let find = |name: &str| {
        symbols
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {symbols}"))
            .clone()
    };
    assert_eq!(find("top_level")["kind"], 12, "function");
    assert_eq!(find("Widget")["kind"], 5, "class");
    let widget = find("Widget");
    assert_eq!(widget["location"]["range"]["start"]["line"], 4);
    assert!(widget["location"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("/p/m.py"));
}

#[test]
fn typescript_workspace_symbols_and_completions() {
    let daemon = lsp_daemon();
    let root = project(
        &daemon,
        "ts",
        &[
            (
                "index.ts",
                "export function greetUser(name: string): string {\n  return name;\n}\nconst s = 'x';\ns.\n",
            ),
            ("other.ts", "export class GreeterService {}\n"),
            ("tsconfig.json", "{\"compilerOptions\": {\"strict\": true}}\n"),
        ],
    );
    start(&daemon, "typescript", &root);
    open(&daemon, "typescript", &root, "index.ts");
    // tsserver loads the configured project in the background after the first open: until it
    // has, only the open file is searched. Ask until the other file's class shows up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let symbols = json(
            daemon.get(&format!(
                "/lsp/workspacesymbols?languageId=typescript&pathToProject={}&query=Greet",
                q(&root)
            )),
            200,
        );
        let names: Vec<String> = symbols
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert!(s["kind"].is_i64(), "{s}");
                s["name"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(names.contains(&"greetUser".to_string()), "{symbols}");
        if names.contains(&"GreeterService".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "{symbols}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = completions(&daemon, "typescript", &root, "index.ts", 4, 2);
    assert!(labels(&list).contains(&"toUpperCase".to_string()), "{list}");
}

#[test]
fn a_file_edited_on_disk_changes_the_next_completions() {
    let daemon = lsp_daemon();
    let root = project(
        &daemon,
        "p",
        &[("e.py", "def alpha_one():\n    pass\n\nalph")],
    );
    start(&daemon, "python", &root);
    open(&daemon, "python", &root, "e.py");
    let before = completions(&daemon, "python", &root, "e.py", 3, 4);
    assert!(
        labels(&before).contains(&"alpha_one()".to_string())
            || labels(&before).contains(&"alpha_one".to_string()),
        "{before}"
    );
    // Edited behind the server's back (not through the API): the next request sees it.
    std::fs::write(daemon.path("p/e.py"), "def bravo_two():\n    pass\n\nbrav").unwrap();
    let after = completions(&daemon, "python", &root, "e.py", 3, 4);
    let after = labels(&after);
    assert!(
        after.iter().any(|l| l.starts_with("bravo_two")),
        "{after:?}"
    );
    assert!(
        !after.iter().any(|l| l.starts_with("alpha_one")),
        "{after:?}"
    );
}

#[test]
fn diagnostics_report_a_broken_file_and_its_fix() {
    let daemon = lsp_daemon();
    let root = project(
        &daemon,
        "p",
        &[("bad.py", "import os\nprint(undefined_name)\n")],
    );
    start(&daemon, "python", &root);
    open(&daemon, "python", &root, "bad.py");
    let url = format!(
        "/lsp/diagnostics?languageId=python&pathToProject={}&uri={}&timeout=30",
        q(&root),
        q(&format!("file://{root}/bad.py"))
    );
    let report = json(daemon.get(&url), 200);
    assert_eq!(report["published"], true, "{report}");
    let messages: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("undefined name 'undefined_name'")),
        "{report}"
    );
    std::fs::write(daemon.path("p/bad.py"), "print('fine')\n").unwrap();
    let report = json(daemon.get(&url), 200);
    assert_eq!(report["diagnostics"], json!([]), "{report}");
}

#[test]
fn no_server_process_is_left_after_50_start_stop_cycles() {
    let daemon = lsp_daemon();
    let root = project(&daemon, "p", &[("a.py", "x = 1\n")]);
    for _ in 0..50 {
        start(&daemon, "python", &root);
        json_or_empty(daemon.post_json(
            "/lsp/stop",
            &json!({"languageId": "python", "pathToProject": root}),
        ));
    }
    let left: Vec<String> = descendants(daemon.pid()).into_iter().map(cmdline).collect();
    assert!(left.is_empty(), "processes left: {left:?}");
    // Stopped means stopped.
    assert_error(
        daemon.post_json(
            "/lsp/did-open",
            &json!({"languageId": "python", "pathToProject": root, "uri": format!("file://{root}/a.py")}),
        ),
        400,
        "LSP_SERVER_NOT_INITIALIZED",
    );
}

#[test]
fn a_server_killed_mid_session_is_restarted_with_its_documents() {
    let daemon = lsp_daemon();
    let root = project(
        &daemon,
        "p",
        &[("k.py", "def kilo_one():\n    pass\n\nkil")],
    );
    start(&daemon, "python", &root);
    open(&daemon, "python", &root, "k.py");
    let server = descendants(daemon.pid())
        .into_iter()
        .find(|pid| cmdline(*pid).contains("pylsp"))
        .expect("a pylsp process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{server}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the killed server was not reaped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The document symbols of the reopened document come from a new server.
    let symbols = json(
        daemon.get(&format!(
            "/lsp/document-symbols?languageId=python&pathToProject={}&uri={}",
            q(&root),
            q(&format!("file://{root}/k.py"))
        )),
        200,
    );
    assert!(
        symbols
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "kilo_one"),
        "{symbols}"
    );
    let restarted = descendants(daemon.pid())
        .into_iter()
        .find(|pid| cmdline(*pid).contains("pylsp"))
        .expect("a restarted pylsp");
    assert_ne!(restarted, server);
}

fn relay_connect(
    daemon: &Toolboxd,
    language: &str,
    root: &str,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>> {
    let url = format!(
        "{}/lsp/ws?languageId={language}&pathToProject={}",
        daemon.base.replacen("http://", "ws://", 1),
        q(root)
    );
    let (socket, _) = tungstenite::connect(url).expect("relay handshake");
    socket
}

fn send(
    socket: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    message: Value,
) {
    socket
        .send(tungstenite::Message::Text(message.to_string().into()))
        .unwrap();
}

/// Reads until the answer to request `id` (other messages are skipped).
fn answer_to(
    socket: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    id: &Value,
) -> Value {
    loop {
        match socket.read().expect("relay frame") {
            tungstenite::Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message.get("method").is_none() && &message["id"] == id {
                    return message;
                }
            }
            tungstenite::Message::Close(frame) => panic!("relay closed: {frame:?}"),
            _ => {}
        }
    }
}

#[test]
fn two_relay_clients_share_one_server_and_each_get_their_own_answers() {
    let daemon = lsp_daemon();
    let root = project(
        &daemon,
        "p",
        &[
            ("one.py", "def only_in_one():\n    pass\n"),
            ("two.py", "class OnlyInTwo:\n    pass\n"),
        ],
    );
    start(&daemon, "python", &root);
    let mut first = relay_connect(&daemon, "python", &root);
    let mut second = relay_connect(&daemon, "python", &root);
    for socket in [&mut first, &mut second] {
        send(
            socket,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"processId": null, "rootUri": null, "capabilities": {}}}),
        );
        let init = answer_to(socket, &json!(1));
        assert!(init["result"]["capabilities"].is_object(), "{init}");
        send(
            socket,
            json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        );
    }
    // Same request id from both clients, sent before either reads.
    for (socket, file) in [(&mut first, "one.py"), (&mut second, "two.py")] {
        let uri = url_of(&format!("{root}/{file}"));
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        send(
            socket,
            json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
                "textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}}),
        );
        send(
            socket,
            json!({"jsonrpc": "2.0", "id": "same", "method": "textDocument/documentSymbol",
                "params": {"textDocument": {"uri": uri}}}),
        );
    }
    let one = answer_to(&mut first, &json!("same"));
    let two = answer_to(&mut second, &json!("same"));
    let names = |answer: &Value| -> Vec<String> {
        answer["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&one), vec!["only_in_one"], "{one}");
    assert_eq!(names(&two), vec!["OnlyInTwo"], "{two}");
    // Hover works through the relay too (any LSP feature does).
    send(
        &mut first,
        json!({"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": {
            "textDocument": {"uri": url_of(&format!("{root}/one.py"))},
            "position": {"line": 0, "character": 6}}}),
    );
    let hover = answer_to(&mut first, &json!(2));
    assert!(hover.get("error").is_none(), "{hover}");
    // The REST routes still use the same server.
    let symbols = json(
        daemon.get(&format!(
            "/lsp/document-symbols?languageId=python&pathToProject={}&uri={}",
            q(&root),
            q(&format!("file://{root}/two.py"))
        )),
        200,
    );
    assert_eq!(symbols[0]["name"], "OnlyInTwo", "{symbols}");
    let servers = descendants(daemon.pid())
        .into_iter()
        .filter(|pid| cmdline(*pid).contains("pylsp"))
        .count();
    assert_eq!(servers, 1, "one server is shared");
}

fn url_of(path: &str) -> String {
    format!("file://{}", path.replace(' ', "%20"))
}

/// Processes anywhere whose command line is exactly `needle`.
fn running(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| is_alive(*pid) && cmdline(*pid).trim_end() == needle)
        .collect()
}

#[test]
fn daemon_shutdown_stops_every_server_and_its_tree() {
    // A server whose wrapper outlives it (as tsserver outlives a killed parent): only killing
    // the whole tree ends it. `sleep 98761` marks it.
    let pylsp = lsp_bins()[0].join("pylsp");
    let command = json!([
        "sh",
        "-c",
        format!("{} ; exec sleep 98761", pylsp.display())
    ]);
    let mut daemon = daemon_with_env(&[("TOOLBOXD_LSP_PYTHON", &command.to_string())]);
    let py = project(&daemon, "p", &[("a.py", "x = 1\n")]);
    let ts = project(&daemon, "t", &[("a.ts", "const x = 1;\n")]);
    start(&daemon, "python", &py);
    start(&daemon, "typescript", &ts);
    let servers = descendants(daemon.pid());
    assert!(servers.len() >= 3, "{servers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("daemon exited");
    assert!(status.success(), "{status:?}");
    let alive: Vec<String> = servers
        .into_iter()
        .filter(|pid| is_alive(*pid))
        .map(cmdline)
        .collect();
    assert!(alive.is_empty(), "left running: {alive:?}");
    assert_eq!(running("sleep 98761"), Vec::<i32>::new());
}

#[test]
fn stop_kills_the_whole_server_tree() {
    let pylsp = lsp_bins()[0].join("pylsp");
    let command = json!([
        "sh",
        "-c",
        format!("{} ; exec sleep 98762", pylsp.display())
    ]);
    let daemon = daemon_with_env(&[("TOOLBOXD_LSP_PYTHON", &command.to_string())]);
    let root = project(&daemon, "p", &[("a.py", "x = 1\n")]);
    start(&daemon, "python", &root);
    json_or_empty(daemon.post_json(
        "/lsp/stop",
        &json!({"languageId": "python", "pathToProject": root}),
    ));
    assert_eq!(running("sleep 98762"), Vec::<i32>::new());
    assert!(descendants(daemon.pid()).is_empty());
}

/// A daemon with the LSP servers on PATH and extra environment.
fn daemon_with_env(vars: &[(&str, &str)]) -> Toolboxd {
    let mut path: Vec<PathBuf> = lsp_bins();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let mut env = vec![(
        "PATH".to_string(),
        std::env::join_paths(path).unwrap().into_string().unwrap(),
    )];
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Toolboxd::start_with(StartOptions {
        env,
        ..StartOptions::default()
    })
}

/// Issue 17: a relay message may hold 16 MiB (the JSON body limit); one byte more closes the
/// socket with 1009 naming the limit, and the next relay client is served.
#[test]
fn relay_messages_are_taken_up_to_16_mib() {
    const MAX: usize = 16 * 1024 * 1024;
    let daemon = lsp_daemon();
    let root = project(&daemon, "big", &[("a.py", "x = 1\n")]);
    start(&daemon, "python", &root);
    let initialize = |id: u64, size: usize| {
        let mut text = json!({"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"processId": null, "rootUri": null, "capabilities": {}}})
        .to_string();
        // JSON allows whitespace after the value.
        text.extend(std::iter::repeat_n(' ', size - text.len()));
        tungstenite::Message::Text(text.into())
    };
    let mut socket = relay_connect(&daemon, "python", &root);
    socket.send(initialize(1, MAX)).unwrap();
    let init = answer_to(&mut socket, &json!(1));
    assert!(init["result"]["capabilities"].is_object(), "{init}");
    // One byte more: refused from the frame's header.
    crate::limits::send_oversized(&socket, MAX + 1);
    let close = loop {
        match socket.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame.expect("a close frame"),
            Ok(_) => {}
            Err(err) => panic!("no close frame: {err}"),
        }
    };
    assert_eq!(u16::from(close.code), 1009);
    assert!(
        close.reason.contains(&format!("at most {MAX}")),
        "{}",
        close.reason
    );
    let mut next = relay_connect(&daemon, "python", &root);
    send(
        &mut next,
        json!({"jsonrpc": "2.0", "id": 3, "method": "initialize",
            "params": {"processId": null, "rootUri": null, "capabilities": {}}}),
    );
    assert!(answer_to(&mut next, &json!(3))["result"]["capabilities"].is_object());
}
