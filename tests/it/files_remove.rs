//! Delete and move that change all or nothing: a symlink is deleted or moved as a link (with or
//! without a trailing slash), a recursive delete that cannot finish deletes nothing, and a
//! cross-filesystem move that cannot remove its source leaves no copy behind.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;
use crate::transfer_support::{ModeGuard, TmpfsMount};

/// Every entry under `root` (not following links): relative path, then the file's content, the
/// link's target or `dir`, sorted. Two equal snapshots mean nothing was deleted or changed.
fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let relative = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let what = if entry.path_is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(entry.path()).unwrap().display()
                )
            } else if entry.file_type().is_dir() {
                "dir".to_string()
            } else {
                std::fs::read_to_string(entry.path()).unwrap()
            };
            (relative, what)
        })
        .collect();
    out.sort();
    out
}

/// A small tree with `files` files at the top and in `sub/`, plus `sub/deep/c.txt`. Enough
/// siblings that a delete walking in directory order almost surely removes some before it meets
/// the entry that stops it.
fn make_tree(root: &Path, files: usize) {
    for index in 0..files {
        write(&root.join(format!("f{index}.txt")), format!("top {index}"));
        write(
            &root.join(format!("sub/g{index}.txt")),
            format!("sub {index}"),
        );
    }
    write(&root.join("sub/deep/c.txt"), "deep");
}

/// The first few names in `dir`, to show what a failed assertion left behind.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A tmpfs at `dir` holding `files`, then remounted read-only. None when mounting is not possible.
fn read_only_tmpfs(dir: &Path, files: &[(&str, &str)]) -> Option<TmpfsMount> {
    let mount = TmpfsMount::mount(dir, "size=1m")?;
    for (name, content) in files {
        write(&dir.join(name), content);
    }
    let status = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "remount read-only failed");
    Some(mount)
}

/// Clears the immutable flag again on drop (or the temp dir could not be removed).
struct ImmutableGuard(PathBuf);

impl Drop for ImmutableGuard {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// A tempdir on a filesystem other than `than`'s, for cross-filesystem moves. /dev/shm is a tmpfs.
fn other_filesystem(than: &Path) -> Option<tempfile::TempDir> {
    let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm");
        return None;
    };
    if std::fs::metadata(dir.path()).unwrap().dev() == std::fs::metadata(than).unwrap().dev() {
        eprintln!("skipped: /dev/shm is on the same filesystem");
        return None;
    }
    Some(dir)
}

#[test]
fn deleting_a_symlink_to_a_directory_removes_only_the_link() {
    let daemon = Toolboxd::start();
    let outside = tempfile::tempdir().unwrap();
    let targets = [
        ("inside", daemon.path("target"), PathBuf::from("target")),
        (
            "outside",
            outside.path().join("target"),
            outside.path().join("target"),
        ),
    ];
    for (place, target, link_text) in targets {
        make_tree(&target, 3);
        let before = snapshot(&target);
        for (path, recursive) in [
            ("link/", true),
            ("link/.", true),
            ("link", true),
            ("link/", false),
            ("link", false),
        ] {
            std::os::unix::fs::symlink(&link_text, daemon.path("link")).unwrap();
            let response = daemon.delete(&format!("/files?path={}&recursive={recursive}", q(path)));
            let status = response.status();
            let body = response.text().unwrap();
            assert_eq!(status, 204, "{place} {path} recursive={recursive}: {body}");
            assert!(
                std::fs::symlink_metadata(daemon.path("link")).is_err(),
                "{place} {path} recursive={recursive}: the link is still there"
            );
            assert_eq!(
                snapshot(&target),
                before,
                "{place} {path} recursive={recursive}: the directory behind the link changed"
            );
        }
    }
}

#[test]
fn a_trailing_slash_on_a_link_to_a_non_directory_changes_nothing() {
    let daemon = Toolboxd::start();
    write(&daemon.path("a.txt"), "A");
    std::os::unix::fs::symlink("a.txt", daemon.path("flink")).unwrap();
    std::os::unix::fs::symlink("missing", daemon.path("dangling")).unwrap();
    let before = snapshot(&daemon.workdir);
    assert_error(
        daemon.delete("/files?path=flink/&recursive=true"),
        400,
        "INVALID_FILE_PATH",
    );
    assert_error(
        daemon.delete("/files?path=dangling/&recursive=true"),
        404,
        "FILE_NOT_FOUND",
    );
    assert_error(
        daemon.post("/files/move?source=flink/&destination=moved"),
        400,
        "INVALID_FILE_PATH",
    );
    assert_error(
        daemon.post("/files/move?source=dangling/&destination=moved"),
        404,
        "FILE_NOT_FOUND",
    );
    assert_eq!(snapshot(&daemon.workdir), before);
}

#[test]
fn a_delete_of_a_path_ending_in_dot_dot_is_refused() {
    let daemon = Toolboxd::start();
    make_tree(&daemon.path("tree"), 3);
    let before = snapshot(&daemon.workdir);
    // `sub/..` names `tree` itself; removing it by that name can never succeed (rmdir refuses a
    // final `..`), so it must be refused before anything inside is touched.
    assert_error(
        daemon.delete("/files?path=tree/sub/..&recursive=true"),
        400,
        "INVALID_FILE_PATH",
    );
    assert_error(
        daemon.post("/files/move?source=tree/sub/..&destination=elsewhere"),
        400,
        "INVALID_FILE_PATH",
    );
    assert_eq!(snapshot(&daemon.workdir), before);
}

#[test]
fn moving_a_symlink_to_a_directory_moves_the_link() {
    let daemon = Toolboxd::start();
    let outside = tempfile::tempdir().unwrap();
    let shm = other_filesystem(&daemon.workdir);
    let targets = [
        ("inside", daemon.path("target"), PathBuf::from("target")),
        (
            "outside",
            outside.path().join("target"),
            outside.path().join("target"),
        ),
    ];
    for (place, target, link_text) in targets {
        make_tree(&target, 3);
        let before = snapshot(&target);
        let mut destinations = vec![daemon.path(&format!("moved-{place}"))];
        if let Some(shm) = &shm {
            destinations.push(shm.path().join(format!("moved-{place}")));
        }
        for destination in destinations {
            for source in ["link/", "link"] {
                std::os::unix::fs::symlink(&link_text, daemon.path("link")).unwrap();
                let response = daemon.post(&format!(
                    "/files/move?source={}&destination={}",
                    q(source),
                    q(destination.to_str().unwrap())
                ));
                let status = response.status();
                let body = response.text().unwrap();
                let case = format!("{place} {source} -> {}", destination.display());
                assert_eq!(status, 200, "{case}: {body}");
                assert_eq!(body, "", "{case}: a move answers an empty body");
                assert!(
                    std::fs::symlink_metadata(daemon.path("link")).is_err(),
                    "{case}: the link is still there"
                );
                assert_eq!(
                    std::fs::read_link(&destination).unwrap(),
                    link_text,
                    "{case}: the destination is not the link"
                );
                assert_eq!(snapshot(&target), before, "{case}: the target changed");
                std::fs::remove_file(&destination).unwrap();
            }
        }
    }
    if let Some(shm) = &shm {
        assert!(names(shm.path()).is_empty(), "{:?}", names(shm.path()));
    }
}

#[test]
fn a_recursive_delete_over_a_mount_point_deletes_nothing() {
    if !is_root() {
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let daemon = Toolboxd::start();
    make_tree(&daemon.path("tree"), 10);
    let ro = daemon.path("tree/sub/ro");
    let rw = daemon.path("mnt");
    // Declared after the daemon, so they unmount before its temp dir goes.
    let Some(_ro_mount) = read_only_tmpfs(&ro, &[("kept.txt", "read-only")]) else {
        return;
    };
    let Some(_rw_mount) = TmpfsMount::mount(&rw, "size=1m") else {
        return;
    };
    for index in 0..10 {
        write(&rw.join(format!("m{index}.txt")), "on the mount");
    }
    let before = snapshot(&daemon.workdir);

    // A read-only mount inside the tree: rmdir of a mount point is EBUSY, and nothing on it can
    // be deleted either.
    let body = assert_error(
        daemon.delete("/files?path=tree&recursive=true"),
        409,
        "CONFLICT",
    );
    assert_eq!(snapshot(&daemon.workdir), before);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("mount point"), "{message}");
    assert!(message.contains("nothing was deleted"), "{message}");

    // The mount point itself, read-only and read-write.
    assert_error(
        daemon.delete("/files?path=tree/sub/ro&recursive=true"),
        409,
        "CONFLICT",
    );
    assert_error(
        daemon.delete("/files?path=mnt/&recursive=true"),
        409,
        "CONFLICT",
    );
    assert_eq!(snapshot(&daemon.workdir), before);

    // Links to the mounts are removed as links; the walk does not follow them.
    write(&daemon.path("links/plain.txt"), "p");
    std::os::unix::fs::symlink("../tree/sub/ro", daemon.path("links/to-ro")).unwrap();
    std::os::unix::fs::symlink(&rw, daemon.path("links/to-mnt")).unwrap();
    assert_eq!(
        daemon.delete("/files?path=links&recursive=true").status(),
        204
    );
    assert!(!daemon.path("links").exists());
    assert_eq!(snapshot(&daemon.workdir), before);
}

#[test]
fn a_recursive_delete_that_would_be_refused_part_way_deletes_nothing() {
    let daemon = Toolboxd::start();
    make_tree(&daemon.path("tree"), 10);
    let blocker = daemon.path("tree/sub/deep");
    // Declared after the daemon, so they are undone before its temp dir goes.
    let _mode;
    let _immutable;
    let expected;
    if is_root() {
        // Root may remove anything a permission bit guards, but not an immutable file.
        let file = blocker.join("c.txt");
        let chattr = Command::new("chattr").arg("+i").arg(&file).status();
        if !chattr.is_ok_and(|status| status.success()) {
            eprintln!("skipping: chattr +i is not supported here");
            return;
        }
        _immutable = ImmutableGuard(file);
        expected = "immutable";
    } else {
        std::fs::set_permissions(&blocker, std::fs::Permissions::from_mode(0o555)).unwrap();
        _mode = ModeGuard {
            dir: blocker.clone(),
            mode: 0o755,
        };
        expected = "permission";
    }
    let before = snapshot(&daemon.workdir);
    let body = assert_error(
        daemon.delete("/files?path=tree&recursive=true"),
        403,
        "FILE_ACCESS_DENIED",
    );
    assert_eq!(snapshot(&daemon.workdir), before);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(expected), "{message}");
    assert!(message.contains("nothing was deleted"), "{message}");
}

#[test]
fn a_cross_filesystem_move_whose_source_cannot_be_removed_moves_nothing() {
    let daemon = Toolboxd::start();
    let locked = daemon.path("locked");
    // Declared after the daemon, so they are undone before its temp dir goes.
    let _mount;
    let _mode;
    let shm;
    let destination_dir = if is_root() {
        // A read-only tmpfs inside the work dir; the work dir is another filesystem.
        match read_only_tmpfs(
            &locked,
            &[
                ("f.txt", "file"),
                ("dir/x.txt", "x"),
                ("dir/sub/y.txt", "y"),
            ],
        ) {
            Some(mount) => _mount = mount,
            None => return,
        }
        daemon.path("out")
    } else {
        let Some(dir) = other_filesystem(&daemon.workdir) else {
            return;
        };
        write(&locked.join("f.txt"), "file");
        write(&locked.join("dir/x.txt"), "x");
        write(&locked.join("dir/sub/y.txt"), "y");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        _mode = ModeGuard {
            dir: locked.clone(),
            mode: 0o755,
        };
        shm = dir;
        shm.path().join("out")
    };
    std::fs::create_dir_all(&destination_dir).unwrap();
    let before = snapshot(&locked);
    for source in ["locked/f.txt", "locked/dir", "locked/dir/"] {
        let destination = destination_dir.join("moved");
        let body = assert_error(
            daemon.post(&format!(
                "/files/move?source={}&destination={}",
                q(source),
                q(destination.to_str().unwrap())
            )),
            403,
            "FILE_ACCESS_DENIED",
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("nothing was moved"), "{source}: {message}");
        assert!(
            names(&destination_dir).is_empty(),
            "{source}: left at the destination: {:?}",
            names(&destination_dir)
        );
        assert_eq!(snapshot(&locked), before, "{source}");
    }
}

#[test]
fn a_cross_filesystem_move_of_a_tree_holding_a_mount_point_moves_nothing() {
    if !is_root() {
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let daemon = Toolboxd::start();
    let Some(shm) = other_filesystem(&daemon.workdir) else {
        return;
    };
    make_tree(&daemon.path("tree"), 10);
    let Some(_mount) = TmpfsMount::mount(&daemon.path("tree/sub/mnt"), "size=1m") else {
        return;
    };
    write(&daemon.path("tree/sub/mnt/on-mount.txt"), "m");
    let before = snapshot(&daemon.workdir);
    let destination = shm.path().join("moved");
    assert_error(
        daemon.post(&format!(
            "/files/move?source=tree&destination={}",
            q(destination.to_str().unwrap())
        )),
        409,
        "CONFLICT",
    );
    assert!(names(shm.path()).is_empty(), "{:?}", names(shm.path()));
    assert_eq!(snapshot(&daemon.workdir), before);
}
