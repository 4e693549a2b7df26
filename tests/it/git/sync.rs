//! Talking to remotes: ahead/behind, push, pull and stored credentials, over `file://` and the
//! authenticated HTTP remote.

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};

use crate::git_support::*;
use crate::harness::*;

fn push(c: &Cloned, body: Value) -> Response {
    c.daemon.post_json("/git/push", &body)
}

fn pull(c: &Cloned, body: Value) -> Response {
    c.daemon.post_json("/git/pull", &body)
}

#[test]
fn status_counts_commits_ahead_and_behind_the_upstream() {
    let c = Cloned::new();
    c.commit_files(&[("x.txt", "x\n")], "one");
    c.commit_files(&[("y.txt", "y\n")], "two");
    let status = c.status();
    assert_eq!(
        (status["ahead"].clone(), status["behind"].clone()),
        (json!(2), json!(0)),
        "{status}"
    );
    c.fx.push_upstream(&c.remote, &[("up.txt", "up\n")], "upstream");
    c.git(&["fetch", "-q", "origin"]);
    let status = c.status();
    assert_eq!(status["ahead"], 2, "{status}");
    assert_eq!(status["behind"], 1, "{status}");
    assert_eq!(status["upstream"], "origin/main", "{status}");
    assert_eq!(status["branchPublished"], true, "{status}");
    assert_eq!(file_statuses(&status), []);
}

#[test]
fn push_sends_commits_and_sets_the_upstream() {
    let c = Cloned::new();
    let first = c.commit_files(&[("x.txt", "x\n")], "x");
    assert_eq!(json(push(&c, json!({"path": "repo"})), 200), json!({}));
    assert_eq!(c.fx.remote_ref(&c.remote, "main"), first);
    assert_eq!(c.git(&["rev-parse", "origin/main"]), first);
    assert_eq!(c.status()["ahead"], 0);

    let created = c
        .daemon
        .post_json("/git/branches", &json!({"path": "repo", "name": "topic"}));
    assert_eq!(created.status().as_u16(), 201);
    let topic = c.commit_files(&[("topic.txt", "t\n")], "topic");
    let status = c.status();
    assert_eq!(status["upstream"], "", "{status}");
    assert_eq!(status["branchPublished"], false, "{status}");

    let pushed = push(
        &c,
        json!({"path": "repo", "branch": "topic", "set_upstream": true}),
    );
    assert_eq!(json(pushed, 200), json!({}));
    assert_eq!(c.fx.remote_ref(&c.remote, "refs/heads/topic"), topic);
    assert_eq!(c.git(&["config", "branch.topic.remote"]), "origin");
    assert_eq!(c.git(&["config", "branch.topic.merge"]), "refs/heads/topic");
    let status = c.status();
    assert_eq!(status["upstream"], "origin/topic", "{status}");
    assert_eq!(status["branchPublished"], true, "{status}");
    assert_eq!(status["ahead"], 0, "{status}");

    // Without `branch`, the current branch is pushed.
    let more = c.commit_files(&[("topic.txt", "t2\n")], "topic 2");
    ok(&c.daemon, "/git/push", json!({"path": "repo"}));
    assert_eq!(c.fx.remote_ref(&c.remote, "refs/heads/topic"), more);
    assert_eq!(c.fx.remote_ref(&c.remote, "main"), first);

    // Another remote, named in the request.
    let backup = c.fx.srv().join("backup.git");
    c.fx.git(
        c.fx.root(),
        &["init", "-q", "--bare", backup.to_str().unwrap()],
    );
    c.git(&["remote", "add", "backup", backup.to_str().unwrap()]);
    ok(
        &c.daemon,
        "/git/push",
        json!({"path": "repo", "remote": "backup", "branch": "topic"}),
    );
    assert_eq!(c.fx.git(&backup, &["rev-parse", "refs/heads/topic"]), more);
    assert_eq!(c.git(&["config", "branch.topic.remote"]), "origin");
}

#[test]
fn push_that_is_not_a_fast_forward_is_rejected() {
    push_that_is_not_a_fast_forward_is_rejected_over(Transport::File);
}

#[test]
fn push_over_http_that_is_not_a_fast_forward_is_rejected() {
    push_that_is_not_a_fast_forward_is_rejected_over(Transport::Http);
}

fn push_that_is_not_a_fast_forward_is_rejected_over(transport: Transport) {
    let c = Cloned::over(transport);
    let theirs =
        c.fx.push_upstream(&c.remote, &[("theirs.txt", "t\n")], "theirs");
    let mine = c.commit_files(&[("mine.txt", "m\n")], "mine");
    let rejected = c.post("/git/push", json!({"path": "repo"}));
    assert_error(rejected, 409, "GIT_PUSH_REJECTED");
    assert_eq!(c.fx.remote_ref(&c.remote, "main"), theirs);
    assert_eq!(c.head(), mine);
}

#[test]
fn push_over_http_takes_credentials_from_the_request() {
    let c = Cloned::over(Transport::Http);
    let mine = c.commit_files(&[("mine.txt", "m\n")], "mine");
    assert_error(push(&c, json!({"path": "repo"})), 401, "GIT_AUTH_FAILED");
    let wrong = "n0t-the-pa55word";
    let denied = push(
        &c,
        json!({"path": "repo", "username": USER, "password": wrong}),
    );
    assert_no_secret(&assert_error(denied, 401, "GIT_AUTH_FAILED"), wrong);
    assert_eq!(c.fx.remote_ref(&c.remote, "main"), c.remote.c2);

    let pushed = push(
        &c,
        json!({"path": "repo", "username": USER, "password": PASSWORD}),
    );
    assert_eq!(json(pushed, 200), json!({}));
    assert_eq!(c.fx.remote_ref(&c.remote, "main"), mine);
}

#[test]
fn push_refused_by_a_remote_hook_is_reported() {
    let c = Cloned::over(Transport::Http);
    let hook = c.remote.bare.join("hooks/pre-receive");
    write(&hook, "#!/bin/sh\necho 'pushes are closed' >&2\nexit 1\n");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    c.commit_files(&[("mine.txt", "m\n")], "mine");
    let refused = push(
        &c,
        json!({"path": "repo", "username": USER, "password": PASSWORD}),
    );
    assert_error(refused, 422, "GIT_REMOTE_REJECTED");
    assert_eq!(c.fx.remote_ref(&c.remote, "main"), c.remote.c2);
}

#[test]
fn pull_fast_forwards_and_keeps_unrelated_local_changes() {
    pull_fast_forwards_over(Transport::File);
}

#[test]
fn pull_over_http_fast_forwards_and_keeps_unrelated_local_changes() {
    pull_fast_forwards_over(Transport::Http);
}

fn pull_fast_forwards_over(transport: Transport) {
    let c = Cloned::over(transport);
    let theirs =
        c.fx.push_upstream(&c.remote, &[("theirs.txt", "t\n")], "theirs");
    c.write("a.txt", "local edit\n");
    c.write("scratch.txt", "scratch\n");
    assert_eq!(
        json(c.post("/git/pull", json!({"path": "repo"})), 200),
        json!({})
    );
    assert_eq!(c.head(), theirs);
    assert_eq!(c.git(&["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(c.read("theirs.txt"), "t\n");
    assert_eq!(c.read("a.txt"), "local edit\n");
    assert_eq!(c.porcelain(), [" M a.txt", "?? scratch.txt"]);
    let status = c.status();
    assert_eq!(
        (status["ahead"].clone(), status["behind"].clone()),
        (json!(0), json!(0)),
        "{status}"
    );

    let missing = c.post(
        "/git/pull",
        json!({"path": "repo", "branch": "no-such-branch"}),
    );
    assert_error(missing, 404, "GIT_BRANCH_NOT_FOUND");
    assert_eq!(c.head(), theirs);
}

#[test]
fn pull_merges_diverged_histories() {
    pull_merges_over(Transport::File);
}

#[test]
fn pull_over_http_merges_diverged_histories() {
    pull_merges_over(Transport::Http);
}

fn pull_merges_over(transport: Transport) {
    let c = Cloned::over(transport);
    ok(
        &c.daemon,
        "/git/config/user",
        json!({"name": "Merge Person", "email": "merge@example.com"}),
    );
    let mine = c.commit_files(&[("mine.txt", "m\n")], "mine");
    let theirs =
        c.fx.push_upstream(&c.remote, &[("theirs.txt", "t\n")], "theirs");
    assert_eq!(
        json(c.post("/git/pull", json!({"path": "repo"})), 200),
        json!({})
    );
    let parents = c.git(&["rev-list", "--parents", "-n", "1", "HEAD"]);
    let parents: Vec<&str> = parents.split(' ').collect();
    assert_eq!(parents.len(), 3, "not a merge commit: {parents:?}");
    assert_eq!(&parents[1..], [mine.as_str(), theirs.as_str()]);
    assert_eq!(c.read("mine.txt"), "m\n");
    assert_eq!(c.read("theirs.txt"), "t\n");
    assert_eq!(c.git(&["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(c.porcelain(), Vec::<String>::new());
    let status = c.status();
    assert_eq!(status["behind"], 0, "{status}");
    assert_eq!(status["ahead"], 2, "{status}");
}

/// What a failed pull must leave alone.
fn snapshot(c: &Cloned) -> (String, Vec<String>, String, String, String) {
    (
        c.head(),
        c.porcelain(),
        c.git(&["ls-files", "--stage"]),
        c.read("README.md"),
        c.read("scratch.txt"),
    )
}

#[test]
fn pull_with_conflicts_changes_nothing() {
    pull_with_conflicts_changes_nothing_over(Transport::File);
}

#[test]
fn pull_over_http_with_conflicts_changes_nothing() {
    pull_with_conflicts_changes_nothing_over(Transport::Http);
}

fn pull_with_conflicts_changes_nothing_over(transport: Transport) {
    let c = Cloned::over(transport);
    c.commit_files(&[("README.md", "# mine\n")], "mine");
    c.fx.push_upstream(
        &c.remote,
        &[("README.md", "# theirs\n"), ("t.txt", "t\n")],
        "theirs",
    );
    c.write("scratch.txt", "untracked\n");
    let before = snapshot(&c);
    let conflict = c.post("/git/pull", json!({"path": "repo"}));
    assert_error(conflict, 409, "GIT_MERGE_CONFLICT");
    assert_eq!(snapshot(&c), before);
    assert!(!c.dir.join(".git/MERGE_HEAD").exists());
    assert!(!c.dir.join("t.txt").exists());
    assert_eq!(
        file_statuses(&c.status()),
        [entry("scratch.txt", "Untracked", "Untracked", "")]
    );
}

#[test]
fn pull_refuses_to_clobber_local_changes() {
    let c = Cloned::new();
    c.fx.push_upstream(&c.remote, &[("a.txt", "theirs\n")], "theirs");
    c.write("a.txt", "mine, uncommitted\n");
    c.write("scratch.txt", "untracked\n");
    let before = snapshot(&c);
    assert_error(pull(&c, json!({"path": "repo"})), 409, "GIT_DIRTY_WORKTREE");
    assert_eq!(snapshot(&c), before);
    assert_eq!(c.read("a.txt"), "mine, uncommitted\n");
    assert_eq!(c.head(), c.remote.c2);
}

#[test]
fn pull_over_http_needs_the_right_credentials() {
    let c = Cloned::over(Transport::Http);
    let theirs =
        c.fx.push_upstream(&c.remote, &[("theirs.txt", "t\n")], "theirs");
    assert_error(pull(&c, json!({"path": "repo"})), 401, "GIT_AUTH_FAILED");
    let wrong = "n0t-the-pa55word";
    let denied = pull(
        &c,
        json!({"path": "repo", "username": USER, "password": wrong}),
    );
    assert_no_secret(&assert_error(denied, 401, "GIT_AUTH_FAILED"), wrong);
    assert_eq!(c.head(), c.remote.c2);

    let pulled = pull(
        &c,
        json!({"path": "repo", "username": USER, "password": PASSWORD}),
    );
    assert_eq!(json(pulled, 200), json!({}));
    assert_eq!(c.head(), theirs);
    assert_eq!(c.read("theirs.txt"), "t\n");
}

#[test]
fn stored_credentials_serve_clone_pull_and_push() {
    let fx = Fixtures::new();
    let daemon = start_daemon(&fx);
    let remote = fx.remote("origin");
    let http = fx.http();
    let stored =
        json!({"username": USER, "password": PASSWORD, "host": http.host(), "protocol": "http"});
    ok(&daemon, "/git/credentials", stored);
    let file = daemon.home.join(".git-credentials");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let lines = |file: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let expected = format!("http://{USER}:{PASSWORD}@{}", http.host());
    assert_eq!(lines(&file).join("\n"), expected);
    assert_eq!(
        fx.daemon_global(&daemon, "credential.helper").as_deref(),
        Some("store")
    );

    let dir = clone(&daemon, &http.url(&remote.name()), "repo");
    assert_eq!(fx.git(&dir, &["rev-parse", "HEAD"]), remote.c2);
    let c = Cloned {
        daemon,
        fx,
        remote,
        dir,
        access: Access::Http(http),
    };
    let theirs =
        c.fx.push_upstream(&c.remote, &[("theirs.txt", "t\n")], "theirs");
    ok(&c.daemon, "/git/pull", json!({"path": "repo"}));
    assert_eq!(c.head(), theirs);
    let mine = c.commit_files(&[("mine.txt", "m\n")], "mine");
    ok(&c.daemon, "/git/push", json!({"path": "repo"}));
    assert_eq!(c.fx.remote_ref(&c.remote, "main"), mine);

    // Defaults: https and github.com; other hosts' entries stay; the git CLI reads them back.
    let special = "p@ss:w/rd %x";
    ok(
        &c.daemon,
        "/git/credentials",
        json!({"username": "bob", "password": special}),
    );
    assert_eq!(lines(&file).len(), 2, "{:?}", lines(&file));
    assert!(lines(&file).contains(&expected));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let file_arg = file.to_str().unwrap();
    for (host, protocol, user, password) in [
        ("github.com", "https", "bob", special),
        (c.access.http().host().as_str(), "http", USER, PASSWORD),
    ] {
        let mut read = c.fx.command(
            c.fx.root(),
            &["credential-store", "--file", file_arg, "get"],
        );
        read.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = read.spawn().unwrap();
        let query = format!("protocol={protocol}\nhost={host}\n\n");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), query.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&format!("username={user}\n")),
            "{host}: {text}"
        );
        assert!(
            text.contains(&format!("password={password}\n")),
            "{host}: {text}"
        );
    }
    assert_error(
        c.daemon
            .post_json("/git/credentials", &json!({"username": "bob"})),
        400,
        "INVALID_REQUEST_BODY",
    );
}
