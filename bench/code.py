#!/usr/bin/env python3
"""code_run and interpreter benchmarks: code_run vs `python3 -c`, interpreter round trip, charts.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/code.py
    BENCH_CODE_PARTS=interpreter TOOLBOXD_BIN=... python3 bench/code.py    # one part again

Each part has its own fresh daemon (127.0.0.1, ephemeral port, work dir under DATA_DIR/code),
started with PATH = BENCH_PYTHON_BIN:$PATH, so the `python3` the daemon finds first on its PATH
(for code_run and for the interpreter worker) is the interpreter every reference spawns too.
BENCH_PYTHON_BIN defaults to target/sdk-venv/bin (it has matplotlib, numpy and Pillow) if it
exists, else to the directory of the real interpreter running this script (not a pyenv shim).
The references get the daemon's environment and run in its work dir. PYTHONDONTWRITEBYTECODE
is removed from that environment (a dev container may set it; a sandbox's Python normally caches
bytecode) unless BENCH_KEEP_DONTWRITEBYTECODE=1; part 1 measures what it costs.

1. code_run latency. `POST /process/code-run {"code":"print(1)","language":"python"}` over one
   keep-alive connection (TCP_NODELAY, the request in one write, the whole answer read; the
   answer must be exit code 0 and result "1\\n"), BENCH_CODE_RUNS (default 200) timed iterations
   after BENCH_CODE_WARMUP (default 20) untimed ones. In every iteration each of these runs once,
   taking turns (starting one further on each iteration), so a busy spell hits all alike:
     * the daemon's code_run;
     * `python3 -c 'print(1)'` spawned from this process (os.posix_spawn, stdout and stderr on
       a pipe read to EOF, waitpid): the goal reference;
     * `python3 -S -c 'print(1)'` and `python3 -I -c 'print(1)'` (context: no site / isolated);
     * the daemon's own child command spawned the same way: `python3 -u toolboxd_run.py
       code.py` with a pipe on fd 3 and TOOLBOXD_CHART_FD=3 (the bootstrap and chart module
       copied from src/code/python/), to split the overhead between the bootstrap and the
       daemon;
     * extra: the same with PYTHONDONTWRITEBYTECODE=1 and a bootstrap copy that has no
       __pycache__ (the chart module is then compiled on every run);
     * `GET /version` on the same connection (the HTTP round trip alone).
   p50, p90, p99, mean. Goal: code_run p50 <= 1.3x the `python3 -c 'print(1)'` p50. Also
   recorded: the daemon's CPU per code_run (a separate loop of code_runs alone) and, once,
   `python3 -X importtime` of the bootstrap (the imports it adds to a bare `-c`).

2. Interpreter round trip. One untimed run starts the default context's worker; then
   BENCH_INTERP_WARMUP (default 20) untimed and BENCH_INTERP_RUNS (default 500) timed runs, each
   on its own WebSocket as the SDKs do: connect, `GET /process/interpreter/execute` upgrade, one
   text frame `{"code":"1+1"}`, read JSON text frames until the server's close frame (answered).
   The last frame must be `{"type":"control","text":"completed"}` and the close code 1000.
   Timed from just before connect() to the close frame (the SDKs' run_code, e.g. the Python
   SDK's httpx_ws loop, returns only at the close); the handshake (101), the last data frame
   (`completed`) and the gap from it to the close frame are timed too. Taking turns with it:
   `GET /version` on a fresh connection (context) and, diagnostic, the same run by a client that
   sets TCP_QUICKACK before every receive (it never delays an ACK, so a server-side Nagle stall
   waiting for that ACK disappears; no SDK does this). Goal: p50 <= 5 ms (the plain client).

3. A chart. A script drawing one line chart and calling `plt.show()`, BENCH_CHART_RUNS (default
   20) timed rounds after 2 untimed ones, round-robin:
     * code_run of the script (the answer must hold exactly one chart, of type line, with its
       4 points and a PNG);
     * `python3 script.py` spawned directly with MPLBACKEND=Agg (show() does nothing): the
       reference for the ratio;
     * extra: the same script with `plt.show()` replaced by rendering the PNG the way the
       daemon's chart hook does (`savefig(BytesIO, format="png", dpi=100,
       bbox_inches="tight")`): the rendering any capture has to pay;
     * extra: the daemon's child command spawned directly (bootstrap + chart fd), as in part 1.
   Needs matplotlib importable by BENCH_PYTHON_BIN/python3; skipped with a note otherwise.
   No goal; the ratio is reported.

Before each part the script waits (up to BENCH_QUIET_WAIT s, default 120) for the CPUs to be
under BENCH_QUIET_BUSY (default 0.15) busy, and records the busy fraction before, during, and
the share of it used by other processes.

Env: BENCH_CODE_RUNS (200), BENCH_CODE_WARMUP (20), BENCH_INTERP_RUNS (500), BENCH_INTERP_WARMUP
(20), BENCH_CHART_RUNS (20), BENCH_PYTHON_BIN, BENCH_KEEP_DONTWRITEBYTECODE, BENCH_CODE_PARTS (comma-separated subset of
code_run,interpreter,charts; default all). With a subset, the other parts' results already in
code.json are kept (each part records its own date).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    pct,
    DATA_DIR, REPO_ROOT, RESULTS_DIR, HttpConn, WebSocketClient, cpu_busy, cpu_times, log, machine_info,
    proc_status, kib, start_daemon, steal_since, tool_version, toolboxd_bin, write_result,
)

CODE_RUNS = int(os.environ.get("BENCH_CODE_RUNS", "200"))
CODE_WARMUP = int(os.environ.get("BENCH_CODE_WARMUP", "20"))
INTERP_RUNS = int(os.environ.get("BENCH_INTERP_RUNS", "500"))
INTERP_WARMUP = int(os.environ.get("BENCH_INTERP_WARMUP", "20"))
CHART_RUNS = int(os.environ.get("BENCH_CHART_RUNS", "20"))
CHART_WARMUP = 2
BINARY: list[Path] = []  # TOOLBOXD_BIN, resolved once (the parts chdir into their work dirs)
ALL_PARTS = ("code_run", "interpreter", "charts")
PARTS = [p.strip() for p in os.environ.get("BENCH_CODE_PARTS", ",".join(ALL_PARTS)).split(",") if p.strip()]
SUPPORT_SRC = REPO_ROOT / "src" / "code" / "python"
VENV_BIN = REPO_ROOT / "target" / "sdk-venv" / "bin"

CHART_SCRIPT = """\
import matplotlib.pyplot as plt

plt.figure(figsize=(6, 4))
plt.plot([1, 2, 3, 4], [1, 4, 9, 16], label="squares")
plt.title("Squares")
plt.xlabel("x")
plt.ylabel("x squared")
plt.legend()
plt.show()
print("done")
"""
# What the daemon's chart hook does at show(): render the figure to PNG (toolboxd_charts.py's
# _render_png). Used for the extra "rendering floor" reference.
RENDER_SHOW = ('import io; plt.gcf().savefig(io.BytesIO(), format="png", dpi=100, bbox_inches="tight"); '
               'plt.close("all")')


# ---------------------------------------------------------------------------------------------
# Helpers


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1e3, 3),
        "p90_ms": round(pct(values, 90) * 1e3, 3),
        "p99_ms": round(pct(values, 99) * 1e3, 3),
        "mean_ms": round(statistics.fmean(values) * 1e3, 3),
        "min_ms": round(min(values) * 1e3, 3),
        "max_ms": round(max(values) * 1e3, 3),
    }


def wait_quiet() -> float:
    """Like run-all.sh: wait up to BENCH_QUIET_WAIT s for the CPUs to be under BENCH_QUIET_BUSY busy."""
    deadline = time.monotonic() + float(os.environ.get("BENCH_QUIET_WAIT", "120"))
    limit = float(os.environ.get("BENCH_QUIET_BUSY", "0.15"))
    while True:
        busy = cpu_busy(2.0)
        if busy < limit or time.monotonic() >= deadline:
            if busy >= limit:
                log(f"CPUs still {busy:.2f} busy; running anyway (recorded)")
            return round(busy, 3)
        log(f"CPUs {busy:.2f} busy, waiting for a quieter machine")
        time.sleep(10)


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def python_dir() -> tuple[Path, str]:
    """The directory put first on the daemon's PATH, and where it came from."""
    value = os.environ.get("BENCH_PYTHON_BIN")
    if value:
        return Path(value), "BENCH_PYTHON_BIN"
    if (VENV_BIN / "python3").exists():
        return VENV_BIN, "default: target/sdk-venv/bin"
    real = Path(sys.executable).resolve()
    return real.parent, f"default: the directory of this script's interpreter ({real})"


def which(name: str, path: str) -> Path | None:
    """`name` on `path` the way the daemon looks it up (first executable regular file)."""
    for d in path.split(os.pathsep):
        candidate = Path(d or ".") / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def read_pipes(fds: list[int]) -> list[bytes]:
    """Reads every fd to EOF (concurrently, so no pipe fills up); closes them."""
    out = {fd: bytearray() for fd in fds}
    open_fds = list(fds)
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [])
        for fd in ready:
            data = os.read(fd, 262144)
            if data:
                out[fd] += data
            else:
                os.close(fd)
                open_fds.remove(fd)
    return [bytes(out[fd]) for fd in fds]


def spawn_capture(argv: list[str], env: dict[str, str], side: bool = False) -> tuple[float, bytes, bytes]:
    """posix_spawn argv with stdout+stderr on one pipe (and a pipe on fd 3 if `side`), read to
    EOF, waitpid. Returns (seconds, output, side output); raises on a non-zero exit."""
    start = time.perf_counter()
    r, w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)]
    fds = [r]
    if side:
        sr, sw = os.pipe()
        actions.append((os.POSIX_SPAWN_DUP2, sw, 3))
        fds.append(sr)
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    os.close(w)
    if side:
        os.close(sw)
    outs = read_pipes(fds)
    _pid, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{argv} exited with status {status}: {outs[0][-2000:]!r}")
    return elapsed, outs[0], outs[1] if side else b""


def check_json(status: int, body: bytes) -> dict:
    if status != 200:
        raise RuntimeError(f"expected HTTP 200, got {status}: {body[:500]!r}")
    return json.loads(body)


def prepare_support(root: Path) -> Path:
    """A copy of the daemon's Python bootstrap and chart hook (read from src/code/python/)."""
    support = root / "support"
    support.mkdir(parents=True, exist_ok=True)
    for name in ("toolboxd_run.py", "toolboxd_charts.py"):
        shutil.copyfile(SUPPORT_SRC / name, support / name)
    return support


class Setup:
    """Work dir, environment and interpreter for one part's daemon and references."""

    def __init__(self, name: str) -> None:
        self.root = DATA_DIR / "code" / name
        shutil.rmtree(self.root, ignore_errors=True)
        self.work = self.root / "work"
        self.work.mkdir(parents=True)
        pdir, self.python_origin = python_dir()
        self.path = f"{pdir}{os.pathsep}{os.environ.get('PATH', '')}"
        found = which("python3", self.path)
        if found is None:
            raise SystemExit(f"no python3 on PATH={self.path}")
        self.python = str(found)
        # The daemon's children get the daemon's environment (plus its per-run marker variable).
        # PYTHONDONTWRITEBYTECODE (set in some dev containers, e.g. this one) would make the
        # bootstrap compile toolboxd_charts.py on every run; a sandbox's Python normally caches
        # bytecode, so it is left out unless BENCH_KEEP_DONTWRITEBYTECODE=1 (part 1 measures its
        # cost separately).
        self.env = dict(os.environ, PATH=self.path, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.dropped_env = []
        if os.environ.get("BENCH_KEEP_DONTWRITEBYTECODE") != "1" and "PYTHONDONTWRITEBYTECODE" in self.env:
            del self.env["PYTHONDONTWRITEBYTECODE"]
            self.dropped_env.append("PYTHONDONTWRITEBYTECODE")
        self.support = prepare_support(self.root)
        self.runner = str(self.support / "toolboxd_run.py")

    def describe(self) -> dict:
        return {
            "python": self.python,
            "python_realpath": os.path.realpath(self.python),
            "python_is_elf": is_elf(Path(os.path.realpath(self.python))),
            "python_version": tool_version([self.python, "--version"]),
            "python_origin": self.python_origin,
            "daemon_path_first": self.path.split(os.pathsep)[0],
            "python_env": {k: v for k, v in self.env.items() if k.startswith("PYTHON")},
            "dropped_env": self.dropped_env,
        }

    def start(self, name: str):
        # start_daemon starts from os.environ: hand it exactly self.env.
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            return start_daemon(BINARY[0], self.work, name)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def daemon_info(daemon) -> dict[str, int]:
    status = proc_status(daemon.pid)
    out = {key: kib(status, key) for key in ("VmRSS", "VmHWM")}
    out["Threads"] = int(status.get("Threads", "0"))
    return out


def rotate(kinds: dict, iterations: int, warmup: int) -> dict[str, list[float]]:
    """Runs every kind once per iteration, taking turns (one further on each iteration)."""
    names = list(kinds)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + iterations):
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            elapsed = kinds[name]()
            if i >= warmup:
                samples[name].append(elapsed)
    return samples


# ---------------------------------------------------------------------------------------------
# 1. code_run of print(1) vs python3 -c 'print(1)'


def import_profile(setup: Setup, code_file: Path) -> dict:
    """`python3 -X importtime` of a bare `-c` and of the bootstrap: the modules the bootstrap adds
    (self time summed per top-level import, microseconds; one run, indicative only)."""

    def imports(argv: list[str], side: bool) -> dict[str, int]:
        env = dict(setup.env, TOOLBOXD_CHART_FD="3") if side else setup.env
        _t, out, _side = spawn_capture(argv, env, side)
        mods: dict[str, int] = {}
        for line in out.decode(errors="replace").splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            fields = line[len("import time:"):].split("|")
            self_us, name = int(fields[0]), fields[2].strip()
            mods[name] = mods.get(name, 0) + self_us
        return mods

    bare = imports([setup.python, "-X", "importtime", "-c", "print(1)"], False)
    boot = imports([setup.python, "-X", "importtime", "-u", setup.runner, str(code_file)], True)
    added = {name: us for name, us in boot.items() if name not in bare}
    top = sorted(added.items(), key=lambda kv: -kv[1])[:12]
    return {
        "bare_c_import_self_us_total": sum(bare.values()),
        "bootstrap_import_self_us_total": sum(boot.values()),
        "added_modules": len(added),
        "added_self_us_total": sum(added.values()),
        "added_top": [{"module": m, "self_us": us} for m, us in top],
    }


def bench_code_run() -> dict:
    setup = Setup("code_run")
    os.chdir(setup.work)
    code_file = setup.root / "code.py"
    code_file.write_text("print(1)")
    py = setup.python
    # A second copy of the bootstrap that never gets a __pycache__ (always run with
    # PYTHONDONTWRITEBYTECODE=1): what every code_run costs when that variable is set.
    nocache_runner = str(prepare_support(setup.root / "nocache") / "toolboxd_run.py")
    daemon = setup.start("code-run")
    with daemon, HttpConn(daemon.port) as conn:
        request = conn.prepare("POST", "/process/code-run", {"code": "print(1)", "language": "python"})
        version = conn.prepare("GET", "/version")

        def code_run() -> float:
            start = time.perf_counter()
            status, _headers, body = conn.roundtrip(request)
            elapsed = time.perf_counter() - start
            answer = check_json(status, body)
            if answer.get("exitCode") != 0 or answer.get("result") != "1\n" or answer.get("artifacts"):
                raise RuntimeError(f"code-run print(1) answered {body[:500]!r}")
            return elapsed

        def get_version() -> float:
            start = time.perf_counter()
            status, _headers, body = conn.roundtrip(version)
            elapsed = time.perf_counter() - start
            check_json(status, body)
            return elapsed

        def spawn(argv: list[str], side: bool = False, extra: dict[str, str] | None = None) -> float:
            env = dict(setup.env, TOOLBOXD_CHART_FD="3") if side else setup.env
            env = dict(env, **(extra or {}))
            elapsed, out, _side = spawn_capture(argv, env, side)
            if out != b"1\n":
                raise RuntimeError(f"{argv} printed {out[:500]!r}")
            return elapsed

        kinds = {
            "daemon_code_run": code_run,
            "python_c": lambda: spawn([py, "-c", "print(1)"]),
            "python_S_c": lambda: spawn([py, "-S", "-c", "print(1)"]),
            "python_I_c": lambda: spawn([py, "-I", "-c", "print(1)"]),
            "bootstrap_direct": lambda: spawn([py, "-u", setup.runner, str(code_file)], side=True),
            "bootstrap_direct_no_bytecode_cache": lambda: spawn([py, "-u", nocache_runner, str(code_file)], side=True,
                                                                 extra={"PYTHONDONTWRITEBYTECODE": "1"}),
            "http_version": get_version,
        }
        samples = rotate(kinds, CODE_RUNS, CODE_WARMUP)
        # The daemon's own CPU per code_run (its children's not included), code_runs alone.
        cpu_runs = 50
        u0, s0, _f0 = daemon.counters()
        for _ in range(cpu_runs):
            code_run()
        u1, s1, _f1 = daemon.counters()
        info = daemon_info(daemon)
    profile = import_profile(setup, code_file)
    os.chdir(REPO_ROOT)
    out = {name: summary_ms(values) for name, values in samples.items()}
    p50 = {name: s["p50_ms"] for name, s in out.items()}
    p99 = {name: s["p99_ms"] for name, s in out.items()}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runs": CODE_RUNS,
        "warmup": CODE_WARMUP,
        "setup": setup.describe(),
        "timings": out,
        "ratio_p50_vs_python_c": p50["daemon_code_run"] / p50["python_c"],
        "ratio_p99_vs_python_c": p99["daemon_code_run"] / p99["python_c"],
        "ratio_p50_vs_python_S_c": p50["daemon_code_run"] / p50["python_S_c"],
        "ratio_p50_vs_python_I_c": p50["daemon_code_run"] / p50["python_I_c"],
        "ratio_p50_bootstrap_vs_python_c": p50["bootstrap_direct"] / p50["python_c"],
        "daemon_share_p50_ms": round(p50["daemon_code_run"] - p50["bootstrap_direct"], 3),
        "bootstrap_share_p50_ms": round(p50["bootstrap_direct"] - p50["python_c"], 3),
        "no_bytecode_cache_extra_p50_ms": round(p50["bootstrap_direct_no_bytecode_cache"] - p50["bootstrap_direct"], 3),
        "daemon_cpu_ms_per_code_run": round((u1 + s1 - u0 - s0) / cpu_runs * 1e3, 3),
        "daemon_cpu_runs": cpu_runs,
        "import_profile": profile,
        "daemon_after": info,
    }
    for name, s in out.items():
        log(f"code_run {name}: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, mean {s['mean_ms']:.2f} ms")
    log(f"code_run: p50 ratio to python3 -c {result['ratio_p50_vs_python_c']:.2f}x; bootstrap alone "
        f"{result['ratio_p50_bootstrap_vs_python_c']:.2f}x; daemon CPU {result['daemon_cpu_ms_per_code_run']:.2f} ms/run")
    return result


# ---------------------------------------------------------------------------------------------
# 2. Interpreter round trip


class QuickAckSocket:
    """Wraps a socket: sets TCP_QUICKACK (not sticky on Linux) before every receive, so this
    client never delays an ACK. Diagnostic only: an SDK does not do this."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def __getattr__(self, name: str):
        return getattr(self._sock, name)

    def recv_into(self, *args):
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self._sock.recv_into(*args)


def interpreter_run(port: int, code: str = "1+1", quickack: bool = False
                    ) -> tuple[float, float, float, list[dict], int | None]:
    """One execute WebSocket. Returns (to 101, to the last data frame, to the close frame, frames,
    close code), seconds from just before connect()."""
    start = time.perf_counter()
    ws = WebSocketClient(port, "/process/interpreter/execute", buffer_size=65536, timeout=60)
    handshake = time.perf_counter() - start
    if quickack:
        ws.sock = QuickAckSocket(ws.sock)
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    data = bytearray()
    last = [handshake]

    def on_data(buf, a: int, b: int) -> None:
        data.extend(buf[a:b])
        last[0] = time.perf_counter() - start

    try:
        ws.send_frame(0x1, json.dumps({"code": code}).encode())
        close_code, _reason = ws.run(on_data)
        closed = time.perf_counter() - start
    finally:
        ws.close()
    text = data.decode()
    frames, pos, decoder = [], 0, json.JSONDecoder()
    while pos < len(text):
        frame, pos = decoder.raw_decode(text, pos)
        frames.append(frame)
    return handshake, last[0], closed, frames, close_code


def check_completed(frames: list[dict], close_code: int | None) -> None:
    if close_code != 1000 or not frames or frames[-1].get("type") != "control" \
            or frames[-1].get("text") != "completed":
        raise RuntimeError(f"interpreter run ended with close {close_code}, frames {frames[-3:]!r}")


def fresh_version(port: int) -> float:
    start = time.perf_counter()
    with HttpConn(port) as conn:
        status, _h, body = conn.request("GET", "/version", headers={"Connection": "close"})
    elapsed = time.perf_counter() - start
    check_json(status, body)
    return elapsed


def bench_interpreter() -> dict:
    setup = Setup("interpreter")
    daemon = setup.start("interpreter")
    with daemon:
        first_start = time.perf_counter()
        _h, _l, _c, frames, code = interpreter_run(daemon.port)
        first = time.perf_counter() - first_start
        check_completed(frames, code)
        first_frames = frames
        handshakes, lasts, gaps = [], [], []

        def execute() -> float:
            handshake, last, closed, frames, close_code = interpreter_run(daemon.port)
            check_completed(frames, close_code)
            handshakes.append(handshake)
            lasts.append(last)
            gaps.append(closed - last)
            return closed

        def execute_quickack() -> float:
            _handshake, _last, closed, frames, close_code = interpreter_run(daemon.port, quickack=True)
            check_completed(frames, close_code)
            return closed

        samples = rotate({"interpreter_1plus1": execute, "fresh_version": lambda: fresh_version(daemon.port),
                          "interpreter_1plus1_client_quickack": execute_quickack},
                         INTERP_RUNS, INTERP_WARMUP)
        handshakes, lasts, gaps = handshakes[INTERP_WARMUP:], lasts[INTERP_WARMUP:], gaps[INTERP_WARMUP:]
        info = daemon_info(daemon)
        workers = [p for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == daemon.pid]
    out = {name: summary_ms(values) for name, values in samples.items()}
    out["handshake"] = summary_ms(handshakes)
    out["last_data_frame"] = summary_ms(lasts)
    out["completed_to_close"] = summary_ms(gaps)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runs": INTERP_RUNS,
        "warmup": INTERP_WARMUP,
        "setup": setup.describe(),
        "first_run_ms": round(first * 1e3, 3),
        "frames_example": first_frames,
        "timings": out,
        "daemon_after": info,
        "daemon_children_after": len(workers),
    }
    for name, s in out.items():
        log(f"interpreter {name}: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, mean {s['mean_ms']:.2f} ms")
    log(f"interpreter: first run (starts the worker) {first * 1e3:.1f} ms; frames {first_frames!r}")
    return result


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


# ---------------------------------------------------------------------------------------------
# 3. A chart


def bench_charts() -> dict:
    setup = Setup("charts")
    probe = subprocess.run([setup.python, "-c", "import matplotlib, numpy; print(matplotlib.__version__, "
                            "numpy.__version__)"], capture_output=True, text=True, env=setup.env)
    if probe.returncode != 0:
        note = (f"skipped: {setup.python} cannot import matplotlib (set BENCH_PYTHON_BIN to a bin directory "
                f"whose python3 has matplotlib, numpy and Pillow): {probe.stderr.strip()[-300:]}")
        log(f"charts: {note}")
        return {"skipped": note, "setup": setup.describe(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    versions = probe.stdout.split()
    pillow = subprocess.run([setup.python, "-c", "import PIL; print(PIL.__version__)"], capture_output=True,
                            text=True, env=setup.env).stdout.strip() or "missing"
    os.chdir(setup.work)
    script = setup.root / "chart.py"
    script.write_text(CHART_SCRIPT)
    rendered = setup.root / "chart_render.py"
    rendered.write_text(CHART_SCRIPT.replace("plt.show()", RENDER_SHOW))
    agg_env = dict(setup.env, MPLBACKEND="Agg")
    py = setup.python
    daemon = setup.start("charts")
    checked = {}
    with daemon, HttpConn(daemon.port, timeout=300) as conn:
        request = conn.prepare("POST", "/process/code-run", {"code": CHART_SCRIPT, "language": "python"})

        def code_run() -> float:
            start = time.perf_counter()
            status, _headers, body = conn.roundtrip(request)
            elapsed = time.perf_counter() - start
            answer = check_json(status, body)
            charts = (answer.get("artifacts") or {}).get("charts") or []
            if answer.get("exitCode") != 0 or answer.get("stdout") != "done\n" or len(charts) != 1:
                raise RuntimeError(f"chart code-run answered exit {answer.get('exitCode')}, "
                                   f"{len(charts)} charts, result {answer.get('result', '')[:500]!r}")
            chart = charts[0]
            points = [p for e in chart.get("elements", []) for p in e.get("points", [])]
            png = base64.b64decode(chart.get("png") or "")
            if chart.get("type") != "line" or len(points) != 4 or not png.startswith(b"\x89PNG\r\n\x1a\n"):
                raise RuntimeError(f"unexpected chart: type {chart.get('type')!r}, {len(points)} points, "
                                   f"png {png[:8]!r}")
            checked.update(type=chart["type"], title=chart.get("title"), points=points, png_bytes=len(png),
                           response_bytes=len(body))
            return elapsed

        def direct(path: Path) -> float:
            elapsed, out, _side = spawn_capture([py, str(path)], agg_env)
            if b"done\n" not in out:
                raise RuntimeError(f"{path} printed {out[-500:]!r}")
            return elapsed

        def bootstrap() -> float:
            elapsed, out, side = spawn_capture([py, "-u", setup.runner, str(script)],
                                               dict(setup.env, TOOLBOXD_CHART_FD="3"), side=True)
            if not out.endswith(b"done\n") or side.count(b'"type":"chart"') != 1:
                raise RuntimeError(f"bootstrap chart run printed {out[-500:]!r}, side {side[:200]!r}")
            return elapsed

        kinds = {
            "daemon_code_run": code_run,
            "python_script": lambda: direct(script),
            "python_script_render_png": lambda: direct(rendered),
            "bootstrap_direct": bootstrap,
        }
        samples = rotate(kinds, CHART_RUNS, CHART_WARMUP)
        info = daemon_info(daemon)
    os.chdir(REPO_ROOT)
    out = {name: summary_ms(values) for name, values in samples.items()}
    p50 = {name: s["p50_ms"] for name, s in out.items()}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runs": CHART_RUNS,
        "warmup": CHART_WARMUP,
        "setup": setup.describe(),
        "matplotlib": versions[0],
        "numpy": versions[1],
        "pillow": pillow,
        "script": CHART_SCRIPT,
        "render_show": RENDER_SHOW,
        "chart_checked": {k: v for k, v in checked.items() if k != "points"},
        "chart_points": checked.get("points"),
        "timings": out,
        "ratio_p50_vs_python_script": p50["daemon_code_run"] / p50["python_script"],
        "ratio_p50_vs_render_png": p50["daemon_code_run"] / p50["python_script_render_png"],
        "ratio_p50_bootstrap_vs_python_script": p50["bootstrap_direct"] / p50["python_script"],
        "daemon_share_p50_ms": round(p50["daemon_code_run"] - p50["bootstrap_direct"], 3),
        "daemon_after": info,
    }
    for name, s in out.items():
        log(f"charts {name}: p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, mean {s['mean_ms']:.1f} ms")
    log(f"charts: p50 ratio to python3 script.py {result['ratio_p50_vs_python_script']:.2f}x, to the render-PNG "
        f"script {result['ratio_p50_vs_render_png']:.2f}x; chart {result['chart_checked']}")
    return result


# ---------------------------------------------------------------------------------------------


def main() -> None:
    binary = toolboxd_bin()
    BINARY.append(binary)
    unknown = [p for p in PARTS if p not in ALL_PARTS]
    if unknown:
        sys.exit(f"unknown BENCH_CODE_PARTS {unknown}; use a subset of {','.join(ALL_PARTS)}")
    cpu_before = cpu_times()
    from transfer import binary_info  # noqa: PLC0415 (same description of the binary as transfer.json)

    results: dict = {}
    previous = RESULTS_DIR / "code.json"
    if set(PARTS) != set(ALL_PARTS) and previous.exists():
        results = json.loads(previous.read_text())  # keep the parts not run this time
    results.update({"machine": machine_info(), "binary": binary_info(binary)})
    results["parts_run_last"] = PARTS
    parts = {"code_run": bench_code_run, "interpreter": bench_interpreter, "charts": bench_charts}
    hz = os.sysconf("SC_CLK_TCK")
    for name in PARTS:
        busy_before = wait_quiet()
        ticks0, own0 = cpu_times(), os.times()
        part = parts[name]()
        ticks1, own1 = cpu_times(), os.times()
        # The daemon has been stopped and waited for, so its CPU time (and its children's) is in
        # our children's times: what is left of the machine's busy time is others'.
        delta = [a - b for a, b in zip(ticks1, ticks0)]
        total = max(1, sum(delta[:8]))
        busy = total - delta[3] - delta[4]
        own = (own1.user + own1.system + own1.children_user + own1.children_system
               - own0.user - own0.system - own0.children_user - own0.children_system) * hz
        part["cpu_busy_before"] = busy_before
        part["cpu_busy_during"] = round(busy / total, 3)
        part["cpu_others_during"] = round(max(0.0, (busy - own) / total), 3)
        part["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        part["binary"] = results["binary"]
        results[name] = part
        log(f"{name}: CPUs busy before {busy_before:.2f}; during: {busy / total:.2f} of which other processes "
            f"{part['cpu_others_during']:.2f}")
    shutil.rmtree(DATA_DIR / "code", ignore_errors=True)
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    write_result("code", results)


if __name__ == "__main__":
    main()
