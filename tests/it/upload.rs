//! `POST /files/bulk-upload`, `/files/upload-v2`, `/files/upload`: pairing, streaming, cut
//! connections, read-only targets and full disks.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::transfer_support::*;

// ---------------------------------------------------------------------------------------------
// 3. POST /files/bulk-upload
// ---------------------------------------------------------------------------------------------

#[test]
fn bulk_upload_python_style_all_paths_first() {
    let daemon = Toolboxd::start();
    let absolute = daemon.path("py/three.txt").to_string_lossy().into_owned();
    let two = pseudo_random(70_000, 2);
    let body = multipart_body(&[
        Part::Field("files[0].path", "py/one.txt"),
        Part::Field("files[1].path", "py/deep/nested/two.bin"),
        Part::Field("files[2].path", &absolute),
        Part::Field("files[3].path", "py/é ü.txt"),
        Part::File("files[0].file", "py/one.txt", b"one"),
        Part::File("files[1].file", "py/deep/nested/two.bin", &two),
        Part::File("files[2].file", &absolute, b""),
        Part::File("files[3].file", "py/é ü.txt", "ünïcödé".as_bytes()),
    ]);
    let response = json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(
        response,
        json!({
            "files": [
                {"path": "py/one.txt", "bytes": 3},
                {"path": "py/deep/nested/two.bin", "bytes": 70_000},
                {"path": absolute, "bytes": 0},
                {"path": "py/é ü.txt", "bytes": "ünïcödé".len()},
            ],
            "errors": []
        })
    );
    assert_eq!(std::fs::read(daemon.path("py/one.txt")).unwrap(), b"one");
    assert_eq!(
        std::fs::read(daemon.path("py/deep/nested/two.bin")).unwrap(),
        two
    );
    assert_eq!(std::fs::read(daemon.path("py/three.txt")).unwrap(), b"");
    assert_eq!(
        std::fs::read_to_string(daemon.path("py/é ü.txt")).unwrap(),
        "ünïcödé"
    );
    for dir in ["py", "py/deep", "py/deep/nested"] {
        assert_eq!(mode_of(&daemon.path(dir)), 0o755, "{dir}");
    }
}

#[test]
fn bulk_upload_ts_style_interleaved() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("files[0].path", "ts/a.txt"),
        Part::File("files[0].file", "a.txt", b"first file"),
        Part::Field("files[1].path", "ts/sub/b.txt"),
        Part::File("files[1].file", "b.txt", b"second file"),
    ]);
    let response = json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(
        response,
        json!({
            "files": [{"path": "ts/a.txt", "bytes": 10}, {"path": "ts/sub/b.txt", "bytes": 11}],
            "errors": []
        })
    );
    assert_eq!(
        std::fs::read(daemon.path("ts/a.txt")).unwrap(),
        b"first file"
    );
    assert_eq!(
        std::fs::read(daemon.path("ts/sub/b.txt")).unwrap(),
        b"second file"
    );
    assert_eq!(mode_of(&daemon.path("ts/sub")), 0o755);
    assert!(!daemon.path("a.txt").exists() && !daemon.path("b.txt").exists());
}

#[test]
fn bulk_upload_ignores_the_part_filename() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("files[0].path", "dest/real.txt"),
        Part::File("files[0].file", "decoy.txt", b"payload"),
    ]);
    let response = json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(
        response["files"],
        json!([{"path": "dest/real.txt", "bytes": 7}])
    );
    assert_eq!(
        std::fs::read(daemon.path("dest/real.txt")).unwrap(),
        b"payload"
    );
    assert!(!daemon.path("decoy.txt").exists());
    assert!(!daemon.path("dest/decoy.txt").exists());
}

#[test]
fn bulk_upload_accepts_a_chunked_request_body() {
    let daemon = Toolboxd::start();
    let big = pseudo_random(300_000, 9);
    let body = multipart_body(&[
        Part::Field("files[0].path", "chunked/a.bin"),
        Part::File("files[0].file", "a.bin", &big),
        Part::Field("files[1].path", "chunked/b.txt"),
        Part::File("files[1].file", "b.txt", b"small one"),
    ]);
    let mut stream = TcpStream::connect(address(&daemon)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST /files/bulk-upload HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        address(&daemon),
        multipart_type()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Odd chunk sizes so part boundaries fall inside chunks.
    let sizes = [1usize, 7, 100, 4093, 65_537];
    let mut pos = 0;
    let mut turn = 0;
    while pos < body.len() {
        let size = sizes[turn % sizes.len()].min(body.len() - pos);
        stream
            .write_all(format!("{size:x}\r\n").as_bytes())
            .unwrap();
        stream.write_all(&body[pos..pos + size]).unwrap();
        stream.write_all(b"\r\n").unwrap();
        pos += size;
        turn += 1;
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let response = parse_raw_response(&raw);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let value: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        value,
        json!({
            "files": [{"path": "chunked/a.bin", "bytes": 300_000}, {"path": "chunked/b.txt", "bytes": 9}],
            "errors": []
        })
    );
    assert_eq!(std::fs::read(daemon.path("chunked/a.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(daemon.path("chunked/b.txt")).unwrap(),
        b"small one"
    );
}

#[test]
fn bulk_upload_file_part_without_its_path_is_400_naming_the_index() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[Part::File("files[7].file", "orphan.txt", b"data")]);
    let response = post_multipart(&daemon, "/files/bulk-upload", body);
    let body = json(response, 400);
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert!(errors[0].as_str().unwrap().contains("[7]"), "{body}");
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(!daemon.path("orphan.txt").exists());
}

#[test]
fn bulk_upload_with_an_empty_path_is_400() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("files[0].path", ""),
        Part::File("files[0].file", "x.txt", b"data"),
    ]);
    let response = post_multipart(&daemon, "/files/bulk-upload", body);
    let body = json(response, 400);
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"));
    assert!(!errors.is_empty(), "{body}");
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(!daemon.path("x.txt").exists());
}

#[test]
fn bulk_upload_of_a_non_multipart_body_is_400() {
    let daemon = Toolboxd::start();
    let response = daemon.post_json("/files/bulk-upload", &json!({"files": ["a.txt"]}));
    let body = assert_error(response, 400, "INVALID_REQUEST_BODY");
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
}

#[test]
fn bulk_upload_over_an_existing_file_keeps_its_mode() {
    let daemon = Toolboxd::start();
    let script = daemon.path("run.sh");
    write(&script, "echo old\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let body = multipart_body(&[
        Part::Field("files[0].path", "run.sh"),
        Part::File("files[0].file", "run.sh", b"echo new\n"),
    ]);
    json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(std::fs::read_to_string(&script).unwrap(), "echo new\n");
    assert_eq!(mode_of(&script), 0o755);
}

#[test]
fn bulk_upload_through_a_symlink_writes_its_target() {
    let daemon = Toolboxd::start();
    write(&daemon.path("real/target.txt"), "old");
    std::os::unix::fs::symlink("real/target.txt", daemon.path("link.txt")).unwrap();
    let body = multipart_body(&[
        Part::Field("files[0].path", "link.txt"),
        Part::File("files[0].file", "link.txt", b"through the link"),
    ]);
    json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    let link = std::fs::symlink_metadata(daemon.path("link.txt")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(
        std::fs::read_link(daemon.path("link.txt")).unwrap(),
        Path::new("real/target.txt")
    );
    assert_eq!(
        std::fs::read_to_string(daemon.path("real/target.txt")).unwrap(),
        "through the link"
    );
    assert!(temp_files(&daemon.workdir).is_empty() && temp_files(&daemon.path("real")).is_empty());
}

#[test]
fn bulk_upload_onto_a_directory_fails_and_keeps_it() {
    let daemon = Toolboxd::start();
    write(&daemon.path("adir/inner.txt"), "inner");
    let body = multipart_body(&[
        Part::Field("files[0].path", "adir"),
        Part::File("files[0].file", "adir", b"not a dir"),
    ]);
    let response = post_multipart(&daemon, "/files/bulk-upload", body);
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    assert!((400..500).contains(&status), "status {status}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    assert!(daemon.path("adir").is_dir());
    assert_eq!(
        std::fs::read_to_string(daemon.path("adir/inner.txt")).unwrap(),
        "inner"
    );
    assert!(temp_files(&daemon.workdir).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. A 50 MiB round trip
// ---------------------------------------------------------------------------------------------

#[test]
fn fifty_mib_round_trip_is_byte_exact() {
    let daemon = Toolboxd::start();
    const SIZE: usize = 50 * 1024 * 1024;
    let data = pseudo_random(SIZE, 0x5eed_1234);
    let body = multipart_body(&[
        Part::Field("files[0].path", "big/blob.bin"),
        Part::File("files[0].file", "big/blob.bin", &data),
    ]);
    let response = json(post_multipart(&daemon, "/files/bulk-upload", body), 200);
    assert_eq!(
        response,
        json!({"files": [{"path": "big/blob.bin", "bytes": SIZE}], "errors": []})
    );
    let on_disk = std::fs::read(daemon.path("big/blob.bin")).unwrap();
    assert!(on_disk == data, "on-disk content differs");
    drop(on_disk);

    let response = download(&daemon, "big/blob.bin").send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), SIZE.to_string());
    let downloaded = response.bytes().unwrap();
    assert_eq!(downloaded.len(), SIZE);
    assert!(
        downloaded.as_ref() == data.as_slice(),
        "GET /files/download content differs"
    );
    drop(downloaded);

    let parts = bulk_download(&daemon, &["big/blob.bin"]);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].name(), "file");
    assert_eq!(
        parts[0].header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!(parts[0].body.len(), SIZE);
    assert!(parts[0].body == data, "bulk-download content differs");
}

// ---------------------------------------------------------------------------------------------
// 5. Uploads cut mid-stream
// ---------------------------------------------------------------------------------------------

/// Sends `head` + `body_start` (the body announced much larger), waits until the daemon has a
/// temp file in `dir`, then cuts the connection. Asserts the temp file goes away and `target`
/// keeps "old content".
pub(crate) fn cut_upload(
    daemon: &Toolboxd,
    head: &str,
    body_start: &[u8],
    dir: &Path,
    target: &Path,
) {
    let mut stream = TcpStream::connect(address(daemon)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body_start).unwrap();
    stream.write_all(&pseudo_random(1 << 20, 77)).unwrap();
    stream.flush().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !temp_files(dir).is_empty()),
        "the daemon never started writing a temp file (is the upload streamed?)"
    );
    stream.shutdown(Shutdown::Both).unwrap();
    drop(stream);
    let clean = wait_for(Duration::from_secs(10), || temp_files(dir).is_empty());
    assert!(
        clean,
        "temp files left after the cut: {:?}",
        temp_files(dir)
    );
    assert_eq!(std::fs::read_to_string(target).unwrap(), "old content");
    // The daemon still serves, and serves the old content.
    let response = download(daemon, &target.to_string_lossy()).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "old content");
}

#[test]
fn bulk_upload_cut_mid_stream_keeps_the_old_file_and_no_temp() {
    let daemon = Toolboxd::start();
    let target = daemon.path("cut/keep.bin");
    write(&target, "old content");
    let head = format!(
        "POST /files/bulk-upload HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        address(&daemon),
        multipart_type(),
        64 * 1024 * 1024
    );
    let body_start = format!(
        "--{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\ncut/keep.bin\r\n\
         --{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"keep.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    cut_upload(
        &daemon,
        &head,
        body_start.as_bytes(),
        &daemon.path("cut"),
        &target,
    );
}

#[test]
fn upload_v2_cut_mid_stream_keeps_the_old_file_and_no_temp() {
    let daemon = Toolboxd::start();
    let target = daemon.path("cut2/keep.bin");
    write(&target, "old content");
    let head = format!(
        "POST /files/upload-v2?path={} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        q("cut2/keep.bin"),
        address(&daemon),
        64 * 1024 * 1024
    );
    cut_upload(&daemon, &head, b"", &daemon.path("cut2"), &target);
}

// ---------------------------------------------------------------------------------------------
// 6. POST /files/upload-v2 and the legacy POST /files/upload
// ---------------------------------------------------------------------------------------------

#[test]
fn upload_v2_stores_a_raw_body() {
    let daemon = Toolboxd::start();
    let response = daemon
        .client
        .post(daemon.url(&format!(
            "/files/upload-v2?path={}",
            form("v2/raw file+.bin")
        )))
        .header("content-type", "application/octet-stream")
        .body(b"raw bytes \x00\x01\xff".to_vec())
        .send()
        .unwrap();
    let body = json(response, 200);
    assert_eq!(
        body,
        json!({"files": [{"path": "v2/raw file+.bin", "bytes": 13}], "errors": []})
    );
    assert_eq!(
        std::fs::read(daemon.path("v2/raw file+.bin")).unwrap(),
        b"raw bytes \x00\x01\xff"
    );
}

#[test]
fn upload_v2_stores_a_multipart_file_field() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("other", "ignored"),
        Part::File("file", "whatever.txt", b"multipart content"),
    ]);
    let response = post_multipart(
        &daemon,
        &format!("/files/upload-v2?path={}", q("v2/multi.txt")),
        body,
    );
    let body = json(response, 200);
    assert_eq!(
        body,
        json!({"files": [{"path": "v2/multi.txt", "bytes": 17}], "errors": []})
    );
    assert_eq!(
        std::fs::read(daemon.path("v2/multi.txt")).unwrap(),
        b"multipart content"
    );
    assert!(!daemon.path("v2/whatever.txt").exists());
}

#[test]
fn upload_v2_ignores_signed_url_parameters() {
    let daemon = Toolboxd::start();
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2?path=signed.txt&expires=1700000000&signature=abc"))
        .body("signed")
        .send()
        .unwrap();
    let body = json(response, 200);
    assert_eq!(
        body,
        json!({"files": [{"path": "signed.txt", "bytes": 6}], "errors": []})
    );
    assert_eq!(std::fs::read(daemon.path("signed.txt")).unwrap(), b"signed");
}

#[test]
fn upload_v2_without_path_is_400() {
    let daemon = Toolboxd::start();
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2"))
        .body("data")
        .send()
        .unwrap();
    assert_error(response, 400, "BAD_REQUEST");
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2?path="))
        .body("data")
        .send()
        .unwrap();
    assert_error(response, 400, "BAD_REQUEST");
}

#[test]
fn legacy_upload_stores_the_file_field() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[Part::File("file", "ignored-name.txt", b"legacy content")]);
    let response = post_multipart(
        &daemon,
        &format!("/files/upload?path={}", q("legacy/dir/l.txt")),
        body,
    );
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().unwrap_or_default()
    );
    assert_eq!(
        std::fs::read(daemon.path("legacy/dir/l.txt")).unwrap(),
        b"legacy content"
    );
}

#[test]
fn legacy_upload_without_a_file_field_is_400() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[Part::Field("notfile", "x")]);
    let response = post_multipart(&daemon, "/files/upload?path=legacy.txt", body);
    let body = json(response, 400);
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["source"], "DAYTONA_DAEMON", "{body}");
    assert!(!daemon.path("legacy.txt").exists());
}

// ---------------------------------------------------------------------------------------------
// 7. A read-only target
// ---------------------------------------------------------------------------------------------

#[test]
fn upload_into_a_read_only_directory_is_403() {
    let daemon = Toolboxd::start();
    let dir = daemon.path("locked");
    std::fs::create_dir_all(&dir).unwrap();
    // Declared after the daemon, so they drop (unmount, chmod back) before its temp dir goes.
    let _mount;
    let _mode;
    if is_root() {
        match TmpfsMount::mount(&dir, "ro,size=1m") {
            Some(mount) => _mount = mount,
            None => return,
        }
    } else {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        _mode = ModeGuard {
            dir: dir.clone(),
            mode: 0o755,
        };
    }

    let body = multipart_body(&[
        Part::Field("files[0].path", "locked/new.txt"),
        Part::File("files[0].file", "new.txt", b"should not land"),
    ]);
    let body = assert_error(
        post_multipart(&daemon, "/files/bulk-upload", body),
        403,
        "FILE_ACCESS_DENIED",
    );
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert!(
        errors[0].as_str().unwrap().contains("locked/new.txt"),
        "{body}"
    );
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(!dir.join("new.txt").exists());

    let response = daemon
        .client
        .post(daemon.url(&format!("/files/upload-v2?path={}", q("locked/v2.txt"))))
        .body("should not land")
        .send()
        .unwrap();
    let body = assert_error(response, 403, "FILE_ACCESS_DENIED");
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    assert!(!dir.join("v2.txt").exists());
    assert!(temp_files(&dir).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 8. A full disk
// ---------------------------------------------------------------------------------------------

#[test]
fn upload_onto_a_full_disk_is_507_and_keeps_the_old_file() {
    if !is_root() {
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let daemon = Toolboxd::start();
    let dir = daemon.path("full");
    let Some(_mount) = TmpfsMount::mount(&dir, "size=1m") else {
        return;
    };
    let target = dir.join("keep.bin");
    write(&target, "old content");
    let big = pseudo_random(4 * 1024 * 1024, 4);

    let response = daemon
        .client
        .post(daemon.url(&format!("/files/upload-v2?path={}", q("full/keep.bin"))))
        .header("content-type", "application/octet-stream")
        .body(big.clone())
        .send()
        .expect("upload-v2 got no response (was the rest of the body drained before answering?)");
    let body = assert_error(response, 507, "INSUFFICIENT_STORAGE");
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    assert_eq!(body["files"], json!([]), "{body}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old content");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    let multipart = multipart_body(&[
        Part::Field("files[0].path", "full/keep.bin"),
        Part::File("files[0].file", "keep.bin", &big),
    ]);
    let response = daemon
        .client
        .post(daemon.url("/files/bulk-upload"))
        .header("content-type", multipart_type())
        .body(multipart)
        .send()
        .expect("bulk-upload got no response (was the rest of the body drained before answering?)");
    let body = assert_error(response, 507, "INSUFFICIENT_STORAGE");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(body["files"], json!([]), "{body}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old content");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    // The disk is usable again: a small upload succeeds.
    let response = daemon
        .client
        .post(daemon.url(&format!("/files/upload-v2?path={}", q("full/keep.bin"))))
        .body("new small content")
        .send()
        .unwrap();
    json(response, 200);
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "new small content"
    );
}

#[test]
fn a_path_part_without_its_file_part_is_reported() {
    let daemon = Toolboxd::start();
    let body = multipart_body(&[
        Part::Field("files[0].path", "a.txt"),
        Part::Field("files[1].path", "orphan.txt"),
        Part::File("files[0].file", "a.txt", b"A"),
    ]);
    let response = post_multipart(&daemon, "/files/bulk-upload", body);
    let body = assert_error(response, 400, "INVALID_REQUEST_BODY");
    assert!(
        body["errors"][0].as_str().unwrap().contains("files[1]"),
        "{body}"
    );
    // All or nothing: the file that had its part is not stored either.
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("nothing was stored"),
        "{body}"
    );
    assert!(!daemon.path("a.txt").exists());
    assert_eq!(std::fs::read_dir(&daemon.workdir).unwrap().count(), 0);
}

#[test]
fn a_file_that_cannot_be_written_stores_none_of_the_others() {
    let daemon = Toolboxd::start();
    write(&daemon.path("b.txt"), "old b");
    let body = multipart_body(&[
        Part::Field("files[0].path", "a.txt"),
        Part::File("files[0].file", "a.txt", b"A"),
        // Its parent is a file: this one cannot be written, as root or not.
        Part::Field("files[1].path", "b.txt/x.txt"),
        Part::File("files[1].file", "x.txt", b"X"),
        Part::Field("files[2].path", "b.txt"),
        Part::File("files[2].file", "b.txt", b"new b"),
    ]);
    let response = post_multipart(&daemon, "/files/bulk-upload", body);
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("b.txt/x.txt"),
        "{body}"
    );
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(!daemon.path("a.txt").exists());
    assert_eq!(
        std::fs::read_to_string(daemon.path("b.txt")).unwrap(),
        "old b"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&daemon.workdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp files: {leftovers:?}");
}

#[test]
fn a_bind_mounted_file_is_rewritten_in_place() {
    // /etc/hosts in a container is a bind mount: rename over it fails with EBUSY.
    if !is_root() {
        eprintln!("skipped: bind mounts need root");
        return;
    }
    let daemon = Toolboxd::start();
    let source = daemon.path("source.txt");
    let target = daemon.path("hosts");
    write(&source, "old hosts");
    write(&target, "");
    let mounted = std::process::Command::new("mount")
        .args(["--bind", source.to_str().unwrap(), target.to_str().unwrap()])
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!("skipped: mount --bind failed");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(target.clone());
    let response = daemon
        .client
        .post(daemon.url("/files/upload-v2?path=hosts"))
        .body("new hosts")
        .send()
        .unwrap();
    assert_eq!(json(response, 200)["files"][0]["bytes"], 9);
    assert_eq!(std::fs::read_to_string(&source).unwrap(), "new hosts");
    let leftovers = temp_files(&daemon.workdir);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------------------------------------
// 9. A body that did not arrive whole commits nothing
// ---------------------------------------------------------------------------------------------

/// A whole `files[0]` pair (path and file parts) for `path`, and the delimiter that opens the
/// next part: a body that a cut leaves looking complete up to there.
fn whole_first_pair(path: &str, content: &str) -> String {
    format!(
        "--{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\n{path}\r\n\
         --{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"a.txt\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{content}\r\n\
         --{UPLOAD_BOUNDARY}\r\n"
    )
}

#[test]
fn a_bulk_upload_cut_after_a_whole_part_commits_nothing() {
    let daemon = Toolboxd::start();
    let dir = daemon.path("cut14");
    let target = dir.join("a.txt");
    write(&target, "old content");
    let body = whole_first_pair("cut14/a.txt", "new content");
    let mut stream = TcpStream::connect(address(&daemon)).unwrap();
    stream.set_nodelay(true).unwrap();
    let head = format!(
        "POST /files/bulk-upload HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        address(&daemon),
        multipart_type(),
        body.len() + 1000
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    // The file part is whole: it is written (staged) at once, or, before the fix, committed.
    assert!(
        wait_for(Duration::from_secs(10), || !temp_files(&dir).is_empty()
            || std::fs::read_to_string(&target).unwrap() != "old content"),
        "the daemon never wrote the part"
    );
    stream.shutdown(Shutdown::Both).unwrap();
    drop(stream);
    assert!(
        wait_for(Duration::from_secs(10), || temp_files(&dir).is_empty()),
        "temp files left after the cut: {:?}",
        temp_files(&dir)
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "old content",
        "a body cut short committed a file"
    );
    // A new file the cut body named is not created either.
    let body = whole_first_pair("cut14/new.txt", "new file");
    let mut stream = TcpStream::connect(address(&daemon)).unwrap();
    let head = format!(
        "POST /files/bulk-upload HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        address(&daemon),
        multipart_type(),
        body.len() + 1000
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !temp_files(&dir).is_empty()
            || dir.join("new.txt").exists()),
        "the daemon never wrote the part"
    );
    drop(stream);
    assert!(wait_for(Duration::from_secs(10), || temp_files(&dir).is_empty()));
    assert!(
        !dir.join("new.txt").exists(),
        "a body cut short created a file"
    );
    assert_eq!(daemon.get("/version").status(), 200);
}

#[test]
fn a_bulk_upload_without_its_closing_delimiter_commits_nothing() {
    let daemon = Toolboxd::start();
    write(&daemon.path("a.txt"), "old content");
    // Content-Length matches what is sent: the body ends cleanly, but not as a multipart body.
    let body = whole_first_pair("a.txt", "new content");
    let response = post_multipart(&daemon, "/files/bulk-upload", body.into_bytes());
    let body = assert_error(response, 400, "INVALID_REQUEST_BODY");
    assert_eq!(body["files"], json!([]), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was stored"),
        "{body}"
    );
    assert_eq!(
        std::fs::read_to_string(daemon.path("a.txt")).unwrap(),
        "old content"
    );
    assert!(temp_files(&daemon.workdir).is_empty());

    // upload-v2 with a multipart body: the same.
    let single = format!(
        "--{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nnew content\r\n"
    );
    let response = post_multipart(
        &daemon,
        &format!("/files/upload-v2?path={}", q("a.txt")),
        single.into_bytes(),
    );
    let body = assert_error(response, 400, "INVALID_REQUEST_BODY");
    assert_eq!(body["files"], json!([]), "{body}");
    assert_eq!(
        std::fs::read_to_string(daemon.path("a.txt")).unwrap(),
        "old content"
    );
    assert!(temp_files(&daemon.workdir).is_empty());
}

#[test]
fn a_chunked_bulk_upload_without_its_last_chunk_commits_nothing() {
    let daemon = Toolboxd::start();
    write(&daemon.path("a.txt"), "old content");
    // A whole multipart body, closing delimiter included, but the chunked body never ends.
    let body = multipart_body(&[
        Part::Field("files[0].path", "a.txt"),
        Part::File("files[0].file", "a.txt", b"new content"),
    ]);
    let mut stream = TcpStream::connect(address(&daemon)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST /files/bulk-upload HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        address(&daemon),
        multipart_type()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .write_all(format!("{:x}\r\n", body.len()).as_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    stream.write_all(b"\r\n").unwrap();
    // No `0\r\n\r\n`: the client stops sending.
    stream.shutdown(Shutdown::Write).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let response = parse_raw_response(&raw);
    let text = String::from_utf8_lossy(&response.body);
    assert_eq!(response.status, 400, "{text}");
    assert!(
        text.contains("cut short") && text.contains("nothing was stored"),
        "{text}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || temp_files(&daemon.workdir)
            .is_empty()),
        "temp files left: {:?}",
        temp_files(&daemon.workdir)
    );
    assert_eq!(
        std::fs::read_to_string(daemon.path("a.txt")).unwrap(),
        "old content"
    );
}
