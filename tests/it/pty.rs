//! PTYs over HTTP and WebSocket: `/process/pty…`, `connect` and `create-connect`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

use crate::harness::{assert_error, is_alive, json, Toolboxd};

pub(crate) const EXIT_CONTROL: &str = "X-Daytona-Pty-Exit-Control";

/// A client attached to a PTY.
pub(crate) struct PtyClient {
    socket: tungstenite::WebSocket<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    /// Every output byte so far (binary frames).
    pub output: Vec<u8>,
    /// Text frames, parsed.
    pub controls: Vec<Value>,
    /// The close frame: code and reason.
    pub close: Option<(u16, String)>,
}

impl PtyClient {
    /// Opens `path` (e.g. `/process/pty/ID/connect`) offering `protocols`.
    pub(crate) fn open(base: &str, path: &str, protocols: &[&str]) -> PtyClient {
        PtyClient::try_open(base, path, protocols).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    pub(crate) fn try_open(
        base: &str,
        path: &str,
        protocols: &[&str],
    ) -> Result<PtyClient, tungstenite::Error> {
        let url = format!("{}{}", base.replacen("http://", "ws://", 1), path);
        let mut request = url.into_client_request().unwrap();
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                protocols.join(", ").parse().unwrap(),
            );
        }
        let (socket, response) = tungstenite::connect(request)?;
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        Ok(PtyClient {
            socket,
            protocol: response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_string()),
            output: Vec::new(),
            controls: Vec::new(),
            close: None,
        })
    }

    /// Types `text` (a binary frame, as the SDKs send input).
    pub(crate) fn type_text(&mut self, text: &str) {
        self.socket
            .send(Message::Binary(text.as_bytes().to_vec().into()))
            .unwrap();
    }

    /// Sends a text frame.
    pub(crate) fn send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.into())).unwrap();
    }

    /// Reads one frame (or nothing within 100 ms); false once the connection is over.
    fn pump(&mut self) -> bool {
        match self.socket.read() {
            Ok(Message::Binary(data)) => self.output.extend_from_slice(&data),
            Ok(Message::Text(text)) => self
                .controls
                .push(serde_json::from_str(&text).unwrap_or(Value::String(text.to_string()))),
            Ok(Message::Close(frame)) => {
                self.close = Some(
                    frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                );
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return false
            }
            Err(err) => panic!("websocket error: {err}"),
        }
        true
    }

    /// Reads until the output holds `needle` (after `from` bytes), up to 30 s; returns the output
    /// from `from` on.
    pub(crate) fn read_until_after(&mut self, from: usize, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut searched = from.min(self.output.len());
        loop {
            let start = searched.saturating_sub(needle.len()).max(from);
            if self.output[start..]
                .windows(needle.len().max(1))
                .any(|window| window == needle.as_bytes())
            {
                return String::from_utf8_lossy(&self.output[from..]).into_owned();
            }
            searched = self.output.len();
            if Instant::now() >= deadline || self.close.is_some() || !self.pump() {
                let tail = &self.output[self.output.len().saturating_sub(2000).max(from)..];
                panic!(
                    "no {needle:?} in the output (close {:?}); its end: {:?}",
                    self.close,
                    String::from_utf8_lossy(tail)
                );
            }
        }
    }

    /// Reads until the output holds `needle`.
    pub(crate) fn read_until(&mut self, needle: &str) -> String {
        self.read_until_after(0, needle)
    }

    /// Reads until the server's close frame (up to 30 s) and returns it.
    pub(crate) fn read_to_close(&mut self) -> (u16, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.close.is_none() {
            assert!(
                Instant::now() < deadline,
                "no close frame; output ends {:?}",
                String::from_utf8_lossy(&self.output[self.output.len().saturating_sub(2000)..])
            );
            if !self.pump() {
                break;
            }
        }
        self.close.clone().expect("a close frame")
    }

    /// Closes from the client side.
    pub(crate) fn close(mut self) {
        let _ = self.socket.close(None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.pump() {}
    }
}

/// Runs `command` in the PTY and returns what it printed between two markers.
pub(crate) fn run(client: &mut PtyClient, command: &str) -> String {
    let from = client.output.len();
    let id = uuid_like();
    // The markers are built by the shell, so the echo of the typed line does not match.
    client.type_text(&format!(
        "echo \"<$((1)){id}>\"; {command}; echo \"</$((1)){id}>\"\n"
    ));
    let out = client.read_until_after(from, &format!("</1{id}>"));
    let start = out.find(&format!("<1{id}>")).unwrap() + id.len() + 4;
    let end = out.find(&format!("</1{id}>")).unwrap();
    out[start..end].trim().replace("\r\n", "\n")
}

/// The last line `command` printed (job notices such as `[1] 123` come before it).
pub(crate) fn run_last(client: &mut PtyClient, command: &str) -> String {
    run(client, command)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("m{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn create(daemon: &Toolboxd, body: Value) -> Value {
    json(daemon.post_json("/process/pty", &body), 201)
}

/// Waits up to 10 s for `pid` to be gone.
pub(crate) fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_connect_echoes_and_reports_exit_0() {
    let daemon = Toolboxd::start();
    let mut client = PtyClient::open(
        &daemon.base,
        "/process/pty/create-connect?id=echo&cols=80&rows=24",
        &[EXIT_CONTROL],
    );
    assert_eq!(client.protocol.as_deref(), Some(EXIT_CONTROL));
    // `connected` comes before anything else.
    while client.controls.is_empty() {
        assert!(client.pump());
    }
    assert_eq!(
        client.controls[0],
        json!({"type": "control", "status": "connected"})
    );
    client.type_text("echo hello-$((6*7))\n");
    client.read_until("hello-42");
    client.type_text("exit 0\n");
    let (code, reason) = client.read_to_close();
    assert_eq!(code, 1000);
    assert_eq!(
        serde_json::from_str::<Value>(&reason).unwrap(),
        json!({"exitCode": 0})
    );
    assert_eq!(
        client.controls.last().unwrap(),
        &json!({"type": "control", "status": "exited", "exitCode": 0})
    );
    // An ended PTY is taken off the list (its id says it ended: see below).
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.get("/process/pty/echo").status() != 410 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Follow-up 1, item 3: resizing a PTY whose shell had exited answered 404 (the id was forgotten
/// at once); Daytona answers 410 Gone, which the SDKs raise as `DaytonaGoneError`.
#[test]
fn an_ended_pty_answers_410_until_its_id_is_used_again() {
    let daemon = Toolboxd::start();
    let mut client = PtyClient::open(
        &daemon.base,
        "/process/pty/create-connect?id=brief",
        &[EXIT_CONTROL],
    );
    client.type_text("exit 0\n");
    assert_eq!(client.read_to_close().0, 1000);
    // (The end is published to the client just before the PTY is taken off the list.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.get("/process/pty/brief").status() == 200 {
        assert!(Instant::now() < deadline, "the ended PTY is still there");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        json(daemon.get("/process/pty"), 200),
        json!({"sessions": []})
    );
    let body = assert_error(
        daemon.post_json(
            "/process/pty/brief/resize",
            &json!({"cols": 90, "rows": 20}),
        ),
        410,
        "GONE",
    );
    assert_eq!(
        body["message"],
        "pty session brief has terminated and cannot be resized"
    );
    assert_error(daemon.get("/process/pty/brief"), 410, "GONE");
    // A bad size is still a 400, and an id that never existed still a 404.
    assert_error(
        daemon.post_json("/process/pty/brief/resize", &json!({"cols": 0, "rows": 20})),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post_json(
            "/process/pty/never/resize",
            &json!({"cols": 90, "rows": 20}),
        ),
        404,
        "NOT_FOUND",
    );
    assert_error(daemon.get("/process/pty/never"), 404, "NOT_FOUND");
    // Connecting says it ended, in band.
    let mut late = PtyClient::open(&daemon.base, "/process/pty/brief/connect", &[EXIT_CONTROL]);
    assert_eq!(late.read_to_close().0, 1008);
    assert!(
        late.controls[0]["error"]
            .as_str()
            .unwrap()
            .contains("has terminated"),
        "{:?}",
        late.controls
    );
    // The id can be used again: then it names the new PTY.
    create(&daemon, json!({"id": "brief"}));
    json(
        daemon.post_json(
            "/process/pty/brief/resize",
            &json!({"cols": 90, "rows": 20}),
        ),
        200,
    );
    let deleted = json(daemon.delete("/process/pty/brief"), 200);
    assert_eq!(deleted, json!({"message": "PTY session deleted"}));
    // A deleted PTY is gone without a trace (404), as before.
    assert_error(
        daemon.post_json(
            "/process/pty/brief/resize",
            &json!({"cols": 90, "rows": 20}),
        ),
        404,
        "NOT_FOUND",
    );
    // Deleting one that ended by itself succeeds (Daytona's does) and forgets it.
    let mut client = PtyClient::open(
        &daemon.base,
        "/process/pty/create-connect?id=brief",
        &[EXIT_CONTROL],
    );
    client.type_text("exit 3\n");
    assert_eq!(client.read_to_close().0, 1011);
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.get("/process/pty/brief").status() != 410 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    json(daemon.delete("/process/pty/brief"), 200);
    assert_error(daemon.delete("/process/pty/brief"), 404, "NOT_FOUND");
    assert_error(daemon.get("/process/pty/brief"), 404, "NOT_FOUND");
}

#[test]
fn exit_3_is_reported_in_the_control_frame_and_the_close_reason() {
    let daemon = Toolboxd::start();
    let mut client = PtyClient::open(
        &daemon.base,
        "/process/pty/create-connect?id=three",
        &[EXIT_CONTROL],
    );
    client.type_text("exit 3\n");
    let (code, reason) = client.read_to_close();
    assert_eq!(code, 1011);
    let expected = json!({"exitCode": 3, "exitReason": "non-zero exit"});
    assert_eq!(serde_json::from_str::<Value>(&reason).unwrap(), expected);
    let exited = client.controls.last().unwrap();
    assert_eq!(exited["status"], "exited");
    assert_eq!(exited["exitCode"], 3);
    assert_eq!(exited["exitReason"], "non-zero exit");
}

#[test]
fn the_shell_has_the_pty_as_controlling_terminal_and_job_control() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "tty"}));
    let mut client = PtyClient::open(&daemon.base, "/process/pty/tty/connect", &[EXIT_CONTROL]);
    let tty = run(&mut client, "tty");
    assert!(tty.starts_with("/dev/pts/"), "{tty}");
    let ctty = run(&mut client, "ps -o tty= -p $$");
    assert_eq!(format!("/dev/{ctty}"), tty);
    // A login, interactive shell with job control (monitor mode needs a controlling terminal).
    assert_eq!(run(&mut client, "echo $- | grep -c m"), "1");
    assert_eq!(
        run(&mut client, "shopt -q login_shell && echo login"),
        "login"
    );
    // A background job gets its own group; the shell's group is the foreground one.
    let groups = run_last(
        &mut client,
        "sleep 30 & echo $(ps -o pgid= -p $!) $(ps -o tpgid= -p $$) $$; kill %1",
    );
    let groups: Vec<&str> = groups.split_whitespace().collect();
    assert_ne!(groups[0], groups[2], "job in its own group: {groups:?}");
    assert_eq!(
        groups[1], groups[2],
        "the shell is in the foreground: {groups:?}"
    );
    assert_eq!(run(&mut client, "echo $TERM"), "xterm-256color");
    assert_eq!(
        run(&mut client, "pwd"),
        std::fs::canonicalize(&daemon.workdir)
            .unwrap()
            .to_str()
            .unwrap()
    );
}

#[test]
fn stty_size_follows_a_resize() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "size", "cols": 100, "rows": 30}));
    let mut client = PtyClient::open(&daemon.base, "/process/pty/size/connect", &[EXIT_CONTROL]);
    assert_eq!(run(&mut client, "stty size"), "30 100");
    let info = json(
        daemon.post_json(
            "/process/pty/size/resize",
            &json!({"cols": 120, "rows": 40}),
        ),
        200,
    );
    assert_eq!(
        (info["cols"].as_u64(), info["rows"].as_u64()),
        (Some(120), Some(40))
    );
    assert_eq!(info["id"], "size");
    assert_eq!(run(&mut client, "stty size"), "40 120");
    // The foreground program is told (SIGWINCH).
    let from = client.output.len();
    client.type_text(
        "bash -c 'trap \"echo winch-\\$(stty size | tr \\\" \\\" x); exit\" WINCH; \
         echo ready-$((1+1)); while :; do sleep 0.05; done'\n",
    );
    client.read_until_after(from, "ready-2");
    json(
        daemon.post_json("/process/pty/size/resize", &json!({"cols": 90, "rows": 20})),
        200,
    );
    client.read_until_after(from, "winch-20x90");
    for bad in [
        json!({"cols": 0, "rows": 20}),
        json!({"cols": 80, "rows": 1001}),
    ] {
        assert_error(
            daemon.post_json("/process/pty/size/resize", &bad),
            400,
            "BAD_REQUEST",
        );
    }
    assert_error(
        daemon.post_json("/process/pty/size/resize", &json!({"cols": -1, "rows": 20})),
        400,
        "INVALID_REQUEST_BODY",
    );
    assert_error(
        daemon.post_json("/process/pty/nope/resize", &json!({"cols": 80, "rows": 20})),
        404,
        "NOT_FOUND",
    );
    assert_eq!(run(&mut client, "stty size"), "20 90");
}

#[test]
fn two_clients_see_the_same_output_and_both_can_type() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "two"}));
    let mut first = PtyClient::open(&daemon.base, "/process/pty/two/connect", &[EXIT_CONTROL]);
    let mut second = PtyClient::open(&daemon.base, "/process/pty/two/connect", &[EXIT_CONTROL]);
    first.type_text("echo from-first-$((1+1))\n");
    first.read_until("from-first-2");
    second.read_until("from-first-2");
    second.type_text("echo from-second-$((2+2))\n");
    first.read_until("from-second-4");
    second.read_until("from-second-4");
    // One leaves; the other stays attached.
    first.close();
    second.type_text("echo still-$((3+3))\n");
    second.read_until("still-6");
}

/// A client that leaves while output streams gets the reply to its close frame: the server's
/// next write fails once the client closed, and the reply it owes still goes out (once, CI saw
/// the connection drop "without closing handshake").
#[test]
fn a_client_that_closes_while_output_streams_gets_the_closing_handshake() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "busy"}));
    let mut writer = PtyClient::open(&daemon.base, "/process/pty/busy/connect", &[EXIT_CONTROL]);
    writer.type_text("yes busy-$((6*7))\n");
    writer.read_until("busy-42\r\nbusy-42\r\n");
    for _ in 0..20 {
        let mut client =
            PtyClient::open(&daemon.base, "/process/pty/busy/connect", &[EXIT_CONTROL]);
        client.read_until("busy-42\r\nbusy-42\r\n");
        // Panics on a connection that ends without the server's close frame.
        client.close();
    }
    let info = json(daemon.get("/process/pty/busy"), 200);
    assert_eq!(info["active"], true, "{info}");
}

#[test]
fn a_late_joiner_gets_the_scrollback_first() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "late"}));
    let mut early = PtyClient::open(&daemon.base, "/process/pty/late/connect", &[EXIT_CONTROL]);
    early.type_text("echo early-$((2*3))\n");
    early.read_until("early-6");
    early.close();
    let mut late = PtyClient::open(&daemon.base, "/process/pty/late/connect", &[EXIT_CONTROL]);
    // Before anything new is typed, the replay holds what was printed before.
    late.read_until("early-6");
    assert_eq!(late.controls[0]["status"], "connected");
    late.type_text("echo then-$((3*3))\n");
    late.read_until("then-9");
}

#[test]
fn the_scrollback_is_bounded_and_starts_on_a_clean_line() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "big"}));
    let mut writer = PtyClient::open(&daemon.base, "/process/pty/big/connect", &[EXIT_CONTROL]);
    // 600 KiB of numbered lines, each with a colour escape and a multi-byte character.
    writer.type_text(
        "for i in $(seq 1 6000); do printf '\\033[32m%05d é\\033[0m %s\\n' $i \
         xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done; \
         echo done-$((40+2))\n",
    );
    writer.read_until("done-42");
    writer.close();
    let mut late = PtyClient::open(&daemon.base, "/process/pty/big/connect", &[EXIT_CONTROL]);
    late.read_until("done-42");
    let replay = late.output.clone();
    assert!(replay.len() <= 256 * 1024, "{} bytes", replay.len());
    assert!(replay.len() > 200 * 1024, "{} bytes", replay.len());
    assert!(
        std::str::from_utf8(&replay).is_ok(),
        "cut inside a character"
    );
    assert_eq!(
        replay[0],
        0x1b,
        "starts with a whole escape sequence: {:?}",
        &replay[..20]
    );
    assert!(replay.starts_with(b"\x1b[32m"), "{:?}", &replay[..20]);
}

#[test]
fn kill_ends_the_whole_tree_and_tells_the_clients() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "doomed"}));
    let mut client = PtyClient::open(&daemon.base, "/process/pty/doomed/connect", &[EXIT_CONTROL]);
    // A job, a job in a session of its own, and an orphan (reparented to toolboxd).
    let pids = run_last(
        &mut client,
        "sleep 1000 & a=$!; setsid sh -c 'echo $$ >b.pid; exec sleep 1001' & \
         sh -c 'sleep 1002 >/dev/null 2>&1 & echo $! >c.pid'; \
         until [ -s b.pid ] && [ -s c.pid ]; do sleep 0.05; done; \
         echo $$ $a $(cat b.pid) $(cat c.pid)",
    );
    let pids: Vec<i32> = pids
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 4, "{pids:?}");
    for pid in &pids {
        assert!(is_alive(*pid), "{pid}");
    }
    let deleted = json(daemon.delete("/process/pty/doomed"), 200);
    assert_eq!(deleted, json!({"message": "PTY session deleted"}));
    let (code, reason) = client.read_to_close();
    assert_eq!(code, 1011);
    assert_eq!(
        serde_json::from_str::<Value>(&reason).unwrap(),
        json!({"exitCode": 137, "exitReason": "SIGKILL"})
    );
    assert_eq!(client.controls.last().unwrap()["exitCode"], 137);
    for pid in pids {
        wait_dead(pid);
    }
    assert_error(daemon.get("/process/pty/doomed"), 404, "NOT_FOUND");
    assert_error(daemon.delete("/process/pty/doomed"), 404, "NOT_FOUND");
    // The id is free again.
    create(&daemon, json!({"id": "doomed"}));
}

#[test]
fn a_shell_that_exits_takes_its_background_jobs_along() {
    let daemon = Toolboxd::start();
    let mut client = PtyClient::open(
        &daemon.base,
        "/process/pty/create-connect?id=jobs",
        &[EXIT_CONTROL],
    );
    let job = run_last(&mut client, "nohup sleep 1000 >/dev/null 2>&1 & echo $!")
        .parse::<i32>()
        .unwrap();
    client.type_text("exit\n");
    let (code, _) = client.read_to_close();
    assert_eq!(code, 1000);
    wait_dead(job);
}

#[test]
fn create_connect_takes_envs_cwd_and_size_from_the_sdk_wire() {
    use base64::Engine;
    let daemon = Toolboxd::start();
    std::fs::create_dir(daemon.path("sub dir")).unwrap();
    let envs = json!({"MY_VAR": "hello world", "TERM": "xterm"}).to_string();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(envs);
    let mut client = PtyClient::open(
        &daemon.base,
        "/process/pty/create-connect?id=env&cols=132&rows=43&cwd=sub+dir",
        &[&format!("X-Daytona-Pty-Envs~{encoded}"), EXIT_CONTROL],
    );
    assert_eq!(client.protocol.as_deref(), Some(EXIT_CONTROL));
    assert_eq!(
        run(&mut client, "echo \"v=$MY_VAR t=$TERM\""),
        "v=hello world t=xterm"
    );
    assert_eq!(run(&mut client, "stty size"), "43 132");
    assert!(run(&mut client, "pwd").ends_with("/sub dir"));
    let info = json(daemon.get("/process/pty/env"), 200);
    assert_eq!(
        info["envs"],
        json!({"MY_VAR": "hello world", "TERM": "xterm"})
    );
    assert_eq!(info["active"], true);
    assert!(info["cwd"].as_str().unwrap().ends_with("/sub dir"));
    // A taken id is refused before the upgrade, as is bad input.
    for (path, status) in [
        ("/process/pty/create-connect?id=env", 409),
        ("/process/pty/create-connect?id=x&cols=0", 400),
        ("/process/pty/create-connect?id=x&rows=abc", 400),
        ("/process/pty/create-connect?id=", 400),
        ("/process/pty/create-connect?id=x&cwd=missing", 400),
    ] {
        match PtyClient::try_open(&daemon.base, path, &[EXIT_CONTROL]) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), status, "{path}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["source"], "DAYTONA_DAEMON", "{path}");
            }
            Err(other) => panic!("{path}: {other}"),
            Ok(_) => panic!("{path}: upgraded"),
        }
    }
    match PtyClient::try_open(
        &daemon.base,
        "/process/pty/create-connect?id=y",
        &["X-Daytona-Pty-Envs~not base64!", EXIT_CONTROL],
    ) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        _ => panic!("bad envs accepted"),
    }
    // None of the refused ones was created.
    let list = json(daemon.get("/process/pty"), 200);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn the_exit_control_subprotocol_is_echoed_only_when_offered() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "proto"}));
    let path = "/process/pty/proto/connect";
    let offered = PtyClient::open(&daemon.base, path, &[EXIT_CONTROL]);
    assert_eq!(offered.protocol.as_deref(), Some(EXIT_CONTROL));
    // A browser SDK also offers its version; exit control is still the one selected.
    let browser = PtyClient::open(
        &daemon.base,
        path,
        &["X-Daytona-SDK-Version~0.226.1", EXIT_CONTROL],
    );
    assert_eq!(browser.protocol.as_deref(), Some(EXIT_CONTROL));
    let version_only = PtyClient::open(&daemon.base, path, &["X-Daytona-SDK-Version~0.226.1"]);
    assert_eq!(
        version_only.protocol.as_deref(),
        Some("X-Daytona-SDK-Version~0.226.1")
    );
    let mut plain = PtyClient::open(&daemon.base, path, &[]);
    assert_eq!(plain.protocol, None);
    // Without exit control, no `exited` frame: the close frame alone carries the exit.
    plain.type_text("exit 5\n");
    let (code, reason) = plain.read_to_close();
    assert_eq!(code, 1011);
    assert_eq!(
        serde_json::from_str::<Value>(&reason).unwrap()["exitCode"],
        5
    );
    assert_eq!(
        plain.controls,
        vec![json!({"type": "control", "status": "connected"})]
    );
    drop((offered, browser, version_only));
}

#[test]
fn the_api_lists_gets_and_refuses_bad_input() {
    let daemon = Toolboxd::start();
    let created = create(
        &daemon,
        json!({"id": "lazy", "lazyStart": true, "envs": {"A": "1"}, "cols": 90, "rows": 30}),
    );
    assert_eq!(created, json!({"sessionId": "lazy"}));
    create(&daemon, json!({"id": "eager"}));
    let list = json(daemon.get("/process/pty"), 200);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["id"], "lazy");
    let lazy = &sessions[0];
    for key in [
        "id",
        "cwd",
        "envs",
        "cols",
        "rows",
        "createdAt",
        "active",
        "lazyStart",
    ] {
        assert!(lazy.get(key).is_some(), "{key} missing: {lazy}");
    }
    assert_eq!(lazy["active"], false);
    assert_eq!(lazy["lazyStart"], true);
    assert_eq!(lazy["envs"], json!({"A": "1", "TERM": "xterm-256color"}));
    assert_eq!(
        (lazy["cols"].as_u64(), lazy["rows"].as_u64()),
        (Some(90), Some(30))
    );
    assert!(lazy["createdAt"].as_str().unwrap().contains('T'));
    assert_eq!(sessions[1]["active"], true);
    assert_eq!(sessions[1]["lazyStart"], false);
    // A lazy PTY starts on its first connect, at the size it was given.
    let mut client = PtyClient::open(&daemon.base, "/process/pty/lazy/connect", &[EXIT_CONTROL]);
    assert_eq!(run(&mut client, "stty size; echo $A"), "30 90\n1");
    assert_eq!(json(daemon.get("/process/pty/lazy"), 200)["active"], true);

    assert_error(
        daemon.post_json("/process/pty", &json!({"id": "eager"})),
        409,
        "CONFLICT",
    );
    for bad in [
        json!({"id": ""}),
        json!({"id": "a/b"}),
        json!({"id": "create-connect"}),
        json!({"id": "x", "cols": 0}),
        json!({"id": "x", "rows": 1001}),
        json!({"id": "x", "cwd": "not-there"}),
        json!({"id": "x", "envs": {"1BAD": "v"}}),
    ] {
        assert_error(daemon.post_json("/process/pty", &bad), 400, "BAD_REQUEST");
    }
    assert_error(
        daemon.post_json("/process/pty", &json!({"cols": 80})),
        400,
        "INVALID_REQUEST_BODY",
    );
    assert_error(daemon.get("/process/pty/none"), 404, "NOT_FOUND");
    // A plain GET of a socket route is a clear 400, not an upgrade error page.
    assert_error(daemon.get("/process/pty/lazy/connect"), 400, "BAD_REQUEST");
    assert_error(
        daemon.get("/process/pty/create-connect?id=q"),
        400,
        "BAD_REQUEST",
    );
    // None of the refused creates left anything.
    assert_eq!(
        json(daemon.get("/process/pty"), 200)["sessions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn connecting_to_a_missing_pty_is_reported_in_band() {
    let daemon = Toolboxd::start();
    let mut client = PtyClient::open(&daemon.base, "/process/pty/ghost/connect", &[EXIT_CONTROL]);
    let (code, reason) = client.read_to_close();
    assert_eq!(code, 1008);
    let reason: Value = serde_json::from_str(&reason).unwrap();
    assert!(
        reason["error"].as_str().unwrap().contains("ghost"),
        "{reason}"
    );
    assert_eq!(client.controls[0]["status"], "error");
    assert!(client.controls[0]["error"]
        .as_str()
        .unwrap()
        .contains("not found"));
}

#[test]
fn a_slow_client_is_dropped_while_the_others_and_the_program_go_on() {
    let daemon = Toolboxd::start();
    create(&daemon, json!({"id": "flood"}));
    let mut fast = PtyClient::open(&daemon.base, "/process/pty/flood/connect", &[EXIT_CONTROL]);
    let mut stalled = PtyClient::open(&daemon.base, "/process/pty/flood/connect", &[EXIT_CONTROL]);
    // The stalled client reads nothing from here on: 32 MB of output, at a pace the fast one
    // keeps up with, fill its socket buffers and then its 8 MiB queue.
    fast.type_text(
        "stty -echo; for i in $(seq 256); do head -c 131072 /dev/zero | tr '\\0' x; \
         sleep 0.01; done; echo; echo flood-$((5+5))\n",
    );
    fast.read_until("flood-10");
    let (code, reason) = stalled.read_to_close();
    assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
    // The PTY lives on; the dropped client may attach again.
    let mut again = PtyClient::open(&daemon.base, "/process/pty/flood/connect", &[EXIT_CONTROL]);
    assert_eq!(run(&mut again, "echo back"), "back");
}

#[test]
fn shutdown_ends_every_pty_tree() {
    let mut daemon = Toolboxd::start();
    create(&daemon, json!({"id": "a"}));
    let mut client = PtyClient::open(&daemon.base, "/process/pty/a/connect", &[EXIT_CONTROL]);
    let pids = run_last(&mut client, "sleep 1000 & echo $$ $!");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("toolboxd exited");
    assert!(status.success(), "{status:?}");
    for pid in pids.split_whitespace() {
        wait_dead(pid.parse().unwrap());
    }
}
