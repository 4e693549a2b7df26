//! Interpreter contexts and the execute WebSocket (daytona-wire §5.2): state that persists,
//! isolation, timeouts that interrupt (4008) and leave the context usable, frames in order,
//! chart frames, a JavaScript context.

use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::Message;

use crate::code::{charts_bin, daemon_with_path, node_project};
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

/// Where `/proc/<pid>/fd/<fd>` points, or `None` when the descriptor is closed.
fn fd_target(pid: i32, fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|target| target.display().to_string())
}

fn wait_gone(pid: i32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while is_alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} lived on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A job runs its own code and returns its own output, whatever came before it.
fn assert_in_step(daemon: &Toolboxd, context: &str, rounds: u32) {
    for n in 0..rounds {
        let run = execute(
            daemon,
            &json!({"contextId": context, "code": format!("print('job', {n})"), "timeout": 20}),
        );
        assert_eq!(run.close, Some(1000), "{run:?}");
        assert_eq!(run.text("stdout"), format!("job {n}\n"), "{run:?}");
        assert_eq!(run.text("stderr"), "", "{run:?}");
        let kinds: Vec<&str> = run
            .frames
            .iter()
            .map(|f| f["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["stdout", "control"], "{run:?}");
    }
}

/// Issue 12, item 3: after `os.fork()` in a job, both processes served jobs and every later run
/// returned the previous job's output. The fork's child now never reads a job or writes a frame
/// (fds 3 and 4 are /dev/null in it at once) and exits when the job's code returns in it, with
/// the code's status.
#[test]
fn a_forked_child_never_serves_jobs() {
    let daemon = Toolboxd::start();
    let context = json(
        daemon.post_json("/process/interpreter/context", &json!({})),
        200,
    );
    let id = context["id"].as_str().unwrap();
    let worker = execute(
        &daemon,
        &json!({"contextId": id, "code": "import os, sys, time\nkept = 'state'\nprint(os.getpid())"}),
    );
    let worker: i32 = worker.text("stdout").trim().parse().unwrap();
    // The child falls off the end of the job's code; the parent waits for it.
    let waited = execute(
        &daemon,
        &json!({"contextId": id, "timeout": 20, "code":
            "pid = os.fork()\nif pid == 0:\n    print('child')\nelse:\n    os.waitpid(pid, 0)\n    print('parent')"}),
    );
    assert_eq!(waited.close, Some(1000), "{waited:?}");
    assert_eq!(waited.text("stdout"), "child\nparent\n", "{waited:?}");
    assert_in_step(&daemon, id, 3);
    // The child's own exit status and its error (on its stderr, never an error frame).
    let status = execute(
        &daemon,
        &json!({"contextId": id, "timeout": 20, "code":
            "pid = os.fork()\nif pid == 0:\n    raise SystemExit(7)\nprint(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))"}),
    );
    assert_eq!(status.text("stdout"), "7\n", "{status:?}");
    let failed = execute(
        &daemon,
        &json!({"contextId": id, "timeout": 20, "code":
            "pid = os.fork()\nif pid == 0:\n    1 / 0\nprint(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))"}),
    );
    assert_eq!(failed.text("stdout"), "1\n", "{failed:?}");
    assert!(
        failed.text("stderr").contains("ZeroDivisionError"),
        "{failed:?}"
    );
    assert!(
        failed.frames.iter().all(|f| f["type"] != "error"),
        "{failed:?}"
    );
    // A child that outlives its job holds no protocol pipe (from the moment its code runs), and
    // ends when its code does.
    let forked = daemon.workdir.join("forked");
    let detached = execute(
        &daemon,
        &json!({"contextId": id, "code": format!(
            "pid = os.fork()\nif pid == 0:\n    open({:?}, 'w').close()\n    time.sleep(1.5)\nelse:\n    print(pid)",
            forked.display().to_string()
        )}),
    );
    let child: i32 = detached.text("stdout").trim().parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !forked.exists() {
        assert!(std::time::Instant::now() < deadline, "the child never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    for fd in [3, 4] {
        let target = fd_target(child, fd);
        assert_eq!(target.as_deref(), Some("/dev/null"), "fd {fd} of the child");
        assert!(
            fd_target(worker, fd).unwrap().starts_with("pipe:"),
            "fd {fd} of the worker"
        );
    }
    assert_in_step(&daemon, id, 3);
    wait_gone(child);
    assert_in_step(&daemon, id, 3);
    let state = execute(&daemon, &json!({"contextId": id, "code": "print(kept)"}));
    assert_eq!(state.text("stdout"), "state\n", "{state:?}");
}

/// Node starts a child program by exec, and the worker's protocol pipes are close-on-exec (Node
/// marks inherited descriptors so): neither `child_process` nor `fork()` hands them on.
#[test]
fn a_javascript_contexts_children_hold_no_protocol_pipe() {
    let daemon = Toolboxd::start();
    std::fs::write(
        daemon.workdir.join("kid.js"),
        "const fs = require('fs');\n\
         const fds = fs.readdirSync('/proc/self/fd').map((fd) => { try { return fs.readlinkSync('/proc/self/fd/' + fd) } catch { return '' } });\n\
         process.send(fds, () => process.exit(0));\n",
    )
    .unwrap();
    let context = json(
        daemon.post_json(
            "/process/interpreter/context",
            &json!({"language": "javascript"}),
        ),
        200,
    );
    let id = context["id"].as_str().unwrap();
    let run = execute(
        &daemon,
        &json!({"contextId": id, "timeout": 20, "code": r#"
const fs = require('fs'), cp = require('child_process');
const protocol = [3, 4].map((fd) => fs.readlinkSync('/proc/self/fd/' + fd));
const shell = cp.execSync('ls -l /proc/self/fd/', { encoding: 'utf8' });
(async () => {
  const kid = cp.fork('kid.js');
  const fds = await new Promise((resolve) => kid.on('message', resolve));
  console.log(JSON.stringify({ protocol, shell, fork: fds }));
})()"#}),
    );
    assert_eq!(run.close, Some(1000), "{run:?}");
    let seen: Value = serde_json::from_str(&run.text("stdout")).unwrap();
    for pipe in seen["protocol"].as_array().unwrap() {
        let pipe = pipe.as_str().unwrap();
        assert!(pipe.starts_with("pipe:"), "{seen}");
        assert!(!seen["shell"].as_str().unwrap().contains(pipe), "{seen}");
        assert!(
            !seen["fork"].as_array().unwrap().contains(&json!(pipe)),
            "{seen}"
        );
    }
}

/// Issue 12, item 4: after `os.close(1); os.close(2)` every later job failed with `Bad file
/// descriptor`. The Python worker puts the pipes back (state kept); a worker that cannot (Node)
/// is replaced after the job, and the next job is told its state is gone.
#[test]
fn closed_stdout_and_stderr_are_restored_or_the_worker_restarts() {
    let daemon = Toolboxd::start();
    let context = json(
        daemon.post_json("/process/interpreter/context", &json!({})),
        200,
    );
    let id = context["id"].as_str().unwrap();
    execute(
        &daemon,
        &json!({"contextId": id, "code": "import os, sys\nkept = 5"}),
    );
    for breaking in [
        "os.close(1)\nos.close(2)",
        "os.close(1)\nos.close(2)\nlog = open('other.log', 'w')", // takes fd 1
        "os.dup2(os.open('other.log', os.O_WRONLY | os.O_CREAT), 1)",
        "sys.stdout.close()\nsys.stderr.close()",
    ] {
        let broke = execute(&daemon, &json!({"contextId": id, "code": breaking}));
        assert_eq!(broke.close, Some(1000), "{breaking}: {broke:?}");
        let next = execute(
            &daemon,
            &json!({"contextId": id, "code": "print(kept)\nprint('err', file=sys.stderr)"}),
        );
        assert_eq!(next.text("stdout"), "5\n", "{breaking}: {next:?}");
        assert_eq!(next.text("stderr"), "err\n", "{breaking}: {next:?}");
        assert_eq!(next.frames.last().unwrap()["text"], "completed");
    }
    // In the job that closes it, printing fails; what Python kept buffered goes out once the
    // worker has put the pipe back, at the end of that job (never in the next one).
    let same = execute(
        &daemon,
        &json!({"contextId": id, "code": "os.close(1)\nprint(kept)"}),
    );
    assert!(
        same.frames.iter().any(|f| f["name"] == "OSError"),
        "{same:?}"
    );
    assert_eq!(same.text("stdout"), "5\n", "{same:?}");
    assert_in_step(&daemon, id, 2);

    let js = json(
        daemon.post_json(
            "/process/interpreter/context",
            &json!({"language": "javascript"}),
        ),
        200,
    );
    let js = js["id"].as_str().unwrap();
    for fd in [1, 2] {
        execute(&daemon, &json!({"contextId": js, "code": "var kept = 5"}));
        let broke = execute(
            &daemon,
            &json!({"contextId": js, "code": format!("require('fs').closeSync({fd})")}),
        );
        assert_eq!(broke.close, Some(1000), "{broke:?}");
        assert!(
            broke
                .text("stderr")
                .contains("closed the interpreter's stdout or stderr"),
            "{broke:?}"
        );
        let next = execute(
            &daemon,
            &json!({"contextId": js, "code": "console.log(typeof kept); console.error('err')"}),
        );
        assert_eq!(next.close, Some(1000), "{next:?}");
        assert_eq!(next.text("stdout"), "undefined\n", "{next:?}");
        let stderr = next.text("stderr");
        assert!(
            stderr.contains("restarted") && stderr.contains("state") && stderr.ends_with("err\n"),
            "{next:?}"
        );
        let after = execute(
            &daemon,
            &json!({"contextId": js, "code": "console.log(1 + 1)"}),
        );
        assert_eq!(after.text("stdout"), "2\n", "{after:?}");
        assert_eq!(after.text("stderr"), "", "{after:?}");
    }
}

/// A job in flight when toolboxd shuts down, and one queued behind it, get an `error` frame
/// and close 1011 saying so, rather than whatever their worker's death would have made of them.
#[test]
fn shutdown_answers_running_and_queued_jobs() {
    let mut daemon = Toolboxd::start();
    let started = daemon.workdir.join("started");
    let code = format!(
        "import time\nopen({:?}, 'w').close()\ntime.sleep(60)",
        started.display().to_string()
    );
    let running = submit(
        &daemon.base,
        Message::Text(json!({"code": code}).to_string().into()),
    );
    let running = std::thread::spawn(move || read_run(running));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let queued = submit(
        &daemon.base,
        Message::Text(json!({"code": "print('never')"}).to_string().into()),
    );
    let queued = std::thread::spawn(move || read_run(queued));
    std::thread::sleep(Duration::from_millis(300)); // let it queue
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    for run in [running.join().unwrap(), queued.join().unwrap()] {
        assert_eq!(run.close, Some(1011), "{run:?}");
        assert!(run.reason.starts_with("SHUTTING_DOWN"), "{run:?}");
        let last = run.frames.last().expect("an error frame");
        assert_eq!(last["type"], "error", "{run:?}");
        assert_eq!(last["name"], "SHUTTING_DOWN", "{run:?}");
        assert!(
            last["value"].as_str().unwrap().contains("shutting down"),
            "{run:?}"
        );
        assert_eq!(run.text("stdout"), "", "{run:?}");
    }
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("toolboxd exited");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// `require` and `import()` in a JavaScript context resolve from the context's working
/// directory (the worker's own `require` resolved from toolboxd's temp dir, so neither the
/// project's `./helper` nor its `node_modules` were found).
#[test]
fn javascript_contexts_resolve_modules_from_their_working_directory() {
    let daemon = Toolboxd::start();
    node_project(&daemon);
    let context = json(
        daemon.post_json(
            "/process/interpreter/context",
            &json!({"language": "javascript"}),
        ),
        200,
    );
    let id = context["id"].as_str().unwrap();
    let run = execute(
        &daemon,
        &json!({"contextId": id, "code": "console.log(require('./helper').who, require('fakepkg').name)"}),
    );
    assert_eq!(run.text("stdout"), "helper fakepkg\n", "{run:?}");
    let run = execute(
        &daemon,
        &json!({"contextId": id, "code": "Promise.all([import('./helper.js'), import('fakepkg')]).then(([h, p]) => console.log(h.default.who, p.default.name))"}),
    );
    assert_eq!(run.text("stdout"), "helper fakepkg\n", "{run:?}");
    // No loader warning among the user's output.
    assert_eq!(run.text("stderr"), "", "{run:?}");
    // A context in a subdirectory resolves from there.
    let sub = json(
        daemon.post_json(
            "/process/interpreter/context",
            &json!({"language": "javascript", "cwd": daemon.path("sub")}),
        ),
        200,
    );
    let run = execute(
        &daemon,
        &json!({"contextId": sub["id"], "code": "console.log(require('./helper').who)"}),
    );
    assert_eq!(run.text("stdout"), "sub/helper\n", "{run:?}");
}
