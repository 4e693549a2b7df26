"""schemathesis over the OpenAPI document, all checks on, against a daemon in a temp dir.

The daemon runs with its work dir and HOME in a fresh temp dir, as `nobody` in its own PID,
mount, IPC and UTS namespaces when the tests run as root (without the namespaces where the
machine does not allow them), and `fuzz/hooks.py` rewrites every generated path to a relative
one without `..`, so the destructive routes (delete, move, chmod, upload, git) only ever touch
that work dir. The daemon must still be running at the end.

Left out, and why:
- routes that run programs the fuzzer would write: `/process/execute`, `/process/code-run`,
  `/process/session/{id}/exec`, the interpreter (`/process/interpreter/…`: each context is a
  Python worker), `POST /process/pty` and the PTY WebSockets (a shell each);
- routes that reach out: `/git/clone`, `/git/pull`, `/git/push` (the network), `/proxy/…`
  (other services on this machine's loopback);
- `/lsp/…` (each start is a language server), `/mcp` (JSON-RPC whose tools run commands);
- `/files/watch` (its GET is a WebSocket only, and schemathesis speaks plain HTTP, which gets a
  400; the path filter takes both methods); polling and deleting watchers are in.
Requests that are valid but refused because of what is on disk (a directory where a file is
needed…) are let through by `fuzz/hooks.py`, by their exact messages.
The Rust integration tests cover those.

One worker, so that a run follows from its seed (two workers drew the same cases from it).
`FUZZ_MAX_EXAMPLES` (default 25 per operation) and `FUZZ_MAX_TIME` (seconds, default 150) size
the run, `FUZZ_SEED` (default 18, so CI runs the same cases; other seeds explore further) picks
the cases. The run must send at least 2,000 requests and find nothing. `FUZZ_DAEMON_LOG=<file>`
keeps the daemon's log with every request and its status, and `FUZZ_OUTPUT=<file>`
schemathesis's output, for replaying a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import toolboxd_bin

HERE = Path(__file__).resolve().parent
EXCLUDED = (
    r"^/(process/(execute|code-run|interpreter/.*|session/[^/]+/exec|pty"
    r"|pty/create-connect|pty/[^/]+/connect)|files/watch|git/(clone|pull|push)|proxy/.*|lsp/.*"
    r"|mcp)$"
)
MIN_REQUESTS = int(os.environ.get("FUZZ_MIN_REQUESTS", "2000"))


NAMESPACES = ["unshare", "--pid", "--mount-proc", "--ipc", "--uts", "--kill-child"]


def namespaces_work() -> bool:
    """Whether this machine lets root make namespaces (a container may not)."""
    try:
        return subprocess.run([*NAMESPACES, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    home, work = root / "home", root / "work"
    home.mkdir()
    work.mkdir()
    prefix: list[str] = []
    binary = Path(toolboxd_bin())
    if os.geteuid() == 0:
        # `nobody` may not reach the checkout (say, under /root): it runs its own copy.
        copy = root / "toolboxd"
        shutil.copy2(binary, copy)
        binary = copy
        for path in (root, home, work, copy):
            shutil.chown(path, "nobody", "nogroup")
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        if namespaces_work():
            # Its own PID (toolboxd is PID 1 there, reaping what it starts), mount, IPC and UTS
            # namespaces; killing `unshare` kills the daemon and everything it started.
            prefix = [*NAMESPACES, *prefix]
    env = {**os.environ, "HOME": str(home)}
    # `FUZZ_DAEMON_LOG=<file>` keeps the daemon's log, every request with its status, for
    # replaying what a failing scenario did.
    log = os.environ.get("FUZZ_DAEMON_LOG")
    if log:
        env["RUST_LOG"] = "info,tower_http=debug"
    stderr = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [*prefix, str(binary), "--toolbox-addr", "127.0.0.1:0", "--terminal-addr", "off",
         "--ssh-addr", "off", "--workdir", str(work)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=stderr,
        # Its own process group: stopping it kills `unshare` and the daemon together (setpriv's
        # change of user clears the parent-death signal `--kill-child` relies on).
        start_new_session=True,
    )
    if log:
        stderr.close()
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(rb"toolbox listening on (http://\S+)", line)
        if match:
            return proc, match.group(1).decode()
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("toolboxd did not start")


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (tests/sdk/python/requirements.txt)")
    root = Path(tempfile.mkdtemp(prefix="toolboxd-fuzz-"))
    proc, base = start_daemon(root)
    report = tmp_path / "report.ndjson"
    try:
        result = subprocess.run(
            [str(st), "run", f"{base}/openapi.json", "--checks", "all",
             "--max-examples", os.environ.get("FUZZ_MAX_EXAMPLES", "25"),
             "--max-time", os.environ.get("FUZZ_MAX_TIME", "150"),
             "--seed", os.environ.get("FUZZ_SEED", "18"),
             "--workers", "1", "--no-color", "--request-timeout", "30",
             "--generation-database", "none", "--exclude-path-regex", EXCLUDED,
             "--report", "ndjson", "--report-ndjson-path", str(report)],
            env={**os.environ, "SCHEMATHESIS_HOOKS": "hooks",
                 "PYTHONPATH": str(HERE / "fuzz")},
            cwd=tmp_path, capture_output=True, text=True, check=False,
            # schemathesis's own budget plus its set-up and the last requests in flight.
            timeout=int(os.environ.get("FUZZ_MAX_TIME", "150")) + 450,
        )
    finally:
        crashed = proc.poll()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)
    assert crashed is None, f"toolboxd exited during the run (status {crashed})"
    output = result.stdout + result.stderr
    if os.environ.get("FUZZ_OUTPUT"):
        Path(os.environ["FUZZ_OUTPUT"]).write_text(output)
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-4000:]
    generated = re.search(r"(\d+) generated", output)
    assert generated, summary
    assert int(generated.group(1)) >= MIN_REQUESTS, summary
    assert result.returncode == 0, output[-20000:]
