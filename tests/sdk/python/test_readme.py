"""README.md's Python examples, run verbatim against a local toolboxd so the README cannot drift.

Each example is the ```python block between `<!-- readme-example:begin NAME -->` and
`<!-- readme-example:end NAME -->` in README.md. The only change made to its code is the control
plane URL: the README's `http://127.0.0.1:3000/api` (the `--sdk-api-addr 127.0.0.1:3000` of its
Quick start) becomes the test daemon's. Each example runs on a daemon of its own, started like the
README's (`--workdir DIR --sdk-api-addr ADDR`), since it creates a sandbox and writes relative
paths into the work dir, and in a scratch local cwd, since it may write local files
(`chart.png`).
"""

from __future__ import annotations

import ast
import base64
import re
from pathlib import Path

import pytest

from conftest import REPO, start_daemon, stop_daemon

README = REPO / "README.md"
README_API_URL = "http://127.0.0.1:3000/api"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

BLOCK_RE = re.compile(
    r"<!-- readme-example:begin (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)```\n<!-- readme-example:end (?P=name) -->",
    re.S,
)


def readme_examples() -> dict[str, str]:
    text = README.read_text("utf-8")
    found = {m["name"]: m["code"] for m in BLOCK_RE.finditer(text)}
    # Every begin marker must have been matched (a marker around the wrong thing, or a stray
    # one, would silently drop an example).
    begins = re.findall(r"<!-- readme-example:begin ([\w-]+) -->", text)
    assert sorted(begins) == sorted(found), f"unmatched readme-example markers: {begins} vs {sorted(found)}"
    return found


def run_example(name: str, daemon, cwd: Path, monkeypatch) -> dict:
    code = readme_examples()[name]
    assert README_API_URL in code, f"README example {name!r} no longer uses {README_API_URL}"
    ast.parse(code)  # a syntax error is a README bug, reported with the README's line numbers below
    code = code.replace(README_API_URL, daemon.api_url)
    monkeypatch.chdir(cwd)
    namespace: dict = {"__name__": f"readme_example_{name.replace('-', '_')}"}
    exec(compile(code, f"README.md:{name}", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture
def readme_daemon():
    d = start_daemon("readme")
    try:
        yield d
    finally:
        stop_daemon(d)


def test_markers_and_url():
    examples = readme_examples()
    assert {"local-sdk", "csv-chart", "pty"} <= set(examples)
    # The examples' URL is the Quick start daemon's.
    assert "--sdk-api-addr 127.0.0.1:3000" in README.read_text("utf-8")


def test_local_sdk_example(readme_daemon, tmp_path, monkeypatch, capsys):
    ns = run_example("local-sdk", readme_daemon, tmp_path, monkeypatch)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "b'hello'"
    assert "hello.txt" in ast.literal_eval(out[1])
    # The relative path landed in the daemon's --workdir.
    assert (readme_daemon.workdir / "hello.txt").read_bytes() == b"hello"
    assert ns["sandbox"].id


def test_csv_chart_example(readme_daemon, tmp_path, monkeypatch, capsys):
    ns = run_example("csv-chart", readme_daemon, tmp_path, monkeypatch)
    # response.result is the program's stdout, newline included, so print() adds a blank line.
    out = [line for line in capsys.readouterr().out.splitlines() if line]

    # What the README's comments promise.
    assert out[0] == "total 450.0"  # print(response.result)
    assert out[1] == "Revenue by month [('Jan', '120'), ('Feb', '180'), ('Mar', '150')]"

    response = ns["response"]
    assert response.exit_code == 0
    assert response.result.strip() == "total 450.0"
    assert len(response.artifacts.charts) == 1
    chart = ns["chart"]
    assert type(chart).__name__ == "BarChart"  # "# a BarChart"
    assert str(getattr(chart.type, "value", chart.type)) == "bar"
    assert chart.title == "Revenue by month"
    assert [(e.label, e.value, e.group) for e in chart.elements] == [
        ("Jan", "120", "revenue"),
        ("Feb", "180", "revenue"),
        ("Mar", "150", "revenue"),
    ]

    # The chart's PNG, decoded and written by the example itself.
    png = (tmp_path / "chart.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert png == base64.b64decode(chart.png)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 100 and height > 100
    # The CSV the example uploaded is in the daemon's work dir.
    assert (readme_daemon.workdir / "sales.csv").read_text() == "month,revenue\nJan,120\nFeb,180\nMar,150\n"


def test_pty_example(readme_daemon, tmp_path, monkeypatch, capsys):
    ns = run_example("pty", readme_daemon, tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "hello from /dev/pts/" in out
    assert out.rstrip().endswith("exit code 3")  # "# exit code 3"
    assert ns["result"].exit_code == 3
    assert ns["result"].error == "non-zero exit"
