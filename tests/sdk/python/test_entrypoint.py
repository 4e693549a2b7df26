"""The entrypoint session (`toolboxd [flags] -- CMD...`) through the real Python SDK:
get_entrypoint_session, get_entrypoint_logs, get_entrypoint_logs_async, and the session being
hidden from the list and refusing exec / delete.

The daemon (conftest `entrypoint_daemon`) runs ENTRYPOINT_SCRIPT: it prints `out-line` and
`err-line`, waits for `$HOME/release`, then prints `late-out`, `late-err` and exits 7. The
fixtures below pin the order whatever order the tests run in: `early` looks at the running
entrypoint before anything releases it, `followed` starts following the log, then releases it, so
the late lines are written while the WebSocket is open, and tests of the finished command use
`followed`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest

from daytona import SessionExecuteRequest
from daytona.common.errors import DaytonaError

from conftest import ENTRYPOINT, ENTRYPOINT_RELEASE, ENTRYPOINT_SCRIPT

SESSION_ID = "entrypoint"
COMMAND_ID = "entrypoint_command"
# How toolboxd records `-- bash -c SCRIPT`: each word shell-quoted (the script has no `'`).
assert ENTRYPOINT == ["bash", "-c", ENTRYPOINT_SCRIPT] and "'" not in ENTRYPOINT_SCRIPT
COMMAND = f"bash -c '{ENTRYPOINT_SCRIPT}'"
EARLY_OUT, EARLY_ERR = "out-line\n", "err-line\n"
FULL_OUT, FULL_ERR = "out-line\nlate-out\n", "err-line\nlate-err\n"


def _poll(what: str, fn, limit: float = 30.0):
    deadline = time.monotonic() + limit
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Early:
    session: object
    logs: object


@pytest.fixture(scope="module")
def early(entrypoint_sandbox, entrypoint_daemon) -> Early:
    """The entrypoint once its first lines are out, before it is released."""
    assert not (entrypoint_daemon.home / ENTRYPOINT_RELEASE).exists()
    logs = _poll(
        "the entrypoint's first lines",
        lambda: (lambda l: l if l.stdout == EARLY_OUT and l.stderr == EARLY_ERR else None)(
            entrypoint_sandbox.process.get_entrypoint_logs()
        ),
    )
    session = entrypoint_sandbox.process.get_entrypoint_session()
    return Early(session=session, logs=logs)


@dataclass
class Followed:
    stdout: list[str]
    stderr: list[str]
    # How many chunks each callback had received when the entrypoint was released.
    before_release: tuple[int, int]
    seconds: float


@pytest.fixture(scope="module")
def followed(entrypoint_sandbox, entrypoint_daemon, early) -> Followed:  # noqa: ARG001
    """Follow the entrypoint log with get_entrypoint_logs_async; release the entrypoint only once
    the callbacks got the lines written before the call, so the late lines arrive live."""
    stdout: list[str] = []
    stderr: list[str] = []
    got_early = threading.Event()
    marks: list[tuple[int, int]] = []

    def check() -> None:
        if "".join(stdout).startswith(EARLY_OUT) and "".join(stderr).startswith(EARLY_ERR):
            got_early.set()

    def on_stdout(chunk: str) -> None:
        stdout.append(chunk)
        check()

    def on_stderr(chunk: str) -> None:
        stderr.append(chunk)
        check()

    async def follow_and_release() -> None:
        task = asyncio.ensure_future(entrypoint_sandbox.process.get_entrypoint_logs_async(on_stdout, on_stderr))
        deadline = time.monotonic() + 30
        while not got_early.is_set():
            if task.done():
                task.result()
                pytest.fail(f"the log stream ended before the entrypoint was released: {stdout!r} {stderr!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"the early lines never reached the callbacks: {stdout!r} {stderr!r}")
            await asyncio.sleep(0.02)
        assert not task.done(), "the stream ended while the entrypoint was still running"
        marks.append((len(stdout), len(stderr)))
        (entrypoint_daemon.home / ENTRYPOINT_RELEASE).touch()
        await asyncio.wait_for(task, timeout=30)

    started = time.monotonic()
    asyncio.run(follow_and_release())
    return Followed(stdout, stderr, marks[0], time.monotonic() - started)


def test_entrypoint_session_while_running(early):
    s = early.session
    assert s.session_id == SESSION_ID
    assert len(s.commands) == 1
    cmd = s.commands[0]
    assert cmd.id == COMMAND_ID
    assert cmd.command == COMMAND
    assert cmd.exit_code is None


def test_entrypoint_logs_while_running(early):
    assert early.logs.stdout == EARLY_OUT
    assert early.logs.stderr == EARLY_ERR
    assert EARLY_OUT in early.logs.output and EARLY_ERR in early.logs.output


def test_entrypoint_logs_async_streams_live_output(followed):
    assert "".join(followed.stdout) == FULL_OUT
    assert "".join(followed.stderr) == FULL_ERR
    n_out, n_err = followed.before_release
    # The late lines came in chunks delivered after the entrypoint was released, i.e. while the
    # call was already following the log.
    assert "".join(followed.stdout[n_out:]) == "late-out\n"
    assert "".join(followed.stderr[n_err:]) == "late-err\n"
    # The stream only ended with the command (it sleeps 0.3 s between its late lines).
    assert followed.seconds >= 0.3


def test_entrypoint_finished(entrypoint_sandbox, followed):  # noqa: ARG001
    def ended():
        s = entrypoint_sandbox.process.get_entrypoint_session()
        return s if s.commands and s.commands[0].exit_code is not None else None

    s = _poll("the entrypoint to exit", ended)
    assert s.session_id == SESSION_ID
    assert [(c.id, c.command, c.exit_code) for c in s.commands] == [(COMMAND_ID, COMMAND, 7)]

    logs = entrypoint_sandbox.process.get_entrypoint_logs()
    assert logs.stdout == FULL_OUT
    assert logs.stderr == FULL_ERR
    for line in ("out-line\n", "err-line\n", "late-out\n", "late-err\n"):
        assert line in logs.output
    assert logs.output.index("out-line") < logs.output.index("late-out")

    # The entrypoint is also reachable as an ordinary session command.
    cmd = entrypoint_sandbox.process.get_session_command(SESSION_ID, COMMAND_ID)
    assert (cmd.id, cmd.command, cmd.exit_code) == (COMMAND_ID, COMMAND, 7)
    by_id = entrypoint_sandbox.process.get_session_command_logs(SESSION_ID, COMMAND_ID)
    assert (by_id.stdout, by_id.stderr) == (FULL_OUT, FULL_ERR)

    # Following a finished entrypoint replays its log and ends.
    out: list[str] = []
    err: list[str] = []
    asyncio.run(
        asyncio.wait_for(entrypoint_sandbox.process.get_entrypoint_logs_async(out.append, err.append), timeout=10)
    )
    assert ("".join(out), "".join(err)) == (FULL_OUT, FULL_ERR)


def test_entrypoint_hidden_from_list(entrypoint_sandbox, early):  # noqa: ARG001
    sid = "listed-next-to-entrypoint"
    entrypoint_sandbox.process.create_session(sid)
    try:
        ids = [s.session_id for s in entrypoint_sandbox.process.list_sessions()]
        assert sid in ids
        assert SESSION_ID not in ids
    finally:
        entrypoint_sandbox.process.delete_session(sid)


def test_entrypoint_refuses_exec_delete_and_create(entrypoint_sandbox, early):  # noqa: ARG001
    with pytest.raises(DaytonaError) as info:
        entrypoint_sandbox.process.execute_session_command(SESSION_ID, SessionExecuteRequest(command="echo hi"))
    assert info.value.status_code == 400
    with pytest.raises(DaytonaError) as info:
        entrypoint_sandbox.process.execute_session_command(
            SESSION_ID, SessionExecuteRequest(command="echo hi", run_async=True)
        )
    assert info.value.status_code == 400
    with pytest.raises(DaytonaError) as info:
        entrypoint_sandbox.process.delete_session(SESSION_ID)
    assert info.value.status_code == 400
    with pytest.raises(DaytonaError) as info:
        entrypoint_sandbox.process.create_session(SESSION_ID)
    assert info.value.status_code == 400
    # None of that touched it: still there, still the one command.
    s = entrypoint_sandbox.process.get_entrypoint_session()
    assert [c.id for c in s.commands] == [COMMAND_ID]


def test_no_entrypoint_is_404(sandbox):
    """The shared daemon has no trailing command: there is no entrypoint session."""
    with pytest.raises(DaytonaError) as info:
        sandbox.process.get_entrypoint_session()
    assert info.value.status_code == 404
    with pytest.raises(DaytonaError) as info:
        sandbox.process.get_entrypoint_logs()
    assert info.value.status_code == 404
