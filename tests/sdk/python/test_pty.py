"""PTYs through the real Python SDK in local SDK mode: create_pty_session (the create-connect
WebSocket, envs in a subprotocol), input, resize, wait for the exit, reconnecting with
connect_pty_session (the scrollback comes first), list, info and kill."""

import time
import uuid

import pytest

from daytona.common.errors import DaytonaError, DaytonaGoneError
from daytona.common.pty import PtySize


def _pid() -> str:
    return f"pty-{uuid.uuid4().hex[:8]}"


def _read_until(handle, needle: str, limit: float = 30.0) -> str:
    """Collects the handle's output (`wait` with a short timeout keeps it connected) until it
    holds `needle`."""
    seen = bytearray()
    deadline = time.monotonic() + limit
    while needle.encode() not in seen:
        if time.monotonic() > deadline:
            pytest.fail(f"no {needle!r} in the PTY output: {bytes(seen[-2000:])!r}")
        result = handle.wait(on_data=seen.extend, timeout=0.2)
        if result.exit_code is not None and needle.encode() not in seen:
            pytest.fail(f"the PTY exited ({result}) before {needle!r}: {bytes(seen[-2000:])!r}")
    return seen.decode("utf-8", "replace")


def test_create_input_resize_reconnect_and_exit(sandbox, wd):
    pid = _pid()
    handle = sandbox.process.create_pty_session(
        pid, cwd=str(wd.abs), envs={"GREETING": "hello pty"}, pty_size=PtySize(rows=30, cols=100)
    )
    try:
        assert handle.is_connected()
        handle.send_input('echo "$GREETING from $(pwd) at $(stty size)"\n')
        _read_until(handle, f"hello pty from {wd.abs} at 30 100")

        info = handle.resize(PtySize(rows=40, cols=120))
        assert (info.rows, info.cols) == (40, 120)
        handle.send_input("echo now-$(stty size | tr ' ' x)\n")
        _read_until(handle, "now-40x120")

        listed = {s.id: s for s in sandbox.process.list_pty_sessions()}
        assert listed[pid].active is True
        assert listed[pid].envs["GREETING"] == "hello pty"
        assert listed[pid].envs["TERM"] == "xterm-256color"
        got = sandbox.process.get_pty_session_info(pid)
        assert (got.rows, got.cols, got.cwd, got.lazy_start) == (40, 120, str(wd.abs), False)

        # Leave, then come back: the scrollback replays what was printed meanwhile.
        handle.send_input("echo while-away-$((6*7))\n")
        time.sleep(0.3)
        handle.disconnect()
        again = sandbox.process.connect_pty_session(pid)
        _read_until(again, "while-away-42")

        again.send_input("exit 3\n")
        result = again.wait(timeout=30)
        assert result.exit_code == 3
        assert result.error == "non-zero exit"
        assert not again.is_connected()
        again.disconnect()
    finally:
        handle.disconnect()


def test_exit_0_and_the_id_is_free_again(sandbox):
    pid = _pid()
    handle = sandbox.process.create_pty_session(pid)
    handle.send_input("exit\n")
    result = handle.wait(timeout=30)
    assert result.exit_code == 0
    assert result.error is None
    handle.disconnect()
    deadline = time.monotonic() + 10
    while pid in {s.id for s in sandbox.process.list_pty_sessions()}:
        assert time.monotonic() < deadline, "the ended PTY is still listed"
        time.sleep(0.05)
    # Its id says it ended (410, as Daytona answers a resize), until the id is used again.
    with pytest.raises(DaytonaGoneError, match="has terminated and cannot be resized"):
        sandbox.process.resize_pty_session(pid, PtySize(rows=20, cols=90))
    sandbox.process.create_pty_session(pid).kill()


def test_kill_ends_the_session(sandbox):
    pid = _pid()
    handle = sandbox.process.create_pty_session(pid)
    handle.send_input("sleep 1000 & echo job-$!\n")
    out = _read_until(handle, "job-")
    handle.kill()
    result = handle.wait(timeout=30)
    assert result.exit_code == 137
    assert result.error == "SIGKILL"
    with pytest.raises(DaytonaError):
        sandbox.process.get_pty_session_info(pid)
    assert "job-" in out
    handle.disconnect()


def test_duplicates_and_missing_sessions_are_errors(sandbox):
    pid = _pid()
    handle = sandbox.process.create_pty_session(pid)
    try:
        with pytest.raises(DaytonaError) as taken:
            sandbox.process.create_pty_session(pid)
        assert taken.value.status_code == 409
        with pytest.raises(DaytonaError, match="not found"):
            sandbox.process.connect_pty_session(f"{pid}-missing")
    finally:
        handle.kill()
        handle.disconnect()
