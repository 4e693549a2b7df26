"""sandbox.process.exec, update_env and metrics through local SDK mode (the parts of the process
surface this release serves; sessions come with the sessions release)."""

import pytest

from daytona.common.errors import DaytonaError


def test_exec_returns_output_and_exit_code(sandbox, wd):
    (wd / "marker.txt").write_text("x")
    res = sandbox.process.exec("echo hello; ls; echo oops >&2; exit 4", cwd=wd.rel)
    assert res.exit_code == 4
    assert "hello\n" in res.result
    assert "marker.txt\n" in res.result
    assert "oops\n" in res.result


def test_exec_env_and_stdin_eof(sandbox):
    res = sandbox.process.exec('echo "$A $B"; cat; echo end', env={"A": "one", "B": "two words"})
    assert res.exit_code == 0
    assert res.result == "one two words\nend\n"


def test_exec_timeout_raises_a_timeout_error(sandbox):
    with pytest.raises(DaytonaError) as info:
        sandbox.process.exec("sleep 30", timeout=1)
    assert "timeout" in str(info.value).lower()
    assert info.value.status_code == 408


def test_update_env_reaches_new_commands(sandbox):
    sandbox.update_env({"TOOLBOXD_SDK_VAR": "from sdk"})
    assert sandbox.process.exec("echo $TOOLBOXD_SDK_VAR").result == "from sdk\n"
    sandbox.update_env({}, unset=["TOOLBOXD_SDK_VAR"])
    assert sandbox.process.exec("echo ${TOOLBOXD_SDK_VAR-gone}").result == "gone\n"


def test_metrics(sandbox):
    metrics = sandbox.get_metrics_latest()
    assert metrics is not None


def test_update_env_refuses_what_no_process_can_start_with(sandbox):
    """A NUL byte or a value past the kernel's 128 KiB per variable is a 400 at update_env
    (before: accepted, and every later exec failed until it was unset)."""
    for env in ({"TOOLBOXD_SDK_NUL": "a\x00b"}, {"TOOLBOXD_SDK_BIG": "x" * 1_500_000}, {"A=B": "x"}):
        with pytest.raises(DaytonaError) as info:
            sandbox.update_env(env)
        assert info.value.status_code == 400
    assert "NUL byte" in str(pytest.raises(DaytonaError, sandbox.update_env, {"TOOLBOXD_SDK_NUL": "\x00"}).value)
    assert sandbox.process.exec("echo ${TOOLBOXD_SDK_NUL-unset} ${TOOLBOXD_SDK_BIG-unset}").result == "unset unset\n"
