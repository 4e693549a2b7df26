#!/usr/bin/env python3
"""Start-to-first-/version latency, idle RSS and static binary size.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/startup.py

Start latency (3 warm-up runs, then BENCH_START_RUNS, default 21 runs, median): pick a free 127.0.0.1 port, then
time from just before spawning `toolboxd --toolbox-addr 127.0.0.1:PORT --workdir DIR` until a
`GET /version` on a fresh connection answers 200. The client polls connect() every 0.2 ms,
the way Daytona's runner polls /version (it waits 5 ms between tries). Each daemon then gets
SIGTERM; the time to exit and the exit code are recorded too.
References measured the same way in the same run, taking turns with toolboxd: spawning
/bin/true and waiting for it (the floor of spawning anything from this harness), and
`python3 -m http.server` (every third run).

Idle RSS (3 fresh daemons, median): after the first /version answer, 2 s idle, then VmRSS,
RssAnon, RssFile, VmHWM and Threads from /proc/PID/status. Reference: python3 -m http.server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import (
    cpu_times, steal_since,
    DATA_DIR, MIB, daemon_args, http_get, kib, log, machine_info, median, proc_status, toolboxd_bin,
    write_result,
)

RUNS = int(os.environ.get("BENCH_START_RUNS", "21"))
IDLE_SECONDS = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def version_ok(port: int) -> bool:
    """One attempt: connect, GET /version, True on 200. False while the port is not open."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return False
    with sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.startswith(b"HTTP/1.") and data[8:13] == b" 200 "


def time_to_first_answer(argv_for_port, env=None) -> tuple[float, subprocess.Popen, int]:
    port = free_port()
    argv = argv_for_port(port)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env)
    deadline = start + 10
    while not version_ok(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{argv} exited {proc.returncode} before answering")
        if time.perf_counter() > deadline:
            proc.kill()
            raise RuntimeError(f"{argv} did not answer /version within 10 s")
        time.sleep(0.0002)
    return time.perf_counter() - start, proc, port


def stop(proc: subprocess.Popen) -> tuple[int | None, float]:
    start = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    return code, time.perf_counter() - start


def python_http_server(port: int) -> list[str]:
    """The reference server; it serves a directory holding a file named `version`."""
    root = DATA_DIR / "pyserve"
    root.mkdir(parents=True, exist_ok=True)
    (root / "version").write_text('{"version":"python"}')
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(root)]


def rss_fields(pid: int) -> dict[str, int]:
    status = proc_status(pid)
    out = {key: kib(status, key) for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
    out["Threads"] = int(status.get("Threads", "0"))
    return out


def main() -> None:
    binary = toolboxd_bin()
    cpu_before = cpu_times()
    workdir = DATA_DIR / "startup-work"
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    probe = daemon_args(binary, workdir, "127.0.0.1:0")  # runs `--help` once, outside any timing

    def toolboxd_argv(port: int) -> list[str]:
        argv = list(probe)
        argv[argv.index("--toolbox-addr") + 1] = f"127.0.0.1:{port}"
        return argv

    results: dict = {"runs": RUNS, "machine": machine_info(), "argv": probe}

    # Start latency.
    starts, stops, codes = [], [], []
    for _ in range(3):  # warm-up: page cache, first-exec costs
        _seconds, proc, _port = time_to_first_answer(toolboxd_argv, env)
        stop(proc)
    # The floor and the reference server take turns with toolboxd, so a busy spell of the
    # machine shows in both.
    floor, py_starts = [], []
    for i in range(RUNS):
        start = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        floor.append(time.perf_counter() - start)
        seconds, proc, _port = time_to_first_answer(toolboxd_argv, env)
        starts.append(seconds)
        code, stop_s = stop(proc)
        stops.append(stop_s)
        codes.append(code)
        if i % 3 == 0:
            seconds, proc, _port = time_to_first_answer(python_http_server)
            py_starts.append(seconds)
            stop(proc)
    results["start"] = {
        "toolboxd_seconds": starts,
        "toolboxd_median_s": median(starts),
        "toolboxd_min_s": min(starts),
        "toolboxd_max_s": max(starts),
        "spawn_true_median_s": median(floor),
        "python_http_server_median_s": median(py_starts),
        "sigterm_to_exit_median_s": median(stops),
        "sigterm_exit_codes": sorted(set(map(str, codes))),
    }
    log(f"start: median {median(starts) * 1000:.2f} ms (min {min(starts) * 1000:.2f}, max {max(starts) * 1000:.2f}); "
        f"spawn /bin/true {median(floor) * 1000:.2f} ms; python http.server {median(py_starts) * 1000:.1f} ms; "
        f"SIGTERM->exit {median(stops) * 1000:.1f} ms codes {set(codes)}")

    # Idle RSS.
    idle = []
    for i in range(3):
        _seconds, proc, port = time_to_first_answer(toolboxd_argv, env)
        if i == 0:
            code, body = http_get(port, "/version")
            results["version_response"] = {"status": code, "body": body.decode(errors="replace")}
        time.sleep(IDLE_SECONDS)
        idle.append(rss_fields(proc.pid))
        stop(proc)
    _seconds, proc, _port = time_to_first_answer(python_http_server)
    time.sleep(IDLE_SECONDS)
    py_idle = rss_fields(proc.pid)
    stop(proc)
    results["idle"] = {
        "toolboxd_samples": idle,
        "toolboxd_median": {key: median([s[key] for s in idle]) for key in idle[0]},
        "python_http_server": py_idle,
    }
    log(f"idle: toolboxd {results['idle']['toolboxd_median']} python {py_idle}")

    # Binary size.
    file_out = subprocess.run(["file", "-L", str(binary)], capture_output=True, text=True).stdout.strip()
    rg = Path("/usr/bin/rg")
    results["size"] = {
        "path": str(binary),
        "bytes": binary.stat().st_size,
        "file": file_out.split(": ", 1)[-1],
        "static": "static-pie linked" in file_out or "statically linked" in file_out,
        "reference_rg_bytes": rg.stat().st_size if rg.exists() else None,
    }
    log(f"size: {binary.stat().st_size / MIB:.2f} MiB ({results['size']['file']})")
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    write_result("startup", results)


if __name__ == "__main__":
    main()
