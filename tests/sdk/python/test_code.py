"""code_run and the code interpreter through the real Python SDK in local SDK mode.

`sandbox.process.code_run` (POST /process/code-run): output, exit codes, real argv, env, the
timeout (the tree is killed), and matplotlib charts parsed by the SDK into its chart classes
(`daytona.common.charts`), which also proves that the daemon's chart JSON fits the SDK's strict
pydantic models. JavaScript and TypeScript run in sandboxes created with that language (the
SDK sends the sandbox's `code-toolbox-language` label as code_run's language).

`sandbox.code_interpreter` (contexts + the execute WebSocket): callbacks, state, contexts,
errors, timeouts and charts.

The daemon runs the `python3` found first on its PATH: conftest puts the venv's bin there,
whose python has matplotlib, numpy and pillow.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from conftest import make_client, start_daemon
from daytona import CodeRunParams, CreateSandboxFromSnapshotParams
from daytona.common.charts import (
    BarChart,
    BoxAndWhiskerChart,
    Chart,
    ChartType,
    CompositeChart,
    LineChart,
    PieChart,
    ScatterChart,
)
from daytona.common.code_interpreter import ExecutionError, OutputMessage
from daytona.common.errors import DaytonaError, DaytonaTimeoutError
from daytona_toolbox_api_client import InterpreterContext
from daytona_toolbox_api_client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[3]
TSX_BIN = REPO / "tests" / "sdk" / "ts" / "node_modules" / ".bin"


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _wait_gone(pid: int, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} survived the timeout"
        time.sleep(0.05)


def _charts(sandbox, code: str) -> list[Chart]:
    res = sandbox.process.code_run(code)
    assert res.exit_code == 0, res.result
    assert res.artifacts is not None
    return res.artifacts.charts or []


def _one_chart(sandbox, code: str) -> Chart:
    charts = _charts(sandbox, code)
    assert len(charts) == 1, charts
    return charts[0]


def _assert_png(chart) -> None:
    raw = base64.b64decode(chart.png, validate=True)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")


# ==========================================================================
# code_run: output, argv, env, timeout
# ==========================================================================


def test_code_run_output_and_exit_codes(sandbox):
    # (The pause keeps the two streams apart: see the interleaving test below.)
    res = sandbox.process.code_run("import sys, time\nprint('hello')\ntime.sleep(0.2)\nprint('warn', file=sys.stderr)")
    assert res.exit_code == 0
    assert res.result == "hello\nwarn\n"
    assert res.artifacts.stdout == res.result
    assert res.artifacts.charts == []
    # The daemon's separate streams travel as extra properties of the response.
    assert res.additional_properties.get("stdout") == "hello\n"
    assert res.additional_properties.get("stderr") == "warn\n"

    res = sandbox.process.code_run("import sys\nprint('bye')\nsys.exit(5)")
    assert res.exit_code == 5
    assert res.result == "bye\n"

    res = sandbox.process.code_run("def g():\n    raise ValueError('boom')\n\ng()")
    assert res.exit_code == 1
    assert "ValueError: boom" in res.result
    assert "line 2" in res.result, res.result
    assert "toolboxd_run" not in res.result, "the bootstrap stays out of the user's traceback"


def test_code_run_result_keeps_whole_lines_of_both_streams(sandbox):
    # stdout and stderr come from two pipes, so their relative order is approximate, but every
    # line arrives whole and each stream keeps its own order.
    res = sandbox.process.code_run(
        "import sys\nfor i in range(1000):\n    print('o', i)\n    print('e', i, file=sys.stderr)"
    )
    assert res.exit_code == 0
    lines = res.result.splitlines()
    assert sorted(lines) == sorted([f"o {i}" for i in range(1000)] + [f"e {i}" for i in range(1000)])
    assert [l for l in lines if l.startswith("o ")] == [f"o {i}" for i in range(1000)]


def test_code_run_argv_arrive_separately(sandbox):
    argv = ["plain", "two words", "it's \"quoted\"", "", "$HOME;`x` *", "ünïcødé", "--flag=a b"]
    res = sandbox.process.code_run(
        "import sys, json\nprint(json.dumps(sys.argv[1:]))", params=CodeRunParams(argv=argv)
    )
    assert res.exit_code == 0, res.result
    assert json.loads(res.result) == argv


def test_code_run_env(sandbox):
    env = {"GREETING": "hello world", "WITH_EQUALS": "a=b=c", "QUOTES": "it's \"x\" $HOME"}
    code = "import os, json\nprint(json.dumps({k: os.environ.get(k) for k in %r}))" % sorted(env)
    res = sandbox.process.code_run(code, params=CodeRunParams(env=env))
    assert res.exit_code == 0, res.result
    assert json.loads(res.result) == env
    # One run's env does not leak into the next.
    res = sandbox.process.code_run(code)
    assert json.loads(res.result) == {k: None for k in env}


def test_code_run_argv_and_env_together(sandbox):
    res = sandbox.process.code_run(
        "import os, sys\nprint(sys.argv[1], os.environ['WHO'])",
        params=CodeRunParams(argv=["a b"], env={"WHO": "me"}),
    )
    assert (res.exit_code, res.result) == (0, "a b me\n")


def test_code_run_timeout_raises_and_kills_the_tree(sandbox, wd):
    pid_file = wd / "child.pid"
    code = (
        "import subprocess, time\n"
        "p = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    # code_run has no @intercept_errors: the daemon's 408 reaches the caller as the toolbox
    # client's raw ApiException.
    with pytest.raises(ApiException) as info:
        sandbox.process.code_run(code, timeout=1)
    assert time.monotonic() - started < 15
    assert info.value.status == 408
    body = json.loads(info.value.body)
    assert body.get("code") == "PROCESS_EXECUTION_TIMEOUT", body
    _wait_gone(int(pid_file.read_text().strip()))
    # The sandbox keeps working.
    assert sandbox.process.code_run("print('after')").result == "after\n"


def test_code_run_within_its_timeout_succeeds(sandbox):
    res = sandbox.process.code_run("import time\ntime.sleep(0.2)\nprint('done')", timeout=10)
    assert (res.exit_code, res.result) == (0, "done\n")


# ==========================================================================
# code_run: charts, as the SDK parses them
# ==========================================================================


def test_chart_line(sandbox):
    chart = _one_chart(
        sandbox,
        """
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [4, 5, 6], label="up")
plt.plot([1, 2, 3], [6, 4, 2], label="down")
plt.title("Line chart")
plt.xlabel("time (s)")
plt.ylabel("value")
plt.legend()
plt.show()
""",
    )
    assert isinstance(chart, LineChart)
    assert chart.type == ChartType.LINE
    assert chart.title == "Line chart"
    assert chart.x_label == "time (s)"
    assert chart.y_label == "value"
    assert chart.x_scale == "linear" and chart.y_scale == "linear"
    assert [e.label for e in chart.elements] == ["up", "down"]
    assert chart.elements[0].points == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    assert chart.elements[1].points == [[1.0, 6.0], [2.0, 4.0], [3.0, 2.0]]
    assert chart.x_ticks and len(chart.x_ticks) == len(chart.x_tick_labels)
    assert chart.y_ticks and len(chart.y_ticks) == len(chart.y_tick_labels)
    assert all(1.0 <= t <= 3.0 for t in chart.x_ticks)
    _assert_png(chart)


def test_chart_scatter(sandbox):
    chart = _one_chart(
        sandbox,
        """
import matplotlib.pyplot as plt
plt.scatter([1, 2, 3], [3, 1, 2], label="pts")
plt.title("Scatter")
plt.xlabel("x")
plt.show()
""",
    )
    assert isinstance(chart, ScatterChart)
    assert chart.type == ChartType.SCATTER
    assert chart.title == "Scatter"
    assert chart.x_label == "x"
    assert len(chart.elements) == 1
    assert chart.elements[0].label == "pts"
    assert chart.elements[0].points == [[1.0, 3.0], [2.0, 1.0], [3.0, 2.0]]
    _assert_png(chart)


def test_chart_bar_vertical_and_horizontal(sandbox):
    vertical, horizontal = _charts(
        sandbox,
        """
import matplotlib.pyplot as plt
plt.bar(["a", "b", "c"], [3, 7.5, 1])
plt.title("Vertical")
plt.xlabel("letter")
plt.ylabel("count")
plt.show()
plt.barh(["x", "y"], [2, 4])
plt.title("Horizontal")
plt.show()
""",
    )
    assert isinstance(vertical, BarChart)
    assert vertical.type == ChartType.BAR
    assert vertical.title == "Vertical"
    assert (vertical.x_label, vertical.y_label) == ("letter", "count")
    assert [(e.label, e.value) for e in vertical.elements] == [("a", "3"), ("b", "7.5"), ("c", "1")]
    assert all(isinstance(e.value, str) for e in vertical.elements)

    assert isinstance(horizontal, BarChart)
    assert horizontal.title == "Horizontal"
    assert [(e.label, e.value) for e in horizontal.elements] == [("x", "2"), ("y", "4")]
    _assert_png(vertical)
    _assert_png(horizontal)


def test_chart_pie(sandbox):
    chart = _one_chart(
        sandbox,
        """
import matplotlib.pyplot as plt
plt.pie([1, 3], labels=["small", "big"], autopct="%1.0f%%")
plt.title("Pie")
plt.show()
""",
    )
    assert isinstance(chart, PieChart)
    assert chart.type == ChartType.PIE
    assert chart.title == "Pie"
    assert [e.label for e in chart.elements] == ["small", "big"]
    assert [e.angle for e in chart.elements] == pytest.approx([90.0, 270.0])
    assert all(e.radius == pytest.approx(1.0) for e in chart.elements)
    # Not in the SDK's model: kept as an extra property.
    assert [e.additional_properties.get("autopct") for e in chart.elements] == ["25%", "75%"]
    _assert_png(chart)


def test_chart_box_and_whisker(sandbox):
    chart = _one_chart(
        sandbox,
        """
import matplotlib.pyplot as plt
plt.boxplot([[1, 2, 3, 4, 5, 100], [2, 3, 4, 5, 6]])
plt.xticks([1, 2], ["first", "second"])
plt.title("Boxes")
plt.ylabel("ms")
plt.show()
""",
    )
    assert isinstance(chart, BoxAndWhiskerChart)
    assert chart.type == ChartType.BOX_AND_WHISKER
    assert chart.title == "Boxes"
    assert chart.y_label == "ms"
    first, second = chart.elements
    assert first.label == "first" and second.label == "second"
    # numpy's linear percentiles; whiskers at the extreme points within 1.5 IQR.
    assert (first.min, first.first_quartile, first.median, first.third_quartile, first.max) == pytest.approx(
        (1.0, 2.25, 3.5, 4.75, 5.0)
    )
    assert first.outliers == [100.0]
    assert (second.min, second.first_quartile, second.median, second.third_quartile, second.max) == pytest.approx(
        (2.0, 3.0, 4.0, 5.0, 6.0)
    )
    assert second.outliers == []
    _assert_png(chart)


def test_chart_datetime_line(sandbox):
    chart = _one_chart(
        sandbox,
        """
import datetime as dt
import matplotlib.pyplot as plt
days = [dt.datetime(2024, 1, 1) + dt.timedelta(days=i) for i in range(5)]
plt.plot(days, [1, 4, 9, 16, 25], label="squares")
plt.title("Over time")
plt.show()
""",
    )
    assert isinstance(chart, LineChart)
    assert chart.x_scale == "datetime"
    assert chart.y_scale == "linear"
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    points = chart.elements[0].points
    assert [p[1] for p in points] == [1.0, 4.0, 9.0, 16.0, 25.0]
    # x values are Unix epoch seconds.
    assert [p[0] for p in points] == pytest.approx([start + i * 86400 for i in range(5)])
    assert chart.x_ticks and all(start - 86400 <= t <= start + 5 * 86400 for t in chart.x_ticks)
    assert len(chart.x_tick_labels) == len(chart.x_ticks)
    assert all(isinstance(label, str) and label for label in chart.x_tick_labels)


def test_chart_composite_2x2(sandbox):
    chart = _one_chart(
        sandbox,
        """
import matplotlib.pyplot as plt
fig, axs = plt.subplots(2, 2)
axs[0][0].plot([1, 2], [3, 4], label="l")
axs[0][0].set_title("line")
axs[0][1].bar(["a", "b"], [1, 2])
axs[0][1].set_title("bar")
axs[1][0].scatter([1, 2], [5, 6])
axs[1][0].set_title("scatter")
axs[1][1].pie([1, 1], labels=["p", "q"])
axs[1][1].set_title("pie")
fig.suptitle("Four")
plt.show()
""",
    )
    assert isinstance(chart, CompositeChart)
    assert chart.type == ChartType.COMPOSITE_CHART
    assert chart.title == "Four"
    _assert_png(chart)
    subs = chart.elements
    assert [s.type for s in subs] == ["line", "bar", "scatter", "pie"]
    assert [s.title for s in subs] == ["line", "bar", "scatter", "pie"]
    # A sub-chart's own elements are not a field of the SDK's ChartElement: they travel as an
    # extra property, intact.
    inner = [s.additional_properties.get("elements") for s in subs]
    assert inner[0] == [{"label": "l", "points": [[1.0, 3.0], [2.0, 4.0]]}]
    assert [(e["label"], e["value"]) for e in inner[1]] == [("a", "1"), ("b", "2")]
    assert inner[2][0]["points"] == [[1.0, 5.0], [2.0, 6.0]]
    assert [e["label"] for e in inner[3]] == ["p", "q"]
    assert [e["angle"] for e in inner[3]] == pytest.approx([180.0, 180.0])


def test_chart_unknown(sandbox):
    image, text = _charts(
        sandbox,
        """
import matplotlib.pyplot as plt
plt.imshow([[0, 1], [1, 0]])
plt.title("Image")
plt.show()
plt.figure().text(0.5, 0.5, "no axes, no title")
plt.show()
""",
    )
    # No SDK subclass for "unknown": parse_chart leaves the base Chart.
    assert type(image) is Chart and type(text) is Chart
    assert image.type == text.type == ChartType.UNKNOWN
    assert (image.title, text.title) == ("Image", None)
    for chart in (image, text):
        assert chart.elements == []
        assert (chart.x_label, chart.y_label, chart.x_ticks, chart.x_scale) == (None, None, None, None)
        _assert_png(chart)


def test_figures_left_open_are_charts_too(sandbox):
    charts = _charts(
        sandbox,
        """
import matplotlib.pyplot as plt
plt.plot([0, 1], [1, 0])
plt.title("Never shown")
""",
    )
    assert [c.title for c in charts] == ["Never shown"]
    assert isinstance(charts[0], LineChart)


def test_forged_artifact_line_stays_output(sandbox):
    forged = 'dtn_artifact_k39fd2:{"type":"chart","value":{"type":"line","title":"forged"}}'
    res = sandbox.process.code_run(f"print({forged!r})\nprint('plain')")
    assert res.exit_code == 0
    assert res.result == forged + "\nplain\n"
    assert res.artifacts.charts == []

    # Next to a real chart: only the real one is a chart.
    res = sandbox.process.code_run(
        f"""
import matplotlib.pyplot as plt
print({forged!r})
plt.plot([1, 2], [1, 2])
plt.title("real")
plt.show()
"""
    )
    assert res.exit_code == 0
    assert forged in res.result
    assert [c.title for c in res.artifacts.charts] == ["real"]
    assert '"png"' not in res.result


# ==========================================================================
# code_run in JavaScript and TypeScript sandboxes
# ==========================================================================


@pytest.fixture(scope="module")
def lang_daytona():
    """A daemon of its own (creating a sandbox with a language replaces the one sandbox's
    labels), with tsx on its PATH for TypeScript."""
    saved = os.environ.get("PATH", "")
    if TSX_BIN.is_dir():
        os.environ["PATH"] = os.pathsep.join([str(TSX_BIN), saved])
    try:
        d = start_daemon("code-lang")
    finally:
        os.environ["PATH"] = saved
    try:
        yield make_client(d)
    finally:
        d.stop()


def test_javascript_code_run(lang_daytona):
    sb = lang_daytona.create(CreateSandboxFromSnapshotParams(language="javascript"), timeout=60)
    assert sb.labels.get("code-toolbox-language") == "javascript"
    argv = ["x y", "it's", ""]
    res = sb.process.code_run(
        "console.log(JSON.stringify(process.argv.slice(1)));\n"
        "console.log(process.env.WHO);\n"
        "process.exit(4);",
        params=CodeRunParams(argv=argv, env={"WHO": "node"}),
    )
    assert res.exit_code == 4, res.result
    lines = res.result.splitlines()
    assert json.loads(lines[0]) == argv
    assert lines[1] == "node"
    res = sb.process.code_run("\n\nnull.x")
    assert res.exit_code == 1
    assert "TypeError" in res.result


def test_javascript_code_run_errors_show_the_users_positions(lang_daytona):
    """No line of ours (Daytona's `process.argv.splice(1, 1);`) shifts a column, and no frame of
    Node's internals or of the runner follows the user's."""
    sb = lang_daytona.create(CreateSandboxFromSnapshotParams(language="javascript"), timeout=60)
    res = sb.process.code_run(
        "function f() { null.x }\nf()",
        params=CodeRunParams(argv=["a"]),
    )
    assert res.exit_code == 1
    assert "/[code].js:1\nfunction f() { null.x }\n                    ^\n" in res.result, res.result
    frames = [line.strip() for line in res.result.splitlines() if line.strip().startswith("at ")]
    assert len(frames) == 2, res.result
    assert frames[0].startswith("at f (") and frames[0].endswith("/[code].js:1:21)"), res.result
    assert frames[1].endswith("/[code].js:2:1)"), res.result
    for ours in ("process.argv.splice", "node:internal", "toolboxd_run"):
        assert ours not in res.result


@pytest.mark.skipif(not (TSX_BIN / "tsx").exists(), reason="tsx not installed (npm ci in tests/sdk/ts)")
def test_typescript_code_run(lang_daytona):
    sb = lang_daytona.create(CreateSandboxFromSnapshotParams(language="typescript"), timeout=60)
    res = sb.process.code_run(
        "const n: number = 21;\nconst args: string[] = process.argv.slice(1);\nconsole.log(n * 2, args.join('|'));",
        params=CodeRunParams(argv=["a b", "c"]),
    )
    assert (res.exit_code, res.result) == (0, "42 a b|c\n")


# ==========================================================================
# The code interpreter
# ==========================================================================


class Events:
    """Collects callback calls in the order they happen."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def stdout(self, msg: OutputMessage) -> None:
        assert isinstance(msg, OutputMessage)
        self.calls.append(("stdout", msg.output))

    def stderr(self, msg: OutputMessage) -> None:
        assert isinstance(msg, OutputMessage)
        self.calls.append(("stderr", msg.output))

    def error(self, err: ExecutionError) -> None:
        assert isinstance(err, ExecutionError)
        self.calls.append(("error", err))

    def kw(self) -> dict:
        return {"on_stdout": self.stdout, "on_stderr": self.stderr, "on_error": self.error}

    def merged(self) -> list[tuple[str, str]]:
        """Adjacent chunks of the same stream joined (chunking is not part of the contract)."""
        out: list[tuple[str, str]] = []
        for kind, value in self.calls:
            if kind in ("stdout", "stderr") and out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + value)
            else:
                out.append((kind, value))
        return out


def test_interpreter_callbacks_in_order(sandbox):
    ev = Events()
    code = (
        "import sys, time\n"
        "print('out 1')\n"
        "time.sleep(0.3)\n"
        "print('err 1', file=sys.stderr)\n"
        "time.sleep(0.3)\n"
        "print('out 2')\n"
        "time.sleep(0.3)\n"
        "sys.stdout.write('partial')\n"
        "raise KeyError('k')\n"
    )
    result = sandbox.code_interpreter.run_code(code, **ev.kw())
    merged = ev.merged()
    assert [k for k, _ in merged] == ["stdout", "stderr", "stdout", "error"], ev.calls
    assert merged[0][1] == "out 1\n"
    assert merged[1][1] == "err 1\n"
    assert merged[2][1] == "out 2\npartial", "a partial line is flushed before the error"
    assert merged[3][1].name == "KeyError"
    assert result.stdout == "out 1\nout 2\npartial"
    assert result.stderr == "err 1\n"
    assert result.error is not None and result.error.name == "KeyError"


def test_interpreter_output_stays_with_its_run(sandbox):
    ci = sandbox.code_interpreter
    ctx = ci.create_context()
    expected = "".join(f"{i}\n" for i in range(5000))
    code = "import sys\nfor i in range(5000):\n    print(i)\n    print(i, file=sys.stderr)\n"
    for attempt in range(10):
        run = ci.run_code(code, context=ctx)
        following = ci.run_code("print('next')", context=ctx)
        assert (following.stdout, following.stderr) == ("next\n", ""), f"leaked into the next run (attempt {attempt})"
        assert run.stdout == expected and run.stderr == expected, f"output lost (attempt {attempt})"


def test_interpreter_each_stream_keeps_its_order(sandbox):
    ci = sandbox.code_interpreter
    ctx = ci.create_context()
    ev = Events()
    # The pause at the end lets the daemon drain the pipes before the run ends (output written
    # right before the end can be lost: see test_interpreter_output_stays_with_its_run).
    code = "import sys, time\nfor i in range(100):\n    print(i)\n    print(-i, file=sys.stderr)\ntime.sleep(0.3)\n"
    result = ci.run_code(code, context=ctx, **ev.kw())
    assert result.error is None
    assert result.stdout == "".join(f"{i}\n" for i in range(100))
    assert result.stderr == "".join(f"{-i}\n" for i in range(100))
    assert "".join(v for k, v in ev.calls if k == "stdout") == result.stdout
    assert "".join(v for k, v in ev.calls if k == "stderr") == result.stderr


def test_interpreter_state_persists_in_the_default_context(sandbox):
    ci = sandbox.code_interpreter
    first = ci.run_code("import math\nsdk_kept = 41\ndef sdk_inc(v):\n    return v + 1")
    assert first.error is None and first.stdout == ""
    second = ci.run_code("print(sdk_inc(sdk_kept), math.floor(2.5))")
    assert second.error is None
    assert second.stdout == "42 2\n"


def test_interpreter_envs_apply_to_one_run(sandbox):
    ci = sandbox.code_interpreter
    code = "import os\nprint(os.environ.get('SDK_ONLY_NOW'))"
    assert ci.run_code(code, envs={"SDK_ONLY_NOW": "yes"}).stdout == "yes\n"
    assert ci.run_code(code).stdout == "None\n"


def test_interpreter_error_reaches_on_error(sandbox):
    ev = Events()
    result = sandbox.code_interpreter.run_code(
        "print('before')\ndef f():\n    return 1 / 0\n\nf()", **ev.kw()
    )
    assert [k for k, _ in ev.merged()] == ["stdout", "error"], ev.calls
    err = ev.calls[-1][1]
    assert err.name == "ZeroDivisionError"
    assert err.value == "division by zero"
    assert "Traceback" in err.traceback
    assert "line 3" in err.traceback and "line 5" in err.traceback, err.traceback
    assert "ZeroDivisionError: division by zero" in err.traceback
    assert "toolboxd_worker" not in err.traceback
    assert result.error == err
    assert result.stdout == "before\n"

    syntax = sandbox.code_interpreter.run_code("def broken(:\n    pass")
    assert syntax.error is not None and syntax.error.name == "SyntaxError"
    # After errors the context still works.
    assert sandbox.code_interpreter.run_code("print('fine')").stdout == "fine\n"


def test_interpreter_contexts_create_list_isolate(sandbox, wd):
    ci = sandbox.code_interpreter
    a = ci.create_context(cwd=str(wd.abs))
    b = ci.create_context()
    try:
        assert a.id and b.id and a.id != b.id
        assert a.language == "python"
        assert a.cwd == str(wd.abs)
        assert a.active is True
        assert a.created_at
        ids = [c.id for c in ci.list_contexts()]
        assert a.id in ids and b.id in ids
        assert "default" not in ids

        assert ci.run_code("iso = 'in a'", context=a).error is None
        ev = Events()
        in_b = ci.run_code("print(iso)", context=b, **ev.kw())
        assert in_b.error is not None and in_b.error.name == "NameError", in_b
        assert [k for k, _ in ev.calls] == ["error"]
        in_default = ci.run_code("print('iso' in globals())")
        assert in_default.stdout == "False\n"
        in_a = ci.run_code("import os\nprint(iso, os.getcwd())", context=a)
        assert in_a.stdout == f"in a {wd.abs}\n"
    finally:
        for ctx in (a, b):
            try:
                ci.delete_context(ctx)
            except DaytonaError:
                pass  # see test_interpreter_delete_context


def test_interpreter_delete_context(sandbox):
    ci = sandbox.code_interpreter
    ctx = ci.create_context()
    ci.delete_context(ctx)
    assert ctx.id not in [c.id for c in ci.list_contexts()]
    with pytest.raises(DaytonaError, match="context not found"):
        ci.run_code("1", context=ctx)


def test_interpreter_unknown_context_is_an_error(sandbox):
    ctx = InterpreterContext(
        id="no-such-context", cwd="/", created_at="2024-01-01T00:00:00Z", active=False, language="python"
    )
    with pytest.raises(DaytonaError, match="context not found"):
        sandbox.code_interpreter.run_code("1", context=ctx)


def test_interpreter_timeout_raises_and_the_next_run_works(sandbox):
    ci = sandbox.code_interpreter
    ci.run_code("sdk_before_timeout = 7")
    started = time.monotonic()
    with pytest.raises(DaytonaTimeoutError):
        ci.run_code("import time\ntime.sleep(30)", timeout=2)
    assert time.monotonic() - started < 2 + 3
    after = ci.run_code("print(1 + 1)\nprint(sdk_before_timeout)")
    assert after.error is None
    assert after.stdout == "2\n7\n", "the interrupted context keeps its state"
    # The same in a context of its own.
    ctx = ci.create_context()
    try:
        started = time.monotonic()
        with pytest.raises(DaytonaTimeoutError):
            ci.run_code("import time\ntime.sleep(30)", context=ctx, timeout=2)
        assert time.monotonic() - started < 2 + 3
        after = ci.run_code("print(1 + 1)", context=ctx)
        assert (after.error, after.stdout) == (None, "2\n")
    finally:
        ci.delete_context(ctx)


def test_interpreter_interrupt_that_is_not_a_timeout_is_no_error(sandbox):
    result = sandbox.code_interpreter.run_code("print('a')\nraise KeyboardInterrupt", timeout=30)
    assert (result.error, result.stdout) == (None, "a\n")


def test_interpreter_fork_leaves_later_runs_in_step(sandbox):
    """A process the code forks neither takes a job nor answers one (issue 12, item 3)."""
    ci = sandbox.code_interpreter
    ctx = ci.create_context()
    try:
        forked = ci.run_code(
            "import os\nfork_kept = 1\npid = os.fork()\nif pid == 0:\n    print('child')\n"
            "else:\n    os.waitpid(pid, 0)\n    print('parent')",
            context=ctx,
            timeout=20,
        )
        assert (forked.error, forked.stdout) == (None, "child\nparent\n")
        for n in range(4):
            run = ci.run_code(f"print({n}, fork_kept)", context=ctx, timeout=20)
            assert (run.error, run.stdout, run.stderr) == (None, f"{n} 1\n", "")
    finally:
        ci.delete_context(ctx)


def test_interpreter_closed_stdout_and_stderr_come_back(sandbox):
    """Code that closes fds 1 and 2 does not silence the runs after it (issue 12, item 4)."""
    ci = sandbox.code_interpreter
    ctx = ci.create_context()
    try:
        assert ci.run_code("import os, sys\nkept = 3\nos.close(1)\nos.close(2)", context=ctx).error is None
        after = ci.run_code("print(kept)\nprint('e', file=sys.stderr)", context=ctx)
        assert (after.error, after.stdout, after.stderr) == (None, "3\n", "e\n")
    finally:
        ci.delete_context(ctx)


def test_interpreter_run_in_flight_at_shutdown_raises():
    """A run cut short by toolboxd's shutdown raises, naming SHUTTING_DOWN; it is not taken for a
    completed run."""
    d = start_daemon("code-shutdown")
    try:
        sb = make_client(d).create(timeout=60)
        started = d.workdir / "started"
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["result"] = sb.code_interpreter.run_code(
                    f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(60)"
                )
            except DaytonaError as err:
                outcome["error"] = err

        import threading

        runner = threading.Thread(target=run)
        runner.start()
        deadline = time.monotonic() + 20
        while not started.exists():
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.01)
        d.stop()
        runner.join(timeout=20)
        assert not runner.is_alive()
        assert "result" not in outcome, outcome
        assert "SHUTTING_DOWN" in str(outcome["error"]), outcome
    finally:
        d.stop()


def test_interpreter_chart_does_not_break_the_sdk(sandbox):
    ev = Events()
    result = sandbox.code_interpreter.run_code(
        "import matplotlib.pyplot as plt\n"
        "print('before')\n"
        "plt.plot([0, 1], [2, 3])\n"
        "plt.title('T')\n"
        "plt.show()\n"
        "print('after')\n"
        "plt.figure(); plt.bar(['a'], [1])  # left open: flushed at the end of the run\n",
        **ev.kw(),
    )
    assert result.error is None, result.error
    assert result.stdout == "before\nafter\n"
    assert result.stderr == ""
    assert all(k == "stdout" for k, _ in ev.calls)
    # The context is fine afterwards (pyplot still imported there).
    after = sandbox.code_interpreter.run_code("print(plt.gca().get_title() == '')")
    assert after.error is None and after.stdout == "True\n"
