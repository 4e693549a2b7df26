//! Metadata routes: info, list, folder, delete, move, permissions, and the server-info routes.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use serde_json::json;

use crate::harness::*;

#[test]
fn info_routes_answer_version_dirs_and_init() {
    let daemon = Toolboxd::start();
    let version = json(daemon.get("/version"), 200);
    assert!(version["version"].as_str().unwrap().starts_with('v'));
    let home = json(daemon.get("/user-home-dir"), 200);
    assert_eq!(home["dir"], daemon.home.to_str().unwrap());
    assert_eq!(json(daemon.get("/project-dir"), 200)["dir"], home["dir"]);
    let work = json(daemon.get("/work-dir"), 200);
    assert_eq!(
        work["dir"],
        std::fs::canonicalize(&daemon.workdir)
            .unwrap()
            .to_str()
            .unwrap()
    );
    let init = json(daemon.post_json("/init", &json!({"token": "t"})), 200);
    assert!(init["message"].as_str().unwrap().contains("token"));
    assert_error(daemon.post("/init"), 400, "INVALID_REQUEST_BODY");
}

#[test]
fn file_info_has_every_field_in_daytona_formats() {
    let daemon = Toolboxd::start();
    write(&daemon.path("a.txt"), "hello");
    std::fs::set_permissions(daemon.path("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let info = json(daemon.get("/files/info?path=a.txt"), 200);
    assert_eq!(info["name"], "a.txt");
    assert_eq!(info["size"], 5);
    assert!(info["size"].is_u64());
    assert_eq!(info["mode"], "-rw-r-----");
    assert_eq!(info["permissions"], "0640");
    assert_eq!(info["isDir"], false);
    let metadata = std::fs::metadata(daemon.path("a.txt")).unwrap();
    assert_eq!(info["owner"], metadata.uid().to_string());
    assert_eq!(info["group"], metadata.gid().to_string());
    assert!(
        info["modTime"].as_str().unwrap().ends_with(" +0000 UTC"),
        "{info}"
    );
    let modified_at = info["modifiedAt"].as_str().unwrap();
    assert!(
        modified_at.ends_with('Z') && modified_at.contains('T'),
        "{info}"
    );
    assert_eq!(info["path"], daemon.path("a.txt").to_str().unwrap());

    let dir = json(
        daemon.get(&format!(
            "/files/info?path={}",
            q(daemon.workdir.to_str().unwrap())
        )),
        200,
    );
    assert_eq!(dir["isDir"], true);
    assert!(dir["mode"].as_str().unwrap().starts_with('d'));
}

#[test]
fn file_info_errors_are_typed() {
    let daemon = Toolboxd::start();
    assert_error(daemon.get("/files/info"), 400, "BAD_REQUEST");
    assert_error(daemon.get("/files/info?path="), 400, "BAD_REQUEST");
    let body = assert_error(
        daemon.get("/files/info?path=nope.txt"),
        404,
        "FILE_NOT_FOUND",
    );
    assert!(body["message"].as_str().unwrap().contains("nope.txt"));
    assert_eq!(body["path"], "/files/info");
    assert_eq!(body["method"], "GET");
    write(&daemon.path("file"), "x");
    assert_error(
        daemon.get("/files/info?path=file/inner"),
        400,
        "INVALID_FILE_PATH",
    );
}

#[test]
fn names_with_spaces_plus_quotes_unicode_and_newlines_resolve() {
    let daemon = Toolboxd::start();
    for name in [
        "a b.txt",
        "a+b.txt",
        "q\"uo'te.txt",
        "été 日本.txt",
        "new\nline.txt",
    ] {
        write(&daemon.path(name), name);
        let by_form = json(daemon.get(&format!("/files/info?path={}", form(name))), 200);
        assert_eq!(by_form["name"], name);
        let by_quote = json(daemon.get(&format!("/files/info?path={}", q(name))), 200);
        assert_eq!(by_quote["size"], name.len());
    }
    // A raw `+` is a space, as in any form-encoded query.
    assert_eq!(
        json(daemon.get("/files/info?path=a+b.txt"), 200)["name"],
        "a b.txt"
    );
}

#[test]
fn symlinks_are_followed_and_dangling_ones_are_still_listed() {
    let daemon = Toolboxd::start();
    write(&daemon.path("target.txt"), "12345");
    std::os::unix::fs::symlink("target.txt", daemon.path("link.txt")).unwrap();
    std::os::unix::fs::symlink("missing", daemon.path("dangling")).unwrap();
    let info = json(daemon.get("/files/info?path=link.txt"), 200);
    assert_eq!(info["size"], 5);
    assert_eq!(info["mode"], "-rw-r--r--");
    // stat(2) semantics, as Daytona: a dangling link does not exist.
    assert_error(
        daemon.get("/files/info?path=dangling"),
        404,
        "FILE_NOT_FOUND",
    );
    let listed = json(daemon.get("/files?path=."), 200);
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dangling", "link.txt", "target.txt"]);
    assert!(listed[0]["mode"].as_str().unwrap().starts_with('L'));
}

#[test]
fn list_is_sorted_with_paths_and_depth() {
    let daemon = Toolboxd::start();
    write(&daemon.path("b.txt"), "");
    write(&daemon.path("a/inner/deep.txt"), "");
    write(&daemon.path("a/x.txt"), "");
    for route in ["/files", "/files/", "/files?path=.", "/files/?path=."] {
        let listed = json(daemon.get(route), 200);
        let names: Vec<_> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b.txt"], "{route}");
    }
    let deep = json(daemon.get("/files?path=.&depth=2"), 200);
    let paths: Vec<_> = deep
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let root = daemon.workdir.to_str().unwrap();
    assert_eq!(
        paths,
        [
            format!("{root}/a"),
            format!("{root}/a/inner"),
            format!("{root}/a/x.txt"),
            format!("{root}/b.txt")
        ]
    );
    let deeper = json(daemon.get("/files?path=.&depth=3"), 200);
    assert_eq!(deeper.as_array().unwrap().len(), 5);
    assert_error(daemon.get("/files?path=.&depth=0"), 400, "BAD_REQUEST");
    assert_error(daemon.get("/files?path=.&depth=two"), 400, "BAD_REQUEST");
    assert_error(daemon.get("/files?path=missing"), 404, "FILE_NOT_FOUND");
    assert_error(daemon.get("/files?path=b.txt"), 400, "INVALID_FILE_PATH");
}

#[test]
fn create_folder_makes_parents_with_mode() {
    let daemon = Toolboxd::start();
    let response = daemon.post("/files/folder?path=x/y/z&mode=750");
    assert_eq!(response.status(), 201);
    let mode = std::fs::metadata(daemon.path("x/y/z"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750);
    assert_eq!(
        daemon.post("/files/folder?path=x/y/z").status(),
        201,
        "existing dir is fine"
    );
    let default = daemon.post("/files/folder?path=d");
    assert_eq!(default.status(), 201);
    assert_eq!(
        std::fs::metadata(daemon.path("d"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    write(&daemon.path("f"), "");
    assert_error(daemon.post("/files/folder?path=f"), 409, "CONFLICT");
    assert_error(
        daemon.post("/files/folder?path=e&mode=999"),
        400,
        "BAD_REQUEST",
    );
    assert_error(daemon.post("/files/folder"), 400, "BAD_REQUEST");
    assert!(!daemon.path("e").exists());
}

#[test]
fn delete_files_and_trees() {
    let daemon = Toolboxd::start();
    write(&daemon.path("a.txt"), "");
    write(&daemon.path("tree/x/y.txt"), "");
    assert_eq!(daemon.delete("/files?path=a.txt").status(), 204);
    assert!(!daemon.path("a.txt").exists());
    assert_error(daemon.delete("/files?path=tree"), 400, "BAD_REQUEST");
    assert!(daemon.path("tree/x/y.txt").exists());
    assert_eq!(
        daemon.delete("/files/?path=tree&recursive=true").status(),
        204
    );
    assert!(!daemon.path("tree").exists());
    assert_error(daemon.delete("/files?path=tree"), 404, "FILE_NOT_FOUND");
    assert_error(daemon.delete("/files"), 400, "BAD_REQUEST");
    assert_error(
        daemon.delete("/files?path=x&recursive=maybe"),
        400,
        "BAD_REQUEST",
    );
    // A symlink to a directory is removed as a link; the directory stays.
    write(&daemon.path("keep/k.txt"), "");
    std::os::unix::fs::symlink("keep", daemon.path("ln")).unwrap();
    assert_eq!(daemon.delete("/files?path=ln").status(), 204);
    assert!(daemon.path("keep/k.txt").exists());
}

#[test]
fn move_renames_and_refuses_to_overwrite() {
    let daemon = Toolboxd::start();
    write(&daemon.path("a.txt"), "A");
    write(&daemon.path("b.txt"), "B");
    assert_eq!(
        daemon
            .post("/files/move?source=a.txt&destination=c.txt")
            .status(),
        200
    );
    assert_eq!(std::fs::read_to_string(daemon.path("c.txt")).unwrap(), "A");
    assert!(!daemon.path("a.txt").exists());
    assert_error(
        daemon.post("/files/move?source=c.txt&destination=b.txt"),
        409,
        "CONFLICT",
    );
    assert_eq!(std::fs::read_to_string(daemon.path("b.txt")).unwrap(), "B");
    assert_error(
        daemon.post("/files/move?source=nope&destination=z"),
        404,
        "FILE_NOT_FOUND",
    );
    assert_error(
        daemon.post("/files/move?source=c.txt&destination=no/dir/z"),
        404,
        "FILE_NOT_FOUND",
    );
    assert_error(daemon.post("/files/move?source=c.txt"), 400, "BAD_REQUEST");
    write(&daemon.path("d/inner.txt"), "");
    assert_error(
        daemon.post("/files/move?source=d&destination=d/sub"),
        400,
        "INVALID_FILE_PATH",
    );
    // `..` is the OS's business: this is an ordinary rename.
    assert_eq!(
        daemon
            .post("/files/move?source=d&destination=d/../d2")
            .status(),
        200
    );
    assert!(daemon.path("d2/inner.txt").exists());
}

#[test]
fn move_works_across_filesystems() {
    // /dev/shm is a tmpfs on Linux; the work dir is on the test disk.
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    let daemon = Toolboxd::start();
    if std::fs::metadata(shm.path()).unwrap().dev()
        == std::fs::metadata(&daemon.workdir).unwrap().dev()
    {
        eprintln!("skipped: /dev/shm is on the same filesystem");
        return;
    }
    write(&daemon.path("tree/a.txt"), "A");
    write(&daemon.path("tree/sub/b.sh"), "B");
    std::fs::set_permissions(
        daemon.path("tree/sub/b.sh"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    std::os::unix::fs::symlink("a.txt", daemon.path("tree/link")).unwrap();
    write(&daemon.path("tree/suid"), "S");
    std::fs::set_permissions(
        daemon.path("tree/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let destination = shm.path().join("moved");
    let route = format!(
        "/files/move?source=tree&destination={}",
        q(destination.to_str().unwrap())
    );
    assert_eq!(daemon.post(&route).status(), 200);
    assert!(!daemon.path("tree").exists());
    assert_eq!(
        std::fs::read_to_string(destination.join("a.txt")).unwrap(),
        "A"
    );
    assert_eq!(
        std::fs::metadata(destination.join("sub/b.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o751
    );
    assert_eq!(
        std::fs::read_link(destination.join("link"))
            .unwrap()
            .to_str(),
        Some("a.txt")
    );
    let suid_mode = std::fs::metadata(destination.join("suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(suid_mode & 0o7777, 0o4755, "chown must not strip setuid");
    let leftovers: Vec<_> = std::fs::read_dir(shm.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["moved"]);
}

#[test]
fn permissions_change_mode_owner_and_group() {
    let daemon = Toolboxd::start();
    write(&daemon.path("p.txt"), "");
    assert_eq!(
        daemon
            .post("/files/permissions?path=p.txt&mode=0600")
            .status(),
        200
    );
    assert_eq!(
        std::fs::metadata(daemon.path("p.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let route = format!("/files/permissions?path=p.txt&owner={uid}&group={gid}&mode=755");
    assert_eq!(daemon.post(&route).status(), 200);
    let metadata = std::fs::metadata(daemon.path("p.txt")).unwrap();
    assert_eq!(
        (metadata.uid(), metadata.gid(), metadata.mode() & 0o777),
        (uid, gid, 0o755)
    );
    if is_root() {
        assert_eq!(
            daemon
                .post("/files/permissions?path=p.txt&owner=root&group=root")
                .status(),
            200
        );
    } else {
        assert_error(
            daemon.post("/files/permissions?path=p.txt&owner=0"),
            403,
            "FILE_ACCESS_DENIED",
        );
    }
    assert_error(
        daemon.post("/files/permissions?path=p.txt&mode=rwx"),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post("/files/permissions?path=p.txt&owner=no-such-user-xyz"),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post("/files/permissions?path=p.txt&group=no-such-group-xyz"),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post("/files/permissions?path=p.txt"),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        daemon.post("/files/permissions?path=nope&mode=644"),
        404,
        "FILE_NOT_FOUND",
    );
}

#[test]
fn special_files_are_refused_without_blocking() {
    let daemon = Toolboxd::start();
    let fifo = daemon.path("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // Opening a FIFO for reading would wait for a writer forever; these must answer at once.
    assert_error(
        daemon.get("/files/download?path=pipe"),
        400,
        "INVALID_FILE_PATH",
    );
    let body = json!({"files": ["pipe"], "pattern": "a", "newValue": "b"});
    let replaced = json(daemon.post_json("/files/replace", &body), 200);
    assert_eq!(replaced[0]["success"], false);
    let upload = daemon
        .client
        .post(daemon.url("/files/upload-v2?path=pipe"))
        .body("data")
        .send()
        .unwrap();
    assert_error(upload, 400, "INVALID_FILE_PATH");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn a_trailing_slash_insists_on_a_directory() {
    let daemon = Toolboxd::start();
    write(&daemon.path("a.txt"), "x");
    assert_error(
        daemon.get("/files/info?path=a.txt/"),
        400,
        "INVALID_FILE_PATH",
    );
    assert_error(
        daemon.get("/files/download?path=a.txt/"),
        400,
        "INVALID_FILE_PATH",
    );
    let upload = |path: &str| {
        daemon
            .client
            .post(daemon.url(&format!("/files/upload-v2?path={}", q(path))))
            .body("data")
            .send()
            .unwrap()
    };
    assert_error(upload("newname/"), 400, "INVALID_FILE_PATH");
    assert_error(upload("newname/."), 400, "INVALID_FILE_PATH");
    assert!(!daemon.path("newname").exists());
    write(&daemon.path("dir/x"), "");
    assert_eq!(
        json(daemon.get("/files/info?path=dir/"), 200)["isDir"],
        true
    );
}

#[test]
fn names_that_are_not_utf8_are_listed_with_a_raw_path_and_reachable() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let daemon = Toolboxd::start();
    let dir = daemon.workdir.join(OsStr::from_bytes(b"raw\xff"));
    let file = dir.join(OsStr::from_bytes(b"bad\xff\xfe.txt"));
    write(&file, "needle\n");
    write(&dir.join("plain.txt"), "plain\n");
    write(&daemon.path("plain.txt"), "plain\n");
    let workdir = daemon.workdir.to_str().unwrap();

    // The listing keeps `name` and `path` as text and adds the bytes, percent-encoded, where
    // the path is not UTF-8.
    let listing = json(daemon.get("/files?path=."), 200);
    let entries = listing.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{listing}");
    assert_eq!(entries[0]["name"], "plain.txt", "{listing}");
    assert!(entries[0].get("rawPath").is_none(), "{listing}");
    assert_eq!(entries[1]["name"], "raw\u{fffd}", "{listing}");
    assert_eq!(
        entries[1]["rawPath"],
        format!("{}/raw%FF", q(workdir)),
        "{listing}"
    );
    let listing = json(daemon.get("/files?path=raw%FF"), 200);
    let entries = listing.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{listing}");
    let bad = &entries[0];
    assert_eq!(bad["name"], "bad\u{fffd}\u{fffd}.txt", "{bad}");
    let raw = bad["rawPath"].as_str().unwrap();
    assert_eq!(raw, format!("{}/raw%FF/bad%FF%FE.txt", q(workdir)), "{bad}");

    // What the listing gives fetches the file; so do the bytes percent-encoded by hand.
    let response = daemon.get(&format!("/files/download?path={raw}"));
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "needle\n");
    let info = json(daemon.get("/files/info?path=raw%FF/bad%FF%FE.txt"), 200);
    assert_eq!(info["size"], 7, "{info}");
    assert_eq!(info["rawPath"], raw, "{info}");

    // find and search take the bytes too; find's matches carry them.
    let found = json(daemon.get("/files/find?path=raw%FF&pattern=needle"), 200);
    assert_eq!(found[0]["rawFile"], "raw%FF/bad%FF%FE.txt", "{found}");
    let searched = json(daemon.get("/files/search?path=raw%FF&pattern=*.txt"), 200);
    assert_eq!(searched["files"].as_array().unwrap().len(), 2, "{searched}");

    // Writes, moves and deletes reach the same bytes.
    let upload = daemon
        .client
        .post(daemon.url("/files/upload-v2?path=raw%FF/up%FE.txt"))
        .body("uploaded")
        .send()
        .unwrap();
    assert_eq!(upload.status(), 200);
    assert_eq!(
        std::fs::read_to_string(dir.join(OsStr::from_bytes(b"up\xfe.txt"))).unwrap(),
        "uploaded"
    );
    let moved = daemon.post("/files/move?source=raw%FF/up%FE.txt&destination=raw%FF/moved%FD.txt");
    assert_eq!(moved.status(), 200);
    assert!(dir.join(OsStr::from_bytes(b"moved\xfd.txt")).exists());
    assert_eq!(
        daemon.delete("/files?path=raw%FF/bad%FF%FE.txt").status(),
        204
    );
    assert!(!file.exists());

    // Other parameters must be text.
    let body = assert_error(
        daemon.get("/files/find?path=raw%FF&pattern=%FF"),
        400,
        "BAD_REQUEST",
    );
    assert!(
        body["message"].as_str().unwrap().contains("`pattern`"),
        "{body}"
    );
}
