"""Every `sandbox.fs` method of daytona==0.226.1, driven through the real SDK.

Results are checked both through the SDK and directly on disk (the daemon
runs on this machine, so its workdir is visible to the test).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
from daytona import (
    DaytonaBadRequestError,
    DaytonaConflictError,
    DaytonaError,
    DaytonaFileNotFoundError,
    DaytonaNotFoundError,
    FileDownloadRequest,
    FileUpload,
)

MiB = 1024 * 1024


def sha256_file(p: Path | str) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def perm(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def parse_rfc3339(s: str) -> datetime:
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", s)
    assert m, f"not RFC 3339: {s!r}"
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}")


@pytest.fixture(scope="module")
def big_local(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 50 MiB random file on the client side, with its sha256."""
    p = tmp_path_factory.mktemp("big") / "big50.bin"
    h = hashlib.sha256()
    with open(p, "wb") as f:
        for _ in range(50):
            chunk = os.urandom(MiB)
            h.update(chunk)
            f.write(chunk)
    return p, h.hexdigest()


# ---------------------------------------------------------------- create_folder


def test_create_folder_mode_and_parents(sandbox, wd):
    target = wd / "a" / "b" / "c"
    sandbox.fs.create_folder(str(target), "750")
    assert target.is_dir()
    assert perm(target) == 0o750
    # parents are created too
    assert (wd / "a").is_dir() and (wd / "a" / "b").is_dir()

    private = wd / "private"
    sandbox.fs.create_folder(str(private), "700")
    assert private.is_dir() and perm(private) == 0o700

    # creating an existing directory again is not an error
    sandbox.fs.create_folder(str(target), "750")
    assert target.is_dir()


def test_create_folder_relative_resolves_against_workdir(sandbox, wd):
    sandbox.fs.create_folder(f"{wd.rel}/rel/dir", "755")
    assert (wd / "rel" / "dir").is_dir()
    assert perm(wd / "rel" / "dir") == 0o755


# ---------------------------------------------------------------- upload


def test_upload_file_bytes_and_overwrite(sandbox, wd):
    dst = wd / "bytes.bin"
    payload = b"hello\x00\xff\xfe world\n" * 100
    sandbox.fs.upload_file(payload, str(dst))
    assert dst.read_bytes() == payload

    # overwrite with shorter content truncates
    sandbox.fs.upload_file(b"short", str(dst))
    assert dst.read_bytes() == b"short"

    # relative destination resolves against the workdir
    sandbox.fs.upload_file(b"rel", f"{wd.rel}/rel.txt")
    assert (wd / "rel.txt").read_bytes() == b"rel"


def test_upload_file_from_local_path(sandbox, wd, local_tmp):
    src = local_tmp / "local.txt"
    src.write_bytes(os.urandom(300_000))
    dst = wd / "from_local.bin"
    sandbox.fs.upload_file(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()


def test_upload_files_several_nested_and_50mib(sandbox, wd, big_local, local_tmp):
    big_src, big_sha = big_local
    small_local = local_tmp / "small.txt"
    small_local.write_text("from a local path\n")
    files = [
        FileUpload(source=b"first file\n", destination=wd.p("one.txt")),
        FileUpload(source=b"nested content", destination=wd.p("new", "nested", "deeper", "two.txt")),
        FileUpload(source=str(small_local), destination=wd.p("three.txt")),
        FileUpload(source=b"", destination=wd.p("empty.txt")),
        FileUpload(source=str(big_src), destination=wd.p("big", "big50.bin")),
    ]
    sandbox.fs.upload_files(files)

    assert (wd / "one.txt").read_bytes() == b"first file\n"
    assert (wd / "new/nested/deeper/two.txt").read_bytes() == b"nested content"
    assert (wd / "three.txt").read_text() == "from a local path\n"
    assert (wd / "empty.txt").exists() and (wd / "empty.txt").stat().st_size == 0
    big_dst = wd / "big" / "big50.bin"
    assert big_dst.stat().st_size == 50 * MiB
    assert sha256_file(big_dst) == big_sha
    # new parent directories are created (reference: 0755)
    for d in ["new", "new/nested", "new/nested/deeper", "big"]:
        assert (wd / d).is_dir()
        assert perm(wd / d) == 0o755, f"{d}: {oct(perm(wd / d))}"

    # and the 50 MiB file comes back intact through download_file(remote, local)
    back = local_tmp / "big_back.bin"
    sandbox.fs.download_file(str(big_dst), str(back))
    assert back.stat().st_size == 50 * MiB
    assert sha256_file(back) == big_sha


def test_upload_files_error_is_reported(sandbox, wd):
    # A destination whose parent is an existing *file* cannot be created.
    (wd / "plainfile").write_bytes(b"x")
    with pytest.raises(DaytonaError) as ei:
        sandbox.fs.upload_files([FileUpload(source=b"data", destination=wd.p("plainfile", "child.txt"))])
    assert ei.value.status_code is not None and 400 <= ei.value.status_code < 600


def test_upload_file_stream(sandbox, wd, local_tmp):
    payload = os.urandom(3 * MiB + 17)

    # from bytes, with progress
    progress: list[int] = []
    dst = wd / "stream_bytes.bin"
    sandbox.fs.upload_file_stream(payload, str(dst), on_progress=lambda p: progress.append(p.bytes_sent))
    assert dst.read_bytes() == payload
    assert progress and progress[-1] == len(payload)

    # from a local path
    src = local_tmp / "stream_src.bin"
    src.write_bytes(payload[::-1])
    dst2 = wd / "sub" / "stream_path.bin"
    sandbox.fs.upload_file_stream(str(src), str(dst2))
    assert dst2.read_bytes() == payload[::-1]

    # from a file-like object
    dst3 = wd / "stream_obj.bin"
    sandbox.fs.upload_file_stream(io.BytesIO(b"file-like object"), str(dst3))
    assert dst3.read_bytes() == b"file-like object"


# ---------------------------------------------------------------- download


def test_download_file_to_memory(sandbox, wd):
    content = os.urandom(200_000)
    (wd / "d.bin").write_bytes(content)
    assert sandbox.fs.download_file(wd.p("d.bin")) == content
    # relative path
    assert sandbox.fs.download_file(f"{wd.rel}/d.bin") == content
    # empty file
    (wd / "empty").write_bytes(b"")
    assert sandbox.fs.download_file(wd.p("empty")) == b""


def test_download_file_to_local_path(sandbox, wd, local_tmp):
    content = b"line\n" * 10_000
    (wd / "src.txt").write_bytes(content)
    local = local_tmp / "nested" / "copy.txt"
    assert sandbox.fs.download_file(wd.p("src.txt"), str(local)) is None
    assert local.read_bytes() == content


def test_download_file_missing_raises_file_not_found(sandbox, wd):
    with pytest.raises(DaytonaFileNotFoundError) as ei:
        sandbox.fs.download_file(wd.p("missing.txt"))
    assert isinstance(ei.value, DaytonaNotFoundError)
    assert ei.value.status_code == 404
    assert ei.value.code == "FILE_NOT_FOUND"


def test_download_files_mixed_with_missing(sandbox, wd, local_tmp):
    (wd / "a.txt").write_bytes(b"AAA")
    (wd / "b.txt").write_bytes(b"BBBB")
    (wd / "adir").mkdir()
    local_b = local_tmp / "b_local.txt"
    reqs = [
        FileDownloadRequest(source=wd.p("a.txt")),
        FileDownloadRequest(source=wd.p("missing.txt")),
        FileDownloadRequest(source=wd.p("b.txt"), destination=str(local_b)),
        FileDownloadRequest(source=wd.p("adir")),
    ]
    res = sandbox.fs.download_files(reqs)
    assert [r.source for r in res] == [r.source for r in reqs]

    a, missing, b, adir = res
    assert a.error is None and a.result == b"AAA"
    assert b.error is None and b.result == str(local_b) and local_b.read_bytes() == b"BBBB"

    assert missing.result is None
    assert missing.error, "missing file must carry an error"
    assert missing.error_details is not None, "error part must be application/json with statusCode/code"
    assert missing.error_details.status_code == 404
    assert missing.error_details.code == "FILE_NOT_FOUND"
    assert "not found" in missing.error.lower()

    # a directory cannot be downloaded (reference: 400 INVALID_FILE_PATH)
    assert adir.result is None and adir.error
    assert adir.error_details is not None and adir.error_details.status_code == 400
    assert adir.error_details.code == "INVALID_FILE_PATH"


def test_download_file_stream(sandbox, wd):
    content = os.urandom(2 * MiB + 5)
    (wd / "s.bin").write_bytes(content)
    seen: list[tuple[int, int | None]] = []
    chunks = list(
        sandbox.fs.download_file_stream(
            wd.p("s.bin"), on_progress=lambda p: seen.append((p.bytes_received, p.total_bytes))
        )
    )
    assert b"".join(chunks) == content
    assert seen and seen[-1][0] == len(content)
    # the part's Content-Length is reported as total_bytes
    assert seen[-1][1] == len(content)


def test_download_file_stream_missing(sandbox, wd):
    with pytest.raises(DaytonaFileNotFoundError):
        for _ in sandbox.fs.download_file_stream(wd.p("nope.bin")):
            pass


# Bytes that a multipart parser could take for framing: the boundary toolboxd used to send on
# every bulk download (a file holding it came back cut short, with no error), a closing
# delimiter, the start of the boundary it sends now, CRLFs and NULs.
OLD_BOUNDARY = b"DAYTONA-FILE-BOUNDARY"


def framing_payloads() -> dict[str, bytes]:
    fake_part = (
        b"\r\n--" + OLD_BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"file\"; "
        b"filename=\"evil\"\r\nContent-Length: 4\r\n\r\nevil"
    )
    closing = b"\r\n--" + OLD_BOUNDARY + b"--\r\n"
    # The report's file: 1,064,960 bytes, then a closing delimiter and a tail (1,064,996 bytes).
    report = os.urandom(1_064_960) + closing + b"trailer"
    assert len(report) == 1_064_996
    return {
        "report.bin": report,
        "fake-part.bin": os.urandom(300_000) + fake_part + os.urandom(300_000) + fake_part,
        # Right after the part headers' CRLF CRLF, a file that starts with `--BOUNDARY` makes
        # `CRLF--BOUNDARY` with the headers' last CRLF.
        "starts-with-delimiter.bin": b"--" + OLD_BOUNDARY + b"--\r\n" + os.urandom(1000) + closing,
        "crlf-nul.bin": (b"\r\n" * 5000 + b"\0" * 5000 + b"\r\n--\r\n\r\n--toolboxd-\r\n--\0") * 20,
        "only-closing.bin": closing,
    }


def test_download_file_keeps_bytes_that_look_like_multipart_framing(sandbox, wd, local_tmp):
    for name, content in framing_payloads().items():
        (wd / name).write_bytes(content)
        want = hashlib.sha256(content).hexdigest()
        got = sandbox.fs.download_file(wd.p(name))
        assert (len(got), hashlib.sha256(got).hexdigest()) == (len(content), want), name
        local = local_tmp / name
        assert sandbox.fs.download_file(wd.p(name), str(local)) is None
        assert (local.stat().st_size, sha256_file(local)) == (len(content), want), name
        streamed = b"".join(sandbox.fs.download_file_stream(wd.p(name)))
        assert hashlib.sha256(streamed).hexdigest() == want, name


def test_download_files_keeps_bytes_that_look_like_multipart_framing(sandbox, wd, local_tmp):
    payloads = framing_payloads()
    # Every file twice in one bulk download: once to memory, once to a local path (under two
    # names: the SDK matches parts to requests by source path).
    for name, content in payloads.items():
        (wd / f"mem-{name}").write_bytes(content)
        (wd / f"disk-{name}").write_bytes(content)
    names = list(payloads)
    reqs = [FileDownloadRequest(source=wd.p(f"mem-{n}")) for n in names] + [
        FileDownloadRequest(source=wd.p(f"disk-{n}"), destination=str(local_tmp / n)) for n in names
    ]
    res = sandbox.fs.download_files(reqs)
    assert [r.source for r in res] == [r.source for r in reqs]
    for n, r in zip(names, res[: len(names)]):
        assert r.error is None, (n, r.error)
        assert isinstance(r.result, bytes), (n, r.result)
        assert (len(r.result), hashlib.sha256(r.result).hexdigest()) == (
            len(payloads[n]),
            hashlib.sha256(payloads[n]).hexdigest(),
        ), n
    for n, r in zip(names, res[len(names) :]):
        assert r.error is None, (n, r.error)
        assert r.result == str(local_tmp / n)
        assert sha256_file(local_tmp / n) == hashlib.sha256(payloads[n]).hexdigest(), n


# ---------------------------------------------------------------- list / info


def _tree(wd) -> None:
    (wd / "a.txt").write_bytes(b"12345")
    (wd / "sub" / "deeper").mkdir(parents=True)
    (wd / "sub" / "b.txt").write_bytes(b"b")
    (wd / "sub" / "deeper" / "c.txt").write_bytes(b"c")


def test_list_files(sandbox, wd):
    _tree(wd)
    entries = sandbox.fs.list_files(str(wd.abs))
    by_name = {e.name: e for e in entries}
    assert set(by_name) == {"a.txt", "sub"}
    assert by_name["a.txt"].size == 5 and by_name["a.txt"].is_dir is False
    assert by_name["sub"].is_dir is True
    for e in entries:
        if e.path is not None:
            assert e.path == wd.p(e.name)

    # relative path
    rel = sandbox.fs.list_files(wd.rel)
    assert {e.name for e in rel} == {"a.txt", "sub"}


def test_list_files_depth(sandbox, wd):
    _tree(wd)
    one = sandbox.fs.list_files(str(wd.abs), depth=1)
    assert all(e.path for e in one), "with depth every entry carries `path`"
    assert {e.path for e in one} == {wd.p("a.txt"), wd.p("sub")}

    two = sandbox.fs.list_files(str(wd.abs), depth=2)
    assert all(e.path for e in two), "with depth every entry carries `path`"
    paths = {e.path for e in two}
    assert paths == {wd.p("a.txt"), wd.p("sub"), wd.p("sub", "b.txt"), wd.p("sub", "deeper")}
    by_path = {e.path: e for e in two}
    assert by_path[wd.p("sub", "b.txt")].name == "b.txt"
    assert by_path[wd.p("sub", "deeper")].is_dir is True

    three = sandbox.fs.list_files(str(wd.abs), depth=3)
    assert wd.p("sub", "deeper", "c.txt") in {e.path for e in three}


def test_list_files_missing_dir(sandbox, wd):
    with pytest.raises(DaytonaNotFoundError):
        sandbox.fs.list_files(wd.p("does-not-exist"))


def test_get_file_info_file(sandbox, wd):
    f = wd / "info.txt"
    f.write_bytes(b"hello world")
    os.chmod(f, 0o644)
    info = sandbox.fs.get_file_info(str(f))
    assert info.name == "info.txt"
    assert isinstance(info.size, int) and info.size == 11
    assert info.is_dir is False
    assert info.permissions == "0644"
    assert info.mode == "-rw-r--r--"
    assert isinstance(info.mod_time, str) and info.mod_time
    assert info.owner == str(os.getuid())
    assert info.group == str(os.getgid())
    assert info.modified_at, "modifiedAt should be set (RFC 3339)"
    mtime = datetime.fromtimestamp(f.stat().st_mtime, tz=timezone.utc)
    assert abs((parse_rfc3339(info.modified_at) - mtime).total_seconds()) < 2
    if info.path is not None:
        assert info.path == str(f)

    # executable file
    os.chmod(f, 0o750)
    info = sandbox.fs.get_file_info(str(f))
    assert info.permissions == "0750" and info.mode == "-rwxr-x---"

    # relative path
    assert sandbox.fs.get_file_info(f"{wd.rel}/info.txt").size == 11


def test_get_file_info_dir(sandbox, wd):
    d = wd / "somedir"
    d.mkdir()
    os.chmod(d, 0o755)
    info = sandbox.fs.get_file_info(str(d))
    assert info.name == "somedir"
    assert info.is_dir is True
    assert info.permissions == "0755"
    assert info.mode == "drwxr-xr-x"
    assert isinstance(info.size, int)


def test_get_file_info_missing_raises_file_not_found(sandbox, wd):
    with pytest.raises(DaytonaFileNotFoundError) as ei:
        sandbox.fs.get_file_info(wd.p("missing"))
    assert isinstance(ei.value, DaytonaNotFoundError)
    assert ei.value.status_code == 404
    assert ei.value.code == "FILE_NOT_FOUND"


# ---------------------------------------------------------------- delete


def test_delete_file_and_dirs(sandbox, wd):
    (wd / "f.txt").write_bytes(b"x")
    sandbox.fs.delete_file(wd.p("f.txt"))
    assert not (wd / "f.txt").exists()

    (wd / "tree" / "inner").mkdir(parents=True)
    (wd / "tree" / "inner" / "g.txt").write_bytes(b"g")

    # a directory without recursive is refused and left alone (reference: 400)
    with pytest.raises(DaytonaError) as ei:
        sandbox.fs.delete_file(wd.p("tree"))
    assert ei.value.status_code == 400
    assert isinstance(ei.value, DaytonaBadRequestError)
    assert (wd / "tree" / "inner" / "g.txt").exists()

    sandbox.fs.delete_file(wd.p("tree"), recursive=True)
    assert not (wd / "tree").exists()

    # relative path
    (wd / "rel.txt").write_bytes(b"r")
    sandbox.fs.delete_file(f"{wd.rel}/rel.txt")
    assert not (wd / "rel.txt").exists()


def test_delete_missing(sandbox, wd):
    with pytest.raises(DaytonaNotFoundError):
        sandbox.fs.delete_file(wd.p("ghost.txt"))


def test_delete_symlink_to_dir_removes_only_the_link(sandbox, wd, local_tmp):
    # A link to a directory inside the work dir and one outside it: a recursive delete of the
    # link, with or without a trailing slash, removes the link and never empties the target.
    for target in (wd / "target", local_tmp / "target"):
        (target / "sub").mkdir(parents=True)
        (target / "a.txt").write_bytes(b"a")
        (target / "sub" / "b.txt").write_bytes(b"b")
        for path in (wd.p("link") + "/", wd.p("link")):
            (wd / "link").symlink_to(target, target_is_directory=True)
            sandbox.fs.delete_file(path, recursive=True)
            assert not (wd / "link").is_symlink(), path
            assert (target / "a.txt").read_bytes() == b"a", path
            assert (target / "sub" / "b.txt").read_bytes() == b"b", path


# ---------------------------------------------------------------- move


def test_move_files(sandbox, wd):
    (wd / "src.txt").write_bytes(b"payload")
    sandbox.fs.move_files(wd.p("src.txt"), wd.p("dst.txt"))
    assert not (wd / "src.txt").exists()
    assert (wd / "dst.txt").read_bytes() == b"payload"

    # move a directory with contents
    (wd / "dir1" / "x").mkdir(parents=True)
    (wd / "dir1" / "x" / "f").write_bytes(b"f")
    (wd / "target").mkdir()
    sandbox.fs.move_files(wd.p("dir1"), wd.p("target", "dir2"))
    assert not (wd / "dir1").exists()
    assert (wd / "target" / "dir2" / "x" / "f").read_bytes() == b"f"

    # relative paths
    sandbox.fs.move_files(f"{wd.rel}/dst.txt", f"{wd.rel}/dst2.txt")
    assert (wd / "dst2.txt").read_bytes() == b"payload"


def test_move_files_destination_exists(sandbox, wd):
    (wd / "a").write_bytes(b"A")
    (wd / "b").write_bytes(b"B")
    with pytest.raises(DaytonaConflictError) as ei:
        sandbox.fs.move_files(wd.p("a"), wd.p("b"))
    assert ei.value.status_code == 409
    assert (wd / "a").read_bytes() == b"A"
    assert (wd / "b").read_bytes() == b"B"


def test_move_files_missing_source(sandbox, wd):
    with pytest.raises(DaytonaNotFoundError):
        sandbox.fs.move_files(wd.p("nothing"), wd.p("else"))


# ---------------------------------------------------------------- find / search


def test_find_files(sandbox, wd):
    (wd / "a.py").write_text("import os\nneedle here\nx = 1\n")
    (wd / "sub").mkdir()
    (wd / "sub" / "b.txt").write_text("no\nno\nthe needle\n")
    (wd / "sub" / "c.bin").write_bytes(b"\x00\x01needle\x00")  # binary: skipped
    (wd / "none.txt").write_text("nothing to see\n")
    matches = sandbox.fs.find_files(str(wd.abs), "needle")
    got = sorted((m.file, m.line, m.content) for m in matches)
    assert got == sorted(
        [
            (wd.p("a.py"), 2, "needle here"),
            (wd.p("sub", "b.txt"), 3, "the needle"),
        ]
    )
    for m in matches:
        assert isinstance(m.line, int)


def test_find_files_is_substring_not_regex(sandbox, wd):
    (wd / "r.txt").write_text("axb\na.b\n")
    matches = sandbox.fs.find_files(str(wd.abs), "a.b")
    assert [(m.file, m.line, m.content) for m in matches] == [(wd.p("r.txt"), 2, "a.b")]


def test_large_listing_and_find_arrive_whole_and_in_order(sandbox, wd):
    """Both are streamed (chunked, written as the walk goes); the SDK must see the same array."""
    lines = "".join(f"needle {n}\n" for n in range(1, 21))
    # `a/x` sorts before `a-b` and `a.txt`: the order is by path, parents first.
    for sub in ("a", *(f"d{i:02}" for i in range(30))):
        (wd / sub).mkdir()
    for name in ("a/x", "a-b", "a.txt", *(f"d{i:02}/f{j:03}.txt" for i in range(30) for j in range(100))):
        (wd / name).write_text(lines)

    def walk(d: Path) -> list[Path]:
        out = []
        for child in sorted(d.iterdir(), key=lambda c: os.fsencode(c.name)):
            out.append(child)
            if child.is_dir():
                out += walk(child)
        return out

    expected = walk(wd.abs)
    listed = sandbox.fs.list_files(str(wd.abs), depth=2)
    assert [e.path for e in listed] == [str(p) for p in expected]
    assert len(listed) == 3034

    matches = sandbox.fs.find_files(str(wd.abs), "needle")
    assert len(matches) == 3003 * 20
    files = [str(p) for p in expected if p.is_file()]
    assert [(m.file, m.line) for m in matches] == [(f, n) for f in files for n in range(1, 21)]
    assert matches[-1].content == "needle 20"


def test_search_files_glob(sandbox, wd):
    (wd / "x.py").write_text("")
    (wd / "n.txt").write_text("")
    (wd / "sub" / "deep").mkdir(parents=True)
    (wd / "sub" / "y.py").write_text("")
    (wd / "sub" / "deep" / "z.py").write_text("")
    (wd / "sub" / "deep" / "test_one.txt").write_text("")
    res = sandbox.fs.search_files(str(wd.abs), "*.py")
    assert sorted(res.files) == sorted([wd.p("x.py"), wd.p("sub", "y.py"), wd.p("sub", "deep", "z.py")])

    res = sandbox.fs.search_files(str(wd.abs), "test_*")
    assert res.files == [wd.p("sub", "deep", "test_one.txt")]

    res = sandbox.fs.search_files(str(wd.abs), "*.nomatch")
    assert res.files == []


# ---------------------------------------------------------------- replace


def test_replace_in_files(sandbox, wd):
    f1 = wd / "f1.txt"
    f2 = wd / "f2.txt"
    f1.write_text("foo bar foo\nfoo\n")
    os.chmod(f1, 0o600)
    f2.write_text("nothing here\n")
    missing = wd.p("missing.txt")

    results = sandbox.fs.replace_in_files([str(f1), str(f2), missing], "foo", "baz")
    by_file = {r.file: r for r in results}
    assert set(by_file) == {str(f1), str(f2), missing}
    assert by_file[str(f1)].success is True
    assert by_file[str(f2)].success is True
    assert by_file[missing].success is False
    assert by_file[missing].error

    assert f1.read_text() == "baz bar baz\nbaz\n"
    assert f2.read_text() == "nothing here\n"
    assert perm(f1) == 0o600, "an existing file keeps its mode"
    assert not Path(missing).exists()


def test_replace_in_files_literal_pattern(sandbox, wd):
    f = wd / "lit.txt"
    f.write_text("a.c abc a.c\n")
    res = sandbox.fs.replace_in_files([str(f)], "a.c", "X")
    assert res[0].success is True
    assert f.read_text() == "X abc X\n"
    # replacing with the empty string is allowed
    res = sandbox.fs.replace_in_files([str(f)], "X ", "")
    assert res[0].success is True
    assert f.read_text() == "abc X\n"


# ---------------------------------------------------------------- permissions


def test_set_file_permissions_mode(sandbox, wd):
    f = wd / "p.sh"
    f.write_text("#!/bin/sh\n")
    os.chmod(f, 0o644)
    sandbox.fs.set_file_permissions(str(f), mode="755")
    assert perm(f) == 0o755
    sandbox.fs.set_file_permissions(str(f), mode="600")
    assert perm(f) == 0o600

    d = wd / "dir"
    d.mkdir()
    sandbox.fs.set_file_permissions(str(d), mode="700")
    assert perm(d) == 0o700
    assert sandbox.fs.get_file_info(str(d)).permissions == "0700"


def test_set_file_permissions_owner_group_numeric(sandbox, wd):
    f = wd / "own.txt"
    f.write_text("x")
    os.chmod(f, 0o640)
    uid, gid = os.getuid(), os.getgid()
    sandbox.fs.set_file_permissions(str(f), owner=str(uid), group=str(gid))
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (uid, gid)
    assert perm(f) == 0o640, "mode unchanged when not given"

    sandbox.fs.set_file_permissions(str(f), mode="604", owner=str(uid))
    assert perm(f) == 0o604
    assert os.stat(f).st_uid == uid


def test_set_file_permissions_missing(sandbox, wd):
    with pytest.raises(DaytonaNotFoundError):
        sandbox.fs.set_file_permissions(wd.p("ghost"), mode="644")


# ---------------------------------------------------------------- awkward names

AWKWARD_NAMES = [
    "with space.txt",
    "plus+sign.txt",
    "single'quote.txt",
    'double"quote.txt',
    "amp&eq=pct%20hash#q?.txt",
    "é日本.txt",
    "semi;colon,comma.txt",
]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_awkward_names_round_trip(sandbox, wd, name):
    payload = f"content of {name}\n".encode()
    remote = wd.p(name)

    sandbox.fs.upload_file(payload, remote)
    assert name in os.listdir(wd.abs), os.listdir(wd.abs)
    assert (wd / name).read_bytes() == payload

    info = sandbox.fs.get_file_info(remote)
    assert info.name == name and info.size == len(payload)

    assert name in {e.name for e in sandbox.fs.list_files(str(wd.abs))}
    assert sandbox.fs.download_file(remote) == payload
    assert b"".join(sandbox.fs.download_file_stream(remote)) == payload

    matches = sandbox.fs.find_files(str(wd.abs), "content of")
    assert [m.file for m in matches] == [remote]
    assert sandbox.fs.search_files(str(wd.abs), "*.txt").files == [remote]

    moved = wd.p("moved " + name)
    sandbox.fs.move_files(remote, moved)
    assert (wd / ("moved " + name)).read_bytes() == payload
    sandbox.fs.delete_file(moved)
    assert os.listdir(wd.abs) == []


def test_awkward_names_bulk(sandbox, wd):
    sub = wd / "日本 dir + x"
    sandbox.fs.create_folder(str(sub), "755")
    assert sub.is_dir()
    uploads = [FileUpload(source=f"#{i}:{n}".encode(), destination=str(sub / n)) for i, n in enumerate(AWKWARD_NAMES)]
    sandbox.fs.upload_files(uploads)
    for i, n in enumerate(AWKWARD_NAMES):
        assert (sub / n).read_bytes() == f"#{i}:{n}".encode()

    res = sandbox.fs.download_files([FileDownloadRequest(source=str(sub / n)) for n in AWKWARD_NAMES])
    for i, (n, r) in enumerate(zip(AWKWARD_NAMES, res)):
        assert r.error is None, (n, r.error)
        assert r.result == f"#{i}:{n}".encode()

    missing = str(sub / "missing é+ x.txt")
    res = sandbox.fs.download_files([FileDownloadRequest(source=missing)])
    assert res[0].result is None and res[0].error
    assert res[0].error_details is not None and res[0].error_details.code == "FILE_NOT_FOUND"


# --------------------------------------------------------------------------
# Sockets, files whose size the kernel does not report, names that are not UTF-8
# --------------------------------------------------------------------------


def test_download_proc_files_whole_and_a_socket_as_bad_request(sandbox, wd):
    # procfs reports 0 bytes: the daemon's own status arrives whole.
    status = sandbox.fs.download_file("/proc/self/status")
    assert status.startswith(b"Name:\ttoolboxd"), status[:40]
    assert b"\nPid:\t" in status
    big = Path("/proc/kallsyms")
    expected = big.read_bytes() if big.exists() else b""
    if len(expected) > MiB:
        # More than the daemon reads ahead: streamed whole without a length.
        assert sandbox.fs.download_file(str(big)) == expected

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(wd / "sock"))
    try:
        with pytest.raises(DaytonaBadRequestError) as ei:
            sandbox.fs.download_file(wd.p("sock"))
        assert ei.value.status_code == 400
        res = sandbox.fs.download_files(
            [
                FileDownloadRequest(source="/proc/cpuinfo"),
                FileDownloadRequest(source=wd.p("sock")),
                FileDownloadRequest(source="/proc/self/status"),
            ]
        )
    finally:
        sock.close()
    cpuinfo, sock_res, status_res = res
    assert cpuinfo.error is None and cpuinfo.result
    assert sock_res.result is None and sock_res.error_details is not None
    assert sock_res.error_details.status_code == 400
    assert sock_res.error_details.code == "INVALID_FILE_PATH"
    assert status_res.error is None and status_res.result.startswith(b"Name:\ttoolboxd")


def test_list_files_with_a_name_that_is_not_utf8(sandbox, wd):
    raw = os.fsencode(str(wd.abs)) + b"/bad\xff\xfe.txt"
    with open(raw, "wb") as f:
        f.write(b"x")
    (wd / "ok.txt").write_bytes(b"ok")
    entries = {e.name: e for e in sandbox.fs.list_files(str(wd.abs))}
    assert set(entries) == {"bad\ufffd\ufffd.txt", "ok.txt"}
    bad = entries["bad\ufffd\ufffd.txt"]
    assert bad.size == 1
    # The extra field reaches the SDK user as an additional property.
    assert bad.additional_properties["rawPath"].endswith("/bad%FF%FE.txt")
    assert "rawPath" not in entries["ok.txt"].additional_properties
