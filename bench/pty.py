#!/usr/bin/env python3
"""PTY benchmarks: keystroke echo round trip and output throughput, each next to a bare PTY.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/pty.py

One daemon (127.0.0.1, ephemeral port, work dir under DATA_DIR). The client is bench/common.py's
WebSocketClient (TCP_NODELAY); the reference is the same program on a pseudo-terminal this
script opens itself (`os.openpty`, the child in a session of its own), read and written with
plain `os.read`/`os.write`. Both run `cat` on a terminal in raw mode without echo, so every
byte that comes out is one `cat` wrote:

1. Keystroke echo. `GET /process/pty/create-connect` (as the SDKs create a PTY), then the line
   `stty raw -echo; printf 'READY%s' 42; exec cat` typed into its login shell; the reference
   starts `sh -c` with the same line. Then, BENCH_PTY_ECHO_RUNS times (default 2000, after
   BENCH_PTY_ECHO_WARMUP = 200 untimed), one byte is sent (a binary frame / a write to the
   master) and timed until it comes back (the frame that carries it / the read that returns
   it). The two take turns, each round starting with the other, so a busy spell of the machine
   hits both alike. p50, p99, mean.

2. Output throughput. `cat` of a BENCH_PTY_MIB MiB file (default 1024; random bytes,
   `DATA/big.bin` when 1024, shared with bench/transfer.py) on the PTY:
   `stty raw -echo; printf 'GO%s' 42; exec cat FILE`. Timed from the `GO42` marker to the last
   byte. Checked: the byte count and the SHA-256 of what arrived equal the file's, and (through
   toolboxd) the close frame is 1000 `{"exitCode":0}` (a client dropped for being slow would get
   1008). Through toolboxd the client reads the binary frames (output queued while it reads is
   joined into frames of up to 256 KiB); the reference reads the master into a 1 MiB buffer.
   BENCH_PTY_TRIALS rounds (default 2), alternating which goes first; medians reported. Also
   the daemon's peak RSS (VmHWM, reset before each transfer) and its CPU time per GiB.

Env: BENCH_PTY_ECHO_RUNS (2000), BENCH_PTY_ECHO_WARMUP (200), BENCH_PTY_MIB (1024),
BENCH_PTY_TRIALS (2).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from common import (
    DATA_DIR, GIB, MIB, WebSocketClient, cpu_busy, cpu_times, kib, log, machine_info, pct,
    proc_status, start_daemon, steal_since, toolboxd_bin, write_result,
)

ECHO_RUNS = int(os.environ.get("BENCH_PTY_ECHO_RUNS", "2000"))
ECHO_WARMUP = int(os.environ.get("BENCH_PTY_ECHO_WARMUP", "200"))
SIZE = int(os.environ.get("BENCH_PTY_MIB", "1024")) * MIB
TRIALS = int(os.environ.get("BENCH_PTY_TRIALS", "2"))
READY = b"READY42"
GO = b"GO42"


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1e3, 4),
        "p90_ms": round(pct(values, 90) * 1e3, 4),
        "p99_ms": round(pct(values, 99) * 1e3, 4),
        "mean_ms": round(statistics.fmean(values) * 1e3, 4),
        "min_ms": round(min(values) * 1e3, 4),
        "max_ms": round(max(values) * 1e3, 4),
    }


def wait_quiet() -> float:
    deadline = time.monotonic() + float(os.environ.get("BENCH_QUIET_WAIT", "120"))
    limit = float(os.environ.get("BENCH_QUIET_BUSY", "0.15"))
    while True:
        busy = cpu_busy(2.0)
        if busy < limit or time.monotonic() >= deadline:
            return round(busy, 3)
        log(f"CPUs {busy:.2f} busy, waiting for a quieter machine")
        time.sleep(10)


class Bare:
    """`sh -c SCRIPT` on a pseudo-terminal of our own: the reference."""

    def __init__(self, script: str, cwd: Path) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(["/bin/sh", "-c", script], stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, cwd=cwd, close_fds=True)
        os.close(slave)

    def read_until(self, marker: bytes) -> bytes:
        """Reads until `marker`; returns what followed it."""
        seen = b""
        while marker not in seen:
            data = os.read(self.master, 65536)
            if not data:
                raise RuntimeError(f"the bare PTY ended before {marker!r}: {seen[-200:]!r}")
            seen += data
        return seen[seen.index(marker) + len(marker):]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def ws_until(ws: WebSocketClient, marker: bytes) -> bytes:
    """Reads frames until `marker`; returns what followed it."""
    seen = b""
    while marker not in seen:
        opcode, payload = ws.read_frame()
        if opcode == 0x8:
            raise RuntimeError(f"the PTY socket closed before {marker!r}: {payload!r}; output {seen[-300:]!r}")
        if opcode == 0x2:
            seen += payload
    return seen[seen.index(marker) + len(marker):]


def open_pty(port: int, pty_id: str) -> WebSocketClient:
    """create-connect, as the SDKs do (without the exit-control subprotocol: no text frame after
    the `connected` one)."""
    ws = WebSocketClient(port, f"/process/pty/create-connect?id={pty_id}&cols=80&rows=24", timeout=120)
    opcode, payload = ws.read_frame()
    if opcode != 0x1 or json.loads(payload).get("status") != "connected":
        raise RuntimeError(f"expected the connected frame, got {opcode} {payload[:200]!r}")
    return ws


# ---------------------------------------------------------------------------------------------
# 1. Keystroke echo


def bench_echo(port: int, workdir: Path) -> dict:
    line = "stty raw -echo; printf 'READY%s' 42; exec cat"
    ws = open_pty(port, "bench-echo")
    ws.send_frame(0x2, (line + "\n").encode())
    ws_until(ws, READY)
    bare = Bare(line, workdir)
    bare.read_until(READY)

    def through_toolboxd(byte: bytes) -> float:
        start = time.perf_counter()
        ws.send_frame(0x2, byte)
        got = b""
        while byte not in got:
            opcode, payload = ws.read_frame()
            if opcode == 0x8:
                raise RuntimeError(f"closed during the echo: {payload!r}")
            got += payload
        return time.perf_counter() - start

    def through_bare(byte: bytes) -> float:
        start = time.perf_counter()
        os.write(bare.master, byte)
        got = b""
        while byte not in got:
            got += os.read(bare.master, 4096)
        return time.perf_counter() - start

    samples: dict[str, list[float]] = {"toolboxd": [], "bare_pty": []}
    kinds = [("toolboxd", through_toolboxd), ("bare_pty", through_bare)]
    letters = b"abcdefghijklmnopqrstuvwxyz"
    try:
        for i in range(ECHO_WARMUP + ECHO_RUNS):
            byte = letters[i % len(letters):i % len(letters) + 1]
            for name, run in (kinds if i % 2 == 0 else kinds[::-1]):
                took = run(byte)
                if i >= ECHO_WARMUP:
                    samples[name].append(took)
    finally:
        ws.close()
        bare.close()
    out = {name: summary_ms(values) for name, values in samples.items()}
    out["added_p50_ms"] = round(out["toolboxd"]["p50_ms"] - out["bare_pty"]["p50_ms"], 4)
    out["added_p99_ms"] = round(out["toolboxd"]["p99_ms"] - out["bare_pty"]["p99_ms"], 4)
    for name in ("toolboxd", "bare_pty"):
        s = out[name]
        log(f"echo {name}: p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms, mean {s['mean_ms']:.3f} ms")
    return {"runs": ECHO_RUNS, "warmup": ECHO_WARMUP, "program": line, "timings": out}


# ---------------------------------------------------------------------------------------------
# 2. Output throughput


def source_file() -> Path:
    path = DATA_DIR / ("big.bin" if SIZE == GIB else f"pty-{SIZE // MIB}m.bin")
    if path.exists() and path.stat().st_size == SIZE:
        return path
    log(f"writing {SIZE // MIB} MiB of random bytes to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        left = SIZE
        while left:
            n = min(left, 16 * MIB)
            out.write(os.urandom(n))
            left -= n
    tmp.rename(path)
    return path


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as src:
        while chunk := src.read(16 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def cat_through_toolboxd(daemon, path: Path, trial: int) -> dict:
    ws = open_pty(daemon.port, f"bench-cat-{trial}")
    digest = hashlib.sha256()
    state = {"pending": b"", "started": None, "last": None, "bytes": 0}

    def on_data(buf, a: int, b: int) -> None:
        now = time.perf_counter()
        if state["started"] is None:
            state["pending"] += bytes(buf[a:b])
            at = state["pending"].find(GO)
            if at < 0:
                return
            state["started"] = now
            rest = state["pending"][at + len(GO):]
            digest.update(rest)
            state["bytes"] += len(rest)
        else:
            digest.update(ws.mv[a:b])
            state["bytes"] += b - a
        state["last"] = now

    daemon.reset_peak_rss()
    cpu0 = daemon.cpu_seconds()
    try:
        ws.send_frame(0x2, f"stty raw -echo; printf 'GO%s' 42; exec cat {shlex.quote(str(path))}\n".encode())
        code, reason = ws.run(on_data)
    finally:
        ws.close()
    cpu = daemon.cpu_seconds() - cpu0
    seconds = state["last"] - state["started"]
    return {
        "seconds": round(seconds, 4),
        "mb_s": round(state["bytes"] / seconds / 1e6, 1),
        "bytes": state["bytes"],
        "sha256": digest.hexdigest(),
        "close": [code, reason],
        "frames": ws.stats["binary_frames"],
        "max_frame": ws.stats["max_frame"],
        "peak_rss_kib": kib(daemon.status(), "VmHWM"),
        "daemon_cpu_s": round(cpu, 3),
    }


def cat_through_bare(path: Path, workdir: Path) -> dict:
    bare = Bare(f"stty raw -echo; printf 'GO%s' 42; exec cat {shlex.quote(str(path))}", workdir)
    digest = hashlib.sha256()
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    try:
        rest = bare.read_until(GO)
        start = time.perf_counter()
        digest.update(rest)
        count = len(rest)
        while True:
            try:
                n = os.readv(bare.master, [buffer])
            except OSError:  # EIO: cat is gone
                break
            if n == 0:
                break
            digest.update(view[:n])
            count += n
        seconds = time.perf_counter() - start
    finally:
        bare.close()
    return {"seconds": round(seconds, 4), "mb_s": round(count / seconds / 1e6, 1), "bytes": count,
            "sha256": digest.hexdigest()}


def bench_cat(daemon, workdir: Path) -> dict:
    path = source_file()
    expected = file_digest(path)  # also warms the page cache
    rounds: dict[str, list[dict]] = {"toolboxd": [], "bare_pty": []}
    for trial in range(TRIALS):
        order = ["toolboxd", "bare_pty"] if trial % 2 == 0 else ["bare_pty", "toolboxd"]
        for name in order:
            result = (cat_through_toolboxd(daemon, path, trial) if name == "toolboxd"
                      else cat_through_bare(path, workdir))
            if result["bytes"] != SIZE or result["sha256"] != expected:
                raise RuntimeError(f"{name}: {result['bytes']} bytes, sha256 {result['sha256']} "
                                   f"(expected {SIZE}, {expected})")
            if name == "toolboxd" and result["close"][0] != 1000:
                raise RuntimeError(f"toolboxd: close {result['close']}")
            log(f"cat {name} trial {trial}: {result['mb_s']} MB/s ({result['seconds']} s)")
            rounds[name].append(result)
    med = {name: statistics.median(r["mb_s"] for r in rs) for name, rs in rounds.items()}
    best = {name: max(r["mb_s"] for r in rs) for name, rs in rounds.items()}
    own = rounds["toolboxd"]
    return {
        "bytes": SIZE,
        "file": str(path),
        "trials": TRIALS,
        "median_mb_s": med,
        "best_mb_s": best,
        "ratio_median": round(med["toolboxd"] / med["bare_pty"], 3),
        "peak_rss_kib": max(r["peak_rss_kib"] for r in own),
        "daemon_cpu_s_per_gib": round(statistics.median(r["daemon_cpu_s"] for r in own) * GIB / SIZE, 3),
        "frames_per_trial": [r["frames"] for r in own],
        "max_frame": max(r["max_frame"] for r in own),
        "rounds": rounds,
    }


def main() -> None:
    binary = toolboxd_bin()
    from transfer import binary_info  # noqa: PLC0415 (same description of the binary as transfer.json)

    cpu_before = cpu_times()
    workdir = DATA_DIR / "pty"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    results: dict = {"machine": machine_info(), "binary": binary_info(binary),
                     "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    with start_daemon(binary, workdir, "pty") as daemon:
        results["echo"] = {"cpu_busy_before": wait_quiet(), **bench_echo(daemon.port, workdir)}
        results["cat"] = {"cpu_busy_before": wait_quiet(), **bench_cat(daemon, workdir)}
        status = proc_status(daemon.pid)
        results["daemon_after"] = {"VmRSS": kib(status, "VmRSS"), "Threads": int(status.get("Threads", "0"))}
    shutil.rmtree(workdir, ignore_errors=True)
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    write_result("pty", results)


if __name__ == "__main__":
    main()
