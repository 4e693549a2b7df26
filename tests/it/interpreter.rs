//! Interpreter contexts and the execute WebSocket (daytona-wire §5.2): state that persists,
//! isolation, timeouts that interrupt (4008) and leave the context usable, frames in order,
//! chart frames, a JavaScript context.

use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::Message;

use crate::code::{charts_bin, daemon_with_path};
use crate::harness::*;

/// What one execute WebSocket returned.
#[derive(Debug)]
struct Run {
    frames: Vec<Value>,
    close: Option<u16>,
    reason: String,
}

impl Run {
    fn text(&self, kind: &str) -> String {
        self.frames
            .iter()
            .filter(|f| f["type"] == kind)
            .map(|f| f["text"].as_str().unwrap().to_string())
            .collect()
    }
}

fn execute(daemon: &Toolboxd, request: &Value) -> Run {
    execute_raw(daemon, Message::Text(request.to_string().into()))
}

fn execute_raw(daemon: &Toolboxd, first: Message) -> Run {
    execute_raw_at(&daemon.base, first)
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Connects and sends the first frame: the job is the daemon's once this returns.
fn submit(base: &str, first: Message) -> Socket {
    let url = format!(
        "{}/process/interpreter/execute",
        base.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tungstenite::connect(url).expect("handshake");
    socket.send(first).unwrap();
    socket
}

fn execute_raw_at(base: &str, first: Message) -> Run {
    read_run(submit(base, first))
}

/// Reads a submitted job's frames up to the close.
fn read_run(mut socket: Socket) -> Run {
    let mut run = Run {
        frames: Vec::new(),
        close: None,
        reason: String::new(),
    };
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] != "chart" {
                    for key in ["type", "text", "name", "value", "traceback"] {
                        assert!(frame[key].is_string(), "{key} missing in {frame}");
                    }
                }
                run.frames.push(frame);
            }
            Ok(Message::Close(frame)) => {
                run.close = frame.as_ref().map(|f| u16::from(f.code));
                run.reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    run
}

#[test]
fn state_persists_and_frames_keep_their_order() {
    let daemon = Toolboxd::start();
    let first = execute(
        &daemon,
        &json!({"code": "import sys\nx = 41\nprint('one')\nprint('two', file=sys.stderr)\nprint('three')"}),
    );
    assert_eq!(first.close, Some(1000), "{first:?}");
    assert_eq!(first.text("stdout"), "one\nthree\n");
    assert_eq!(first.text("stderr"), "two\n");
    let order: Vec<&str> = first
        .frames
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(order.last(), Some(&"control"));
    assert_eq!(first.frames.last().unwrap()["text"], "completed");
    let second = execute(&daemon, &json!({"code": "print(x + 1)"}));
    assert_eq!(second.text("stdout"), "42\n");
    let error = execute(
        &daemon,
        &json!({"code": "print('before')\ndef f():\n    1/0\nf()"}),
    );
    assert_eq!(error.close, Some(1000));
    let kinds: Vec<&str> = error
        .frames
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["stdout", "error", "control"], "{error:?}");
    let frame = &error.frames[1];
    assert_eq!(frame["name"], "ZeroDivisionError");
    assert_eq!(frame["value"], "division by zero");
    let traceback = frame["traceback"].as_str().unwrap();
    assert!(
        traceback.contains("line 3") && !traceback.contains("toolboxd_worker"),
        "{traceback}"
    );
    let envs = execute(
        &daemon,
        &json!({"code": "import os\nprint(os.environ.get('ONLY_NOW'))", "envs": {"ONLY_NOW": "yes"}}),
    );
    assert_eq!(envs.text("stdout"), "yes\n");
    let after = execute(
        &daemon,
        &json!({"code": "import os\nprint(os.environ.get('ONLY_NOW'))"}),
    );
    assert_eq!(after.text("stdout"), "None\n");
}

#[test]
fn contexts_are_isolated_listed_and_deleted() {
    let daemon = Toolboxd::start();
    std::fs::create_dir(daemon.workdir.join("sub")).unwrap();
    let a = json(
        daemon.post_json("/process/interpreter/context", &json!({"cwd": "sub"})),
        200,
    );
    let b = json(
        daemon.post_json("/process/interpreter/context", &json!({})),
        200,
    );
    assert_eq!(a["language"], "python");
    assert_eq!(a["active"], true);
    assert!(a["cwd"].as_str().unwrap().ends_with("/sub"), "{a}");
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    execute(&daemon, &json!({"code": "v = 'a'", "contextId": a_id}));
    let in_b = execute(&daemon, &json!({"code": "print(v)", "contextId": b_id}));
    assert_eq!(in_b.frames[0]["name"], "NameError", "{in_b:?}");
    let in_a = execute(
        &daemon,
        &json!({"code": "import os\nprint(v, os.path.basename(os.getcwd()))", "contextId": a_id}),
    );
    assert_eq!(in_a.text("stdout"), "a sub\n");
    execute(&daemon, &json!({"code": "pass"}));
    let list = json(daemon.get("/process/interpreter/context"), 200);
    let ids: Vec<&str> = list["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "default excluded: {list}");
    let deleted = json(
        daemon.delete(&format!("/process/interpreter/context/{a_id}")),
        200,
    );
    assert_eq!(deleted["message"], "Context deleted successfully");
    assert_error(
        daemon.delete(&format!("/process/interpreter/context/{a_id}")),
        404,
        "NOT_FOUND",
    );
    assert_error(
        daemon.delete("/process/interpreter/context/default"),
        400,
        "BAD_REQUEST",
    );
    let gone = execute(&daemon, &json!({"code": "1", "contextId": a_id}));
    assert_eq!(gone.close, Some(1008));
    assert!(gone.reason.contains("context not found"), "{gone:?}");
    assert_error(
        daemon.post_json(
            "/process/interpreter/context",
            &json!({"language": "cobol"}),
        ),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn timeout_interrupts_and_the_context_survives() {
    let daemon = Toolboxd::start();
    execute(&daemon, &json!({"code": "kept = 7"}));
    let started = std::time::Instant::now();
    let slow = execute(
        &daemon,
        &json!({"code": "import time\ntime.sleep(30)", "timeout": 1}),
    );
    assert_eq!(slow.close, Some(4008), "{slow:?}");
    assert_eq!(slow.reason, "execution timed out after 1 s");
    assert!(started.elapsed() < Duration::from_secs(10));
    // No `control` frame: the TS SDK would settle on it as a success before the close.
    assert!(
        slow.frames.iter().all(|f| f["type"] != "control"),
        "{slow:?}"
    );
    let next = execute(&daemon, &json!({"code": "print(kept)"}));
    assert_eq!(next.text("stdout"), "7\n", "{next:?}");
    assert_eq!(next.frames.last().unwrap()["text"], "completed");
    // A job that ignores the interrupt costs the context its state, and says so.
    let stubborn = execute(
        &daemon,
        &json!({"code": "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(30)", "timeout": 1}),
    );
    assert_eq!(stubborn.close, Some(4008));
    assert!(
        stubborn.frames.iter().all(|f| f["type"] != "control"),
        "{stubborn:?}"
    );
    let fresh = execute(&daemon, &json!({"code": "print('kept' in globals())"}));
    assert!(fresh.text("stderr").contains("state"), "{fresh:?}");
    assert_eq!(fresh.text("stdout"), "False\n");
}

#[test]
fn an_interrupt_that_is_not_a_timeout_completes_as_interrupted() {
    let daemon = Toolboxd::start();
    // The code interrupts itself, well within its timeout.
    let run = execute(
        &daemon,
        &json!({"code": "print('a')\nraise KeyboardInterrupt", "timeout": 30}),
    );
    assert_eq!(run.close, Some(1000), "{run:?}");
    assert_eq!(run.text("stdout"), "a\n");
    assert_eq!(run.frames.last().unwrap()["type"], "control");
    assert_eq!(run.frames.last().unwrap()["text"], "interrupted");
    let next = execute(&daemon, &json!({"code": "print(1 + 1)"}));
    assert_eq!(next.text("stdout"), "2\n", "{next:?}");
}

#[test]
fn bad_requests_close_with_their_codes() {
    let daemon = Toolboxd::start();
    assert_eq!(
        execute_raw(&daemon, Message::Text("{nope".into())).close,
        Some(1002)
    );
    assert_eq!(execute(&daemon, &json!({"code": "  "})).close, Some(1008));
    assert_eq!(
        execute(&daemon, &json!({"code": "1", "timeout": -1})).close,
        Some(1008)
    );
    let unknown = execute(&daemon, &json!({"code": "1", "contextId": "nope"}));
    assert_eq!(unknown.close, Some(1008));
}

#[test]
fn javascript_contexts_keep_state() {
    let daemon = Toolboxd::start();
    let context = json(
        daemon.post_json(
            "/process/interpreter/context",
            &json!({"language": "javascript"}),
        ),
        200,
    );
    let id = context["id"].as_str().unwrap();
    assert_eq!(context["language"], "javascript");
    let first = execute(
        &daemon,
        &json!({"code": "let n = 20; const f = (x) => x * 2;", "contextId": id}),
    );
    assert_eq!(first.close, Some(1000), "{first:?}");
    let second = execute(
        &daemon,
        &json!({"code": "console.log(f(n) + 2); console.error('e')", "contextId": id}),
    );
    assert_eq!(second.text("stdout"), "42\n");
    assert_eq!(second.text("stderr"), "e\n");
    let awaited = execute(
        &daemon,
        &json!({"code": "(async () => { await new Promise(r => setTimeout(r, 50)); console.log('late') })()", "contextId": id}),
    );
    assert_eq!(awaited.text("stdout"), "late\n");
    let error = execute(
        &daemon,
        &json!({"code": "throw new TypeError('bad')", "contextId": id}),
    );
    assert_eq!(error.frames[0]["name"], "TypeError");
    assert!(!error.frames[0]["traceback"]
        .as_str()
        .unwrap()
        .contains("toolboxd_worker"));
    let spin = execute(
        &daemon,
        &json!({"code": "while (true) {}", "contextId": id, "timeout": 1}),
    );
    assert_eq!(spin.close, Some(4008));
    assert!(
        spin.frames.iter().all(|f| f["type"] != "control"),
        "{spin:?}"
    );
    let after = execute(&daemon, &json!({"code": "console.log(n)", "contextId": id}));
    assert_eq!(after.text("stdout"), "20\n");
}

#[test]
fn charts_shown_in_a_context_arrive_as_chart_frames() {
    let daemon = daemon_with_path(&[charts_bin()]);
    let run = execute(
        &daemon,
        &json!({"code": "import matplotlib.pyplot as plt\nprint('before')\nplt.plot([0, 1], [2, 3])\nplt.title('T')\nplt.show()\nprint('after')"}),
    );
    assert_eq!(run.close, Some(1000), "{run:?}");
    let kinds: Vec<&str> = run
        .frames
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["stdout", "chart", "stdout", "control"], "{run:?}");
    let chart = &run.frames[1]["value"];
    assert_eq!(chart["type"], "line");
    assert_eq!(chart["title"], "T");
    assert_eq!(
        chart["elements"][0]["points"],
        json!([[0.0, 2.0], [1.0, 3.0]])
    );
    // Text the chart lacks is left out, not null.
    assert!(chart.get("x_label").is_none() && chart.get("y_label").is_none());
    assert!(chart["elements"][0].get("label").is_none(), "{chart}");
}

#[test]
fn output_printed_after_a_chart_never_overtakes_it() {
    let daemon = daemon_with_path(&[charts_bin()]);
    // Output right after each show() raced the chart before charts were acknowledged.
    let code =
        "import matplotlib.pyplot as plt\nfor i in range(8):\n    print(f'before {i}')\n    \
                plt.plot([0, i]); plt.title(f'c{i}'); plt.show()\n    print(f'after {i}')\n";
    let run = execute(&daemon, &json!({"code": code}));
    assert_eq!(run.close, Some(1000), "{run:?}");
    let mut seen = Vec::new();
    for f in &run.frames {
        match f["type"].as_str().unwrap() {
            "stdout" => seen.extend(f["text"].as_str().unwrap().lines().map(str::to_string)),
            "chart" => seen.push(format!("chart {}", f["value"]["title"].as_str().unwrap())),
            other => seen.push(other.to_string()),
        }
    }
    let mut expected = Vec::new();
    for i in 0..8 {
        expected.extend([
            format!("before {i}"),
            format!("chart c{i}"),
            format!("after {i}"),
        ]);
    }
    expected.push("control".to_string());
    assert_eq!(seen, expected);
    // The context is still in step: the next job runs and answers.
    let next = execute(&daemon, &json!({"code": "print(40 + 2)"}));
    assert_eq!(next.text("stdout"), "42\n");
}

#[test]
fn a_worker_killed_between_jobs_restarts_and_says_its_state_is_gone() {
    let daemon = Toolboxd::start();
    let pid = execute(
        &daemon,
        &json!({"code": "import os\nkept = 1\nprint(os.getpid())"}),
    );
    let pid: i32 = pid.text("stdout").trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while is_alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "worker {pid} did not die"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200)); // let the reaper see it
    let next = execute(&daemon, &json!({"code": "print('kept' in globals())"}));
    assert_eq!(next.close, Some(1000), "{next:?}");
    assert!(next.text("stderr").contains("state"), "{next:?}");
    assert_eq!(next.text("stdout"), "False\n");
}

#[test]
fn imports_and_cwd_persist_between_runs() {
    let daemon = Toolboxd::start();
    std::fs::create_dir(daemon.workdir.join("deeper")).unwrap();
    let first = execute(
        &daemon,
        &json!({"code": "import json as j, os\nfrom pathlib import Path\nos.chdir('deeper')"}),
    );
    assert_eq!(first.close, Some(1000), "{first:?}");
    let second = execute(
        &daemon,
        &json!({"code": "print(j.dumps([1]), os.path.basename(os.getcwd()), Path('f').resolve().parent.name)"}),
    );
    assert_eq!(second.text("stdout"), "[1] deeper deeper\n", "{second:?}");
}

/// Three jobs sent to one context while the first is still running: they run one at a time, in
/// the order they arrived, and each sees what the one before it left.
#[test]
fn jobs_in_one_context_run_one_at_a_time_in_order() {
    let daemon = Toolboxd::start();
    let context = json(
        daemon.post_json("/process/interpreter/context", &json!({})),
        200,
    );
    let id = context["id"].as_str().unwrap().to_string();
    execute(
        &daemon,
        &json!({"code": "import os, time\nlog = []", "contextId": id}),
    );
    let started = daemon.workdir.join("first-started");
    let release = daemon.workdir.join("release");
    let job = |n: u32, code: &str| {
        let request = json!({
            "contextId": id,
            "code": format!("log.append(('start', {n}))\n{code}\nlog.append(('end', {n}))\nprint({n})"),
        });
        submit(&daemon.base, Message::Text(request.to_string().into()))
    };
    // Job 1 holds the context until the test releases it, after jobs 2 and 3 are queued.
    let first = job(
        1,
        &format!(
            "open({started:?}, 'w').close()\n\
             for _ in range(3000):\n    if os.path.exists({release:?}): break\n    time.sleep(0.01)",
            started = started.display().to_string(),
            release = release.display().to_string(),
        ),
    );
    let first = std::thread::spawn(move || read_run(first));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "job 1 never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = job(2, "time.sleep(0.2)");
    // Sent: give the daemon a moment to queue it before job 3 arrives.
    std::thread::sleep(Duration::from_millis(300));
    let third = job(3, "pass");
    let later = [second, third].map(|socket| std::thread::spawn(move || read_run(socket)));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&release, "").unwrap();
    let mut outputs = vec![first.join().unwrap().text("stdout")];
    outputs.extend(later.map(|t| t.join().unwrap().text("stdout")));
    assert_eq!(outputs, ["1\n", "2\n", "3\n"]);
    let log = execute(&daemon, &json!({"contextId": id, "code": "print(log)"}));
    assert_eq!(
        log.text("stdout"),
        "[('start', 1), ('end', 1), ('start', 2), ('end', 2), ('start', 3), ('end', 3)]\n",
        "{log:?}"
    );
}
