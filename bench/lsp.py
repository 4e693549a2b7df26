#!/usr/bin/env python3
"""LSP and file-watching benchmarks.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/lsp.py

The daemon (127.0.0.1, ephemeral port, work dir under DATA_DIR/lsp) runs with PATH =
BENCH_PYTHON_BIN:$PATH, where BENCH_PYTHON_BIN (default target/sdk-venv/bin) has pylsp
(`pip install 'python-lsp-server[pyflakes]'`).

1. Completion round trip, with two servers: `bench/lsp_stub.py` (answers every completion at once
   with the same 50 items, so the difference is toolboxd's own cost: HTTP, the document check,
   the transport, the SDK shaping; the goal is judged on it) and pylsp (the real thing; its own
   time varies by tens of milliseconds between requests, which hides a 1 ms difference). A project with `main.py` = `import os\\nos.pa`; the daemon's pylsp is
   started (`POST /lsp/start`) and the file opened; a second pylsp (same binary, same project) is
   spawned by this script and driven straight over stdio (Content-Length framing, the same
   `initialize` capabilities toolboxd sends, the file opened with `didOpen`). Then
   BENCH_LSP_WARMUP (default 20) untimed and BENCH_LSP_RUNS (default 300) timed rounds; in each,
   taking turns (starting one further each round): `POST /lsp/completions` at line 1, character 5
   over one keep-alive connection (the answer must hold `path`), and the same
   `textDocument/completion` sent to the direct server (its answer must hold `path` too).
   p50/p90/p99 of both; the added latency is the difference of the p50s. Goal: <= 1 ms at p50.

2. Watch latency. `GET /files/watch?path=DIR` (WebSocket); BENCH_WATCH_RUNS (default 200)
   times: write a new 16-byte file `f<i>` in DIR, and time from just before the write until the
   event for that file arrives. Goal: p50 <= the coalescing window (50 ms) + 5 ms.

3. Memory with 1,000 watched directories. A tree of 10 directories of 99 each (1,000 below the
   root, 1,001 watched); daemon VmRSS before and after a recursive WebSocket watch of it (the socket
   stays open), and the kernel watches the daemon holds (the `inotify wd:` lines of its fds).
   No goal; reported.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import (
    DATA_DIR, REPO_ROOT, RESULTS_DIR, HttpConn, WebSocketClient, cpu_times, kib, log, machine_info,
    pct, proc_status, start_daemon, steal_since, toolboxd_bin, write_result,
)

RUNS = int(os.environ.get("BENCH_LSP_RUNS", "300"))
WARMUP = int(os.environ.get("BENCH_LSP_WARMUP", "20"))
WATCH_RUNS = int(os.environ.get("BENCH_WATCH_RUNS", "200"))
PYTHON_BIN = Path(os.environ.get("BENCH_PYTHON_BIN", REPO_ROOT / "target" / "sdk-venv" / "bin"))
COALESCE_MS = 50.0
SOURCE = "import os\nos.pa"


def summary(values_s: list[float]) -> dict:
    ms_values = [v * 1000 for v in values_s]
    return {
        "p50_ms": round(pct(ms_values, 50), 3),
        "p90_ms": round(pct(ms_values, 90), 3),
        "p99_ms": round(pct(ms_values, 99), 3),
        "mean_ms": round(sum(ms_values) / len(ms_values), 3),
        "min_ms": round(min(ms_values), 3),
        "max_ms": round(max(ms_values), 3),
    }


class StdioServer:
    """A language server driven straight over its stdio."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.next_id = 1

    def send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def read(self) -> dict:
        length = None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise ConnectionError("the server closed its stdout")
            line = line.strip()
            if not line:
                if length is not None:
                    break
                continue
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return json.loads(self.proc.stdout.read(length))

    def request(self, method: str, params: object) -> dict:
        request_id = self.next_id
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:
            message = self.read()
            if "method" in message and "id" in message:
                # A request to the client: answered as toolboxd does (null results).
                items = (message.get("params") or {}).get("items")
                result = [None] * len(items) if isinstance(items, list) else None
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})
            elif message.get("id") == request_id and "method" not in message:
                return message

    def notify(self, method: str, params: object) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def stop(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=5)
        except (OSError, ConnectionError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def initialize_params(root: Path) -> dict:
    markup = ["markdown", "plaintext"]
    return {
        "processId": os.getpid(),
        "rootUri": root.as_uri(),
        "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
        "capabilities": {
            "workspace": {"applyEdit": True, "configuration": True, "workspaceFolders": True, "symbol": {}},
            "textDocument": {
                "synchronization": {"didSave": True},
                "completion": {"completionItem": {"snippetSupport": False, "documentationFormat": markup},
                               "contextSupport": True},
                "hover": {"contentFormat": markup},
                "documentSymbol": {"hierarchicalDocumentSymbolSupport": False},
                "publishDiagnostics": {"versionSupport": True},
            },
            "window": {"workDoneProgress": True},
            "general": {},
        },
        "clientInfo": {"name": "bench"},
    }


def labels_of(result: object) -> list[str]:
    items = result.get("items", []) if isinstance(result, dict) else (result or [])
    return [item["label"] for item in items]


def bench_completions(binary: Path, env: dict[str, str], server: list[str] | None) -> dict:
    root = DATA_DIR / "lsp" / "project"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "main.py").write_text(SOURCE)
    uri = (root / "main.py").as_uri()
    if server is None:
        pylsp = shutil.which("pylsp", path=env["PATH"])
        if not pylsp:
            return {"skipped": f"no pylsp on {PYTHON_BIN}: pip install 'python-lsp-server[pyflakes]'"}
        server = [pylsp]
    else:
        env = {**env, "TOOLBOXD_LSP_PYTHON": json.dumps(server)}
    with start_daemon(binary, DATA_DIR / "lsp", "lsp", env=env) as daemon:
        conn = HttpConn(daemon.port)
        status, _, body = conn.request("POST", "/lsp/start", {"languageId": "python", "pathToProject": str(root)})
        assert status == 200, body
        status, _, body = conn.request("POST", "/lsp/did-open", {"languageId": "python", "pathToProject": str(root),
                                                                 "uri": uri})
        assert status == 200, body
        raw = HttpConn.prepare("POST", "/lsp/completions", {
            "languageId": "python", "pathToProject": str(root), "uri": uri,
            "position": {"line": 1, "character": 5}})

        direct = StdioServer(server, root, env)
        direct.request("initialize", initialize_params(root))
        direct.notify("initialized", {})
        direct.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                "text": SOURCE}})
        params = {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 5}}

        def via_toolboxd() -> float:
            start = time.perf_counter()
            status, _, body = conn.roundtrip(raw)
            took = time.perf_counter() - start
            assert status == 200 and "path" in labels_of(json.loads(body)), body[:300]
            return took

        def straight() -> float:
            start = time.perf_counter()
            answer = direct.request("textDocument/completion", params)
            took = time.perf_counter() - start
            assert "path" in labels_of(answer.get("result")), str(answer)[:300]
            return took

        runners = [("toolboxd", via_toolboxd), ("direct_stdio", straight)]
        timings: dict[str, list[float]] = {name: [] for name, _ in runners}
        first_ms = via_toolboxd() * 1000
        straight()
        for i in range(WARMUP + RUNS):
            for k in range(len(runners)):
                name, run = runners[(i + k) % len(runners)]
                took = run()
                if i >= WARMUP:
                    timings[name].append(took)
        direct.stop()
        conn.request("POST", "/lsp/stop", {"languageId": "python", "pathToProject": str(root)})
        conn.close()
        after = proc_status(daemon.pid)
    result = {name: summary(values) for name, values in timings.items()}
    added = result["toolboxd"]["p50_ms"] - result["direct_stdio"]["p50_ms"]
    return {
        "runs": RUNS, "warmup": WARMUP, "server": " ".join(server), "first_completion_ms": round(first_ms, 1),
        "timings": result, "added_p50_ms": round(added, 3),
        "daemon_after": {"VmRSS": kib(after, "VmRSS"), "Threads": after.get("Threads")},
    }


def kernel_watches(pid: int) -> int:
    total = 0
    for entry in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            total += sum(1 for line in entry.read_text().splitlines() if line.startswith("inotify wd:"))
        except OSError:
            pass
    return total


def read_text_frame(ws: WebSocketClient) -> str:
    """The next text frame (control frames handled; a close ends with an error)."""
    while True:
        ws._fill(2)
        b0, b1 = ws.buf[ws.r], ws.buf[ws.r + 1]
        opcode, length, header = b0 & 0x0F, b1 & 0x7F, 2
        if length == 126:
            ws._fill(4)
            length, header = int.from_bytes(ws.buf[ws.r + 2:ws.r + 4], "big"), 4
        elif length == 127:
            ws._fill(10)
            length, header = int.from_bytes(ws.buf[ws.r + 2:ws.r + 10], "big"), 10
        ws._fill(header + length)
        payload = bytes(ws.buf[ws.r + header:ws.r + header + length])
        ws.r += header + length
        if opcode == 0x1:
            return payload.decode()
        if opcode == 0x8:
            raise ConnectionError(f"the watch closed: {payload[2:].decode(errors='replace')}")
        if opcode == 0x9:
            ws.send_frame(0xA, payload)


def bench_watch(binary: Path, env: dict[str, str]) -> dict:
    base = DATA_DIR / "lsp" / "watch"
    shutil.rmtree(base, ignore_errors=True)
    latency_dir = base / "latency"
    latency_dir.mkdir(parents=True)
    tree = base / "tree"
    for i in range(10):
        for j in range(99):
            (tree / f"d{i}" / f"e{j}").mkdir(parents=True)
    out: dict = {}
    with start_daemon(binary, DATA_DIR / "lsp", "watch", env=env) as daemon:
        ws = WebSocketClient(daemon.port, f"/files/watch?path={latency_dir}")
        times = []
        for i in range(WATCH_RUNS + 5):
            target = latency_dir / f"f{i}"
            start = time.perf_counter()
            target.write_bytes(b"0123456789abcdef")
            while True:
                event = json.loads(read_text_frame(ws))
                if event["path"] == str(target):
                    break
            if i >= 5:
                times.append(time.perf_counter() - start)
        ws.close()
        out["latency"] = {"runs": WATCH_RUNS, "coalesce_ms": COALESCE_MS, **summary(times)}

        time.sleep(0.5)
        before = proc_status(daemon.pid)
        watches_before = kernel_watches(daemon.pid)
        start = time.perf_counter()
        tree_ws = WebSocketClient(daemon.port, f"/files/watch?path={tree}&recursive=true")
        setup_ms = (time.perf_counter() - start) * 1000
        time.sleep(0.5)
        after = proc_status(daemon.pid)
        out["memory"] = {
            "directories": sum(1 for p in tree.rglob("*") if p.is_dir()) + 1,
            "kernel_watches_before": watches_before,
            "kernel_watches": kernel_watches(daemon.pid),
            "vmrss_before_kib": kib(before, "VmRSS"),
            "vmrss_after_kib": kib(after, "VmRSS"),
            "vmhwm_kib": kib(after, "VmHWM"),
            "watch_setup_ms": round(setup_ms, 1),
        }
        tree_ws.close()
    shutil.rmtree(base, ignore_errors=True)
    return out


def main() -> None:
    binary = toolboxd_bin()
    env = dict(os.environ)
    env["PATH"] = f"{PYTHON_BIN}{os.pathsep}{env.get('PATH', '')}"
    cpu_before = cpu_times()
    results: dict = {"machine": machine_info()}
    stub = [sys.executable, str(Path(__file__).resolve().parent / "lsp_stub.py")]
    results["completions_stub"] = bench_completions(binary, env, stub)
    log(f"completions (stub server): {results['completions_stub'].get('timings')}")
    results["completions"] = bench_completions(binary, env, None)
    log(f"completions (pylsp): {results['completions'].get('timings')}")
    results["watch"] = bench_watch(binary, env)
    log(f"watch: {results['watch']}")
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    shutil.rmtree(DATA_DIR / "lsp", ignore_errors=True)
    write_result("lsp", results)


if __name__ == "__main__":
    main()
