//! `/files/find`, `/files/search` and `/files/replace`.

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};

use crate::harness::*;

fn fixture(daemon: &Toolboxd) {
    write(
        &daemon.path("src/main.py"),
        "import os\nprint('needle')\n# NEEDLE upper\n",
    );
    write(&daemon.path("src/lib/util.py"), "def needle():\n    pass\n");
    write(&daemon.path(".git/config"), "[needle]\n");
    write(&daemon.path("data.bin"), b"needle\0binary");
    write(&daemon.path("ignored/out.txt"), "needle in ignored\n");
    write(&daemon.path(".gitignore"), "ignored/\n");
    write(
        &daemon.path("long.txt"),
        format!("{}needle\n", "y".repeat(100_000)),
    );
}

fn files_and_lines(value: &Value) -> Vec<(String, u64)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["file"].as_str().unwrap().to_string(),
                m["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn find_defaults_to_daytonas_literal_substring_semantics() {
    let daemon = Toolboxd::start();
    fixture(&daemon);
    let found = json(daemon.get("/files/find?path=.&pattern=needle"), 200);
    assert_eq!(
        files_and_lines(&found),
        [
            (".git/config".to_string(), 1),
            ("ignored/out.txt".to_string(), 1),
            ("long.txt".to_string(), 1),
            ("src/lib/util.py".to_string(), 1),
            ("src/main.py".to_string(), 2),
        ]
    );
    assert_eq!(found[4]["content"], "print('needle')");
    assert_eq!(
        found[2]["content"].as_str().unwrap().len(),
        100_006,
        "long lines are whole"
    );
    // Literal: regex metacharacters match themselves.
    assert_eq!(
        json(daemon.get("/files/find?path=.&pattern=ne.dle"), 200),
        json!([])
    );
    assert_eq!(
        json(
            daemon.get(&format!("/files/find?path=.&pattern={}", q("('needle')"))),
            200
        )
        .as_array()
        .unwrap()
        .len(),
        1
    );
    // Absolute roots give absolute files.
    let root = daemon.workdir.to_str().unwrap();
    let absolute = json(
        daemon.get(&format!("/files/find?path={}&pattern=def", q(root))),
        200,
    );
    assert_eq!(absolute[0]["file"], format!("{root}/src/lib/util.py"));
}

#[test]
fn find_opt_ins_regex_case_gitignore_and_limits() {
    let daemon = Toolboxd::start();
    fixture(&daemon);
    let regex = json(
        daemon.get(&format!(
            "/files/find?path=src&pattern={}&regex=true",
            q("^def \\w+\\(")
        )),
        200,
    );
    assert_eq!(
        files_and_lines(&regex),
        [("src/lib/util.py".to_string(), 1)]
    );
    let case = json(
        daemon.get("/files/find?path=src&pattern=needle&caseInsensitive=true"),
        200,
    );
    assert_eq!(case.as_array().unwrap().len(), 3);
    let ignored = json(
        daemon.get("/files/find?path=.&pattern=needle&gitignore=true"),
        200,
    );
    let files: Vec<_> = files_and_lines(&ignored)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(files, ["long.txt", "src/lib/util.py", "src/main.py"]);
    let limited = daemon.get("/files/find?path=.&pattern=needle&maxResults=2");
    assert_eq!(limited.headers()["x-toolboxd-truncated"], "true");
    assert_eq!(json(limited, 200).as_array().unwrap().len(), 2);
    let whole = daemon.get("/files/find?path=.&pattern=needle&maxResults=50");
    assert!(whole.headers().get("x-toolboxd-truncated").is_none());
    assert_error(
        daemon.get(&format!("/files/find?path=.&pattern={}&regex=true", q("("))),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn find_rejects_missing_parameters_and_paths() {
    let daemon = Toolboxd::start();
    assert_error(daemon.get("/files/find?path=."), 400, "BAD_REQUEST");
    assert_error(daemon.get("/files/find?pattern=x"), 400, "BAD_REQUEST");
    assert_error(
        daemon.get("/files/find?path=nope&pattern=x"),
        404,
        "FILE_NOT_FOUND",
    );
    assert_error(
        daemon.get("/files/find?path=.&pattern=x&regex=perhaps"),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn search_globs_base_names_or_relative_paths_sorted() {
    let daemon = Toolboxd::start();
    fixture(&daemon);
    let names = |route: &str| -> Vec<String> {
        json(daemon.get(route), 200)["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("/files/search?path=.&pattern=*.py"),
        ["src/lib/util.py", "src/main.py"]
    );
    assert_eq!(
        names(&format!("/files/search?path=.&pattern={}", q("src/*.py"))),
        ["src/main.py"]
    );
    assert_eq!(
        names(&format!(
            "/files/search?path=src&pattern={}",
            q("**/util.py")
        )),
        ["src/lib/util.py"]
    );
    assert_eq!(names("/files/search?path=.&pattern=lib"), ["src/lib"]);
    assert_eq!(
        names("/files/search?path=.&pattern=*.none"),
        Vec::<String>::new()
    );
    let limited = daemon.get("/files/search?path=.&pattern=*&maxResults=1");
    assert_eq!(limited.headers()["x-toolboxd-truncated"], "true");
    assert_error(
        daemon.get(&format!("/files/search?path=.&pattern={}", q("[a-"))),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.get("/files/search?path=nope&pattern=*"),
        404,
        "FILE_NOT_FOUND",
    );
    assert_error(daemon.get("/files/search?path=."), 400, "BAD_REQUEST");
}

#[test]
fn replace_is_literal_counts_and_keeps_modes() {
    let daemon = Toolboxd::start();
    write(&daemon.path("run.sh"), "echo a.b; echo a.b; echo axb\n");
    std::fs::set_permissions(
        daemon.path("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let body = json!({"files": ["run.sh", "missing.txt"], "pattern": "a.b", "newValue": "$1"});
    let results = json(daemon.post_json("/files/replace", &body), 200);
    assert_eq!(
        results[0],
        json!({"file": "run.sh", "success": true, "replacements": 2})
    );
    assert_eq!(results[1]["success"], false);
    assert!(results[1]["error"].as_str().unwrap().contains("not found"));
    assert_eq!(
        std::fs::read_to_string(daemon.path("run.sh")).unwrap(),
        "echo $1; echo $1; echo axb\n"
    );
    assert_eq!(
        std::fs::metadata(daemon.path("run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let deleted = json(
        daemon.post_json(
            "/files/replace",
            &json!({"files": ["run.sh"], "pattern": "echo ", "newValue": ""}),
        ),
        200,
    );
    assert_eq!(deleted[0]["replacements"], 3);
    assert_eq!(
        std::fs::read_to_string(daemon.path("run.sh")).unwrap(),
        "$1; $1; axb\n"
    );
}

#[test]
fn replace_regex_is_opt_in() {
    let daemon = Toolboxd::start();
    write(&daemon.path("kv.txt"), "k1=v1\nk2=v2\n");
    let body = json!({"files": ["kv.txt"], "pattern": "(\\w+)=(\\w+)", "newValue": "$2=$1", "regex": true});
    let results = json(daemon.post_json("/files/replace", &body), 200);
    assert_eq!(results[0]["replacements"], 2);
    assert_eq!(
        std::fs::read_to_string(daemon.path("kv.txt")).unwrap(),
        "v1=k1\nv2=k2\n"
    );
    let bad = json!({"files": ["kv.txt"], "pattern": "(", "newValue": "", "regex": true});
    assert_error(daemon.post_json("/files/replace", &bad), 400, "BAD_REQUEST");
    let empty = json!({"files": ["kv.txt"], "pattern": "", "newValue": "x"});
    assert_error(
        daemon.post_json("/files/replace", &empty),
        400,
        "BAD_REQUEST",
    );
    let no_files = json!({"files": [], "pattern": "a", "newValue": "x"});
    assert_error(
        daemon.post_json("/files/replace", &no_files),
        400,
        "INVALID_REQUEST_BODY",
    );
}

#[test]
fn find_on_a_file_names_the_file_as_given() {
    let daemon = Toolboxd::start();
    fixture(&daemon);
    let found = json(
        daemon.get("/files/find?path=./src/main.py&pattern=needle"),
        200,
    );
    assert_eq!(files_and_lines(&found), [("src/main.py".to_string(), 2)]);
    let root = daemon.path("src/main.py");
    let found = json(
        daemon.get(&format!(
            "/files/find?path={}&pattern=needle",
            q(root.to_str().unwrap())
        )),
        200,
    );
    assert_eq!(found[0]["file"], root.to_str().unwrap());
}

#[test]
fn find_with_a_file_as_path_names_the_file_without_a_trailing_slash() {
    let daemon = Toolboxd::start();
    write(&daemon.path("srch/sub/t.txt"), "hello\n");
    for path in ["srch/sub/t.txt", "./srch/sub/t.txt"] {
        let found = json(
            daemon.get(&format!("/files/find?path={}&pattern=hello", q(path))),
            200,
        );
        assert_eq!(
            found,
            json!([{"file": "srch/sub/t.txt", "line": 1, "content": "hello"}]),
            "{path}"
        );
    }
}

#[test]
fn find_says_when_a_line_was_too_long_to_search() {
    use std::io::{Read, Write};
    let daemon = Toolboxd::start();
    write(&daemon.path("long/a.txt"), "needle\n");
    // One line past the 64 MiB a searcher may hold: the match on it cannot be seen.
    let mut long = vec![b'x'; 64 * 1024 * 1024 + 1024];
    long.extend_from_slice(b"needle\n");
    write(&daemon.path("long/b.txt"), &long);
    drop(long);
    write(&daemon.path("long/c.txt"), "needle\n");
    let expected = json!([
        {"file": "long/a.txt", "line": 1, "content": "needle"},
        {"file": "long/c.txt", "line": 1, "content": "needle"}
    ]);

    // With maxResults the answer is held: a header.
    let response = daemon.get("/files/find?path=long&pattern=needle&maxResults=100");
    assert_eq!(
        response
            .headers()
            .get("x-toolboxd-truncated")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(json(response, 200), expected);

    // Streamed: a trailer field, to a client that accepts them.
    let address = daemon.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let request = format!(
        "GET /files/find?path=long&pattern=needle HTTP/1.1\r\nHost: {address}\r\nTE: trailers\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("trailer: x-toolboxd-truncated"), "{head}");
    let (chunks, trailers) = body.split_once("\r\n0\r\n").expect("the last chunk");
    assert!(
        trailers
            .to_ascii_lowercase()
            .contains("x-toolboxd-truncated: true"),
        "{trailers:?}"
    );
    let mut array = String::new();
    let mut rest = chunks;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        array.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    assert_eq!(serde_json::from_str::<Value>(&array).unwrap(), expected);

    // Without a long line there is no such field.
    let response = daemon.get("/files/find?path=long/a.txt&pattern=needle&maxResults=100");
    assert!(response.headers().get("x-toolboxd-truncated").is_none());
}
