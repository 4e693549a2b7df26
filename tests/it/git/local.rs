//! The work-tree routes: status, branches, checkout, add, commit, history, init, reset, restore,
//! remotes and config.

use serde_json::{json, Value};

use crate::git_support::*;
use crate::harness::*;

fn branches(c: &Cloned) -> Value {
    json(c.daemon.get("/git/branches?path=repo"), 200)
}

fn checkout(c: &Cloned, branch: &str) -> Response {
    c.daemon
        .post_json("/git/checkout", &json!({"path": "repo", "branch": branch}))
}

#[test]
fn status_names_every_kind_of_change() {
    let c = Cloned::new();
    let clean = c.status();
    assert_eq!(clean["currentBranch"], "main", "{clean}");
    assert_eq!(clean["detached"], false, "{clean}");
    assert_eq!(clean["upstream"], "origin/main", "{clean}");
    assert_eq!(clean["branchPublished"], true, "{clean}");
    assert_eq!(clean["ahead"], 0, "{clean}");
    assert_eq!(clean["behind"], 0, "{clean}");
    assert_eq!(file_statuses(&clean), []);

    c.write("new.txt", "new\n");
    c.write("untracked/x.txt", "x\n");
    c.write("untracked/y.txt", "y\n");
    c.write("added.txt", "added\n");
    c.git(&["add", "added.txt"]);
    c.write("both.txt", "one\n");
    c.git(&["add", "both.txt"]);
    c.write("both.txt", "two\n");
    c.write("README.md", "# edited\n");
    c.write("a.txt", "staged edit\n");
    c.git(&["add", "a.txt"]);
    c.write("notes.txt", "staged\n");
    c.git(&["add", "notes.txt"]);
    c.write("notes.txt", "staged, then edited\n");
    std::fs::remove_file(c.dir.join("b.txt")).unwrap();
    c.git(&["rm", "-q", "c.txt"]);
    c.git(&["mv", "d.txt", "e.txt"]);

    let mut expected = vec![
        entry("new.txt", "Untracked", "Untracked", ""),
        entry("untracked/x.txt", "Untracked", "Untracked", ""),
        entry("untracked/y.txt", "Untracked", "Untracked", ""),
        entry("added.txt", "Added", "Unmodified", ""),
        entry("both.txt", "Added", "Modified", ""),
        entry("README.md", "Unmodified", "Modified", ""),
        entry("a.txt", "Modified", "Unmodified", ""),
        entry("notes.txt", "Modified", "Modified", ""),
        entry("b.txt", "Unmodified", "Deleted", ""),
        entry("c.txt", "Deleted", "Unmodified", ""),
        entry("e.txt", "Renamed", "Unmodified", "d.txt"),
    ];
    expected.sort();
    let status = c.status();
    assert_eq!(file_statuses(&status), expected, "{status}");
    assert_eq!(status["currentBranch"], "main");
}

#[test]
fn status_reports_conflicts_after_a_failed_merge() {
    let c = Cloned::new();
    c.fx.push_upstream(&c.remote, &[("README.md", "# upstream\n")], "upstream edit");
    c.commit_files(&[("README.md", "# local\n")], "local edit");
    c.git(&["fetch", "-q"]);
    let merge = c.fx.git_output(&c.dir, &["merge", "origin/main"]);
    assert!(!merge.status.success(), "the fixture merge should conflict");
    let status = c.status();
    assert_eq!(
        file_statuses(&status),
        [entry(
            "README.md",
            "Updated but unmerged",
            "Updated but unmerged",
            ""
        )],
        "{status}"
    );
    assert_eq!(status["ahead"], 1, "{status}");
    assert_eq!(status["behind"], 1, "{status}");
}

#[test]
fn branches_are_listed_created_and_deleted() {
    let c = Cloned::new();
    c.git(&["branch", "zeta"]);
    c.git(&["branch", "alpha"]);
    let listed = branches(&c);
    // Local branches only: origin/feature is not one.
    assert_eq!(
        listed["branches"],
        json!(["alpha", "main", "zeta"]),
        "{listed}"
    );
    assert_eq!(listed["current"], "main", "{listed}");

    let created = c
        .daemon
        .post_json("/git/branches", &json!({"path": "repo", "name": "topic"}));
    assert_eq!(json(created, 201), json!({}));
    assert_eq!(c.git(&["symbolic-ref", "--short", "HEAD"]), "topic");
    assert_eq!(c.git(&["rev-parse", "topic"]), c.remote.c2);
    assert_eq!(branches(&c)["current"], "topic");

    let exists = c
        .daemon
        .post_json("/git/branches", &json!({"path": "repo", "name": "alpha"}));
    assert_error(exists, 409, "GIT_BRANCH_EXISTS");
    assert_eq!(c.git(&["symbolic-ref", "--short", "HEAD"]), "topic");
    let invalid = c.daemon.post_json(
        "/git/branches",
        &json!({"path": "repo", "name": "bad..name"}),
    );
    assert_error(invalid, 400, "BAD_REQUEST");

    let deleted = delete_json(
        &c.daemon,
        "/git/branches",
        &json!({"path": "repo", "name": "alpha"}),
    );
    assert_eq!(deleted.status().as_u16(), 204);
    assert_eq!(c.git(&["branch", "--list", "alpha"]), "");
    let missing = delete_json(
        &c.daemon,
        "/git/branches",
        &json!({"path": "repo", "name": "alpha"}),
    );
    assert_error(missing, 404, "GIT_BRANCH_NOT_FOUND");
    let current = delete_json(
        &c.daemon,
        "/git/branches",
        &json!({"path": "repo", "name": "topic"}),
    );
    assert_error(current, 409, "CONFLICT");
    assert_eq!(c.git(&["rev-parse", "topic"]), c.remote.c2);
    assert_eq!(branches(&c)["branches"], json!(["main", "topic", "zeta"]));
}

#[test]
fn checkout_switches_branches_tracks_remote_ones_and_detaches_on_commits() {
    let c = Cloned::new();
    c.git(&["branch", "alpha"]);
    // A local edit the switch does not touch travels along.
    c.write("a.txt", "local edit\n");

    assert_eq!(json(checkout(&c, "feature"), 200), json!({}));
    assert_eq!(c.git(&["symbolic-ref", "--short", "HEAD"]), "feature");
    assert_eq!(c.head(), c.remote.feature);
    assert_eq!(
        c.git(&["rev-parse", "--abbrev-ref", "feature@{upstream}"]),
        "origin/feature"
    );
    assert_eq!(c.read("feature.txt"), "feature\n");
    assert_eq!(c.read("README.md"), "# demo (feature)\n");
    assert_eq!(c.read("a.txt"), "local edit\n");
    let status = c.status();
    assert_eq!(status["upstream"], "origin/feature", "{status}");
    c.git(&["checkout", "--", "a.txt"]);

    assert_eq!(json(checkout(&c, "alpha"), 200), json!({}));
    assert_eq!(c.git(&["symbolic-ref", "--short", "HEAD"]), "alpha");
    assert_eq!(c.read("README.md"), README);
    assert!(!c.dir.join("feature.txt").exists());
    assert_eq!(c.porcelain(), Vec::<String>::new());

    assert_eq!(json(checkout(&c, &c.remote.c1), 200), json!({}));
    assert_eq!(c.head(), c.remote.c1);
    assert!(!c
        .fx
        .git_output(&c.dir, &["symbolic-ref", "-q", "HEAD"])
        .status
        .success());
    assert!(!c.dir.join("notes.txt").exists());
    let status = c.status();
    assert_eq!(status["detached"], true, "{status}");
    assert_eq!(status["currentBranch"], "HEAD", "{status}");
    assert_eq!(status["upstream"], "", "{status}");
    assert_eq!(branches(&c)["current"], "");

    assert_eq!(json(checkout(&c, "origin/feature"), 200), json!({}));
    assert_eq!(c.head(), c.remote.feature);
    assert!(!c
        .fx
        .git_output(&c.dir, &["symbolic-ref", "-q", "HEAD"])
        .status
        .success());

    assert_error(checkout(&c, "no-such-branch"), 404, "GIT_BRANCH_NOT_FOUND");
    assert_eq!(c.head(), c.remote.feature);
}

#[test]
fn checkout_refuses_to_clobber_local_changes() {
    let c = Cloned::new();
    c.git(&["branch", "feature", "origin/feature"]);
    c.write("README.md", "mine\n");
    assert_error(checkout(&c, "feature"), 409, "GIT_DIRTY_WORKTREE");
    assert_eq!(c.read("README.md"), "mine\n");
    assert_eq!(c.git(&["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(c.head(), c.remote.c2);
    assert!(!c.dir.join("feature.txt").exists());
    assert_eq!(c.porcelain(), [" M README.md"]);
    // A staged change to the same file is protected too.
    c.git(&["add", "README.md"]);
    assert_error(checkout(&c, "feature"), 409, "GIT_DIRTY_WORKTREE");
    assert_eq!(c.porcelain(), ["M  README.md"]);
    assert_eq!(c.read("README.md"), "mine\n");
}

#[test]
fn add_stages_named_files_or_everything_with_deletions() {
    let c = Cloned::new();
    c.write("x.txt", "x\n");
    c.write("y.txt", "y\n");
    ok(
        &c.daemon,
        "/git/add",
        json!({"path": "repo", "files": ["x.txt"]}),
    );
    assert_eq!(c.porcelain(), ["A  x.txt", "?? y.txt"]);

    assert_error(
        c.daemon
            .post_json("/git/add", &json!({"path": "repo", "files": ["nope.txt"]})),
        404,
        "FILE_NOT_FOUND",
    );

    std::fs::remove_file(c.dir.join("b.txt")).unwrap();
    c.write("a.txt", "changed\n");
    c.write("dir/z.txt", "z\n");
    c.write(".gitignore", "*.log\n");
    c.write("debug.log", "ignored\n");
    ok(
        &c.daemon,
        "/git/add",
        json!({"path": "repo", "files": ["."]}),
    );
    let mut porcelain = c.porcelain();
    porcelain.sort();
    assert_eq!(
        porcelain,
        [
            "A  .gitignore",
            "A  dir/z.txt",
            "A  x.txt",
            "A  y.txt",
            "D  b.txt",
            "M  a.txt"
        ]
    );
    assert_eq!(c.git(&["ls-files", "debug.log"]), "");
}

#[test]
fn commit_records_the_author_and_refuses_empty_commits() {
    let c = Cloned::new();
    c.write("x.txt", "x\n");
    c.write("y.txt", "y\n");
    c.git(&["add", "x.txt"]);
    let message = "Add x\n\nWith a body line.";
    let out = call(
        &c.daemon,
        "/git/commit",
        json!({"path": "repo", "message": message, "author": "Ada Lovelace", "email": "ada@example.com"}),
        200,
    );
    let hash = out["hash"].as_str().unwrap().to_string();
    assert_eq!(hash, c.head());
    assert_eq!(
        c.git(&["log", "-1", "--format=%an|%ae"]),
        "Ada Lovelace|ada@example.com"
    );
    assert_eq!(c.git(&["log", "-1", "--format=%B"]).trim_end(), message);
    assert_eq!(c.git(&["rev-parse", "HEAD~1"]), c.remote.c2);
    assert_eq!(
        c.git(&["show", "--name-only", "--format=", "HEAD"]),
        "x.txt"
    );
    assert_eq!(c.porcelain(), ["?? y.txt"]);
    assert_eq!(c.git(&["symbolic-ref", "--short", "HEAD"]), "main");

    let body = json!({"path": "repo", "message": "nothing", "author": "Ada Lovelace", "email": "ada@example.com"});
    assert_error(c.daemon.post_json("/git/commit", &body), 400, "BAD_REQUEST");
    assert_eq!(c.head(), hash);

    let mut empty = body.clone();
    empty["allow_empty"] = json!(true);
    let empty_hash = call(&c.daemon, "/git/commit", empty, 200)["hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(empty_hash, c.head());
    assert_ne!(empty_hash, hash);
    assert_eq!(c.git(&["rev-parse", "HEAD~1"]), hash);
    assert_eq!(
        c.git(&["rev-parse", "HEAD^{tree}"]),
        c.git(&["rev-parse", "HEAD~1^{tree}"])
    );
}

#[test]
fn history_lists_commits_newest_first_with_a_limit() {
    let c = Cloned::new();
    let history = json(c.daemon.get("/git/history?path=repo"), 200);
    let entries = history.as_array().unwrap_or_else(|| panic!("{history}"));
    assert_eq!(entries.len(), 2, "{history}");
    for (entry, sha) in entries.iter().zip([&c.remote.c2, &c.remote.c1]) {
        assert_eq!(entry["hash"], sha.as_str(), "{history}");
        assert_eq!(entry["author"], "Fixture Author", "{entry}");
        assert_eq!(entry["email"], "fixture@example.com", "{entry}");
        let epoch: i64 = c.git(&["log", "-1", "--format=%at", sha]).parse().unwrap();
        assert_timestamp(&entry["timestamp"], epoch);
    }
    assert_eq!(
        entries[0]["message"].as_str().unwrap().trim_end(),
        "second commit"
    );
    assert_eq!(
        entries[1]["message"].as_str().unwrap().trim_end(),
        "first commit"
    );

    let newest = c.commit_files(&[("x.txt", "x\n")], "third commit");
    let limited = json(c.daemon.get("/git/history?path=repo&limit=1"), 200);
    assert_eq!(limited.as_array().unwrap().len(), 1, "{limited}");
    assert_eq!(limited[0]["hash"], newest.as_str());
    assert_eq!(limited[0]["author"], "Ada Lovelace");
    let all = json(c.daemon.get("/git/history?path=repo"), 200);
    let hashes: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes, [newest.as_str(), &c.remote.c2, &c.remote.c1]);
}

/// A history timestamp: epoch seconds, RFC 3339, or Go's `time.String()` layout.
fn assert_timestamp(value: &Value, epoch: i64) {
    if let Some(number) = value.as_i64() {
        assert_eq!(number, epoch, "{value}");
        return;
    }
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp {value}"));
    if let Ok(parsed) = chrono::DateTime::parse_from_rfc3339(text) {
        assert_eq!(parsed.timestamp(), epoch, "{value}");
        return;
    }
    let parsed =
        chrono::DateTime::parse_from_str(&text[..text.len().min(25)], "%Y-%m-%d %H:%M:%S %z")
            .unwrap_or_else(|err| panic!("unreadable timestamp {value}: {err}"));
    assert_eq!(parsed.timestamp(), epoch, "{value}");
}

#[test]
fn init_creates_repositories_that_take_a_first_commit() {
    let fx = Fixtures::new();
    let daemon = start_daemon(&fx);
    let created = daemon.post_json(
        "/git/init",
        &json!({"path": "fresh", "initial_branch": "trunk"}),
    );
    assert_eq!(json(created, 201), json!({}));
    let fresh = daemon.path("fresh");
    assert!(fresh.join(".git").is_dir());
    assert_eq!(
        fx.git(&fresh, &["symbolic-ref", "HEAD"]),
        "refs/heads/trunk"
    );
    assert_eq!(
        fx.git(&fresh, &["rev-parse", "--is-bare-repository"]),
        "false"
    );
    // Re-init is fine.
    let again = daemon.post_json(
        "/git/init",
        &json!({"path": "fresh", "initial_branch": "trunk"}),
    );
    assert_eq!(again.status().as_u16(), 201);

    write(&fresh.join("hello.txt"), "hello\n");
    ok(
        &daemon,
        "/git/add",
        json!({"path": "fresh", "files": ["hello.txt"]}),
    );
    let first = call(
        &daemon,
        "/git/commit",
        json!({"path": "fresh", "message": "first", "author": "Ada Lovelace", "email": "ada@example.com"}),
        200,
    );
    assert_eq!(
        first["hash"],
        fx.git(&fresh, &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(fx.git(&fresh, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(
        fx.git(&fresh, &["symbolic-ref", "--short", "HEAD"]),
        "trunk"
    );
    let status = json(daemon.get("/git/status?path=fresh"), 200);
    assert_eq!(status["currentBranch"], "trunk", "{status}");
    assert_eq!(status["upstream"], "", "{status}");
    assert_eq!(status["branchPublished"], false, "{status}");
    assert_eq!(file_statuses(&status), []);

    let bare = daemon.post_json("/git/init", &json!({"path": "store.git", "bare": true}));
    assert_eq!(json(bare, 201), json!({}));
    let store = daemon.path("store.git");
    assert!(!store.join(".git").exists());
    assert!(store.join("HEAD").is_file());
    assert_eq!(
        fx.git(&store, &["rev-parse", "--is-bare-repository"]),
        "true"
    );
}

#[test]
fn reset_moves_head_in_every_mode() {
    let c = Cloned::new();
    let h1 = c.commit_files(&[("x.txt", "x1\n")], "x1");
    let h2 = c.commit_files(&[("x.txt", "x2\n")], "x2");
    assert_ne!(h1, h2);

    ok(
        &c.daemon,
        "/git/reset",
        json!({"path": "repo", "mode": "soft", "target": "HEAD~1"}),
    );
    assert_eq!(c.head(), h1);
    assert_eq!(c.porcelain(), ["M  x.txt"]);
    assert_eq!(c.read("x.txt"), "x2\n");

    ok(&c.daemon, "/git/reset", json!({"path": "repo"}));
    assert_eq!(c.head(), h1);
    assert_eq!(c.porcelain(), [" M x.txt"]);
    assert_eq!(c.read("x.txt"), "x2\n");

    ok(
        &c.daemon,
        "/git/reset",
        json!({"path": "repo", "mode": "hard", "target": c.remote.c2}),
    );
    assert_eq!(c.head(), c.remote.c2);
    assert_eq!(c.porcelain(), Vec::<String>::new());
    assert!(!c.dir.join("x.txt").exists());

    c.write("p.txt", "p\n");
    c.write("q.txt", "q\n");
    c.git(&["add", "p.txt", "q.txt"]);
    ok(
        &c.daemon,
        "/git/reset",
        json!({"path": "repo", "files": ["p.txt"]}),
    );
    assert_eq!(c.porcelain(), ["A  q.txt", "?? p.txt"]);
    assert_eq!(c.head(), c.remote.c2);

    let bad = c
        .daemon
        .post_json("/git/reset", &json!({"path": "repo", "mode": "sideways"}));
    assert_error(bad, 400, "BAD_REQUEST");
}

#[test]
fn reset_keep_keeps_unrelated_changes_and_refuses_to_clobber() {
    let c = Cloned::new();
    let h1 = c.commit_files(&[("a.txt", "a from h1\n")], "h1");
    // Keep: a local change to a file that does not differ between HEAD and the target survives.
    c.write("b.txt", "local b\n");
    ok(
        &c.daemon,
        "/git/reset",
        json!({"path": "repo", "mode": "keep", "target": c.remote.c2}),
    );
    assert_eq!(c.head(), c.remote.c2);
    assert_eq!(c.read("a.txt"), "a\nmore a\n");
    assert_eq!(c.read("b.txt"), "local b\n");
    assert_eq!(c.porcelain(), [" M b.txt"]);

    // Merge mode behaves the same way on an unstaged, unrelated change.
    c.git(&["reset", "-q", "--hard", &h1]);
    c.write("b.txt", "local b\n");
    ok(
        &c.daemon,
        "/git/reset",
        json!({"path": "repo", "mode": "merge", "target": c.remote.c2}),
    );
    assert_eq!(c.head(), c.remote.c2);
    assert_eq!(c.read("a.txt"), "a\nmore a\n");
    assert_eq!(c.porcelain(), [" M b.txt"]);

    // Back to h1, then a local change to the file the reset would rewrite.
    c.git(&["reset", "-q", "--hard", &h1]);
    c.write("a.txt", "local a\n");
    let refused = c.daemon.post_json(
        "/git/reset",
        &json!({"path": "repo", "mode": "keep", "target": c.remote.c2}),
    );
    assert_error(refused, 409, "GIT_DIRTY_WORKTREE");
    assert_eq!(c.head(), h1);
    assert_eq!(c.read("a.txt"), "local a\n");
    assert_eq!(c.porcelain(), [" M a.txt"]);
}

#[test]
fn restore_reverts_the_worktree_the_index_or_both() {
    let c = Cloned::new();
    let restore = |body: Value| ok(&c.daemon, "/git/restore", body);
    c.write("a.txt", "scratch\n");
    restore(json!({"path": "repo", "files": ["a.txt"]}));
    assert_eq!(c.read("a.txt"), "a\nmore a\n");
    assert_eq!(c.porcelain(), Vec::<String>::new());

    std::fs::remove_file(c.dir.join("b.txt")).unwrap();
    restore(json!({"path": "repo", "files": ["b.txt"]}));
    assert_eq!(c.read("b.txt"), "b\n");

    c.write("a.txt", "staged\n");
    c.git(&["add", "a.txt"]);
    restore(json!({"path": "repo", "files": ["a.txt"], "staged": true}));
    assert_eq!(c.porcelain(), [" M a.txt"]);
    assert_eq!(c.read("a.txt"), "staged\n");

    c.git(&["add", "a.txt"]);
    restore(json!({"path": "repo", "files": ["a.txt"], "staged": true, "worktree": true}));
    assert_eq!(c.porcelain(), Vec::<String>::new());
    assert_eq!(c.read("a.txt"), "a\nmore a\n");

    restore(json!({"path": "repo", "files": ["a.txt"], "source": "HEAD~1"}));
    assert_eq!(c.read("a.txt"), "a\n");
    assert_eq!(c.porcelain(), [" M a.txt"]);
    assert_eq!(c.head(), c.remote.c2);
}

#[test]
fn remotes_are_listed_added_and_overwritten() {
    let c = Cloned::new();
    let listed = json(c.daemon.get("/git/remotes?path=repo"), 200);
    assert_eq!(
        listed["remotes"],
        json!([{"name": "origin", "url": c.remote.file_url()}])
    );

    let added = c.daemon.post_json(
        "/git/remotes",
        &json!({"path": "repo", "name": "upstream", "url": "https://example.com/up.git"}),
    );
    assert_eq!(json(added, 201), json!({}));
    assert_eq!(
        c.git(&["remote", "get-url", "upstream"]),
        "https://example.com/up.git"
    );
    let listed = json(c.daemon.get("/git/remotes?path=repo"), 200);
    let mut remotes: Vec<(String, String)> = listed["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["url"].as_str().unwrap().into(),
            )
        })
        .collect();
    remotes.sort();
    assert_eq!(
        remotes,
        [
            ("origin".to_string(), c.remote.file_url()),
            (
                "upstream".to_string(),
                "https://example.com/up.git".to_string()
            )
        ]
    );

    let duplicate = c.daemon.post_json(
        "/git/remotes",
        &json!({"path": "repo", "name": "upstream", "url": "https://example.com/other.git"}),
    );
    assert_error(duplicate, 409, "CONFLICT");
    assert_eq!(
        c.git(&["remote", "get-url", "upstream"]),
        "https://example.com/up.git"
    );

    let overwritten = c.daemon.post_json(
        "/git/remotes",
        &json!({"path": "repo", "name": "upstream", "url": "https://example.com/other.git", "overwrite": true}),
    );
    assert_eq!(overwritten.status().as_u16(), 201);
    assert_eq!(
        c.git(&["remote", "get-url", "upstream"]),
        "https://example.com/other.git"
    );
}

#[test]
fn config_reads_and_writes_global_and_local_values() {
    let c = Cloned::new();
    let daemon = &c.daemon;
    let get = |query: &str| json(daemon.get(&format!("/git/config?{query}")), 200);
    assert_eq!(get("key=user.name"), json!({"value": null}));

    ok(
        daemon,
        "/git/config",
        json!({"key": "user.name", "value": "Global Person"}),
    );
    assert_eq!(
        c.fx.daemon_global(daemon, "user.name").as_deref(),
        Some("Global Person")
    );
    assert_eq!(get("key=user.name")["value"], "Global Person");
    assert_eq!(get("key=user.name&scope=global")["value"], "Global Person");

    ok(
        daemon,
        "/git/config",
        json!({"key": "toolbox.flavour", "value": "vanilla", "scope": "local", "path": "repo"}),
    );
    assert_eq!(
        c.git(&["config", "--local", "--get", "toolbox.flavour"]),
        "vanilla"
    );
    assert_eq!(
        get("key=toolbox.flavour&scope=local&path=repo")["value"],
        "vanilla"
    );
    assert_eq!(get("key=toolbox.flavour")["value"], Value::Null);
    assert_eq!(c.fx.daemon_global(daemon, "toolbox.flavour"), None);

    let no_path = daemon.post_json(
        "/git/config",
        &json!({"key": "toolbox.x", "value": "1", "scope": "local"}),
    );
    assert_error(no_path, 400, "BAD_REQUEST");
    let bad_scope = daemon.post_json(
        "/git/config",
        &json!({"key": "toolbox.x", "value": "1", "scope": "planet"}),
    );
    assert_error(bad_scope, 400, "BAD_REQUEST");
    assert_error(
        daemon.get("/git/config?key=user.name&scope=planet"),
        400,
        "BAD_REQUEST",
    );

    ok(
        daemon,
        "/git/config/user",
        json!({"name": "Grace Hopper", "email": "grace@example.com"}),
    );
    assert_eq!(
        c.fx.daemon_global(daemon, "user.name").as_deref(),
        Some("Grace Hopper")
    );
    assert_eq!(
        c.fx.daemon_global(daemon, "user.email").as_deref(),
        Some("grace@example.com")
    );
    ok(
        daemon,
        "/git/config/user",
        json!({"name": "Local Name", "email": "local@example.com", "scope": "local", "path": "repo"}),
    );
    assert_eq!(
        c.git(&["config", "--local", "--get", "user.name"]),
        "Local Name"
    );
    assert_eq!(
        c.git(&["config", "--local", "--get", "user.email"]),
        "local@example.com"
    );
    assert_eq!(
        get("key=user.email&scope=local&path=repo")["value"],
        "local@example.com"
    );
    assert_eq!(
        c.fx.daemon_global(daemon, "user.name").as_deref(),
        Some("Grace Hopper")
    );
}
