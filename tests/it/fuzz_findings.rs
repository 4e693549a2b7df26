//! What schemathesis found (tests/sdk/python/test_openapi_fuzz.py), one case each: answers that
//! were 500s or panics, and values the document and the code disagreed on.

use serde_json::json;

use crate::harness::*;

#[test]
fn nul_bytes_in_git_values_and_pathspecs_are_400s_not_500s() {
    let daemon = Toolboxd::start();
    json(daemon.post_json("/git/init", &json!({"path": "repo"})), 201);
    // libgit2 cannot take a string with a NUL: git2 refused it (500), or panicked (pathspecs).
    let body = json!({"key": "user.name", "value": "a\u{0}b", "scope": "local", "path": "repo"});
    assert_error(daemon.post_json("/git/config", &body), 400, "BAD_REQUEST");
    let body = json!({"name": "a\u{0}b", "email": "e@x", "scope": "local", "path": "repo"});
    assert_error(
        daemon.post_json("/git/config/user", &body),
        400,
        "BAD_REQUEST",
    );
    let body = json!({"path": "repo", "files": ["a\u{0}b"]});
    assert_error(
        daemon.post_json("/git/add", &body),
        400,
        "INVALID_FILE_PATH",
    );
    assert_error(
        daemon.post_json("/git/restore", &body),
        400,
        "INVALID_FILE_PATH",
    );
    // The daemon is still whole.
    json(daemon.get("/git/status?path=repo"), 200);
}

#[test]
fn git_init_over_a_directory_named_config_is_a_409() {
    let daemon = Toolboxd::start();
    std::fs::create_dir_all(daemon.workdir.join("repo/.git/config")).unwrap();
    assert_error(
        daemon.post_json("/git/init", &json!({"path": "repo"})),
        409,
        "CONFLICT",
    );
}

/// A name git refuses to stage (`.git.`, read as `.git` on Windows) found in the work tree is
/// the work tree's state: a valid request staging everything answers 409, not 400, and stages
/// nothing; naming other paths still works.
#[test]
fn a_work_tree_name_git_refuses_is_a_409_when_staging_everything() {
    let daemon = Toolboxd::start();
    json(daemon.post_json("/git/init", &json!({"path": "repo"})), 201);
    std::fs::create_dir(daemon.path("repo/d")).unwrap();
    std::fs::write(daemon.path("repo/d/.git."), "x").unwrap();
    std::fs::write(daemon.path("repo/fine.txt"), "fine").unwrap();
    for files in [json!([""]), json!(["."])] {
        let response = daemon.post_json("/git/add", &json!({"path": "repo", "files": files}));
        let body = assert_error(response, 409, "CONFLICT");
        assert!(
            body["message"].as_str().unwrap().contains("d/.git."),
            "{body}"
        );
    }
    // Nothing was staged: every entry is still untracked.
    let status = json(daemon.get("/git/status?path=repo"), 200);
    let entries = crate::git_support::file_statuses(&status);
    assert!(!entries.is_empty(), "{status}");
    assert!(
        entries
            .iter()
            .all(|(_, staging, _, _)| staging == "Untracked"),
        "{entries:?}"
    );
    json(
        daemon.post_json("/git/add", &json!({"path": "repo", "files": ["fine.txt"]})),
        200,
    );
}

/// A remote URL git cannot use (no protocol it knows) is a 400, not a 502 transport failure.
#[test]
fn a_remote_url_git_cannot_use_is_a_400() {
    let daemon = Toolboxd::start();
    json(daemon.post_json("/git/init", &json!({"path": "repo"})), 201);
    let body = json!({"path": "repo", "name": "odd", "url": "#\u{8}nothing=0", "fetch": true});
    let refused = assert_error(daemon.post_json("/git/remotes", &body), 400, "BAD_REQUEST");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("unsupported URL protocol"),
        "{refused}"
    );
}

#[test]
fn damaged_repositories_are_409s_not_500s() {
    let daemon = Toolboxd::start();
    // `.git/HEAD` a directory: init cannot write it (a 4xx, whichever libgit2 trips on first).
    std::fs::create_dir_all(daemon.workdir.join("a/.git/HEAD")).unwrap();
    let status = daemon
        .post_json("/git/init", &json!({"path": "a"}))
        .status()
        .as_u16();
    assert!((400..500).contains(&status), "{status}");
    // A HEAD that is not a reference.
    json(daemon.post_json("/git/init", &json!({"path": "b"})), 201);
    std::fs::write(daemon.workdir.join("b/.git/HEAD"), "garbage").unwrap();
    assert_error(daemon.get("/git/status?path=b"), 409, "CONFLICT");
}

#[test]
fn config_keys_are_what_git_accepts() {
    let daemon = Toolboxd::start();
    for key in ["user.name", "remote.origin.url", "a.sub section.b-1"] {
        let body = json!({"key": key, "value": "v"});
        json(daemon.post_json("/git/config", &body), 200);
    }
    for key in ["-at0J6N93..mJ", "user.", "nodot", "sec.1name"] {
        let body = json!({"key": key, "value": "v"});
        assert_error(daemon.post_json("/git/config", &body), 400, "BAD_REQUEST");
    }
}

#[test]
fn integers_written_as_floats_are_integers() {
    let daemon = Toolboxd::start();
    json(
        daemon.post_json(
            "/process/pty",
            &json!({"id": "p", "cols": 80.0, "rows": 24}),
        ),
        201,
    );
    json(
        daemon.post_json("/process/pty/p/resize", &json!({"cols": 182.0, "rows": 50})),
        200,
    );
    assert_error(
        daemon.post_json("/process/pty/p/resize", &json!({"cols": 182.5, "rows": 50})),
        400,
        "INVALID_REQUEST_BODY",
    );
}

#[test]
fn query_values_outside_the_documented_range_are_400s() {
    let daemon = Toolboxd::start();
    // `depth` is an integer >= 1: empty is not one.
    assert_error(daemon.get("/files?depth="), 400, "BAD_REQUEST");
    // `maxResults` is an integer too (empty was taken as absent), at most 4294967295.
    assert_error(
        daemon.get("/files/find?path=.&pattern=x&maxResults="),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.get("/files/search?path=.&pattern=*&maxResults=4294967296"),
        400,
        "BAD_REQUEST",
    );
    json(
        daemon.get("/files/search?path=.&pattern=*&maxResults=4294967295"),
        200,
    );
    // Modes are `(0o)?` and octal digits, nothing else.
    assert_error(
        daemon.post("/files/folder?path=d&mode=%2B755"),
        400,
        "BAD_REQUEST",
    );
    assert_eq!(
        daemon.post("/files/folder?path=d&mode=0o0755").status(),
        201
    );
}

#[test]
fn session_ids_with_control_characters_are_refused() {
    // Created, then not found by its own id (schemathesis' stateful check): such ids are 400s.
    let daemon = Toolboxd::start();
    assert_error(
        daemon.post_json("/process/session", &json!({"sessionId": ";\u{89}5\u{4}"})),
        400,
        "BAD_REQUEST",
    );
    assert_eq!(
        daemon
            .post_json("/process/session", &json!({"sessionId": "plain-id"}))
            .status(),
        201
    );
}
