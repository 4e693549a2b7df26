"""Sessions through the real Python SDK in local SDK mode: create, sync and async exec, command
status, log snapshots, the log WebSocket, input, list and delete."""

import asyncio
import time
import uuid

import pytest

from daytona import SessionExecuteRequest
from daytona.common.errors import DaytonaError


def _sid() -> str:
    return f"sdk-{uuid.uuid4().hex[:8]}"


def _wait_exit(sandbox, sid: str, cid: str, limit: float = 30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        cmd = sandbox.process.get_session_command(sid, cid)
        if cmd.exit_code is not None:
            return cmd
        time.sleep(0.05)
    pytest.fail(f"command {cid} never ended")


def test_sync_commands_share_state(sandbox, wd):
    sid = _sid()
    sandbox.process.create_session(sid)
    try:
        first = sandbox.process.execute_session_command(
            sid, SessionExecuteRequest(command=f"cd {wd.abs}; export GREETING=hi")
        )
        assert first.exit_code == 0
        res = sandbox.process.execute_session_command(
            sid, SessionExecuteRequest(command='pwd; echo "$GREETING"; echo oops >&2; exit 3')
        )
        assert res.exit_code == 3
        assert res.stdout == f"{wd.abs}\nhi\n"
        assert res.stderr == "oops\n"
        assert "hi\n" in res.output and "oops\n" in res.output
        logs = sandbox.process.get_session_command_logs(sid, res.cmd_id)
        assert logs.stdout == f"{wd.abs}\nhi\n"
        assert logs.stderr == "oops\n"
        after = sandbox.process.execute_session_command(sid, SessionExecuteRequest(command="cat <<EOF\nstill $GREETING\nEOF"))
        assert after.exit_code == 0
        assert after.stdout == "still hi\n"
        session = sandbox.process.get_session(sid)
        assert session.session_id == sid
        assert [c.exit_code for c in session.commands] == [0, 3, 0]
    finally:
        sandbox.process.delete_session(sid)


def test_output_is_plain_text_and_the_streams_stay_split(sandbox):
    """`output` is what a user prints: both streams in arrival order, no \\x01/\\x02 markers."""
    sid = _sid()
    sandbox.process.create_session(sid)
    try:
        # Pauses keep the arrival order across the two pipes certain.
        res = sandbox.process.execute_session_command(
            sid, SessionExecuteRequest(command="echo out; sleep 0.3; echo err >&2; sleep 0.3; printf tail")
        )
        assert res.exit_code == 0
        assert res.output == "out\nerr\ntail"
        assert (res.stdout, res.stderr) == ("out\ntail", "err\n")
        logs = sandbox.process.get_session_command_logs(sid, res.cmd_id)
        assert logs.output == "out\nerr\ntail"
        assert (logs.stdout, logs.stderr) == ("out\ntail", "err\n")
        # The log WebSocket still carries the markers, and the SDK demuxes them.
        chunks = {"out": "", "err": ""}

        def on_out(chunk):
            chunks["out"] += chunk

        def on_err(chunk):
            chunks["err"] += chunk

        asyncio.run(sandbox.process.get_session_command_logs_async(sid, res.cmd_id, on_out, on_err))
        assert chunks == {"out": "out\ntail", "err": "err\n"}
    finally:
        sandbox.process.delete_session(sid)


def test_async_command_with_input(sandbox):
    sid = _sid()
    sandbox.process.create_session(sid)
    try:
        res = sandbox.process.execute_session_command(
            sid, SessionExecuteRequest(command="read name; echo hello $name", run_async=True)
        )
        assert res.cmd_id
        assert res.exit_code is None
        cmd = sandbox.process.get_session_command(sid, res.cmd_id)
        assert cmd.exit_code is None
        assert cmd.command == "read name; echo hello $name"
        sandbox.process.send_session_command_input(sid, res.cmd_id, "world")
        done = _wait_exit(sandbox, sid, res.cmd_id)
        assert done.exit_code == 0
        logs = sandbox.process.get_session_command_logs(sid, res.cmd_id)
        assert "hello world\n" in logs.stdout
        assert logs.stderr == ""
        with pytest.raises(DaytonaError) as info:
            sandbox.process.send_session_command_input(sid, res.cmd_id, "late")
        assert info.value.status_code == 410
    finally:
        sandbox.process.delete_session(sid)


def test_input_larger_than_a_pipe_is_accepted_and_then_gone(sandbox):
    """70 KB of input to a command that never reads it (before: the call never returned, and the
    daemon leaked a descriptor): accepted at once, and 410 once the command has ended."""
    sid = _sid()
    sandbox.process.create_session(sid)
    try:
        res = sandbox.process.execute_session_command(sid, SessionExecuteRequest(command="sleep 1", run_async=True))
        sandbox.process.send_session_command_input(sid, res.cmd_id, "x" * 70_000)
        assert _wait_exit(sandbox, sid, res.cmd_id).exit_code == 0
        with pytest.raises(DaytonaError) as info:
            sandbox.process.send_session_command_input(sid, res.cmd_id, "x" * 70_000)
        assert info.value.status_code == 410
        # A command that reads gets all of it.
        res = sandbox.process.execute_session_command(
            sid, SessionExecuteRequest(command="head -c 70001 | wc -c", run_async=True, suppress_input_echo=True)
        )
        sandbox.process.send_session_command_input(sid, res.cmd_id, "y" * 70_000)
        assert _wait_exit(sandbox, sid, res.cmd_id).exit_code == 0
        assert sandbox.process.get_session_command_logs(sid, res.cmd_id).stdout.strip() == "70001"
    finally:
        sandbox.process.delete_session(sid)


def test_a_shell_left_unusable_is_replaced(sandbox):
    """After `ulimit -n 3` the session shell cannot run commands: it is replaced, and the command
    that left it so says why (before: every later command failed with exit code 1)."""
    sid = _sid()
    sandbox.process.create_session(sid)
    try:
        res = sandbox.process.execute_session_command(sid, SessionExecuteRequest(command="ulimit -n 3"))
        assert res.exit_code == 0
        after = sandbox.process.execute_session_command(sid, SessionExecuteRequest(command="echo back"))
        assert (after.exit_code, after.stdout) == (0, "back\n")
    finally:
        sandbox.process.delete_session(sid)


def test_list_and_delete(sandbox):
    sid = _sid()
    sandbox.process.create_session(sid)
    assert sid in [s.session_id for s in sandbox.process.list_sessions()]
    res = sandbox.process.execute_session_command(sid, SessionExecuteRequest(command="sleep 300", run_async=True))
    assert res.cmd_id
    sandbox.process.delete_session(sid)
    assert sid not in [s.session_id for s in sandbox.process.list_sessions()]
    with pytest.raises(DaytonaError) as info:
        sandbox.process.get_session(sid)
    assert info.value.status_code == 404


def test_logs_follow_with_callbacks(sandbox):
    sid = _sid()
    sandbox.process.create_session(sid)
    try:
        res = sandbox.process.execute_session_command(
            sid,
            SessionExecuteRequest(
                command="printf 'out1 '; sleep 0.5; echo err1 >&2; sleep 0.5; printf 'out2\\n'; printf 'é' >&2",
                run_async=True,
            ),
        )
        stdout, stderr = [], []
        started = time.monotonic()

        async def follow():
            await sandbox.process.get_session_command_logs_async(sid, res.cmd_id, stdout.append, stderr.append)

        asyncio.run(asyncio.wait_for(follow(), timeout=30))
        assert time.monotonic() - started >= 0.9, "the stream ended before the command"
        assert "".join(stdout) == "out1 out2\n"
        assert "".join(stderr) == "err1\né"
        assert _wait_exit(sandbox, sid, res.cmd_id).exit_code == 0
        # Following a finished command replays it and ends.
        again_out, again_err = [], []
        asyncio.run(
            asyncio.wait_for(
                sandbox.process.get_session_command_logs_async(sid, res.cmd_id, again_out.append, again_err.append),
                timeout=10,
            )
        )
        assert "".join(again_out) == "out1 out2\n"
        assert "".join(again_err) == "err1\né"
    finally:
        sandbox.process.delete_session(sid)
