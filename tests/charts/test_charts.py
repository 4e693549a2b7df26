"""Tests for the Python side of code_run chart capture:
src/code/python/toolboxd_run.py (bootstrap) and toolboxd_charts.py (hook).

User code runs in a subprocess through toolboxd_run.py, with the write end of
an os.pipe() passed as TOOLBOXD_CHART_FD, exactly as toolboxd does. Every
chart line read back is checked against the strict JSON rules and, when the
Daytona SDK (daytona==0.226.1) is importable, parsed the way the SDK parses
a /process/code-run response, and its data compared.

Needs: matplotlib, numpy, pillow, pytest (+ daytona==0.226.1 for the SDK
checks). See tests/charts/requirements.txt.
"""

import base64
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[2]
PYDIR = REPO / "src" / "code" / "python"
RUNNER = PYDIR / "toolboxd_run.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

try:  # the SDK's own parsing path (optional)
    from daytona.common import charts as sdk_charts
    from daytona_toolbox_api_client.api_client import ApiClient as SyncApiClient
    from daytona_toolbox_api_client_async.api_client import ApiClient as AsyncApiClient
except Exception:  # pragma: no cover - depends on the venv
    sdk_charts = None


# --------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------

class Result:
    def __init__(self, returncode, stdout, stderr, lines):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.lines = lines  # raw chart-channel lines
        self.charts = [json.loads(line, parse_constant=_reject_constant)["value"]
                       for line in lines]


def _reject_constant(name):
    raise AssertionError("non-finite number in chart JSON: " + name)


def run_code(tmp_path, code, *argv, charts=True, env=None, timeout=120):
    """Run `code` through toolboxd_run.py like toolboxd would."""
    code_file = tmp_path / "user code.py"  # a space in the path on purpose
    code_file.write_text(textwrap.dedent(code))
    full_env = dict(os.environ)
    full_env.pop("TOOLBOXD_CHART_FD", None)
    full_env.pop("MPLBACKEND", None)
    full_env["MPLCONFIGDIR"] = str(tmp_path / "mplconfig")
    full_env.update(env or {})
    cmd = [sys.executable, "-u", str(RUNNER), str(code_file), *argv]
    if not charts:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env,
                              cwd=tmp_path, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr, [])

    read_fd, write_fd = os.pipe()
    full_env["TOOLBOXD_CHART_FD"] = str(write_fd)
    # for the isolation test: the fd number and the pipe's identity
    (tmp_path / "chart_fd.txt").write_text("%d pipe:[%d]" % (write_fd, os.fstat(write_fd).st_ino))
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=full_env, cwd=tmp_path, pass_fds=(write_fd,))
    finally:
        os.close(write_fd)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(_read_all(read_fd)))
    reader.start()  # drain concurrently: charts can exceed the pipe buffer
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        reader.join(timeout)
        os.close(read_fd)
    data = b"".join(chunks)
    assert data == b"" or data.endswith(b"\n"), "chart channel must carry whole lines"
    lines = data.decode("ascii").splitlines()
    result = Result(proc.returncode, stdout, stderr, lines)
    for line, chart in zip(lines, result.charts):
        check_wire(line, chart)
    return result


def _read_all(fd):
    parts = []
    while True:
        block = os.read(fd, 1 << 16)
        if not block:
            return b"".join(parts)
        parts.append(block)


def check_wire(line, chart):
    """Envelope, strict JSON, base64 PNG, and the SDK's own parse."""
    envelope = json.loads(line)
    assert set(envelope) == {"type", "value"} and envelope["type"] == "chart"
    json.dumps(chart, allow_nan=False)
    assert isinstance(chart["type"], str)
    assert base64.b64decode(chart["png"], validate=True).startswith(PNG_MAGIC)
    for element in chart.get("elements") or []:
        assert "png" not in element
    assert_nothing_null(chart)
    if sdk_charts is not None:
        sdk_parse(chart)


def assert_nothing_null(chart):
    """A missing value is left out, never null (TypeScript users test for undefined)."""
    assert None not in chart.values(), chart
    for element in chart.get("elements") or []:
        assert_nothing_null(element)


def sdk_parse(chart, client_cls=None):
    """Parse one chart exactly like SDK 0.226.1 code_run does: the generated
    client deserialises the HTTP body, then parse_chart picks the class."""
    body = json.dumps({"exitCode": 0, "result": "", "artifacts": {"charts": [chart]}})
    parsed = []
    for cls in ([client_cls] if client_cls else [SyncApiClient, AsyncApiClient]):
        response = cls().deserialize(body, "CodeRunResponse", "application/json")
        parsed.append(sdk_charts.parse_chart(response.artifacts.charts[0]))
    return parsed[0]


def sdk_chart(chart):
    if sdk_charts is None:
        pytest.skip("daytona SDK not importable: SDK model check skipped")
    return sdk_parse(chart)


def only_chart(result):
    assert result.returncode == 0, result.stderr
    assert len(result.charts) == 1, (result.charts, result.stderr)
    return result.charts[0]


# Indented like the test snippets so that textwrap.dedent() works on PRELUDE + code.
PRELUDE = """
        import matplotlib.pyplot as plt
        import numpy as np
"""


# --------------------------------------------------------------------------
# Chart types
# --------------------------------------------------------------------------

def test_line_chart(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        x = [0, 1, 2, 3, 4]
        plt.plot(x, [0, 1, 4, 9, 16], label="squares")
        plt.plot(x, [0, 2, float("nan"), 6, float("inf")], label="with gaps")
        plt.axhline(5, color="grey")          # helper lines: not data
        plt.axvline(2, color="grey")
        plt.grid(True)
        plt.title("Growth")
        plt.xlabel("step")
        plt.ylabel("value")
        plt.xticks([0, 2, 4])
        plt.yticks([0, 8, 16], ["zero", "eight", "sixteen"])
        plt.show()
    """)
    chart = only_chart(res)
    assert chart["type"] == "line"
    assert chart["title"] == "Growth"
    assert chart["x_label"] == "step" and chart["y_label"] == "value"
    assert chart["x_scale"] == "linear" and chart["y_scale"] == "linear"
    assert chart["x_ticks"] == [0, 2, 4]
    assert chart["x_tick_labels"] == ["0", "2", "4"]
    assert chart["y_ticks"] == [0, 8, 16]
    assert chart["y_tick_labels"] == ["zero", "eight", "sixteen"]
    assert [e["label"] for e in chart["elements"]] == ["squares", "with gaps"]
    assert chart["elements"][0]["points"] == [[0, 0], [1, 1], [2, 4], [3, 9], [4, 16]]
    assert chart["elements"][1]["points"] == [[0, 0], [1, 2], [3, 6]]  # NaN/inf dropped

    sdk = sdk_chart(chart)
    assert type(sdk).__name__ == "LineChart"
    assert sdk.title == "Growth" and sdk.x_label == "step"
    assert sdk.x_ticks == [0, 2, 4] and sdk.y_tick_labels == ["zero", "eight", "sixteen"]
    assert sdk.elements[0].label == "squares"
    assert sdk.elements[0].points == [[0, 0], [1, 1], [2, 4], [3, 9], [4, 16]]


def test_categorical_line_uses_positions_and_tick_labels(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.plot(["mon", "tue", "wed"], [3, 1, 2], label="load")
        plt.show()
    """))
    assert chart["type"] == "line"
    assert chart["x_scale"] == "categorical"
    assert chart["elements"][0]["points"] == [[0, 3], [1, 1], [2, 2]]
    assert chart["x_ticks"] == [0, 1, 2]
    assert chart["x_tick_labels"] == ["mon", "tue", "wed"]


def test_log_scale(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.semilogy([1, 2, 3], [10, 100, 1000])
        plt.ylim(10, 1000)
        plt.show()
    """))
    assert chart["y_scale"] == "log"
    assert chart["y_ticks"] == [10, 100, 1000]
    assert chart["y_tick_labels"] == ["10^{1}", "10^{2}", "10^{3}"]


def test_scatter_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.scatter([1, 2, 3], [4.5, 5.5, 6.5], label="samples")
        plt.scatter([7], [8], label="other")
        plt.title("Scatter")
        plt.show()
    """))
    assert chart["type"] == "scatter"
    assert chart["title"] == "Scatter"
    assert chart["elements"] == [
        {"label": "samples", "points": [[1, 4.5], [2, 5.5], [3, 6.5]]},
        {"label": "other", "points": [[7, 8]]},
    ]
    sdk = sdk_chart(chart)
    assert type(sdk).__name__ == "ScatterChart"
    assert sdk.elements[0].points == [[1, 4.5], [2, 5.5], [3, 6.5]]


def test_markers_only_plot_is_scatter(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.plot([1, 2], [3, 4], "o", label="dots")
        plt.show()
    """))
    assert chart["type"] == "scatter"
    assert chart["elements"] == [{"label": "dots", "points": [[1, 3], [2, 4]]}]


def test_vertical_bar_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.bar(["apples", "pears", "plums"], [3, 7.5, -2], label="fruit")
        plt.title("Fruit"); plt.xlabel("kind"); plt.ylabel("count")
        plt.show()
    """))
    assert chart["type"] == "bar"
    assert chart["title"] == "Fruit" and chart["x_label"] == "kind" and chart["y_label"] == "count"
    assert chart["elements"] == [
        {"label": "apples", "group": "fruit", "value": "3"},
        {"label": "pears", "group": "fruit", "value": "7.5"},
        {"label": "plums", "group": "fruit", "value": "-2"},
    ]
    assert chart["x_scale"] == "categorical"
    assert chart["x_tick_labels"] == ["apples", "pears", "plums"]
    sdk = sdk_chart(chart)
    assert type(sdk).__name__ == "BarChart"
    assert [e.value for e in sdk.elements] == ["3", "7.5", "-2"]
    assert all(isinstance(e.value, str) for e in sdk.elements)
    assert [e.label for e in sdk.elements] == ["apples", "pears", "plums"]
    assert sdk.elements[0].group == "fruit"


def test_horizontal_bar_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.barh(["north", "south"], [12.25, 30])
        plt.xlabel("sales")
        plt.show()
    """))
    assert chart["type"] == "bar"
    assert chart["x_label"] == "sales"
    assert chart["elements"] == [
        {"label": "north", "value": "12.25"},  # no group: left out, not null
        {"label": "south", "value": "30"},
    ]
    assert chart["y_tick_labels"] == ["north", "south"]
    sdk = sdk_chart(chart)
    assert [(e.label, e.value) for e in sdk.elements] == [("north", "12.25"), ("south", "30")]


def test_grouped_bar_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        x = np.arange(3)
        fig, ax = plt.subplots()
        ax.bar(x - 0.2, [1, 2, 3], 0.4, label="2023")
        ax.bar(x + 0.2, [4, 5, 6], 0.4, label="2024")
        ax.set_xticks(x, ["Q1", "Q2", "Q3"])
        plt.show()
    """))
    assert chart["type"] == "bar"
    groups = {}
    for e in chart["elements"]:
        groups.setdefault(e["group"], []).append(e["value"])
    assert groups == {"2023": ["1", "2", "3"], "2024": ["4", "5", "6"]}
    # each offset bar is named after the tick of its group
    assert [e["label"] for e in chart["elements"]] == ["Q1", "Q2", "Q3"] * 2
    assert chart["x_tick_labels"] == ["Q1", "Q2", "Q3"]
    sdk = sdk_chart(chart)
    assert [e.group for e in sdk.elements] == ["2023"] * 3 + ["2024"] * 3


def test_histogram_is_a_bar_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.hist([1, 1, 2, 3, 3, 3], bins=[0.5, 1.5, 2.5, 3.5])
        plt.show()
    """))
    assert chart["type"] == "bar"
    # a bar is named by the tick label at its centre ...
    assert [(e["label"], e["value"]) for e in chart["elements"]] == [("1.0", "2"), ("2.0", "1"), ("3.0", "3")]
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.hist([1, 1, 2], bins=[0.5, 1.25, 2.0])
        plt.xticks([0.5, 2.0])
        plt.show()
    """))
    # ... or by its centre when no tick is there (no snapping to far ticks)
    assert [(e["label"], e["value"]) for e in chart["elements"]] == [("0.875", "2"), ("1.625", "1")]


def test_errorbar_keeps_only_the_data_line(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.errorbar([1, 2, 3], [2, 4, 6], yerr=[0.5, 0.5, 0.5], capsize=3, label="measured")
        plt.show()
    """))
    assert chart["type"] == "line"
    assert chart["elements"] == [{"label": "measured", "points": [[1, 2], [2, 4], [3, 6]]}]


def test_pie_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.pie([10, 20, 30, 40], labels=["a", "b", "c", "d"], autopct="%1.1f%%")
        plt.title("Share")
        plt.show()
    """))
    assert chart["type"] == "pie"
    assert chart["title"] == "Share"
    elements = chart["elements"]
    assert [e["label"] for e in elements] == ["a", "b", "c", "d"]
    assert [e["autopct"] for e in elements] == ["10.0%", "20.0%", "30.0%", "40.0%"]
    assert sum(e["angle"] for e in elements) == pytest.approx(360.0, rel=1e-6)
    assert [e["angle"] for e in elements] == pytest.approx([36, 72, 108, 144], rel=1e-6)
    assert all(e["radius"] == 1 for e in elements)
    sdk = sdk_chart(chart)
    assert type(sdk).__name__ == "PieChart"
    assert sum(e.angle for e in sdk.elements) == pytest.approx(360.0, rel=1e-6)
    assert sdk.elements[0].additional_properties.get("autopct") == "10.0%"


def test_pie_without_autopct(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.pie([1, 3])
        plt.show()
    """))
    assert chart["type"] == "pie"
    assert ["autopct" in e for e in chart["elements"]] == [False, False]
    assert [e["angle"] for e in chart["elements"]] == [90, 270]


def test_box_and_whisker_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        rng = np.random.default_rng(7)
        data = [rng.normal(0, 1, 200), np.r_[rng.normal(5, 2, 100), 40.0]]
        np.save("data.npy", np.array(data, dtype=object), allow_pickle=True)
        fig, ax = plt.subplots()
        ax.boxplot(data)
        ax.set_xticks([1, 2], ["control", "treated"])
        ax.set_title("Boxes"); ax.set_ylabel("score")
        plt.show()
    """))
    data = np.load(tmp_path / "data.npy", allow_pickle=True)
    assert chart["type"] == "box_and_whisker"
    assert chart["title"] == "Boxes" and chart["y_label"] == "score"
    assert [e["label"] for e in chart["elements"]] == ["control", "treated"]
    for element, values in zip(chart["elements"], data):
        values = np.asarray(values, dtype=float)
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        assert math.isclose(element["first_quartile"], q1)
        assert math.isclose(element["median"], med)
        assert math.isclose(element["third_quartile"], q3)
        iqr = q3 - q1
        inside = values[(values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)]
        assert math.isclose(element["min"], inside.min())
        assert math.isclose(element["max"], inside.max())
        outliers = values[(values < q1 - 1.5 * iqr) | (values > q3 + 1.5 * iqr)]
        assert sorted(element["outliers"]) == pytest.approx(sorted(outliers))
    assert 40.0 in chart["elements"][1]["outliers"]
    sdk = sdk_chart(chart)
    assert type(sdk).__name__ == "BoxAndWhiskerChart"
    assert sdk.elements[1].median == chart["elements"][1]["median"]
    assert 40.0 in sdk.elements[1].outliers


def test_horizontal_box_plot_labels(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        fig, ax = plt.subplots()
        ax.boxplot([[1, 2, 3, 4, 5], [2, 4, 6, 8, 10]], vert=False) if tuple(map(int, __import__("matplotlib").__version__.split(".")[:2])) < (3, 10) \\
            else ax.boxplot([[1, 2, 3, 4, 5], [2, 4, 6, 8, 10]], orientation="horizontal")
        ax.set_yticks([1, 2], ["small", "large"])
        plt.show()
    """))
    assert chart["type"] == "box_and_whisker"
    assert [(e["label"], e["median"]) for e in chart["elements"]] == [("small", 3), ("large", 6)]


def test_datetime_line_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        from datetime import datetime, timezone
        days = [datetime(2024, 1, d, tzinfo=timezone.utc) for d in (1, 2, 3)]
        plt.plot(days, [5, 6, 7], label="temp")
        plt.show()
    """))
    expected_x = [datetime(2024, 1, d, tzinfo=timezone.utc).timestamp() for d in (1, 2, 3)]
    assert chart["type"] == "line"
    assert chart["x_scale"] == "datetime"
    points = chart["elements"][0]["points"]
    assert [p[1] for p in points] == [5, 6, 7]
    assert [p[0] for p in points] == pytest.approx(expected_x)
    assert all(isinstance(p[0], float) for p in points)
    assert chart["x_ticks"], "datetime ticks expected"
    for tick in chart["x_ticks"]:  # epoch seconds inside the plotted range
        assert expected_x[0] - 86400 <= tick <= expected_x[-1] + 86400
    assert len(chart["x_tick_labels"]) == len(chart["x_ticks"])
    assert all(isinstance(t, str) and t for t in chart["x_tick_labels"])
    sdk = sdk_chart(chart)
    assert sdk.x_scale == "datetime"
    assert sdk.elements[0].points[0][0] == pytest.approx(expected_x[0])


def test_numpy_datetime64_scatter(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        x = np.array(["2000-01-01T00:00", "2000-01-01T12:00"], dtype="datetime64[m]")
        plt.scatter(x, [1, 2])
        plt.show()
    """))
    assert chart["x_scale"] == "datetime"
    assert chart["elements"][0]["points"] == [[946684800.0, 1], [946684800.0 + 43200, 2]]


def test_composite_chart(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        fig, axs = plt.subplots(2, 2)
        fig.suptitle("Dashboard")
        axs[0, 0].plot([1, 2, 3], [1, 4, 9], label="sq"); axs[0, 0].set_title("line")
        axs[0, 0].set_xlabel("x0"); axs[0, 0].set_ylabel("y0")
        axs[0, 1].scatter([1, 2], [3, 4]); axs[0, 1].set_title("scatter")
        axs[1, 0].bar(["a", "b"], [5, 6]); axs[1, 0].set_title("bar")
        axs[1, 1].pie([1, 1], autopct="%d%%"); axs[1, 1].set_title("pie")
        plt.show()
    """))
    assert chart["type"] == "composite_chart"
    assert chart["title"] == "Dashboard"
    subs = chart["elements"]
    assert [s["type"] for s in subs] == ["line", "scatter", "bar", "pie"]
    assert [s["title"] for s in subs] == ["line", "scatter", "bar", "pie"]
    assert subs[0]["x_label"] == "x0" and subs[0]["y_label"] == "y0"
    assert subs[0]["elements"] == [{"label": "sq", "points": [[1, 1], [2, 4], [3, 9]]}]
    assert subs[0]["x_ticks"] and subs[0]["x_scale"] == "linear"
    assert subs[1]["elements"][0]["points"] == [[1, 3], [2, 4]]
    assert [(e["label"], e["value"]) for e in subs[2]["elements"]] == [("a", "5"), ("b", "6")]
    assert subs[2]["x_tick_labels"] == ["a", "b"]
    assert [e["angle"] for e in subs[3]["elements"]] == [180, 180]
    assert all("png" not in s for s in subs)

    sdk = sdk_chart(chart)
    assert type(sdk).__name__ == "CompositeChart"
    assert sdk.title == "Dashboard"
    assert [s.type for s in sdk.elements] == ["line", "scatter", "bar", "pie"]
    assert sdk.elements[0].x_label == "x0"
    # Sub-charts are ChartElements: their own elements/ticks/scales survive as
    # extra properties.
    extra = sdk.elements[0].additional_properties
    assert extra["elements"][0]["points"] == [[1, 1], [2, 4], [3, 9]]
    assert extra["x_scale"] == "linear" and extra["x_ticks"] == subs[0]["x_ticks"]


def test_composite_with_unrecognised_subplot(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        fig, (a, b) = plt.subplots(1, 2)
        a.imshow([[0, 1], [1, 0]]); a.set_title("image")
        b.boxplot([[1, 2, 3, 4, 5]]); b.set_title("box")
        plt.show()
    """))
    assert chart["type"] == "composite_chart"
    assert "title" not in chart
    assert [(s["type"], s["title"]) for s in chart["elements"]] == [("unknown", "image"), ("box_and_whisker", "box")]
    assert chart["elements"][1]["elements"][0]["median"] == 3


def test_colorbar_and_empty_axes_are_ignored(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        fig, axs = plt.subplots(1, 2)
        sc = axs[0].scatter([1, 2], [1, 2], c=[0.1, 0.9])
        fig.colorbar(sc, ax=axs[0])
        axs[1].axis("off")
        plt.show()
    """))
    assert chart["type"] == "scatter"
    assert chart["elements"][0]["points"] == [[1, 1], [2, 2]]


def test_unknown_chart_imshow(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.imshow(np.arange(16).reshape(4, 4))
        plt.title("Heat")
        plt.show()
    """))
    assert chart["type"] == "unknown"
    assert chart["title"] == "Heat"
    assert chart["elements"] == []
    assert base64.b64decode(chart["png"]).startswith(PNG_MAGIC)
    sdk = sdk_chart(chart)
    assert type(sdk).__name__ == "Chart" and sdk.type == "unknown"
    assert sdk.png == chart["png"]


def test_3d_line_and_scatter_are_unknown(tmp_path):
    # 3D artists only hold projected 2D coordinates: reporting them as points would be wrong.
    charts = run_code(tmp_path, PRELUDE + """
        ax = plt.figure().add_subplot(projection="3d")
        ax.plot([1, 2, 3], [4, 5, 6], [7, 8, 9])
        ax.set_title("3d line")
        plt.show()
        ax = plt.figure().add_subplot(projection="3d")
        ax.scatter([1, 2, 3], [4, 5, 6], [7, 8, 9])
        plt.show()
    """).charts
    assert [(c["type"], c.get("title"), c["elements"]) for c in charts] == [
        ("unknown", "3d line", []), ("unknown", None, [])]
    assert "title" not in charts[1]
    assert all(base64.b64decode(c["png"]).startswith(PNG_MAGIC) for c in charts)


def test_figure_without_axes_is_unknown(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        fig = plt.figure()
        fig.text(0.5, 0.5, "hello")
        plt.show()
    """))
    assert chart["type"] == "unknown"


# --------------------------------------------------------------------------
# Capture semantics
# --------------------------------------------------------------------------

def test_figure_left_open_is_captured_at_exit(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        plt.plot([1, 2], [2, 1], label="shown")
        plt.show()
        plt.figure()
        plt.plot([1, 2, 3], [3, 1, 2], label="never shown")
        print("done")
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "done\n"
    assert [c["elements"][0]["label"] for c in res.charts] == ["shown", "never shown"]


def test_open_figures_are_flushed_on_exception_and_exit(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        plt.plot([1, 2, 3], [1, 2, 3], label="before crash")
        raise RuntimeError("boom")
    """)
    assert res.returncode == 1
    assert [c["elements"][0]["label"] for c in res.charts] == ["before crash"]
    res = run_code(tmp_path, PRELUDE + """
        import sys
        plt.plot([1, 2, 3], [1, 2, 3], label="before exit")
        sys.exit(4)
    """)
    assert res.returncode == 4
    assert [c["elements"][0]["label"] for c in res.charts] == ["before exit"]


def test_figure_made_by_a_thread_after_main_ends_is_captured(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        import threading, time
        def late():
            time.sleep(0.3)
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3], [3, 2, 1], label="from thread")
        threading.Thread(target=late).start()
        print("main done")
    """)
    assert res.returncode == 0, res.stderr
    assert [c["elements"][0]["label"] for c in res.charts] == ["from thread"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="PYTHONSAFEPATH is new in 3.11")
def test_safe_path_mode_still_captures(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        import sys
        print(sys.flags.safe_path)
        plt.plot([1, 2], [1, 2], label="safe")
        plt.show()
    """, env={"PYTHONSAFEPATH": "1"})
    assert res.returncode == 0, res.stderr
    assert res.stdout == "True\n"
    assert [c["elements"][0]["label"] for c in res.charts] == ["safe"]


def test_figure_shown_twice_gives_one_chart(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        fig = plt.figure()
        plt.plot([1, 2, 3], [1, 2, 3], label="once")
        plt.show()
        plt.show()
        plt.show(block=False)
        print(plt.get_fignums())
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "[]\n"  # shown figures are closed
    assert len(res.charts) == 1
    assert res.charts[0]["elements"][0]["label"] == "once"


def test_figure_drawn_again_after_show_is_new(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        for i in range(3):
            plt.plot([0, 1, 2], [i, i + 1, i], label="run %d" % i)
            plt.show()
    """)
    assert res.returncode == 0, res.stderr
    assert [c["elements"][0]["label"] for c in res.charts] == ["run 0", "run 1", "run 2"]


def test_savefig_alone_is_captured_only_at_exit_once(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        plt.plot([1, 2], [3, 5])
        plt.savefig("out.png")
        plt.close()
        plt.plot([1, 2], [5, 3], label="open")
        plt.savefig("out2.png")
    """)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.png").exists()
    assert [c["elements"][0]["label"] for c in res.charts] == ["open"]


def test_user_backend_choice_still_works(tmp_path):
    res = run_code(tmp_path, """
        import matplotlib
        print(matplotlib.get_backend().lower())
        import matplotlib.pyplot as plt
        matplotlib.use("pdf")
        print(matplotlib.get_backend().lower())
        plt.plot([1, 2], [1, 3], label="pdf")
        plt.savefig("plot.pdf")
        plt.show()
    """, env={"MPLBACKEND": "TkAgg"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["agg", "pdf"]
    assert (tmp_path / "plot.pdf").read_bytes().startswith(b"%PDF")
    assert [c["elements"][0]["label"] for c in res.charts] == ["pdf"]


def test_install_after_pyplot_import(tmp_path):
    """install() patches a pyplot that is already imported."""
    script = tmp_path / "late.py"
    script.write_text(textwrap.dedent("""
        import importlib.util, json, sys
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        spec = importlib.util.spec_from_file_location("toolboxd_charts", sys.argv[1])
        charts = importlib.util.module_from_spec(spec); spec.loader.exec_module(charts)
        got = []
        charts.install(got.append)
        plt.plot([1, 2], [2, 3], label="late")
        plt.show()
        plt.figure(); plt.bar(["k"], [1])
        charts.flush(got.append)
        charts.flush(got.append)
        print(json.dumps([(c["type"], c["elements"][0].get("label")) for c in got]))
    """))
    proc = subprocess.run([sys.executable, str(script), str(PYDIR / "toolboxd_charts.py")],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, MPLCONFIGDIR=str(tmp_path / "mpl")))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [["line", "late"], ["bar", "k"]]


def test_import_has_no_side_effects(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, importlib.util
            before = set(sys.modules); meta = list(sys.meta_path)
            spec = importlib.util.spec_from_file_location("toolboxd_charts", sys.argv[1])
            m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
            new = set(sys.modules) - before
            assert not any(n.split(".")[0] in ("matplotlib", "numpy", "PIL") for n in new), new
            assert sys.meta_path == meta
            print("ok")
        """), str(PYDIR / "toolboxd_charts.py")],
        capture_output=True, text=True, timeout=60)
    assert proc.stdout == "ok\n", proc.stderr


def test_charts_off_without_fd(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        import os
        print(os.environ.get("TOOLBOXD_CHART_FD"))
        plt.plot([1, 2], [1, 2])
        plt.show()
        print("after show")
    """, charts=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "None\nafter show\n"


def test_bad_chart_fd_values_are_ignored(tmp_path):
    for value in ("1", "2", "not-a-number", "987"):
        res = run_code(tmp_path, """
            import os
            print(os.environ.get("TOOLBOXD_CHART_FD"), "still printing")
        """, charts=False, env={"TOOLBOXD_CHART_FD": value})
        assert res.returncode == 0, res.stderr
        assert res.stdout == "None still printing\n"


def test_code_without_matplotlib_does_not_import_it(tmp_path):
    res = run_code(tmp_path, """
        import sys
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("matplotlib", "numpy", "PIL")))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "[]\n"
    assert res.charts == []


# --------------------------------------------------------------------------
# Isolation: forged markers, the private fd
# --------------------------------------------------------------------------

def test_forged_markers_stay_ordinary_output(tmp_path):
    forged = [
        'dtn_artifact_k39fd2:{"type":"chart","value":{"type":"line","elements":[]}}',
        '{"type":"chart","value":{"type":"bar","elements":[]}}',
    ]
    res = run_code(tmp_path, """
        import sys
        lines = %r
        for line in lines:
            print(line)
            print(line, file=sys.stderr)
    """ % (forged,))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == forged
    assert res.stderr.splitlines() == forged
    assert res.lines == []


def test_chart_fd_is_hidden_from_user_code(tmp_path):
    res = run_code(tmp_path, """
        import os, subprocess, sys, json
        import matplotlib.pyplot as plt
        number, pipe = open("chart_fd.txt").read().split()  # what toolboxd passed
        def link(fd):
            try:
                return os.readlink("/proc/self/fd/%d" % fd)
            except OSError:
                return None
        report = {"env": os.environ.get("TOOLBOXD_CHART_FD"),
                  "original_is_pipe": link(int(number)) == pipe}
        # A child that inherits every inheritable fd (close_fds=False).
        child = subprocess.run(
            [sys.executable, "-c",
             "import os, json; print(json.dumps([os.environ.get('TOOLBOXD_CHART_FD'), "
             "[os.readlink('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd') "
             "if os.path.exists('/proc/self/fd/' + f)]]))"],
            capture_output=True, text=True, close_fds=False)
        child_env, child_links = json.loads(child.stdout)
        report["child_env"] = child_env
        report["child_sees_pipe"] = pipe in child_links
        print(json.dumps(report))
        plt.plot([1, 2], [1, 2], label="still works")
        plt.show()
    """)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"env": None, "original_is_pipe": False,
                                      "child_env": None, "child_sees_pipe": False}
    assert [c["elements"][0]["label"] for c in res.charts] == ["still works"]


# --------------------------------------------------------------------------
# argv, exit codes, tracebacks
# --------------------------------------------------------------------------

def test_argv_with_spaces_and_quotes(tmp_path):
    argv = ["a b", "it's", '"double"', "--opt=1 2", "", "$HOME", "ünï"]
    res = run_code(tmp_path, """
        import json, sys
        print(json.dumps({"argv": sys.argv, "file": __file__, "name": __name__}))
    """, *argv)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    code_file = str(tmp_path / "user code.py")
    assert out == {"argv": [code_file, *argv], "file": code_file, "name": "__main__"}


def test_main_module_and_path(tmp_path):
    (tmp_path / "helper_mod.py").write_text("VALUE = 42\n")
    res = run_code(tmp_path, """
        import sys, pickle
        import helper_mod  # from the working directory, like `python3 -`
        class Thing:
            pass
        assert pickle.loads(pickle.dumps(Thing())).__class__ is Thing
        assert sys.modules["__main__"].Thing is Thing
        print(helper_mod.VALUE, any("toolboxd_run" in repr(v) for v in globals().values()))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "42 False\n"


def test_syntax_error(tmp_path):
    res = run_code(tmp_path, """
        print("never")
        def broken(:
            pass
    """)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "SyntaxError" in res.stderr
    assert 'user code.py", line 3' in res.stderr
    assert "toolboxd" not in res.stderr


def test_uncaught_exception_traceback_has_only_user_frames(tmp_path):
    res = run_code(tmp_path, """
        import matplotlib.pyplot as plt
        def inner():
            raise ValueError("bad value")
        def outer():
            inner()
        print("started")
        outer()
    """)
    assert res.returncode == 1
    assert res.stdout == "started\n"
    err = res.stderr
    assert err.startswith("Traceback (most recent call last):\n")
    assert 'user code.py", line 8, in <module>' in err
    assert 'user code.py", line 6, in outer' in err
    assert 'user code.py", line 4, in inner' in err
    assert err.rstrip().endswith("ValueError: bad value")
    assert "toolboxd" not in err
    assert "runpy" not in err


def test_chained_exception_and_user_excepthook(tmp_path):
    res = run_code(tmp_path, """
        try:
            {}["k"]
        except KeyError as e:
            raise RuntimeError("wrapped") from e
    """)
    assert res.returncode == 1
    assert "KeyError: 'k'" in res.stderr and "RuntimeError: wrapped" in res.stderr
    assert "direct cause" in res.stderr and "toolboxd" not in res.stderr

    res = run_code(tmp_path, """
        import sys
        def hook(t, v, tb):
            print("HOOK", t.__name__, tb.tb_frame.f_code.co_filename.endswith("user code.py"))
        sys.excepthook = hook
        raise OSError("x")
    """)
    assert res.returncode == 1
    assert res.stdout == "HOOK OSError True\n"


def test_system_exit_codes(tmp_path):
    assert run_code(tmp_path, "raise SystemExit(3)").returncode == 3
    assert run_code(tmp_path, "import sys; sys.exit(0)").returncode == 0
    assert run_code(tmp_path, "import sys; sys.exit()").returncode == 0
    res = run_code(tmp_path, "import sys; sys.exit('fatal: no input')")
    assert res.returncode == 1 and res.stderr == "fatal: no input\n"
    res = run_code(tmp_path, "print('fine')")
    assert res.returncode == 0 and res.stdout == "fine\n" and res.stderr == ""


def test_keyboard_interrupt_exits_130(tmp_path):
    res = run_code(tmp_path, "raise KeyboardInterrupt")
    assert res.returncode == 130
    assert "KeyboardInterrupt" in res.stderr and "toolboxd" not in res.stderr


def test_missing_code_file(tmp_path):
    proc = subprocess.run([sys.executable, str(RUNNER), str(tmp_path / "nope.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "can't open file" in proc.stderr


# --------------------------------------------------------------------------
# In-process: robustness of figure_to_chart
# --------------------------------------------------------------------------

@pytest.fixture()
def charts_module():
    import importlib.util

    import matplotlib
    matplotlib.use("Agg")
    spec = importlib.util.spec_from_file_location("toolboxd_charts_under_test",
                                                  PYDIR / "toolboxd_charts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_analysis_failure_falls_back_to_unknown(charts_module, monkeypatch):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    ax.set_title("kept")

    def explode(_fig):
        raise RuntimeError("analysis bug")

    monkeypatch.setattr(charts_module, "_describe", explode)
    chart = charts_module.figure_to_chart(fig)
    plt.close(fig)
    assert chart["type"] == "unknown" and chart["title"] == "kept"
    assert base64.b64decode(chart["png"]).startswith(PNG_MAGIC)


def test_unrenderable_figure_is_skipped(charts_module, monkeypatch):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    monkeypatch.setattr(fig, "savefig", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no")))
    assert charts_module.figure_to_chart(fig) is None
    got = []
    charts_module._emit_figures([fig], got.append)
    assert got == []
    plt.close(fig)


def test_emit_failure_does_not_raise(charts_module):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])

    def broken(_chart):
        raise BrokenPipeError()

    charts_module._emit_figures([fig], broken)  # must not raise
    plt.close(fig)


def test_png_without_pillow(charts_module, monkeypatch):
    import builtins
    import matplotlib.pyplot as plt

    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no Pillow here")
        return real_import(name, *args, **kwargs)

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    monkeypatch.setattr(builtins, "__import__", no_pil)
    chart = charts_module.figure_to_chart(fig)
    monkeypatch.undo()
    plt.close(fig)
    assert chart["type"] == "line"
    assert base64.b64decode(chart["png"]).startswith(PNG_MAGIC)


def test_large_line_goes_through_the_pipe(tmp_path):
    res = run_code(tmp_path, PRELUDE + """
        x = np.linspace(0, 100, 200_000)
        plt.plot(x, np.sin(x), label="big")
        plt.show()
        plt.plot([1, 2], [2, 1], label="small")
        plt.show()
    """)
    assert res.returncode == 0, res.stderr
    assert [len(c["elements"][0]["points"]) for c in res.charts] == [200_000, 2]


def test_figure_too_big_for_a_tight_crop_is_still_captured(tmp_path):
    chart = only_chart(run_code(tmp_path, PRELUDE + """
        plt.plot([1, 2], [1, 2], label="kept")
        plt.text(1e4, 1e4, "far outside the axes")  # tight bbox would be enormous
        plt.show()
    """))
    assert chart["type"] == "line"
    assert chart["elements"][0]["label"] == "kept"


def test_sdk_check_rejects_what_the_models_forbid():
    """Negative control: the harness's SDK parse really is strict."""
    if sdk_charts is None:
        pytest.skip("daytona==0.226.1 not installed")
    import pydantic

    for bad in (
        {"type": "bar", "elements": [{"label": "a", "value": 3}]},        # value must be a string
        {"type": "line", "elements": [{"points": [[1, None]]}]},           # no nulls in points
        {"type": "line", "x_ticks": ["2024-01-01T00:00:00"]},              # ticks are numbers
        {"type": "line", "elements": [None]},                              # elements are objects
    ):
        with pytest.raises(pydantic.ValidationError):
            sdk_parse(bad)
    assert type(sdk_parse({"type": "line", "elements": None})).__name__ == "LineChart"


def test_sdk_is_available_for_model_checks():
    if sdk_charts is None:
        pytest.skip("daytona==0.226.1 not installed: SDK model checks were skipped")
    assert sdk_charts.ChartType.COMPOSITE_CHART.value == "composite_chart"
