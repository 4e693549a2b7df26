"""Every `sandbox.git` method of daytona==0.226.1, driven through the real SDK.

The remotes are local bare repositories built with the git CLI (`file://` URLs), plus one
smart-HTTP remote on loopback (`git http-backend` as CGI behind Basic auth) for the
authenticated cases. The CLI used here is isolated from the machine's configuration
(HOME=<tmp>, GIT_CONFIG_NOSYSTEM=1, identity given with -c); it builds the fixtures and checks
what the daemon did. The daemon itself never runs git.

The daemon of the shared session runs with HOME=<tmp>/home (see conftest.py), so the global
git config it writes never touches the machine's. `dangerously_authenticate` runs on a daemon
of its own, so the credentials it stores cannot leak into the other tests.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import stat
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from daytona import (
    DaytonaBadRequestError,
    DaytonaConflictError,
    DaytonaError,
    DaytonaFileNotFoundError,
    DaytonaGitAuthFailedError,
    DaytonaGitBranchExistsError,
    DaytonaGitBranchNotFoundError,
    DaytonaGitDirtyWorktreeError,
    DaytonaGitMergeConflictError,
    DaytonaGitPushRejectedError,
    DaytonaGitRemoteRejectedError,
    DaytonaGitRepoNotFoundError,
    DaytonaGitTransportFailedError,
    DaytonaNotFoundError,
)

from conftest import make_client, start_daemon

DAEMON = "DAYTONA_DAEMON"
AUTHOR = "SDK Tester"
EMAIL = "sdk-tester@example.com"
USER = "alice"
PASSWORD = "s3cret-pw"
D_LINES = "".join(f"line {i} of a file long enough for rename detection\n" for i in range(20))


# ---------------------------------------------------------------- the git CLI (fixtures + checks)


class GitCli:
    """The git CLI with a HOME of its own and no system config."""

    def __init__(self, home: Path):
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_TERMINAL_PROMPT="0",
            LC_ALL="C",
        )
        self.env = env
        self.home = home

    def run(self, cwd: Path | str, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = [
            "git",
            "-c", "user.name=Fixture User",
            "-c", "user.email=fixture@example.com",
            "-c", "init.defaultBranch=main",
            "-c", "protocol.file.allow=always",
            "-c", "commit.gpgsign=false",
            *args,
        ]  # fmt: skip
        p = subprocess.run(cmd, cwd=str(cwd), env=env or self.env, capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({p.returncode}) in {cwd}:\n{p.stdout}{p.stderr}")
        return p

    def __call__(self, cwd: Path | str, *args: str) -> str:
        """Run git, return stdout without the trailing newline."""
        return self.run(cwd, *args).stdout.rstrip("\n")

    def ok(self, cwd: Path | str, *args: str) -> bool:
        return self.run(cwd, *args, check=False).returncode == 0

    def commit_file(self, repo: Path, name: str, content: str, message: str) -> str:
        p = repo / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        self(repo, "add", "--", name)
        self(repo, "commit", "-q", "-m", message)
        return self(repo, "rev-parse", "HEAD")


@dataclass
class Remote:
    """A bare repository with history, and the working repository that seeded it.

    main:    c1 (README.md, a.txt="one", b.txt, c.txt, d.txt) <- c2 (a.txt="two", notes.txt)
    feature: c2 <- feature (feature.txt, a.txt="feature")
    `seed` pushes to `bare` as `origin` (it stands for another user).
    """

    bare: Path
    seed: Path
    c1: str
    c2: str
    feature: str

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def advance(self, git: GitCli, name: str, content: str, message: str = "upstream change") -> str:
        """Bring the seed up to date, commit on its main and push it; returns the new commit."""
        git(self.seed, "pull", "-q", "--ff-only", "origin", "main")
        sha = git.commit_file(self.seed, name, content, message)
        git(self.seed, "push", "-q", "origin", "main")
        return sha


def make_remote(git: GitCli, root: Path, name: str = "origin") -> Remote:
    seed = root / f"{name}-seed"
    bare = root / f"{name}.git"
    git(root, "init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("# demo\n")
    (seed / "a.txt").write_text("one\n")
    (seed / "b.txt").write_text("bee\n")
    (seed / "c.txt").write_text("sea\n")
    (seed / "d.txt").write_text(D_LINES)
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "c1")
    c1 = git(seed, "rev-parse", "HEAD")
    (seed / "a.txt").write_text("two\n")
    (seed / "notes.txt").write_text("notes\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "c2")
    c2 = git(seed, "rev-parse", "HEAD")
    git(seed, "checkout", "-q", "-b", "feature")
    (seed / "feature.txt").write_text("feature\n")
    (seed / "a.txt").write_text("feature\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "feature work")
    feature = git(seed, "rev-parse", "HEAD")
    git(seed, "checkout", "-q", "main")
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    git(seed, "remote", "add", "origin", str(bare))
    git(seed, "push", "-q", "origin", "main", "feature")
    git(seed, "branch", "-q", "--set-upstream-to=origin/main", "main")
    return Remote(bare=bare, seed=seed, c1=c1, c2=c2, feature=feature)


@pytest.fixture
def git(tmp_path: Path) -> GitCli:
    return GitCli(tmp_path / "cli-home")


@pytest.fixture
def remote(git: GitCli, tmp_path: Path) -> Remote:
    return make_remote(git, tmp_path)


def clone(sandbox, remote: Remote, wd, name: str = "repo", **kw) -> Path:
    dest = wd.abs / name
    sandbox.git.clone(remote.url, str(dest), **kw)
    return dest


def file_map(status) -> dict[str, tuple[str, str]]:
    """{name: (staging, worktree)} from a GitStatus, with plain strings."""
    return {f.name: (str(f.staging.value), str(f.worktree.value)) for f in status.file_status}


def daemon_git_config(git: GitCli, home: Path, key: str) -> str | None:
    """A key of the daemon's global git config (HOME=<daemon home>), read by the CLI."""
    env = dict(git.env, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    p = git.run(home, "config", "--global", "--get", key, check=False, env=env)
    return p.stdout.rstrip("\n") if p.returncode == 0 else None


def assert_daemon_error(info: pytest.ExceptionInfo, status: int, code: str) -> None:
    e = info.value
    assert e.status_code == status, repr(e)
    assert e.code == code, repr(e)
    assert e.source == DAEMON, repr(e)


# ---------------------------------------------------------------- smart-HTTP remote with Basic auth


class _GitHttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "GitHttpServer"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self._read_body()
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization")))
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._send(401, [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Type", "text/plain")], b"auth\n")
            return
        path, _, query = self.path.partition("?")
        env = dict(
            self.server.git.env,
            GIT_PROJECT_ROOT=str(self.server.root),
            GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=path,
            QUERY_STRING=query,
            REQUEST_METHOD=self.command,
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(len(body)),
            REMOTE_USER=USER,
            REMOTE_ADDR="127.0.0.1",
        )
        if self.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        sep = out.find(b"\r\n\r\n")
        head, rest = (out[:sep], out[sep + 4 :]) if sep >= 0 else out.split(b"\n\n", 1)
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self._send(status, headers, rest)


class GitHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, git: GitCli):
        super().__init__(("127.0.0.1", 0), _GitHttpHandler)
        self.root = root
        self.git = git
        self.requests: list[tuple[str, str, str | None]] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def url(self, name: str) -> str:
        return f"http://{self.host}/{name}"


@pytest.fixture
def http_remote(git: GitCli, tmp_path: Path):
    """(server, remote): `remote.bare` is served as http://127.0.0.1:PORT/origin.git."""
    rem = make_remote(git, tmp_path)
    srv = GitHttpServer(tmp_path, git)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv, rem
    finally:
        srv.shutdown()
        srv.server_close()


# ================================================================ clone


def test_clone_default_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    assert git(repo, "rev-parse", "HEAD") == remote.c2
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"
    assert git(repo, "remote", "get-url", "origin") == remote.url
    assert (repo / "a.txt").read_text() == "two\n"
    assert (repo / "notes.txt").read_text() == "notes\n"
    assert git(repo, "status", "--porcelain") == ""
    # the other branch is there as a remote-tracking ref
    assert git(repo, "rev-parse", "refs/remotes/origin/feature") == remote.feature


def test_clone_relative_path_resolves_against_workdir(sandbox, wd, git, remote):
    sandbox.git.clone(remote.url, f"{wd.rel}/rel-clone")
    repo = wd.abs / "rel-clone"
    assert git(repo, "rev-parse", "HEAD") == remote.c2
    st = sandbox.git.status(f"{wd.rel}/rel-clone")
    assert st.current_branch == "main"


def test_clone_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd, branch="feature")
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/feature"
    assert git(repo, "rev-parse", "HEAD") == remote.feature
    assert (repo / "feature.txt").read_text() == "feature\n"
    assert git(repo, "rev-parse", "--abbrev-ref", "feature@{upstream}") == "origin/feature"
    br = sandbox.git.branches(str(repo))
    assert "feature" in br.branches
    assert br.current == "feature"


def test_clone_commit_id_is_detached(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd, commit_id=remote.c1)
    assert git(repo, "rev-parse", "HEAD") == remote.c1
    assert not git.ok(repo, "symbolic-ref", "-q", "HEAD"), "HEAD should be detached"
    assert (repo / "a.txt").read_text() == "one\n"
    assert not (repo / "notes.txt").exists()
    st = sandbox.git.status(str(repo))
    assert st.detached is True
    assert st.current_branch == "HEAD"
    assert st.file_status == []
    assert sandbox.git.branches(str(repo)).current == ""


def test_clone_depth_over_http(sandbox, wd, git, http_remote):
    srv, rem = http_remote
    repo = wd.abs / "repo"
    sandbox.git.clone(srv.url("origin.git"), str(repo), depth=1, username=USER, password=PASSWORD)
    assert git(repo, "rev-parse", "HEAD") == rem.c2
    assert git(repo, "rev-list", "--count", "HEAD") == "1"
    assert git(repo, "rev-parse", "--is-shallow-repository") == "true"
    assert sandbox.git.status(str(repo)).file_status == []


def test_clone_depth_file_url_is_shallow_and_pulls(sandbox, wd, git, remote):
    # As `git clone --depth 1 file://…`: the last commit of every branch, cut there.
    tip = remote.advance(git, "up.txt", "up\n")
    repo = clone(sandbox, remote, wd, depth=1)
    assert git(repo, "rev-parse", "HEAD") == tip
    assert git(repo, "log", "--oneline").splitlines() == [git(repo, "log", "--oneline", "-1")]
    assert git(repo, "rev-parse", "--is-shallow-repository") == "true"
    assert sorted((repo / ".git" / "shallow").read_text().split()) == sorted([tip, remote.feature])
    assert not git.ok(repo, "cat-file", "-e", remote.c2)
    fsck = git.run(repo, "fsck", "--full", "--strict", "--no-progress")
    assert fsck.stdout + fsck.stderr == ""
    assert sandbox.git.status(str(repo)).file_status == []

    theirs = remote.advance(git, "later.txt", "later\n")
    sandbox.git.pull(str(repo))
    assert git(repo, "rev-parse", "HEAD") == theirs
    assert git(repo, "rev-list", "--count", "HEAD") == "2"
    assert (repo / "later.txt").read_text() == "later\n"
    assert git(repo, "rev-parse", "--is-shallow-repository") == "true"
    fsck = git.run(repo, "fsck", "--full", "--strict", "--no-progress")
    assert fsck.stdout + fsck.stderr == ""


def test_clone_depth_plain_path_copies_everything(sandbox, wd, git, remote):
    # As `git clone --depth 1 /path`: the depth is ignored for a plain path (the answer says so;
    # the SDK does not show it).
    repo = wd.abs / "repo"
    sandbox.git.clone(str(remote.bare), str(repo), depth=1)
    assert git(repo, "rev-list", "--count", "HEAD") == "2"
    assert git(repo, "rev-parse", "--is-shallow-repository") == "false"


def test_clone_missing_repository(sandbox, wd, tmp_path):
    with pytest.raises(DaytonaGitRepoNotFoundError) as info:
        sandbox.git.clone(f"file://{tmp_path}/nope.git", wd.p("repo"))
    assert_daemon_error(info, 404, "GIT_REPO_NOT_FOUND")
    assert isinstance(info.value, DaytonaNotFoundError)


def test_clone_missing_branch(sandbox, wd, remote):
    with pytest.raises(DaytonaGitBranchNotFoundError) as info:
        sandbox.git.clone(remote.url, wd.p("repo"), branch="no-such-branch")
    assert_daemon_error(info, 404, "GIT_BRANCH_NOT_FOUND")


def test_clone_into_non_empty_dir_conflicts(sandbox, wd, remote):
    dest = wd.abs / "occupied"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine\n")
    with pytest.raises(DaytonaConflictError) as info:
        sandbox.git.clone(remote.url, str(dest))
    assert_daemon_error(info, 409, "CONFLICT")
    assert sorted(os.listdir(dest)) == ["keep.txt"]


def test_clone_unreachable_remote_is_transport_failure(sandbox, wd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DaytonaGitTransportFailedError) as info:
        sandbox.git.clone(f"http://127.0.0.1:{port}/repo.git", wd.p("repo"))
    assert_daemon_error(info, 502, "GIT_TRANSPORT_FAILED")


# ================================================================ status


def test_status_clean_clone(sandbox, wd, remote):
    repo = clone(sandbox, remote, wd)
    st = sandbox.git.status(str(repo))
    assert st.current_branch == "main"
    assert st.file_status == []
    assert st.ahead == 0
    assert st.behind == 0
    assert st.branch_published is True
    assert st.upstream == "origin/main"
    assert st.detached is False


def test_status_file_states(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "untracked.txt").write_text("u\n")
    (repo / "newdir").mkdir()
    (repo / "newdir" / "x.txt").write_text("x\n")
    (repo / "newdir" / "y.txt").write_text("y\n")
    (repo / "staged.txt").write_text("s\n")
    git(repo, "add", "staged.txt")
    (repo / "staged_edit.txt").write_text("1\n")
    git(repo, "add", "staged_edit.txt")
    (repo / "staged_edit.txt").write_text("2\n")
    (repo / "a.txt").write_text("edited\n")
    (repo / "b.txt").unlink()
    git(repo, "rm", "-q", "c.txt")
    git(repo, "mv", "d.txt", "e.txt")

    st = sandbox.git.status(str(repo))
    assert st.current_branch == "main"
    assert file_map(st) == {
        "untracked.txt": ("Untracked", "Untracked"),
        "newdir/x.txt": ("Untracked", "Untracked"),
        "newdir/y.txt": ("Untracked", "Untracked"),
        "staged.txt": ("Added", "Unmodified"),
        "staged_edit.txt": ("Added", "Modified"),
        "a.txt": ("Unmodified", "Modified"),
        "b.txt": ("Unmodified", "Deleted"),
        "c.txt": ("Deleted", "Unmodified"),
        "e.txt": ("Renamed", "Unmodified"),
    }
    extras = {f.name: f.extra for f in st.file_status}
    assert extras["e.txt"] == "d.txt"
    assert extras["a.txt"] == ""


def test_status_awkward_names_are_not_quoted(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    names = ["with space.txt", "é日本.txt", 'q"uote.txt', "tab\there.txt"]
    for n in names:
        (repo / n).write_text("x\n")
    git(repo, "add", "with space.txt")
    st = sandbox.git.status(str(repo))
    assert file_map(st) == {
        "with space.txt": ("Added", "Unmodified"),
        "é日本.txt": ("Untracked", "Untracked"),
        'q"uote.txt': ("Untracked", "Untracked"),
        "tab\there.txt": ("Untracked", "Untracked"),
    }


def test_status_merge_conflict_is_unmerged(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    git.commit_file(repo, "a.txt", "mine\n", "mine")
    assert not git.ok(repo, "merge", "origin/feature"), "the fixture merge should conflict"
    st = sandbox.git.status(str(repo))
    fm = file_map(st)
    assert fm["a.txt"][0] == "Updated but unmerged", fm
    assert fm["feature.txt"] == ("Added", "Unmodified"), fm


def test_status_ahead_behind(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    git.commit_file(repo, "local.txt", "local\n", "local commit")
    st = sandbox.git.status(str(repo))
    assert (st.ahead, st.behind) == (1, 0)
    assert st.file_status == []

    remote.advance(git, "up1.txt", "1\n")
    remote.advance(git, "up2.txt", "2\n")
    git(repo, "fetch", "-q", "origin")
    st = sandbox.git.status(str(repo))
    assert (st.ahead, st.behind) == (1, 2)
    assert st.upstream == "origin/main"
    assert st.branch_published is True


def test_status_branch_without_upstream(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    git(repo, "checkout", "-q", "-b", "local-only")
    st = sandbox.git.status(str(repo))
    assert st.current_branch == "local-only"
    assert st.upstream == ""
    assert st.branch_published is False
    assert st.detached is False


def test_status_not_a_repository(sandbox, wd):
    (wd.abs / "plain").mkdir()
    for p in (wd.p("plain"), wd.p("missing")):
        with pytest.raises(DaytonaGitRepoNotFoundError) as info:
            sandbox.git.status(p)
        assert_daemon_error(info, 404, "GIT_REPO_NOT_FOUND")
        assert isinstance(info.value, DaytonaNotFoundError)


def test_other_methods_on_non_repository_are_not_found(sandbox, wd):
    (wd.abs / "plain").mkdir()
    p = wd.p("plain")
    calls = [
        lambda: sandbox.git.branches(p),
        lambda: sandbox.git.add(p, ["."]),
        lambda: sandbox.git.commit(p, "m", AUTHOR, EMAIL, allow_empty=True),
        lambda: sandbox.git.create_branch(p, "x"),
        lambda: sandbox.git.checkout_branch(p, "x"),
        lambda: sandbox.git.remotes(p),
        lambda: sandbox.git.push(p),
        lambda: sandbox.git.pull(p),
    ]
    for call in calls:
        with pytest.raises(DaytonaGitRepoNotFoundError) as info:
            call()
        assert_daemon_error(info, 404, "GIT_REPO_NOT_FOUND")


# ================================================================ branches


def test_branches_sorted_with_current(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    br = sandbox.git.branches(str(repo))
    assert br.branches == ["main"]
    assert br.current == "main"
    git(repo, "branch", "zeta")
    git(repo, "branch", "alpha")
    git(repo, "branch", "mid/dle")
    br = sandbox.git.branches(str(repo))
    assert br.branches == ["alpha", "main", "mid/dle", "zeta"]
    assert br.current == "main"
    git(repo, "checkout", "-q", "--detach", "HEAD")
    assert sandbox.git.branches(str(repo)).current == ""


# ================================================================ add / commit


def test_add_and_commit(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "new.txt").write_text("new\n")
    (repo / "sub" / "dir").mkdir(parents=True)
    (repo / "sub" / "dir" / "deep.txt").write_text("deep\n")
    (repo / "a.txt").write_text("changed\n")
    sandbox.git.add(str(repo), ["new.txt", "sub/dir/deep.txt"])
    assert file_map(sandbox.git.status(str(repo))) == {
        "new.txt": ("Added", "Unmodified"),
        "sub/dir/deep.txt": ("Added", "Unmodified"),
        "a.txt": ("Unmodified", "Modified"),
    }
    assert git(repo, "diff", "--cached", "--name-only") == "new.txt\nsub/dir/deep.txt"

    res = sandbox.git.commit(str(repo), "add two files\n\nwith a body", AUTHOR, EMAIL)
    assert isinstance(res.sha, str)
    assert len(res.sha) == 40 and all(c in "0123456789abcdef" for c in res.sha), res.sha
    assert git(repo, "rev-parse", "HEAD") == res.sha
    assert git(repo, "rev-parse", "HEAD^") == remote.c2
    assert git(repo, "log", "-1", "--format=%an|%ae") == f"{AUTHOR}|{EMAIL}"
    assert git(repo, "log", "-1", "--format=%B").strip() == "add two files\n\nwith a body"
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == "new.txt\nsub/dir/deep.txt"
    # a.txt was not staged: still modified, not in the commit
    assert file_map(sandbox.git.status(str(repo))) == {"a.txt": ("Unmodified", "Modified")}
    assert git(repo, "fsck", "--no-progress") == ""


def test_add_dot_includes_deletions(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "b.txt").unlink()
    (repo / "a.txt").write_text("changed\n")
    (repo / "fresh.txt").write_text("fresh\n")
    sandbox.git.add(str(repo), ["."])
    assert file_map(sandbox.git.status(str(repo))) == {
        "b.txt": ("Deleted", "Unmodified"),
        "a.txt": ("Modified", "Unmodified"),
        "fresh.txt": ("Added", "Unmodified"),
    }
    sha = sandbox.git.commit(str(repo), "everything", AUTHOR, EMAIL).sha
    assert git(repo, "rev-parse", "HEAD") == sha
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "ls-tree", "--name-only", "HEAD").split("\n") == [
        "README.md", "a.txt", "c.txt", "d.txt", "fresh.txt", "notes.txt",
    ]  # fmt: skip


def test_add_directory_and_deleted_path(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "pkg" / "inner").mkdir(parents=True)
    (repo / "pkg" / "one.txt").write_text("1\n")
    (repo / "pkg" / "inner" / "two.txt").write_text("2\n")
    (repo / "b.txt").unlink()
    (repo / "loose.txt").write_text("not staged\n")
    sandbox.git.add(str(repo), ["pkg", "b.txt"])
    assert file_map(sandbox.git.status(str(repo))) == {
        "pkg/one.txt": ("Added", "Unmodified"),
        "pkg/inner/two.txt": ("Added", "Unmodified"),
        "b.txt": ("Deleted", "Unmodified"),
        "loose.txt": ("Untracked", "Untracked"),
    }


def test_add_missing_path_is_file_not_found(sandbox, wd, remote):
    repo = clone(sandbox, remote, wd)
    with pytest.raises(DaytonaFileNotFoundError) as info:
        sandbox.git.add(str(repo), ["does-not-exist.txt"])
    assert_daemon_error(info, 404, "FILE_NOT_FOUND")


def test_commit_nothing_staged_and_allow_empty(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    with pytest.raises(DaytonaBadRequestError) as info:
        sandbox.git.commit(str(repo), "nothing", AUTHOR, EMAIL)
    assert_daemon_error(info, 400, "BAD_REQUEST")
    assert git(repo, "rev-parse", "HEAD") == remote.c2

    res = sandbox.git.commit(str(repo), "empty on purpose", AUTHOR, EMAIL, allow_empty=True)
    assert git(repo, "rev-parse", "HEAD") == res.sha
    assert git(repo, "rev-parse", "HEAD^") == remote.c2
    assert git(repo, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", f"{remote.c2}^{{tree}}")


# ================================================================ push


def test_push_current_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "pushed.txt").write_text("p\n")
    sandbox.git.add(str(repo), ["pushed.txt"])
    sha = sandbox.git.commit(str(repo), "to push", AUTHOR, EMAIL).sha
    assert sandbox.git.status(str(repo)).ahead == 1
    sandbox.git.push(str(repo))
    assert git(remote.bare, "rev-parse", "refs/heads/main") == sha
    assert git(repo, "rev-parse", "refs/remotes/origin/main") == sha
    st = sandbox.git.status(str(repo))
    assert (st.ahead, st.behind) == (0, 0)


def test_push_new_branch_with_set_upstream(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.create_branch(str(repo), "topic")
    sha = git.commit_file(repo, "topic.txt", "t\n", "topic work")
    sandbox.git.push(str(repo), branch="topic", set_upstream=True)
    assert git(remote.bare, "rev-parse", "refs/heads/topic") == sha
    assert git(repo, "config", "branch.topic.remote") == "origin"
    assert git(repo, "config", "branch.topic.merge") == "refs/heads/topic"
    st = sandbox.git.status(str(repo))
    assert st.upstream == "origin/topic"
    assert st.branch_published is True
    assert (st.ahead, st.behind) == (0, 0)


def test_push_without_set_upstream_leaves_no_tracking(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.create_branch(str(repo), "quiet")
    sha = git.commit_file(repo, "q.txt", "q\n", "quiet work")
    sandbox.git.push(str(repo), remote="origin")  # branch defaults to the current one
    assert git(remote.bare, "rev-parse", "refs/heads/quiet") == sha
    assert not git.ok(repo, "config", "branch.quiet.remote")
    assert sandbox.git.status(str(repo)).upstream == ""


def test_push_non_fast_forward_is_rejected(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    theirs = remote.advance(git, "theirs.txt", "theirs\n")
    git.commit_file(repo, "mine.txt", "mine\n", "mine")
    with pytest.raises(DaytonaGitPushRejectedError) as info:
        sandbox.git.push(str(repo))
    assert_daemon_error(info, 409, "GIT_PUSH_REJECTED")
    assert git(remote.bare, "rev-parse", "refs/heads/main") == theirs


# ================================================================ pull


def test_pull_fast_forward(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    other = clone(sandbox, remote, wd, name="other")
    (other / "from-other.txt").write_text("hello\n")
    sandbox.git.add(str(other), ["from-other.txt"])
    sha = sandbox.git.commit(str(other), "from the other clone", AUTHOR, EMAIL).sha
    sandbox.git.push(str(other))

    sandbox.git.pull(str(repo))
    assert git(repo, "rev-parse", "HEAD") == sha
    assert (repo / "from-other.txt").read_text() == "hello\n"
    assert git(repo, "status", "--porcelain") == ""
    st = sandbox.git.status(str(repo))
    assert (st.ahead, st.behind) == (0, 0)
    assert st.file_status == []
    # nothing new: a no-op
    sandbox.git.pull(str(repo))
    assert git(repo, "rev-parse", "HEAD") == sha


def test_pull_explicit_remote_and_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sha = remote.advance(git, "up.txt", "up\n")
    sandbox.git.pull(str(repo), remote="origin", branch="main")
    assert git(repo, "rev-parse", "HEAD") == sha
    assert (repo / "up.txt").read_text() == "up\n"


def test_pull_missing_remote_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    with pytest.raises(DaytonaGitBranchNotFoundError) as info:
        sandbox.git.pull(str(repo), remote="origin", branch="no-such-branch")
    assert_daemon_error(info, 404, "GIT_BRANCH_NOT_FOUND")
    assert git(repo, "rev-parse", "HEAD") == remote.c2


def test_pull_would_clobber_local_changes(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    remote.advance(git, "a.txt", "upstream a\n")
    (repo / "a.txt").write_text("local a\n")
    with pytest.raises(DaytonaGitDirtyWorktreeError) as info:
        sandbox.git.pull(str(repo))
    assert_daemon_error(info, 409, "GIT_DIRTY_WORKTREE")
    assert git(repo, "rev-parse", "HEAD") == remote.c2
    assert (repo / "a.txt").read_text() == "local a\n"


def test_pull_merge_conflict_leaves_repo_untouched(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    remote.advance(git, "a.txt", "upstream a\n")
    mine = git.commit_file(repo, "a.txt", "my a\n", "my a")
    with pytest.raises(DaytonaGitMergeConflictError) as info:
        sandbox.git.pull(str(repo))
    assert_daemon_error(info, 409, "GIT_MERGE_CONFLICT")
    assert git(repo, "rev-parse", "HEAD") == mine
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "a.txt").read_text() == "my a\n"
    assert not (repo / ".git" / "MERGE_HEAD").exists()


# ================================================================ create / checkout / delete branch


def test_create_branch_checks_it_out(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.create_branch(str(repo), "topic")
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/topic"
    assert git(repo, "rev-parse", "topic") == remote.c2
    br = sandbox.git.branches(str(repo))
    assert br.branches == ["main", "topic"]
    assert br.current == "topic"


def test_create_existing_branch_conflicts(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.create_branch(str(repo), "topic")
    git(repo, "checkout", "-q", "main")
    with pytest.raises(DaytonaGitBranchExistsError) as info:
        sandbox.git.create_branch(str(repo), "topic")
    assert_daemon_error(info, 409, "GIT_BRANCH_EXISTS")
    assert isinstance(info.value, DaytonaConflictError)
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"


def test_create_branch_invalid_name(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    for bad in ("bad..name", "ends.lock", "has space", "-dash"):
        with pytest.raises(DaytonaBadRequestError) as info:
            sandbox.git.create_branch(str(repo), bad)
        assert_daemon_error(info, 400, "BAD_REQUEST")
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads") == "main"


def test_checkout_local_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.create_branch(str(repo), "topic")
    git.commit_file(repo, "topic.txt", "t\n", "topic")
    sandbox.git.checkout_branch(str(repo), "main")
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert not (repo / "topic.txt").exists()
    assert git(repo, "status", "--porcelain") == ""
    sandbox.git.checkout_branch(str(repo), "topic")
    assert (repo / "topic.txt").read_text() == "t\n"
    assert sandbox.git.status(str(repo)).current_branch == "topic"


def test_checkout_remote_branch_creates_tracking_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.checkout_branch(str(repo), "feature")
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/feature"
    assert git(repo, "rev-parse", "HEAD") == remote.feature
    assert git(repo, "rev-parse", "--abbrev-ref", "feature@{upstream}") == "origin/feature"
    assert (repo / "feature.txt").read_text() == "feature\n"
    assert git(repo, "status", "--porcelain") == ""
    st = sandbox.git.status(str(repo))
    assert st.upstream == "origin/feature"
    assert sandbox.git.branches(str(repo)).branches == ["feature", "main"]


def test_checkout_commit_detaches(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.checkout_branch(str(repo), remote.c1)
    assert git(repo, "rev-parse", "HEAD") == remote.c1
    assert not git.ok(repo, "symbolic-ref", "-q", "HEAD")
    assert (repo / "a.txt").read_text() == "one\n"
    assert not (repo / "notes.txt").exists()
    st = sandbox.git.status(str(repo))
    assert st.detached is True
    assert st.current_branch == "HEAD"
    assert st.file_status == []


def test_checkout_remote_tracking_name_detaches(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.checkout_branch(str(repo), "origin/feature")
    assert git(repo, "rev-parse", "HEAD") == remote.feature
    assert not git.ok(repo, "symbolic-ref", "-q", "HEAD")
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads") == "main"
    assert sandbox.git.status(str(repo)).detached is True


def test_checkout_missing_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    with pytest.raises(DaytonaGitBranchNotFoundError) as info:
        sandbox.git.checkout_branch(str(repo), "no-such-branch")
    assert_daemon_error(info, 404, "GIT_BRANCH_NOT_FOUND")
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"


def test_checkout_would_clobber_local_changes(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "a.txt").write_text("local edit\n")  # a.txt differs on feature
    with pytest.raises(DaytonaGitDirtyWorktreeError) as info:
        sandbox.git.checkout_branch(str(repo), "feature")
    assert_daemon_error(info, 409, "GIT_DIRTY_WORKTREE")
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert (repo / "a.txt").read_text() == "local edit\n"
    assert not (repo / "feature.txt").exists()


def test_checkout_carries_non_conflicting_changes(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "b.txt").write_text("local b\n")  # b.txt is the same on main and feature
    (repo / "scratch.txt").write_text("untracked\n")
    sandbox.git.checkout_branch(str(repo), "feature")
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/feature"
    assert (repo / "b.txt").read_text() == "local b\n"
    assert (repo / "scratch.txt").read_text() == "untracked\n"
    assert file_map(sandbox.git.status(str(repo))) == {
        "b.txt": ("Unmodified", "Modified"),
        "scratch.txt": ("Untracked", "Untracked"),
    }


def test_delete_branch(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    git(repo, "branch", "old")
    sandbox.git.delete_branch(str(repo), "old")
    assert git(repo, "branch", "--list", "old") == ""
    assert sandbox.git.branches(str(repo)).branches == ["main"]


def test_delete_missing_branch(sandbox, wd, remote):
    repo = clone(sandbox, remote, wd)
    with pytest.raises(DaytonaGitBranchNotFoundError) as info:
        sandbox.git.delete_branch(str(repo), "no-such-branch")
    assert_daemon_error(info, 404, "GIT_BRANCH_NOT_FOUND")


def test_delete_current_branch_conflicts(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    with pytest.raises(DaytonaConflictError) as info:
        sandbox.git.delete_branch(str(repo), "main")
    assert_daemon_error(info, 409, "CONFLICT")
    assert git(repo, "rev-parse", "refs/heads/main") == remote.c2


# ================================================================ init


def test_init_plain_with_initial_branch(sandbox, wd, git):
    repo = wd.abs / "plain"
    sandbox.git.init(str(repo), initial_branch="trunk")
    assert (repo / ".git").is_dir()
    assert git(repo, "rev-parse", "--is-inside-work-tree") == "true"
    assert git(repo, "rev-parse", "--is-bare-repository") == "false"
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/trunk"
    (repo / "first.txt").write_text("1\n")
    st = sandbox.git.status(str(repo))
    assert st.current_branch == "trunk"
    assert file_map(st) == {"first.txt": ("Untracked", "Untracked")}
    # re-init of an existing repository is fine and keeps it
    sandbox.git.init(str(repo))
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/trunk"


def test_init_relative_path(sandbox, wd, git):
    sandbox.git.init(f"{wd.rel}/rel-init")
    assert git(wd.abs / "rel-init", "rev-parse", "--is-inside-work-tree") == "true"


def test_init_bare(sandbox, wd, git):
    repo = wd.abs / "bare.git"
    sandbox.git.init(str(repo), bare=True, initial_branch="main")
    assert (repo / "HEAD").is_file()
    assert not (repo / ".git").exists()
    assert git(repo, "rev-parse", "--is-bare-repository") == "true"
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"


def test_init_commit_and_push_to_sdk_made_bare_repo(sandbox, wd, git):
    """An end-to-end workflow through the SDK only: init, add, commit, remote_add, push."""
    bare = wd.abs / "server.git"
    work = wd.abs / "work"
    sandbox.git.init(str(bare), bare=True, initial_branch="main")
    sandbox.git.init(str(work), initial_branch="main")
    (work / "hello.txt").write_text("hello\n")
    sandbox.git.add(str(work), ["."])
    sha = sandbox.git.commit(str(work), "root commit", AUTHOR, EMAIL).sha
    assert git(work, "rev-list", "--count", "HEAD") == "1"
    sandbox.git.remote_add(str(work), "origin", f"file://{bare}")
    sandbox.git.push(str(work), set_upstream=True)
    assert git(bare, "rev-parse", "refs/heads/main") == sha
    st = sandbox.git.status(str(work))
    assert st.upstream == "origin/main"
    assert (st.ahead, st.behind, st.file_status) == (0, 0, [])
    # and it clones back
    back = wd.abs / "back"
    sandbox.git.clone(f"file://{bare}", str(back))
    assert (back / "hello.txt").read_text() == "hello\n"


# ================================================================ reset


def test_reset_soft_mixed_hard(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.reset(str(repo), mode="soft", target=remote.c1)
    assert git(repo, "rev-parse", "HEAD") == remote.c1
    assert file_map(sandbox.git.status(str(repo))) == {
        "a.txt": ("Modified", "Unmodified"),
        "notes.txt": ("Added", "Unmodified"),
    }

    sandbox.git.reset(str(repo))  # mixed, HEAD
    assert git(repo, "rev-parse", "HEAD") == remote.c1
    assert file_map(sandbox.git.status(str(repo))) == {
        "a.txt": ("Unmodified", "Modified"),
        "notes.txt": ("Untracked", "Untracked"),
    }
    assert (repo / "a.txt").read_text() == "two\n"

    sandbox.git.reset(str(repo), mode="hard", target=remote.c2)
    assert git(repo, "rev-parse", "HEAD") == remote.c2
    assert git(repo, "status", "--porcelain") == ""

    (repo / "a.txt").write_text("scratch\n")
    sandbox.git.reset(str(repo), mode="hard", target="HEAD~1")
    assert git(repo, "rev-parse", "HEAD") == remote.c1
    assert (repo / "a.txt").read_text() == "one\n"


def test_reset_files_unstages_only_those(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "a.txt").write_text("a2\n")
    (repo / "b.txt").write_text("b2\n")
    git(repo, "add", "a.txt", "b.txt")
    sandbox.git.reset(str(repo), files=["a.txt"])
    assert git(repo, "rev-parse", "HEAD") == remote.c2
    assert file_map(sandbox.git.status(str(repo))) == {
        "a.txt": ("Unmodified", "Modified"),
        "b.txt": ("Modified", "Unmodified"),
    }
    assert (repo / "a.txt").read_text() == "a2\n"


def test_reset_keep_would_clobber(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "a.txt").write_text("local\n")  # a.txt differs between c1 and c2
    with pytest.raises(DaytonaGitDirtyWorktreeError) as info:
        sandbox.git.reset(str(repo), mode="keep", target=remote.c1)
    assert_daemon_error(info, 409, "GIT_DIRTY_WORKTREE")
    assert git(repo, "rev-parse", "HEAD") == remote.c2
    assert (repo / "a.txt").read_text() == "local\n"


def test_reset_bad_mode(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    with pytest.raises(DaytonaBadRequestError) as info:
        sandbox.git.reset(str(repo), mode="sideways")
    assert_daemon_error(info, 400, "BAD_REQUEST")
    assert git(repo, "rev-parse", "HEAD") == remote.c2


# ================================================================ restore


def test_restore_worktree_by_default(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "a.txt").write_text("oops\n")
    (repo / "b.txt").unlink()
    sandbox.git.restore(str(repo), ["a.txt", "b.txt"])
    assert (repo / "a.txt").read_text() == "two\n"
    assert (repo / "b.txt").read_text() == "bee\n"
    assert git(repo, "status", "--porcelain") == ""


def test_restore_staged_keeps_worktree(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "b.txt").write_text("staged b\n")
    git(repo, "add", "b.txt")
    sandbox.git.restore(str(repo), ["b.txt"], staged=True)
    assert (repo / "b.txt").read_text() == "staged b\n"
    assert file_map(sandbox.git.status(str(repo))) == {"b.txt": ("Unmodified", "Modified")}


def test_restore_staged_and_worktree(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    (repo / "b.txt").write_text("staged b\n")
    git(repo, "add", "b.txt")
    sandbox.git.restore(str(repo), ["b.txt"], staged=True, worktree=True)
    assert (repo / "b.txt").read_text() == "bee\n"
    assert git(repo, "status", "--porcelain") == ""


def test_restore_from_source(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.restore(str(repo), ["a.txt"], source=remote.c1)
    assert (repo / "a.txt").read_text() == "one\n"
    assert git(repo, "rev-parse", "HEAD") == remote.c2
    # worktree only: the index still has c2's a.txt
    assert file_map(sandbox.git.status(str(repo))) == {"a.txt": ("Unmodified", "Modified")}


# ================================================================ remotes


def test_remotes_add_list_get(sandbox, wd, git, remote, tmp_path):
    repo = clone(sandbox, remote, wd)
    res = sandbox.git.remotes(str(repo))
    assert [(r.name, r.url) for r in res.remotes] == [("origin", remote.url)]
    assert sandbox.git.remote_get(str(repo), "origin") == remote.url
    assert sandbox.git.remote_get(str(repo), "nope") is None

    other = make_remote(git, tmp_path, "other")
    sandbox.git.remote_add(str(repo), "upstream", other.url)
    assert git(repo, "remote", "get-url", "upstream") == other.url
    assert git(repo, "config", "remote.upstream.fetch") == "+refs/heads/*:refs/remotes/upstream/*"
    got = {r.name: r.url for r in sandbox.git.remotes(str(repo)).remotes}
    assert got == {"origin": remote.url, "upstream": other.url}
    assert sandbox.git.remote_get(str(repo), "upstream") == other.url
    # not fetched unless asked
    assert not git.ok(repo, "show-ref", "--verify", "-q", "refs/remotes/upstream/main")


def test_remote_add_existing_needs_overwrite(sandbox, wd, git, remote, tmp_path):
    repo = clone(sandbox, remote, wd)
    other = make_remote(git, tmp_path, "other")
    with pytest.raises(DaytonaError) as info:
        sandbox.git.remote_add(str(repo), "origin", other.url)
    assert info.value.status_code in (400, 409), repr(info.value)
    assert git(repo, "remote", "get-url", "origin") == remote.url

    sandbox.git.remote_add(str(repo), "origin", other.url, overwrite=True)
    assert git(repo, "remote", "get-url", "origin") == other.url
    assert sandbox.git.remote_get(str(repo), "origin") == other.url


def test_remote_add_with_fetch(sandbox, wd, git, remote, tmp_path):
    repo = clone(sandbox, remote, wd)
    other = make_remote(git, tmp_path, "other")
    sandbox.git.remote_add(str(repo), "other", other.url, fetch=True)
    assert git(repo, "rev-parse", "refs/remotes/other/main") == other.c2
    assert git(repo, "rev-parse", "refs/remotes/other/feature") == other.feature


# ================================================================ config


def test_config_local_scope(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    p = str(repo)
    sandbox.git.set_config("toolboxd.color", "blue", scope="local", path=p)
    assert git(repo, "config", "--local", "--get", "toolboxd.color") == "blue"
    assert sandbox.git.get_config("toolboxd.color", scope="local", path=p) == "blue"
    sandbox.git.set_config("toolboxd.color", "green with spaces", scope="local", path=p)
    assert git(repo, "config", "--local", "--get", "toolboxd.color") == "green with spaces"
    assert sandbox.git.get_config("toolboxd.color", scope="local", path=p) == "green with spaces"
    # keys with a subsection, written by the clone
    assert sandbox.git.get_config("remote.origin.url", scope="local", path=p) == remote.url
    assert sandbox.git.get_config("branch.main.remote", scope="local", path=p) == "origin"
    assert sandbox.git.get_config("toolboxd.unset", scope="local", path=p) is None
    # the local value does not leak into the daemon's global config
    assert sandbox.git.get_config("toolboxd.color") is None


def test_config_global_scope_in_daemon_home(sandbox, toolboxd, git):
    # conftest runs the daemon with HOME=<tmp>/home: global scope is safe to write here.
    assert toolboxd.home != Path.home()
    sandbox.git.set_config("toolboxd.globalkey", "g-value")
    assert daemon_git_config(git, toolboxd.home, "toolboxd.globalkey") == "g-value"
    assert sandbox.git.get_config("toolboxd.globalkey") == "g-value"
    assert sandbox.git.get_config("toolboxd.globalkey", scope="global") == "g-value"
    assert sandbox.git.get_config("toolboxd.never-set") is None


def test_config_errors(sandbox, wd, remote):
    repo = clone(sandbox, remote, wd)
    with pytest.raises(DaytonaBadRequestError) as info:
        sandbox.git.set_config("toolboxd.x", "1", scope="galactic", path=str(repo))
    assert_daemon_error(info, 400, "BAD_REQUEST")
    with pytest.raises(DaytonaBadRequestError) as info:
        sandbox.git.get_config("toolboxd.x", scope="galactic", path=str(repo))
    assert_daemon_error(info, 400, "BAD_REQUEST")
    with pytest.raises(DaytonaBadRequestError) as info:
        sandbox.git.set_config("toolboxd.x", "1", scope="local")  # local needs a path
    assert_daemon_error(info, 400, "BAD_REQUEST")
    with pytest.raises(DaytonaGitRepoNotFoundError) as info:
        sandbox.git.set_config("toolboxd.x", "1", scope="local", path=wd.p("missing"))
    assert_daemon_error(info, 404, "GIT_REPO_NOT_FOUND")


def test_configure_user_local(sandbox, wd, git, remote):
    repo = clone(sandbox, remote, wd)
    sandbox.git.configure_user("Repo User", "repo@example.com", scope="local", path=str(repo))
    assert git(repo, "config", "--local", "--get", "user.name") == "Repo User"
    assert git(repo, "config", "--local", "--get", "user.email") == "repo@example.com"
    assert sandbox.git.get_config("user.name", scope="local", path=str(repo)) == "Repo User"
    assert sandbox.git.get_config("user.email", scope="local", path=str(repo)) == "repo@example.com"


def test_configure_user_global(sandbox, toolboxd, git):
    assert toolboxd.home != Path.home()
    sandbox.git.configure_user("Global User", "global@example.com")
    assert daemon_git_config(git, toolboxd.home, "user.name") == "Global User"
    assert daemon_git_config(git, toolboxd.home, "user.email") == "global@example.com"
    assert sandbox.git.get_config("user.name") == "Global User"
    assert sandbox.git.get_config("user.email") == "global@example.com"


# ================================================================ authentication (smart HTTP)


def test_http_clone_push_pull_with_credentials(sandbox, wd, git, http_remote):
    srv, rem = http_remote
    url = srv.url("origin.git")
    repo = wd.abs / "repo"
    sandbox.git.clone(url, str(repo), username=USER, password=PASSWORD)
    assert git(repo, "rev-parse", "HEAD") == rem.c2
    assert any(a for (_, _, a) in srv.requests), "the daemon never sent credentials"
    assert git(repo, "remote", "get-url", "origin") == url
    assert PASSWORD not in (repo / ".git" / "config").read_text()

    (repo / "over-http.txt").write_text("h\n")
    sandbox.git.add(str(repo), ["over-http.txt"])
    sha = sandbox.git.commit(str(repo), "over http", AUTHOR, EMAIL).sha
    sandbox.git.push(str(repo), username=USER, password=PASSWORD)
    assert git(rem.bare, "rev-parse", "refs/heads/main") == sha

    theirs = rem.advance(git, "later.txt", "later\n")
    sandbox.git.pull(str(repo), username=USER, password=PASSWORD)
    assert git(repo, "rev-parse", "HEAD") == theirs


def test_http_auth_failures(sandbox, wd, git, http_remote):
    srv, rem = http_remote
    url = srv.url("origin.git")
    wrong = "wrong-Pa55-word"
    with pytest.raises(DaytonaGitAuthFailedError) as info:
        sandbox.git.clone(url, wd.p("bad-pw"), username=USER, password=wrong)
    assert_daemon_error(info, 401, "GIT_AUTH_FAILED")
    assert wrong not in str(info.value)
    assert not (wd.abs / "bad-pw" / ".git").exists()

    with pytest.raises(DaytonaGitAuthFailedError) as info:
        sandbox.git.clone(url, wd.p("no-creds"))
    assert_daemon_error(info, 401, "GIT_AUTH_FAILED")

    # push/pull without (or with wrong) credentials on a good clone
    repo = wd.abs / "repo"
    sandbox.git.clone(url, str(repo), username=USER, password=PASSWORD)
    git.commit_file(repo, "x.txt", "x\n", "x")
    with pytest.raises(DaytonaGitAuthFailedError) as info:
        sandbox.git.push(str(repo), username=USER, password=wrong)
    assert_daemon_error(info, 401, "GIT_AUTH_FAILED")
    assert wrong not in str(info.value)
    assert git(rem.bare, "rev-parse", "refs/heads/main") == rem.c2
    with pytest.raises(DaytonaGitAuthFailedError) as info:
        sandbox.git.pull(str(repo), username=USER, password=wrong)
    assert_daemon_error(info, 401, "GIT_AUTH_FAILED")


@pytest.fixture
def cred_daemon():
    """A daemon (and sandbox) of its own: the credentials it stores stay out of the others."""
    d = start_daemon("git-cred")
    try:
        client = make_client(d)
        sb = client.create(timeout=60)
        yield d, sb
    finally:
        d.stop()
        shutil.rmtree(d.root, ignore_errors=True)


def test_http_push_refused_by_hook_is_remote_rejected(sandbox, wd, git, http_remote):
    srv, rem = http_remote
    repo = wd.abs / "repo"
    sandbox.git.clone(srv.url("origin.git"), str(repo), username=USER, password=PASSWORD)
    hook = rem.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: no pushes today' >&2\nexit 1\n")
    hook.chmod(0o755)
    git.commit_file(repo, "x.txt", "x\n", "x")
    with pytest.raises(DaytonaGitRemoteRejectedError) as info:
        sandbox.git.push(str(repo), username=USER, password=PASSWORD)
    assert_daemon_error(info, 422, "GIT_REMOTE_REJECTED")
    assert git(rem.bare, "rev-parse", "refs/heads/main") == rem.c2


def test_http_clone_missing_repository(sandbox, wd, http_remote):
    srv, _ = http_remote
    with pytest.raises(DaytonaGitRepoNotFoundError) as info:
        sandbox.git.clone(srv.url("nope.git"), wd.p("repo"), username=USER, password=PASSWORD)
    assert_daemon_error(info, 404, "GIT_REPO_NOT_FOUND")


def test_dangerously_authenticate_writes_store_and_is_used(cred_daemon, git, http_remote):
    d, sb = cred_daemon
    srv, rem = http_remote
    assert d.home != Path.home()

    sb.git.dangerously_authenticate("octo", "gh-token-123")  # defaults: https, github.com
    creds = d.home / ".git-credentials"
    assert creds.is_file()
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert "https://octo:gh-token-123@github.com" in creds.read_text().splitlines()
    assert daemon_git_config(git, d.home, "credential.helper") == "store"

    sb.git.dangerously_authenticate(USER, PASSWORD, host=srv.host, protocol="http")
    lines = creds.read_text().splitlines()
    assert f"http://{USER}:{PASSWORD}@{srv.host}" in lines
    assert "https://octo:gh-token-123@github.com" in lines
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600

    # later operations without credentials in the request use the stored ones
    repo = d.workdir / "cred-clone"
    sb.git.clone(srv.url("origin.git"), str(repo))
    assert git(repo, "rev-parse", "HEAD") == rem.c2
    git.commit_file(repo, "c.txt", "stored creds\n", "via stored creds")
    sb.git.push(str(repo))
    assert git(rem.bare, "rev-parse", "refs/heads/main") == git(repo, "rev-parse", "HEAD")
