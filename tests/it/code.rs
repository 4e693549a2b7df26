//! `POST /process/code-run`: real argv, envs, timeouts with tree kill, every chart captured on
//! a private channel (never from program output).
//!
//! Chart tests need a Python with matplotlib, numpy and pillow: `tests/run.sh` makes
//! `target/sdk-venv`; `TOOLBOXD_TEST_CHARTS_PYTHON_BIN` may name another `bin` directory.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// The `bin` directory of a Python that has matplotlib.
pub(crate) fn charts_bin() -> PathBuf {
    let bin = std::env::var_os("TOOLBOXD_TEST_CHARTS_PYTHON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin"));
    assert!(
        bin.join("python3").exists(),
        "no Python with matplotlib at {}: run tests/run.sh (it creates target/sdk-venv)",
        bin.display()
    );
    bin
}

/// A daemon whose children find `dirs` first on PATH.
pub(crate) fn daemon_with_path(dirs: &[PathBuf]) -> Toolboxd {
    let mut path: Vec<PathBuf> = dirs.to_vec();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    Toolboxd::start_with(StartOptions {
        env: vec![(
            "PATH".to_string(),
            std::env::join_paths(path).unwrap().into_string().unwrap(),
        )],
        ..StartOptions::default()
    })
}

fn run(daemon: &Toolboxd, body: Value) -> Value {
    json(daemon.post_json("/process/code-run", &body), 200)
}

#[test]
fn python_gets_real_argv_and_envs() {
    let daemon = Toolboxd::start();
    let argv = ["a1", "b 2", "it's \"q\"", "", "$HOME;`x`"];
    let out = run(
        &daemon,
        json!({"language": "python", "argv": argv, "envs": {"FOO": "bar baz"},
            "code": "import sys, os, json\nprint(json.dumps(sys.argv[1:]))\nprint(os.environ['FOO'])"}),
    );
    assert_eq!(out["exitCode"], 0, "{out}");
    let mut lines = out["result"].as_str().unwrap().lines();
    let got: Vec<String> = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(got, argv);
    assert_eq!(lines.next(), Some("bar baz"));
    assert!(out.get("artifacts").is_none(), "{out}");
}

#[test]
fn javascript_runs_with_daytonas_argv_and_exit_code() {
    let daemon = Toolboxd::start();
    let out = run(
        &daemon,
        json!({"language": "javascript", "argv": ["x y", "z"],
            "code": "console.log(JSON.stringify(process.argv.slice(1)));\nconsole.error('oops');\nprocess.exit(4)"}),
    );
    assert_eq!(out["exitCode"], 4, "{out}");
    assert_eq!(out["stdout"], "[\"x y\",\"z\"]\n");
    assert_eq!(out["stderr"], "oops\n");
    // An error's line number is the user's own line.
    let out = run(
        &daemon,
        json!({"language": "javascript", "code": "\n\nnull.x"}),
    );
    assert_eq!(out["exitCode"], 1);
    assert!(
        out["result"].as_str().unwrap().contains("/[code].js:3"),
        "{out}"
    );
}

/// The `result` of a failed JavaScript or TypeScript run, checked to show the user's code and
/// positions only: no line of ours, no frame of Node's or of the runner.
fn failed_node_run(daemon: &Toolboxd, language: &str, code: &str) -> String {
    let out = run(
        daemon,
        json!({"language": language, "code": code, "argv": ["a"]}),
    );
    assert_eq!(out["exitCode"], 1, "{out}");
    let result = out["result"].as_str().unwrap().to_string();
    for ours in [
        "process.argv.splice",
        "node:internal",
        "toolboxd_run",
        "Module._compile",
    ] {
        assert!(!result.contains(ours), "{ours} in {result}");
    }
    result
}

/// Issue 12, item 9: a JavaScript error on line 1 showed the injected `process.argv.splice(1, 1);`
/// with columns 26 too far right, and Node's internal frames under the user's.
#[test]
fn javascript_and_typescript_errors_show_the_users_code_and_positions() {
    let daemon = daemon_with_path(&[node_bin("tsx")]);
    let result = failed_node_run(
        &daemon,
        "javascript",
        "const n = 1; null.x\nconsole.log('never')",
    );
    assert!(
        result.contains("/[code].js:1\nconst n = 1; null.x\n                  ^\n"),
        "{result}"
    );
    assert!(
        result.contains("at Object.<anonymous> (") && result.contains("/[code].js:1:19)"),
        "{result}"
    );
    // Frames of the user's functions, down to the top level and no further.
    let result = failed_node_run(
        &daemon,
        "javascript",
        "function inner() { throw new RangeError('deep') }\nfunction outer() { inner() }\nouter()",
    );
    let frames: Vec<&str> = result
        .lines()
        .filter(|line| line.trim_start().starts_with("at "))
        .collect();
    assert_eq!(frames.len(), 3, "{result}");
    for (frame, place) in
        frames
            .iter()
            .zip(["/[code].js:1:26)", "/[code].js:2:20)", "/[code].js:3:1)"])
    {
        assert!(frame.ends_with(place), "{frame} in {result}");
    }
    // A syntax error: the line and caret, no compiler frames.
    let result = failed_node_run(&daemon, "javascript", "let x = ;");
    assert!(
        result.contains("/[code].js:1\nlet x = ;\n        ^") && result.contains("SyntaxError"),
        "{result}"
    );
    // A caught error's stack is trimmed the same way, and argv is still Daytona's.
    let out = run(
        &daemon,
        json!({"language": "javascript", "argv": ["x"], "code":
            "try { null.y } catch (e) { console.log(e.stack.split('\\n').length, process.argv.slice(1)) }"}),
    );
    assert_eq!(out["result"], "2 [ 'x' ]\n", "{out}");
    // TypeScript (tsx maps positions back to the .ts source).
    let result = failed_node_run(
        &daemon,
        "typescript",
        "const n: number = 1; (null as any).x",
    );
    assert!(
        result.contains("code.ts:1\nconst n: number = 1; (null as any).x\n"),
        "{result}"
    );
    assert!(result.contains("code.ts:1:36)"), "{result}");
}

/// Puts a helper module in the work dir (and another in `sub/`) and a package in its
/// `node_modules`, as a user's project would have them.
pub(crate) fn node_project(daemon: &Toolboxd) {
    let write = |path: &str, text: &str| {
        let path = daemon.path(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("helper.js", "exports.who = 'helper';\n");
    write("sub/helper.js", "exports.who = 'sub/helper';\n");
    write(
        "node_modules/fakepkg/package.json",
        r#"{"name": "fakepkg", "main": "main.js"}"#,
    );
    write(
        "node_modules/fakepkg/main.js",
        "exports.name = 'fakepkg';\n",
    );
}

/// Follow-up 1, item 1: the code ran from a private temp directory, so `require('./helper')`
/// and `require('fakepkg')` (installed in the work dir) were not found; Daytona's `node -`
/// resolves both from the working directory.
#[test]
fn javascript_resolves_modules_from_the_working_directory() {
    let daemon = Toolboxd::start();
    node_project(&daemon);
    let code = "const { who } = require('./helper');\n\
        const { name } = require('fakepkg');\n\
        Promise.all([import('./helper.js'), import('fakepkg')]).then(([h, p]) => {\n\
          console.log(who, name, h.default.who, p.default.name, process.argv.slice(1).join('|'));\n\
          console.log(__dirname === process.cwd(), require.resolve('./helper'));\n\
        });\n";
    let out = run(
        &daemon,
        json!({"language": "javascript", "code": code, "argv": ["a b", "c"]}),
    );
    assert_eq!(out["exitCode"], 0, "{out}");
    assert_eq!(
        out["result"],
        format!(
            "helper fakepkg helper fakepkg a b|c\ntrue {}\n",
            daemon.path("helper.js").display()
        )
    );
    // From the request's cwd: its own helper, and packages from the directories above.
    let out = run(
        &daemon,
        json!({"language": "javascript", "code": code, "cwd": "sub"}),
    );
    assert_eq!(out["exitCode"], 0, "{out}");
    assert!(
        out["result"]
            .as_str()
            .unwrap()
            .starts_with("sub/helper fakepkg sub/helper fakepkg \ntrue "),
        "{out}"
    );
    // Nothing is written into the working directory.
    let mut names: Vec<String> = std::fs::read_dir(&daemon.workdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["helper.js", "node_modules", "sub"]);
    // Errors still show the user's lines and columns, under the name the code ran as.
    let result = failed_node_run(
        &daemon,
        "javascript",
        "const { who } = require('./helper');\nfunction f() { null.x }\nf()",
    );
    let name = daemon.path("[code].js").display().to_string();
    assert!(
        result.contains(&format!("{name}:2\nfunction f() {{ null.x }}\n")),
        "{result}"
    );
    let frames: Vec<&str> = result
        .lines()
        .filter(|line| line.trim_start().starts_with("at "))
        .collect();
    assert_eq!(
        frames,
        [
            format!("    at f ({name}:2:21)"),
            format!("    at Object.<anonymous> ({name}:3:1)")
        ],
        "{result}"
    );
    // A module that is not there is the user's error, said the way Node says it.
    let out = run(
        &daemon,
        json!({"language": "javascript", "code": "require('./nothing')"}),
    );
    assert_eq!(out["exitCode"], 1, "{out}");
    assert!(
        out["result"]
            .as_str()
            .unwrap()
            .contains("Cannot find module './nothing'"),
        "{out}"
    );
    assert_error(
        daemon.post_json(
            "/process/code-run",
            &json!({"language": "javascript", "code": "1", "cwd": "nowhere"}),
        ),
        400,
        "BAD_REQUEST",
    );
}

/// TypeScript code importing the same modules (`import` statements and `import()`).
const TS_IMPORTS: &str = "import { who } from './helper';\n\
    import { name } from 'fakepkg';\n\
    const n: number = 2;\n\
    import('./helper.js').then((h: any) => console.log(who, name, n, h.who, process.argv.slice(1).join('|')));\n";

#[test]
fn typescript_resolves_modules_from_the_working_directory() {
    let daemon = daemon_with_path(&[node_bin("tsx")]);
    node_project(&daemon);
    let out = run(
        &daemon,
        json!({"language": "typescript", "code": TS_IMPORTS, "argv": ["x"]}),
    );
    assert_eq!(out["exitCode"], 0, "{out}");
    assert_eq!(out["result"], "helper fakepkg 2 helper x\n");
    let out = run(
        &daemon,
        json!({"language": "typescript", "code": TS_IMPORTS, "cwd": "sub"}),
    );
    assert_eq!(out["result"], "sub/helper fakepkg 2 sub/helper \n", "{out}");
    // Positions are still the user's (tsx maps them back to the source).
    let result = failed_node_run(
        &daemon,
        "typescript",
        "import { who } from './helper';\nconst n: number = 1; (null as any).x",
    );
    assert!(result.contains("code.ts:2:36)"), "{result}");
}

#[test]
fn typescript_through_ts_node_resolves_modules_from_the_working_directory() {
    if node_strips_types() {
        eprintln!("SKIP: this node strips types itself, so ts-node is never the fallback");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(which("node"), dir.path().join("node")).unwrap();
    std::os::unix::fs::symlink(
        node_bin("ts-node").join("ts-node"),
        dir.path().join("ts-node"),
    )
    .unwrap();
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("PATH".into(), dir.path().display().to_string())],
        ..StartOptions::default()
    });
    node_project(&daemon);
    let out = run(
        &daemon,
        json!({"language": "typescript", "code": TS_IMPORTS, "argv": ["x"]}),
    );
    assert_eq!(out["exitCode"], 0, "{out}");
    assert_eq!(out["result"], "helper fakepkg 2 helper x\n");
    // ts-node's source maps still apply: the user's line and column.
    let result = failed_node_run(
        &daemon,
        "typescript",
        "import { who } from './helper';\nconst n: number = 1; (null as any).x",
    );
    assert!(result.contains("code.ts:2:36)"), "{result}");
}

/// Issue 12, item 9: `/process/execute` says `truncated`, code-run said nothing.
#[test]
fn code_run_says_whether_its_output_was_truncated() {
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("TOOLBOXD_MAX_OUTPUT".into(), "1000".into())],
        ..StartOptions::default()
    });
    let out = run(
        &daemon,
        json!({"language": "python", "code": "print('x' * 5000)"}),
    );
    assert_eq!(out["truncated"], true, "{out}");
    assert!(
        out["result"].as_str().unwrap().contains("output truncated"),
        "{out}"
    );
    let out = run(
        &daemon,
        json!({"language": "python", "code": "print('ok')"}),
    );
    assert_eq!(out["truncated"], false, "{out}");
    assert_eq!(out["result"], "ok\n");
}

#[test]
fn errors_exit_codes_and_bad_bytes() {
    let daemon = Toolboxd::start();
    let out = run(
        &daemon,
        json!({"language": "python", "code": "def f(:\n  pass"}),
    );
    assert_eq!(out["exitCode"], 1, "{out}");
    let result = out["result"].as_str().unwrap();
    assert!(result.contains("SyntaxError"), "{result}");
    assert!(!result.contains("toolboxd_run"), "{result}");
    let out = run(
        &daemon,
        json!({"language": "python", "code": "def g():\n    raise ValueError('boom')\ng()"}),
    );
    assert_eq!(out["exitCode"], 1);
    let result = out["result"].as_str().unwrap();
    assert!(
        result.contains("ValueError: boom") && result.contains("line 2"),
        "{result}"
    );
    assert!(
        !result.contains("toolboxd_run") && !result.contains("runpy"),
        "{result}"
    );
    let out = run(
        &daemon,
        json!({"language": "python", "code": "raise SystemExit(3)"}),
    );
    assert_eq!(out["exitCode"], 3);
    let out = run(
        &daemon,
        json!({"language": "python", "code": "import sys\nsys.stdout.buffer.write(b'\\xff\\xfeok\\n')"}),
    );
    assert_eq!(out["result"], "\u{FFFD}\u{FFFD}ok\n");
    assert_error(
        daemon.post_json(
            "/process/code-run",
            &json!({"language": "ruby", "code": "p 1"}),
        ),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post_json(
            "/process/code-run",
            &json!({"language": "python", "code": "  "}),
        ),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post_json(
            "/process/code-run",
            &json!({"language": "python", "code": "1", "envs": {"A-B": "x"}}),
        ),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn timeout_kills_the_programs_children() {
    let daemon = Toolboxd::start();
    let pid_file = daemon.workdir.join("child.pid");
    let code = format!(
        "import subprocess, time\np = subprocess.Popen(['sleep', '60'])\nopen({:?}, 'w').write(str(p.pid))\ntime.sleep(60)",
        pid_file.display().to_string()
    );
    let started = std::time::Instant::now();
    let response = daemon.post_json(
        "/process/code-run",
        &json!({"language": "python", "code": code, "timeout": 1}),
    );
    assert_error(response, 408, "PROCESS_EXECUTION_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(20));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while is_alive(pid) {
        assert!(std::time::Instant::now() < deadline, "sleep {pid} survived");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn typescript_without_a_runner_names_what_to_install() {
    // Only node 20 (no type stripping) and no tsx/ts-node on PATH.
    let dir = tempfile::tempdir().unwrap();
    let node = which("node");
    std::os::unix::fs::symlink(&node, dir.path().join("node")).unwrap();
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("PATH".into(), dir.path().display().to_string())],
        ..StartOptions::default()
    });
    let response = daemon.post_json(
        "/process/code-run",
        &json!({"language": "typescript", "code": "const x: number = 1; console.log(x)"}),
    );
    if node_strips_types() {
        let out = json(response, 200);
        assert_eq!(out["result"], "1\n", "{out}");
    } else {
        let body = assert_error(response, 400, "BAD_REQUEST");
        assert!(body["message"].as_str().unwrap().contains("tsx"), "{body}");
    }
    let body = assert_error(
        daemon.post_json(
            "/process/code-run",
            &json!({"language": "python", "code": "1"}),
        ),
        400,
        "BAD_REQUEST",
    );
    assert!(
        body["message"].as_str().unwrap().contains("python3"),
        "{body}"
    );
}

/// tests/sdk/ts/node_modules/.bin, where `npm ci` put tsx and ts-node (dev dependencies).
fn node_bin(tool: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/ts/node_modules/.bin");
    assert!(
        bin.join(tool).exists(),
        "{tool} is a dev dependency of tests/sdk/ts: run `npm ci` there (tests/run.sh does)"
    );
    bin
}

/// Typed code whose argv (two arguments, one with a space) must arrive intact.
fn assert_typescript_runs(daemon: &Toolboxd) {
    let out = run(
        daemon,
        json!({"language": "typescript", "argv": ["a b", "c"],
            "code": "const args: string[] = process.argv.slice(1);\nconsole.log(JSON.stringify(args));"}),
    );
    assert_eq!(out["exitCode"], 0, "{out}");
    assert_eq!(out["result"], "[\"a b\",\"c\"]\n");
}

#[test]
fn typescript_runs_through_tsx_when_installed() {
    assert_typescript_runs(&daemon_with_path(&[node_bin("tsx")]));
}

/// Whether the installed node runs TypeScript itself (22.6 and newer): the daemon then prefers
/// it to ts-node.
fn node_strips_types() -> bool {
    let version = std::process::Command::new(which("node"))
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major: u32 = parts.next().unwrap().parse().unwrap();
    let minor: u32 = parts.next().unwrap().parse().unwrap();
    (major, minor) >= (22, 6)
}

/// Without tsx and with a node too old to strip types (the CI's node 20), ts-node runs it.
#[test]
fn typescript_falls_back_to_ts_node() {
    if node_strips_types() {
        eprintln!("SKIP: this node strips types itself, so ts-node is never the fallback");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(which("node"), dir.path().join("node")).unwrap();
    std::os::unix::fs::symlink(
        node_bin("ts-node").join("ts-node"),
        dir.path().join("ts-node"),
    )
    .unwrap();
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("PATH".into(), dir.path().display().to_string())],
        ..StartOptions::default()
    });
    assert_typescript_runs(&daemon);
}

#[test]
fn charts_arrive_as_artifacts_and_output_cannot_forge_them() {
    let daemon = daemon_with_path(&[charts_bin()]);
    let code = r#"
import matplotlib.pyplot as plt
print('dtn_artifact_k39fd2:{"type":"chart","value":{"type":"line","title":"forged"}}')
print('{"type":"chart","value":{"type":"bar","title":"forged"}}')
plt.plot([1, 2, 3], [4, 5, 6], label="up")
plt.title("Line")
plt.xlabel("x")
plt.ylabel("y")
plt.show()
plt.figure()
plt.bar(["a", "b"], [3, 7])
plt.title("Never shown")
"#;
    let out = run(&daemon, json!({"language": "python", "code": code}));
    assert_eq!(out["exitCode"], 0, "{out}");
    let result = out["result"].as_str().unwrap();
    assert!(
        result.contains("forged"),
        "program output is kept as output: {result}"
    );
    let charts = out["artifacts"]["charts"].as_array().expect("charts");
    assert_eq!(charts.len(), 2, "{charts:?}");
    let line = &charts[0];
    assert_eq!(line["type"], "line");
    assert_eq!(line["title"], "Line");
    assert_eq!(line["x_label"], "x");
    assert_eq!(line["elements"][0]["label"], "up");
    assert_eq!(
        line["elements"][0]["points"],
        json!([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]])
    );
    assert!(line["png"].as_str().unwrap().len() > 100);
    let bar = &charts[1];
    assert_eq!(bar["type"], "bar");
    assert_eq!(bar["title"], "Never shown");
    let values: Vec<&str> = bar["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().expect("bar values are strings"))
        .collect();
    assert_eq!(values.len(), 2);
    assert_eq!(values[0].parse::<f64>().unwrap(), 3.0);
    // Text the chart lacks is left out, not null (Daytona's shape; TS users test `undefined`).
    for key in ["x_label", "y_label"] {
        assert!(bar.get(key).is_none(), "{key} in {bar}");
    }
    assert!(bar["elements"][0].get("group").is_none(), "{bar}");
    assert!(!result.contains("\"png\""), "no chart data in result");
}

fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed"))
}
