"""Fixtures that run the unmodified Daytona Python SDK against a local toolboxd.

The daemon binary is `$TOOLBOXD_BIN`, or `<repo>/target/debug/toolboxd`.
It is started with `--toolbox-addr 127.0.0.1:0 --sdk-api-addr 127.0.0.1:0
--terminal-addr 127.0.0.1:0 --ssh-addr 127.0.0.1:0 --workdir <tmp>/work`, HOME set to `<tmp>/home`, the directory of the running
Python (the venv, which has matplotlib) first on PATH, and its cwd set to `<tmp>`
(not the workdir, so relative paths only land in the workdir if the daemon
resolves them against --workdir). The listener addresses are parsed from the
lines it prints on stdout. `start_daemon(prefix, entrypoint=[...])` appends
`-- CMD...`, which toolboxd runs as the hidden session `entrypoint`; the
`entrypoint_daemon`/`entrypoint_sandbox` fixtures are a separate daemon and
sandbox running ENTRYPOINT.

The SDK is pointed at the sdk-api listener (`api_url=http://127.0.0.1:PORT/api`);
everything else (toolbox URL, sandbox id) comes from the control plane's JSON,
exactly as against the hosted Daytona.

Every HTTP request the SDK makes (control plane through urllib3, toolbox
through urllib3 and httpx) is recorded. The terminal summary lists each
request that got a non-2xx answer, with the test it came from, so expected
errors (404 for a missing file, ...) and unexpected ones can be told apart.
Set SDK_REQUEST_LOG=/some/file.jsonl to also get the full request log.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
LISTEN_RE = re.compile(r"toolboxd: (toolbox|sdk-api|ssh) listening on ((?:http|ssh)://\S+)")
STARTUP_TIMEOUT_S = float(os.environ.get("TOOLBOXD_STARTUP_TIMEOUT", "30"))


def toolboxd_bin() -> Path:
    env = os.environ.get("TOOLBOXD_BIN")
    return Path(env) if env else REPO / "target" / "debug" / "toolboxd"


# --------------------------------------------------------------------------
# Daemon process
# --------------------------------------------------------------------------


@dataclass
class Daemon:
    root: Path
    workdir: Path
    home: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    toolbox_url: str = ""
    sdk_api_url: str = ""
    ssh_port: int = 0
    # Trailing `-- CMD...`: the image's own command, run as session `entrypoint`.
    entrypoint: list[str] | None = None
    # Extra flags (e.g. `--token T`).
    args: list[str] | None = None
    _reader: threading.Thread | None = None
    _stdout_lines: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        """The URL to give the SDK as `api_url`."""
        return self.sdk_api_url.rstrip("/") + "/api"

    def start(self) -> "Daemon":
        binary = toolboxd_bin()
        if not binary.is_file():
            pytest.skip(f"toolboxd binary not found at {binary} (set TOOLBOXD_BIN)")
        env = dict(os.environ)
        env["HOME"] = str(self.home)
        # code_run and the interpreter run the `python3` on the daemon's PATH: make it this
        # interpreter's (the venv's, with matplotlib) so charts can be captured. Not resolved:
        # the venv's bin directory is what makes its site-packages apply.
        # The LSP servers: pylsp from this venv, typescript-language-server from the TS suite's
        # node_modules (tests/run.sh installs both).
        node_bin = REPO / "tests" / "sdk" / "ts" / "node_modules" / ".bin"
        env["PATH"] = os.pathsep.join(
            p for p in (os.path.dirname(sys.executable), str(node_bin), env.get("PATH")) if p
        )
        # Make sure no SDK setting of the caller leaks into the daemon.
        for k in list(env):
            if k.startswith("DAYTONA_"):
                del env[k]
        env.setdefault("RUST_BACKTRACE", "1")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--toolbox-addr",
                "127.0.0.1:0",
                "--sdk-api-addr",
                "127.0.0.1:0",
                # Never the default 22222 or 22220: suites run side by side.
                "--terminal-addr",
                "127.0.0.1:0",
                "--ssh-addr",
                "127.0.0.1:0",
                "--workdir",
                str(self.workdir),
                *(self.args or []),
                *(["--", *self.entrypoint] if self.entrypoint else []),
            ],
            cwd=str(self.root),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        lines: queue.Queue[str | None] = queue.Queue()

        def reader() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            with open(self.log_path, "ab") as out:
                for raw in self.proc.stdout:
                    out.write(b"[stdout] " + raw)
                    out.flush()
                    lines.put(raw.decode("utf-8", "replace"))
            lines.put(None)

        self._reader = threading.Thread(target=reader, daemon=True)
        self._reader.start()

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (self.toolbox_url and self.sdk_api_url and self.ssh_port):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                pytest.fail(f"toolboxd did not print both listener lines in {STARTUP_TIMEOUT_S}s; log: {self.log_path}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait()
                pytest.fail(f"toolboxd exited with {rc} before listening; log:\n{self.log_text()}")
            self._stdout_lines.append(line)
            m = LISTEN_RE.search(line)
            if m:
                if m.group(1) == "toolbox":
                    self.toolbox_url = m.group(2).rstrip("/")
                elif m.group(1) == "ssh":
                    self.ssh_port = int(m.group(2).rsplit(":", 1)[1])
                else:
                    self.sdk_api_url = m.group(2).rstrip("/")
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)


def start_daemon(
    prefix: str, entrypoint: list[str] | None = None, args: list[str] | None = None
) -> Daemon:
    root = Path(tempfile.mkdtemp(prefix=f"toolboxd-sdk-{prefix}-")).resolve()
    workdir = root / "work"
    home = root / "home"
    workdir.mkdir()
    home.mkdir()
    return Daemon(
        root=root,
        workdir=workdir,
        home=home,
        log_path=root / "toolboxd.log",
        entrypoint=entrypoint,
        args=args,
    ).start()


def stop_daemon(d: Daemon) -> None:
    """Stop a daemon and remove its directory (kept with TOOLBOXD_KEEP_TMP=1)."""
    d.stop()
    if os.environ.get("TOOLBOXD_KEEP_TMP"):
        print(f"\nkept daemon dir {d.root}")
    else:
        shutil.rmtree(d.root, ignore_errors=True)


def make_client(daemon: Daemon):
    from daytona import Daytona, DaytonaConfig

    return Daytona(DaytonaConfig(api_url=daemon.api_url, api_key="test"))


# --------------------------------------------------------------------------
# Request recording (for the report and for debugging failures)
# --------------------------------------------------------------------------


@dataclass
class Recorded:
    test: str
    client: str
    method: str
    url: str
    status: int | None
    error: str | None = None
    body: str | None = None


class Recorder:
    def __init__(self) -> None:
        self.current_test = "<session setup>"
        self.entries: list[Recorded] = []
        self._lock = threading.Lock()

    def add(self, rec: Recorded) -> None:
        with self._lock:
            self.entries.append(rec)


RECORDER = Recorder()


def _short(body: bytes | str | None) -> str | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return body[:400]


def _install_recorders() -> None:
    import daytona_api_client.rest as cp_rest
    import daytona_toolbox_api_client.rest as tb_rest

    def wrap(mod, label: str) -> None:
        cls = mod.RESTClientObject
        if getattr(cls, "_toolboxd_recorded", False):
            return
        orig = cls.request

        def request(self, method, url, *args, **kwargs):
            try:
                resp = orig(self, method, url, *args, **kwargs)
            except Exception as e:  # noqa: BLE001
                RECORDER.add(Recorded(RECORDER.current_test, label, method, url, None, error=repr(e)))
                raise
            status = getattr(resp, "status", None)
            body = None
            if status is not None and not 200 <= status <= 299:
                try:
                    body = _short(resp.read())
                except Exception:  # noqa: BLE001
                    body = None
            RECORDER.add(Recorded(RECORDER.current_test, label, method, url, status, body=body))
            return resp

        cls.request = request
        cls._toolboxd_recorded = True

    wrap(cp_rest, "urllib3")
    wrap(tb_rest, "urllib3")

    if not getattr(httpx.Client, "_toolboxd_recorded", False):
        orig_send = httpx.Client.send

        def send(self, request, *args, **kwargs):
            try:
                resp = orig_send(self, request, *args, **kwargs)
            except Exception as e:  # noqa: BLE001
                RECORDER.add(Recorded(RECORDER.current_test, "httpx", request.method, str(request.url), None, error=repr(e)))
                raise
            RECORDER.add(Recorded(RECORDER.current_test, "httpx", request.method, str(request.url), resp.status_code))
            return resp

        httpx.Client.send = send
        httpx.Client._toolboxd_recorded = True


_install_recorders()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture of the test is set up, so requests made by module- or session-scoped
    # fixtures it is the first to need are put down to it rather than to the previous teardown.
    RECORDER.current_test = item.nodeid


@pytest.fixture(autouse=True)
def _record_test_name(request: pytest.FixtureRequest) -> Iterator[None]:
    RECORDER.current_test = request.node.nodeid
    yield
    RECORDER.current_test = "<teardown>"


def _kind(url: str) -> str:
    path = urlsplit(url).path
    if path.startswith("/api/"):
        return "control-plane"
    if path.startswith("/toolbox/"):
        return "toolbox"
    return "other"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    # 101: a WebSocket upgrade (PTYs), not an error.
    bad = [e for e in RECORDER.entries if e.status is None or not (200 <= e.status <= 299 or e.status == 101)]
    tr = terminalreporter
    tr.section("toolboxd: SDK requests answered with non-2xx (or failed)")
    if not bad:
        tr.write_line(f"none ({len(RECORDER.entries)} requests recorded)")
    for e in bad:
        p = urlsplit(e.url)
        target = p.path + (f"?{p.query}" if p.query else "")
        tr.write_line(
            f"[{_kind(e.url)}] {e.method} {target} -> {e.status if e.status is not None else e.error}"
            + (f"  body={e.body!r}" if e.body else "")
            + f"  ({e.test})"
        )
    log = os.environ.get("SDK_REQUEST_LOG")
    if log:
        with open(log, "w", encoding="utf-8") as f:
            for e in RECORDER.entries:
                f.write(json.dumps(e.__dict__) + "\n")
        tr.write_line(f"full request log: {log}")


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def toolboxd() -> Iterator[Daemon]:
    d = start_daemon("main")
    try:
        yield d
    finally:
        stop_daemon(d)


@pytest.fixture(scope="session")
def daytona(toolboxd: Daemon):
    client = make_client(toolboxd)
    yield client


@dataclass
class CreatedSandbox:
    sandbox: object
    create_seconds: float


@pytest.fixture(scope="session")
def created(daytona) -> CreatedSandbox:
    t0 = time.monotonic()
    sb = daytona.create(timeout=60)
    return CreatedSandbox(sb, time.monotonic() - t0)


@pytest.fixture(scope="session")
def sandbox(created: CreatedSandbox):
    return created.sandbox


# The entrypoint of `entrypoint_daemon`: output on both streams at once, then it waits for
# ENTRYPOINT_RELEASE (`$HOME/release`, i.e. `<daemon>.home / "release"`) to appear before it
# writes more, so a test can start following the log and only then make it write. It gives up
# waiting after 60 s, in case nothing releases it.
ENTRYPOINT_SCRIPT = (
    "echo out-line; echo err-line >&2; "
    'for i in $(seq 1200); do [ -e "$HOME/release" ] && break; sleep 0.05; done; '
    "echo late-out; sleep 0.3; echo late-err >&2; exit 7"
)
ENTRYPOINT = ["bash", "-c", ENTRYPOINT_SCRIPT]
ENTRYPOINT_RELEASE = "release"


@pytest.fixture(scope="module")
def entrypoint_daemon() -> Iterator[Daemon]:
    """A daemon of its own whose trailing command (`-- bash -c ENTRYPOINT_SCRIPT`) is the
    `entrypoint` session; started per module so its entrypoint's timeline is the module's."""
    d = start_daemon("entrypoint", entrypoint=ENTRYPOINT)
    try:
        yield d
    finally:
        stop_daemon(d)


@pytest.fixture(scope="module")
def entrypoint_sandbox(entrypoint_daemon: Daemon):
    return make_client(entrypoint_daemon).create(timeout=60)


@dataclass
class WorkDir:
    """A per-test directory inside the daemon's workdir.

    `abs` is the absolute path on disk (also valid inside the sandbox, the
    daemon runs on this machine); `rel` is the same directory relative to the
    daemon's --workdir.
    """

    abs: Path
    rel: str

    def __truediv__(self, other: str) -> Path:
        return self.abs / other

    def p(self, *parts: str) -> str:
        """Absolute path string of a child, as passed to the SDK."""
        return str(self.abs.joinpath(*parts))


@pytest.fixture
def wd(request: pytest.FixtureRequest, toolboxd: Daemon) -> WorkDir:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
    d = toolboxd.workdir / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return WorkDir(abs=d, rel=name)


@pytest.fixture
def local_tmp(tmp_path: Path) -> Path:
    """A local (client-side) scratch dir, outside the daemon's workdir."""
    return tmp_path
