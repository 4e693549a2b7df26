//! The web terminal listener (`--terminal-addr`): the page, its embedded files and `/ws`.

use std::time::Duration;

use crate::harness::{assert_error, json, Client, StartOptions, Toolboxd};
use crate::pty::{run, run_last, wait_dead, PtyClient};

fn start() -> (Toolboxd, String) {
    let daemon = Toolboxd::start_with(StartOptions {
        terminal: true,
        ..StartOptions::default()
    });
    let base = daemon.terminal_base.clone().expect("terminal address");
    (daemon, base)
}

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn the_page_and_every_file_it_loads_are_served_from_the_binary() {
    let (_daemon, base) = start();
    let http = client();
    let page = http.get(format!("{base}/")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let html = page.text().unwrap();
    // Relative URLs only, so the page also works under /proxy/22222/.
    let mut loaded = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for part in html.split(attribute).skip(1) {
            let url = part.split('"').next().unwrap();
            assert!(!url.starts_with('/') && !url.contains("://"), "{url}");
            loaded.push(url.to_string());
        }
    }
    assert!(
        loaded.contains(&"assets/xterm.js".to_string()),
        "{loaded:?}"
    );
    assert!(loaded.contains(&"assets/addon-fit.js".to_string()));
    assert!(loaded.contains(&"assets/addon-web-links.js".to_string()));
    assert!(loaded.contains(&"assets/addon-unicode11.js".to_string()));
    assert!(loaded.contains(&"assets/xterm.css".to_string()));
    for url in &loaded {
        let response = http.get(format!("{base}/{url}")).send().unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let expected = if url.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(kind.starts_with(expected), "{url}: {kind}");
        assert!(!response.bytes().unwrap().is_empty(), "{url}");
    }
    let xterm = http.get(format!("{base}/assets/xterm.js")).send().unwrap();
    let etag = xterm.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        xterm.bytes().unwrap().as_ref(),
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/terminal/assets/xterm.js"
        ))
        .unwrap()
    );
    let again = http
        .get(format!("{base}/assets/xterm.js"))
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_error(
        http.get(format!("{base}/assets/nope.js")).send().unwrap(),
        404,
        "NOT_FOUND",
    );
    assert_error(
        http.post(format!("{base}/")).send().unwrap(),
        405,
        "METHOD_NOT_ALLOWED",
    );
    assert_error(
        http.get(format!("{base}/ws")).send().unwrap(),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn the_socket_runs_a_login_shell_in_the_work_dir() {
    let (daemon, base) = start();
    let mut term = PtyClient::open(&base, "/ws?cols=100&rows=30", &[]);
    assert_eq!(term.protocol, None);
    term.type_text("echo hello-$((6*7))\r");
    term.read_until("hello-42");
    assert_eq!(run(&mut term, "stty size"), "30 100");
    assert_eq!(run(&mut term, "echo $TERM"), "xterm-256color");
    assert_eq!(
        run(&mut term, "shopt -q login_shell && echo login"),
        "login"
    );
    assert_eq!(
        run(&mut term, "pwd"),
        std::fs::canonicalize(&daemon.workdir)
            .unwrap()
            .to_str()
            .unwrap()
    );
    // Not a listed PTY.
    assert_eq!(
        json(daemon.get("/process/pty"), 200)["sessions"],
        serde_json::json!([])
    );
    // UTF-8 split across reads arrives intact (the page's xterm decodes across frames).
    assert_eq!(
        run(
            &mut term,
            "printf 'caf\\303'; sleep 0.2; printf '\\251-ok\\n'"
        ),
        "café-ok"
    );
    term.type_text("exit\r");
    let (code, reason) = term.read_to_close();
    assert_eq!(code, 1000);
    assert_eq!(reason, r#"{"exitCode":0}"#);
}

#[test]
fn only_a_json_object_of_exactly_rows_and_cols_is_a_resize() {
    let (_daemon, base) = start();
    let mut term = PtyClient::open(&base, "/ws", &[]);
    assert_eq!(run(&mut term, "stty size"), "24 80");
    term.send_text(r#"{"rows":40,"cols":120}"#);
    assert_eq!(run(&mut term, "stty size"), "40 120");
    // Anything else is typed, text frames included.
    for typed in [
        r#"{"rows":5,"cols":7,"x":1}"#,
        r#"{"rows":"5","cols":7}"#,
        r#"{"hello":"world"}"#,
        "{}",
    ] {
        term.type_text("printf '<%s>\\n' '");
        term.send_text(typed);
        let from = term.output.len();
        term.type_text("'\r");
        term.read_until_after(from, &format!("<{typed}>"));
    }
    assert_eq!(run(&mut term, "stty size"), "40 120");
    // Binary frames are always typed, even when they look like a resize.
    term.type_text("printf '<%s>\\n' '");
    term.type_text(r#"{"rows":5,"cols":7}"#);
    let from = term.output.len();
    term.type_text("'\r");
    term.read_until_after(from, r#"<{"rows":5,"cols":7}>"#);
    assert_eq!(run(&mut term, "stty size"), "40 120");
}

#[test]
fn closing_the_socket_ends_the_shell_and_its_tree() {
    let (_daemon, base) = start();
    let mut term = PtyClient::open(&base, "/ws", &[]);
    let pids = run_last(&mut term, "sleep 1000 & echo $$ $!");
    let mut first = PtyClient::open(&base, "/ws", &[]);
    let other = run_last(&mut first, "echo $$");
    term.close();
    for pid in pids.split_whitespace() {
        wait_dead(pid.parse().unwrap());
    }
    // Each connection has its own shell: the other one lives on.
    assert_eq!(run(&mut first, "echo $$"), other);
}

#[test]
fn in_local_sdk_mode_foreign_pages_and_host_names_are_refused() {
    let daemon = Toolboxd::start_with(StartOptions {
        terminal: true,
        sdk_api: true,
        ..StartOptions::default()
    });
    let base = daemon.terminal_base.clone().unwrap();
    let http = client();
    assert_error(
        http.get(format!("{base}/ws"))
            .header("Origin", "https://evil.example")
            .send()
            .unwrap(),
        403,
        "FORBIDDEN",
    );
    assert_error(
        http.get(format!("{base}/"))
            .header("Host", "evil.example:22222")
            .send()
            .unwrap(),
        403,
        "FORBIDDEN",
    );
    let local = http
        .get(format!("{base}/"))
        .header("Origin", "http://127.0.0.1:2280")
        .send()
        .unwrap();
    assert_eq!(local.status(), 200);
    // A sandbox's terminal (no local SDK mode) is behind the platform's proxy: any origin.
    let (_sandbox, open) = start();
    let foreign = http
        .get(format!("{open}/"))
        .header("Origin", "https://22222-sandbox.proxy.example")
        .send()
        .unwrap();
    assert_eq!(foreign.status(), 200);
}
