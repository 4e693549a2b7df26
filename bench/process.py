#!/usr/bin/env python3
"""Process benchmarks: exec latency, 1 GiB of session output over the log WebSocket, 500 sessions.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/process.py

Each part has its own fresh daemon (127.0.0.1, ephemeral port, work dir and HOME under
DATA_DIR, so the session logs land there too), and every reference is measured in the same run.

1. Exec latency. `POST /process/execute {"command":"true"}` over one keep-alive connection
   (TCP_NODELAY, the request in one write, the whole answer read), BENCH_EXEC_RUNS (default 2000)
   timed requests after BENCH_EXEC_WARMUP (default 200) untimed ones; p50, p99 and mean. The
   same request with `"timeout": 60` is timed too, and (extra) the same request to a second
   daemon started with TOOLBOXD_SHELL=sh, to separate the shell's cost from the daemon's. References, taking turns with it (one of each
   per iteration, so a busy spell of the machine hits all alike): `os.posix_spawn` of
   `/bin/sh -c true` + `waitpid` (the physical floor: fork+exec of a shell that does nothing)
   and of `bash -c true` (the daemon runs commands under bash when there is one); and
   `GET /version` on the same connection (the HTTP round trip alone). Goal: daemon p50 ≤ 1.3x
   the `sh -c true` p50.

2. 1 GiB of session output followed over the WebSocket. A session runs, async,
   `yes LINE | head -c N` (LINE: 1021 printable characters from a SHA-256 chain, so the stream is
   not trivial and holds no 0x01/0x02 bytes; N = BENCH_PROCESS_MIB MiB, default 1024). Right
   after the 202 the client opens `GET /process/session/ID/command/CMD/logs?follow=true` as a
   WebSocket (`X-Daytona-SDK-Version: 0.167.0`, so the frames carry the raw log with its
   `01 01 01` / `02 02 02` stream markers) and reads until the close frame. The client
   (bench/common.py's WebSocketClient) parses frames in place in a 4 MiB `recv_into` buffer,
   demuxes the markers with `memchr`-speed `find`s (a marker split across frames is held back
   until the next piece), counts the bytes of each stream and hashes them with SHA-256. Checked:
   stdout byte count and SHA-256 equal the generator's own output (computed in the same run by
   the Python reference below), no stderr bytes, no bytes before the first marker, close code
   1000, command exit code 0. Timed from just before the exec request to the close frame.
   The daemon runs with TOOLBOXD_MAX_OUTPUT = 2 N + 64 MiB (the default 64 MiB cap would cut the log).
   Peak RSS: the daemon's VmHWM, reset (clear_refs=5) before each transfer, largest over all
   transfers (warm-up included). References, round-robin with it (BENCH_PROCESS_TRIALS rounds,
   default 3, after one warm-up round; medians reported):
     * pipe → Python: the same generator under `bash -c`, its stdout pipe read into the same
       4 MiB buffer and fed to the same demuxer and SHA-256 (also yields the expected hash);
     * pipe → cat: `bash -c 'GEN | cat > /dev/null'`, the generator with no Python at all.
   Goals: 0 bytes lost, ≥ 200 MB/s (10^6 bytes/s) exec → close, daemon peak RSS ≤ 64 MiB.
   Also checked, untimed: a loop writing 20 000 lines to each stream alternately (a marker at
   nearly every line) followed the same way; each stream must come out exactly as written.

3. 500 sessions (BENCH_SESSIONS). One warm-up session (create, `true`, delete), then: daemon
   VmRSS; create N sessions (`POST /process/session`, each a long-lived bash); daemon VmRSS;
   in each a sync `echo $$` (exit code 0 and the shell's pid); daemon VmRSS, threads and open fds,
   and the sum of the session shells' VmRSS and PSS; delete all (`DELETE`, 204) and check the
   shells are gone; daemon VmRSS right after and 2 s later. Create/exec/delete are timed, all
   sequential over one keep-alive connection. Needs `ulimit -n` ≥ 8 N + 256 (the soft limit is
   raised to the hard limit if needed, else the run fails).

Env: BENCH_EXEC_RUNS (2000), BENCH_EXEC_WARMUP (200), BENCH_PROCESS_MIB (1024),
BENCH_PROCESS_TRIALS (3), BENCH_SESSIONS (500), BENCH_PROCESS_PARTS (comma-separated subset of
exec,stream,sessions; default all).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from common import (
    pct,
    DATA_DIR, GIB, MIB, HttpConn, WebSocketClient, cpu_busy, cpu_times, kib, log, machine_info, median, proc_status,
    start_daemon, steal_since, tool_version, toolboxd_bin, write_result,
)

EXEC_RUNS = int(os.environ.get("BENCH_EXEC_RUNS", "2000"))
EXEC_WARMUP = int(os.environ.get("BENCH_EXEC_WARMUP", "200"))
STREAM_BYTES = int(os.environ.get("BENCH_PROCESS_MIB", "1024")) * MIB
STREAM_TRIALS = int(os.environ.get("BENCH_PROCESS_TRIALS", "3"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "500"))
PARTS = [p.strip() for p in os.environ.get("BENCH_PROCESS_PARTS", "exec,stream,sessions").split(",") if p.strip()]
SDK = {"X-Daytona-SDK-Version": "0.167.0"}
MB = 1_000_000


def workdirs(name: str) -> tuple[Path, dict[str, str]]:
    """A fresh work dir and HOME (the session logs go to HOME/.toolboxd) for one daemon."""
    root = DATA_DIR / "process" / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "work").mkdir(parents=True)
    (root / "home").mkdir()
    return root / "work", {"HOME": str(root / "home")}


def summary_us(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_us": round(pct(values, 50) * 1e6, 1),
        "p90_us": round(pct(values, 90) * 1e6, 1),
        "p99_us": round(pct(values, 99) * 1e6, 1),
        "mean_us": round(statistics.fmean(values) * 1e6, 1),
        "min_us": round(min(values) * 1e6, 1),
        "max_us": round(max(values) * 1e6, 1),
    }


def check_json(status: int, body: bytes, want_status: int) -> dict:
    if status != want_status:
        raise RuntimeError(f"expected HTTP {want_status}, got {status}: {body[:500]!r}")
    return json.loads(body) if body else {}


def daemon_info(daemon) -> dict[str, int]:
    status = daemon.status()
    out = {key: kib(status, key) for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
    out["Threads"] = int(status.get("Threads", "0"))
    out["fds"] = len(os.listdir(f"/proc/{daemon.pid}/fd"))
    return out


# ---------------------------------------------------------------------------------------------
# 1. Exec latency


def spawn_wait(argv: list[str]) -> None:
    pid = os.posix_spawn(argv[0], argv, os.environ)
    _pid, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"{argv} exited with status {status}")


def bench_exec(binary: Path) -> dict:
    work, env = workdirs("exec")
    sh = shutil.which("sh") or "/bin/sh"
    bash = shutil.which("bash")
    daemon = start_daemon(binary, work, "process-exec", env)
    # Extra: a second daemon running commands with sh, to tell the shell's share from the daemon's.
    try:
        daemon_sh = start_daemon(binary, work, "process-exec-sh", dict(env, TOOLBOXD_SHELL=sh))
    except BaseException:
        daemon.stop()
        raise
    try:
        with daemon, daemon_sh, HttpConn(daemon.port) as conn, HttpConn(daemon_sh.port) as conn_sh:
            execute = conn.prepare("POST", "/process/execute", {"command": "true"})
            execute_timeout = conn.prepare("POST", "/process/execute", {"command": "true", "timeout": 60})
            version = conn.prepare("GET", "/version")

            def daemon_exec(raw: bytes, via: HttpConn = conn) -> float:
                start = time.perf_counter()
                status, _headers, body = via.roundtrip(raw)
                elapsed = time.perf_counter() - start
                answer = check_json(status, body, 200)
                if answer.get("exitCode") != 0 or answer.get("stdout") != "" or answer.get("result") != "":
                    raise RuntimeError(f"/process/execute true answered {body!r}")
                return elapsed

            def daemon_version() -> float:
                start = time.perf_counter()
                status, _headers, body = conn.roundtrip(version)
                elapsed = time.perf_counter() - start
                check_json(status, body, 200)
                return elapsed

            def spawn(argv: list[str]) -> float:
                start = time.perf_counter()
                spawn_wait(argv)
                return time.perf_counter() - start

            kinds = {
                "daemon_execute": lambda: daemon_exec(execute),
                "daemon_execute_timeout": lambda: daemon_exec(execute_timeout),
                "daemon_sh_execute": lambda: daemon_exec(execute, conn_sh),
                "spawn_sh": lambda: spawn([sh, "-c", "true"]),
                "http_version": daemon_version,
            }
            if bash:
                kinds["spawn_bash"] = lambda: spawn([bash, "-c", "true"])
            samples: dict[str, list[float]] = {name: [] for name in kinds}
            names = list(kinds)
            cpu0 = daemon.counters()
            for i in range(EXEC_WARMUP + EXEC_RUNS):
                # Take turns, starting one kind further on each iteration.
                for k in range(len(names)):
                    name = names[(i + k) % len(names)]
                    elapsed = kinds[name]()
                    if i >= EXEC_WARMUP:
                        samples[name].append(elapsed)
            cpu1 = daemon.counters()
            info = daemon_info(daemon)
    finally:
        daemon.stop()
        daemon_sh.stop()
    out = {name: summary_us(values) for name, values in samples.items()}
    result = {
        "runs": EXEC_RUNS,
        "warmup": EXEC_WARMUP,
        "sh": f"{sh} -> {os.path.realpath(sh)}",
        "bash": bash,
        "bash_version": tool_version([bash, "--version"]) if bash else None,
        "daemon_shell": "bash" if bash else "sh",
        "timings": out,
        "ratio_p50_vs_sh": out["daemon_execute"]["p50_us"] / out["spawn_sh"]["p50_us"],
        "ratio_p99_vs_sh": out["daemon_execute"]["p99_us"] / out["spawn_sh"]["p99_us"],
        "ratio_p50_sh_daemon_vs_sh": out["daemon_sh_execute"]["p50_us"] / out["spawn_sh"]["p50_us"],
        "ratio_p50_vs_bash": (out["daemon_execute"]["p50_us"] / out["spawn_bash"]["p50_us"]) if bash else None,
        "ratio_p99_vs_bash": (out["daemon_execute"]["p99_us"] / out["spawn_bash"]["p99_us"]) if bash else None,
        "daemon_cpu_us_per_execute": (cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1]) / (2 * (EXEC_WARMUP + EXEC_RUNS)) * 1e6,
        "daemon_after": info,
    }
    for name, s in out.items():
        log(f"exec {name}: p50 {s['p50_us']:.0f} us, p99 {s['p99_us']:.0f} us, mean {s['mean_us']:.0f} us")
    log(f"exec: daemon p50 / sh -c true p50 = {result['ratio_p50_vs_sh']:.2f}x"
        + (f", / bash -c true p50 = {result['ratio_p50_vs_bash']:.2f}x" if bash else ""))
    return result


# ---------------------------------------------------------------------------------------------
# 2. 1 GiB of session output over the WebSocket


class Demux:
    """Splits a marker-framed log (`01 01 01` = stdout follows, `02 02 02` = stderr follows) fed
    in arbitrary pieces; counts and SHA-256-hashes each stream. Stream 0 = bytes before any
    marker. Only looks at 0x01/0x02 bytes (memchr via bytearray.find), so clean data costs two
    fast scans per piece."""

    def __init__(self, initial: int = 0) -> None:
        self.stream = initial
        self.hashes = [hashlib.sha256(), hashlib.sha256(), hashlib.sha256()]
        self.counts = [0, 0, 0]
        self.markers = 0
        self.split_markers = 0
        self.carry = b""

    def feed(self, buf, start: int, end: int) -> None:
        if self.carry:
            # A marker may have been cut at the end of the previous piece: rare, so copy.
            data = self.carry + bytes(buf[start:end])
            self.carry = b""
            self._scan(data, 0, len(data), joined=True)
        else:
            self._scan(buf, start, end)

    def finish(self) -> None:
        if self.carry:  # bytes that looked like the start of a marker but the log ended
            data, self.carry = self.carry, b""
            self._emit(data, 0, len(data))

    def _emit(self, buf, start: int, end: int) -> None:
        if end > start:
            self.counts[self.stream] += end - start
            self.hashes[self.stream].update(memoryview(buf)[start:end])

    def _scan(self, buf, start: int, end: int, joined: bool = False) -> None:
        run = start
        p1 = buf.find(1, start, end)
        p2 = buf.find(2, start, end)
        while p1 >= 0 or p2 >= 0:
            if p2 < 0 or 0 <= p1 < p2:
                p, x = p1, 1
            else:
                p, x = p2, 2
            if p + 3 <= end:
                if buf[p + 1] == x and buf[p + 2] == x:
                    self._emit(buf, run, p)
                    self.stream = x
                    self.markers += 1
                    if joined and p < 3:
                        self.split_markers += 1
                    run = nxt = p + 3
                else:
                    nxt = p + 1  # a lone 0x01/0x02 content byte
            elif all(b == x for b in buf[p:end]):
                self._emit(buf, run, p)
                self.carry = bytes(buf[p:end])
                return
            else:
                nxt = p + 1
            if 0 <= p1 < nxt:
                p1 = buf.find(1, nxt, end)
            if 0 <= p2 < nxt:
                p2 = buf.find(2, nxt, end)
        self._emit(buf, run, end)


def pattern_line() -> str:
    """1021 printable characters (hex digits of a SHA-256 chain, a space every 64): no 0x01/0x02."""
    parts, digest = [], b"toolboxd process benchmark"
    while sum(len(p) + 1 for p in parts) < 1021:
        digest = hashlib.sha256(digest).digest()
        parts.append(digest.hex())
    return " ".join(parts)[:1021]


def generator(size: int) -> str:
    return f"yes {shlex.quote(pattern_line())} | head -c {size}"


def pipe_to_python(command: str, bash: str) -> tuple[float, Demux]:
    """The generator under bash, its stdout pipe read into a 4 MiB buffer and fed to Demux."""
    buf = bytearray(4 * MIB)
    mv = memoryview(buf)
    demux = Demux(initial=1)
    start = time.perf_counter()
    proc = subprocess.Popen([bash, "-c", command], stdout=subprocess.PIPE, bufsize=0)
    fd = proc.stdout.fileno()
    while True:
        n = os.readv(fd, [mv])
        if n == 0:
            break
        demux.feed(buf, 0, n)
    code = proc.wait()
    elapsed = time.perf_counter() - start
    demux.finish()
    if code != 0:
        raise RuntimeError(f"generator exited {code}")
    return elapsed, demux


def pipe_to_cat(command: str, bash: str) -> float:
    start = time.perf_counter()
    subprocess.run([bash, "-c", f"{command} | cat > /dev/null"], check=True)
    return time.perf_counter() - start


def bench_stream(binary: Path) -> dict:
    size = STREAM_BYTES
    bash = shutil.which("bash") or "/bin/sh"
    command = generator(size)
    work, env = workdirs("stream")
    env["TOOLBOXD_MAX_OUTPUT"] = str(2 * size + 64 * MIB)
    daemon = start_daemon(binary, work, "process-stream", env)
    rounds: list[dict] = []
    expected: tuple[int, str] | None = None
    peak_kib = 0
    try:
        with daemon, HttpConn(daemon.port) as conn:
            def through_daemon(index: int) -> dict:
                sid = f"stream-{index}"
                check_json(*conn.request("POST", "/process/session", {"sessionId": sid})[::2], 201)
                os.sync()
                demux = Demux()
                daemon.reset_peak_rss()
                cpu0 = daemon.counters()
                client0 = time.process_time()
                start = time.perf_counter()
                status, _h, body = conn.request("POST", f"/process/session/{sid}/exec",
                                                {"command": command, "runAsync": True})
                cmd_id = check_json(status, body, 202)["cmdId"]
                accepted = time.perf_counter()
                ws = WebSocketClient(daemon.port, f"/process/session/{sid}/command/{cmd_id}/logs?follow=true", SDK)
                try:
                    code, reason = ws.run(demux.feed)
                finally:
                    ws.close()
                elapsed = time.perf_counter() - start
                client_cpu = time.process_time() - client0
                cpu1 = daemon.counters()
                demux.finish()
                hwm = kib(daemon.status(), "VmHWM")
                info = json.loads(conn.request("GET", f"/process/session/{sid}/command/{cmd_id}")[2])
                check_json(*conn.request("DELETE", f"/process/session/{sid}")[::2], 204)
                return {
                    "seconds": elapsed,
                    "seconds_to_202": accepted - start,
                    "stdout_bytes": demux.counts[1],
                    "stderr_bytes": demux.counts[2],
                    "unmarked_bytes": demux.counts[0],
                    "stdout_sha256": demux.hashes[1].hexdigest(),
                    "markers": demux.markers,
                    "markers_split_across_frames": demux.split_markers,
                    "close_code": code,
                    "close_reason": reason,
                    "exit_code": info.get("exitCode"),
                    "ws": dict(ws.stats),
                    "daemon_vmhwm_kib": hwm,
                    "daemon_user_s": cpu1[0] - cpu0[0],
                    "daemon_sys_s": cpu1[1] - cpu0[1],
                    "daemon_minor_faults": cpu1[2] - cpu0[2],
                    "client_cpu_s": client_cpu,
                }

            def mixed_check(lines: int = 20000) -> dict:
                """Untimed: both streams interleaved line by line (a marker at nearly every line),
                followed over the WebSocket; each stream must equal what the loop wrote to it."""
                sid = "stream-mixed"
                check_json(*conn.request("POST", "/process/session", {"sessionId": sid})[::2], 201)
                text = f'for i in $(seq 1 {lines}); do echo "out $i"; echo "err $i" >&2; done'
                status, _h, body = conn.request("POST", f"/process/session/{sid}/exec",
                                                {"command": text, "runAsync": True})
                cmd_id = check_json(status, body, 202)["cmdId"]
                demux = Demux()
                ws = WebSocketClient(daemon.port, f"/process/session/{sid}/command/{cmd_id}/logs?follow=true", SDK)
                try:
                    code, _reason = ws.run(demux.feed)
                finally:
                    ws.close()
                demux.finish()
                check_json(*conn.request("DELETE", f"/process/session/{sid}")[::2], 204)
                want = {1: "".join(f"out {i}\n" for i in range(1, lines + 1)).encode(),
                        2: "".join(f"err {i}\n" for i in range(1, lines + 1)).encode()}
                ok = (code == 1000 and demux.counts[0] == 0
                      and all(demux.counts[k] == len(want[k]) and demux.hashes[k].digest() == hashlib.sha256(want[k]).digest()
                              for k in (1, 2)))
                return {"command": text, "ok": ok, "close_code": code, "counts": demux.counts[1:],
                        "expected": [len(want[1]), len(want[2])], "unmarked_bytes": demux.counts[0],
                        "markers": demux.markers, "markers_split_across_frames": demux.split_markers,
                        "frames": ws.stats["data_frames"]}

            order = ["daemon_ws", "pipe_python", "pipe_cat"]
            for index in range(STREAM_TRIALS + 1):
                entry: dict = {"warmup": index == 0}
                for k in range(len(order)):
                    name = order[(index + k) % len(order)]
                    if name == "daemon_ws":
                        entry[name] = through_daemon(index)
                        peak_kib = max(peak_kib, entry[name]["daemon_vmhwm_kib"])
                    elif name == "pipe_python":
                        client0 = time.process_time()
                        seconds, demux = pipe_to_python(command, bash)
                        entry[name] = {"seconds": seconds, "bytes": demux.counts[1],
                                       "sha256": demux.hashes[1].hexdigest(),
                                       "client_cpu_s": time.process_time() - client0}
                        got = (demux.counts[1], demux.hashes[1].hexdigest())
                        if expected is None:
                            expected = got
                        elif got != expected:
                            raise RuntimeError(f"the generator is not deterministic: {got} vs {expected}")
                    else:
                        entry[name] = {"seconds": pipe_to_cat(command, bash)}
                    os.sync()
                d = entry["daemon_ws"]
                log(f"stream round {index}{' (warm-up)' if index == 0 else ''}: daemon {size / MB / d['seconds']:.0f} MB/s "
                    f"({d['stdout_bytes']} bytes, close {d['close_code']}, peak RSS {d['daemon_vmhwm_kib']} KiB, "
                    f"client CPU {d['client_cpu_s']:.2f} s); pipe->python "
                    f"{size / MB / entry['pipe_python']['seconds']:.0f} MB/s; pipe->cat "
                    f"{size / MB / entry['pipe_cat']['seconds']:.0f} MB/s")
                rounds.append(entry)
            mixed = mixed_check()
            log(f"stream: interleaved stdout/stderr check: {mixed}")
            after = daemon_info(daemon)
    finally:
        daemon.stop()
    assert expected is not None
    timed = [r for r in rounds if not r["warmup"]]
    problems = []
    for i, r in enumerate(rounds):
        d = r["daemon_ws"]
        for key, want in (("stdout_bytes", expected[0]), ("stdout_sha256", expected[1]), ("stderr_bytes", 0),
                          ("unmarked_bytes", 0), ("close_code", 1000), ("exit_code", 0)):
            if d[key] != want:
                problems.append(f"round {i}: {key} = {d[key]!r}, expected {want!r}")
    if not mixed["ok"]:
        problems.append(f"interleaved stdout/stderr check failed: {mixed}")
    if expected[0] != size:
        problems.append(f"the generator wrote {expected[0]} bytes, not {size}")

    def med(name: str, key: str = "seconds") -> float:
        return median([r[name][key] for r in timed])

    def best(name: str) -> float:
        return min(r[name]["seconds"] for r in timed)

    daemon_s, py_s, cat_s = med("daemon_ws"), med("pipe_python"), med("pipe_cat")
    lost = max(expected[0] - r["daemon_ws"]["stdout_bytes"] for r in rounds)
    result = {
        "bytes": size,
        "trials": STREAM_TRIALS,
        "command": command,
        "line_bytes": len(pattern_line()) + 1,
        "max_output": int(env["TOOLBOXD_MAX_OUTPUT"]),
        "expected_sha256": expected[1],
        "rounds": rounds,
        "verify": "; ".join(problems) or "ok",
        "bytes_lost_max": lost,
        "daemon_ws": {
            "median_s": daemon_s, "best_s": best("daemon_ws"),
            "mb_per_s": size / MB / daemon_s, "best_mb_per_s": size / MB / best("daemon_ws"),
            "seconds_to_202_median": med("daemon_ws", "seconds_to_202"),
            "client_cpu_s_median": med("daemon_ws", "client_cpu_s"),
            "daemon_vmhwm_kib": peak_kib,
            "daemon_cpu_s_per_gib": median([(r["daemon_ws"]["daemon_user_s"] + r["daemon_ws"]["daemon_sys_s"])
                                            for r in timed]) / (size / GIB),
            "daemon_user_s_per_gib": med("daemon_ws", "daemon_user_s") / (size / GIB),
            "daemon_sys_s_per_gib": med("daemon_ws", "daemon_sys_s") / (size / GIB),
            "daemon_minor_faults_per_gib": med("daemon_ws", "daemon_minor_faults") / (size / GIB),
            "frames_median": median([r["daemon_ws"]["ws"]["data_frames"] for r in timed]),
            "max_frame": max(r["daemon_ws"]["ws"]["max_frame"] for r in rounds),
            "markers_split_across_frames": sum(r["daemon_ws"]["markers_split_across_frames"] for r in rounds),
        },
        "pipe_python": {"median_s": py_s, "best_s": best("pipe_python"), "mb_per_s": size / MB / py_s,
                        "client_cpu_s_median": med("pipe_python", "client_cpu_s")},
        "pipe_cat": {"median_s": cat_s, "best_s": best("pipe_cat"), "mb_per_s": size / MB / cat_s},
        "ratio_vs_pipe_python": py_s / daemon_s,
        "ratio_vs_pipe_cat": cat_s / daemon_s,
        "mixed_check": mixed,
        "daemon_after": after,
    }
    log(f"stream: daemon {result['daemon_ws']['mb_per_s']:.0f} MB/s (median of {STREAM_TRIALS}), "
        f"pipe->python {result['pipe_python']['mb_per_s']:.0f} MB/s ({result['ratio_vs_pipe_python']:.2f}x), "
        f"pipe->cat {result['pipe_cat']['mb_per_s']:.0f} MB/s ({result['ratio_vs_pipe_cat']:.2f}x); "
        f"peak RSS {peak_kib / 1024:.1f} MiB; lost {lost}; verify: {result['verify']}")
    return result


# ---------------------------------------------------------------------------------------------
# 3. 500 sessions


def ensure_nofile(sessions: int) -> dict[str, int]:
    # Each session holds 5 descriptors in the daemon (its shell's stdin and stdout pipes, and the
    # three log files of its one command), plus transient FIFOs during an exec.
    need = 8 * sessions + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and (hard == resource.RLIM_INFINITY or hard >= need):
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else hard, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        raise SystemExit(f"process.py: `ulimit -n` is {soft} (hard {hard}); {sessions} sessions need at least "
                         f"{need} open files in the daemon. Raise it (ulimit -n {need}) or lower BENCH_SESSIONS.")
    return {"nofile_soft": soft, "nofile_hard": hard, "nofile_needed": need}


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def bench_sessions(binary: Path) -> dict:
    limits = ensure_nofile(SESSIONS)
    work, env = workdirs("sessions")
    daemon = start_daemon(binary, work, "process-sessions", env)
    result: dict = {"sessions": SESSIONS, **limits}
    try:
        with daemon, HttpConn(daemon.port) as conn:
            def create(sid: str) -> None:
                check_json(*conn.request("POST", "/process/session", {"sessionId": sid})[::2], 201)

            def echo_pid(sid: str) -> int:
                answer = check_json(*conn.request("POST", f"/process/session/{sid}/exec", {"command": "echo $$"},
                                                  SDK)[::2], 200)
                text = (answer.get("stdout") or answer.get("output") or "").strip("\x01\x02\n ")
                if answer.get("exitCode") != 0 or not text.isdigit():
                    raise RuntimeError(f"session {sid}: `echo $$` answered {answer!r}")
                return int(text)

            def delete(sid: str) -> None:
                check_json(*conn.request("DELETE", f"/process/session/{sid}")[::2], 204)

            # Warm-up: one session through its whole life, so one-time costs are not per-session.
            create("warmup")
            echo_pid("warmup")
            delete("warmup")
            time.sleep(0.5)
            result["daemon_before"] = daemon_info(daemon)
            ids = [f"bench-{i:04d}" for i in range(SESSIONS)]

            start = time.perf_counter()
            for sid in ids:
                create(sid)
            result["create_s"] = time.perf_counter() - start
            result["daemon_after_create"] = daemon_info(daemon)

            start = time.perf_counter()
            pids = [echo_pid(sid) for sid in ids]
            result["exec_s"] = time.perf_counter() - start
            time.sleep(0.5)
            result["daemon_after_exec"] = daemon_info(daemon)
            if len(set(pids)) != SESSIONS:
                raise RuntimeError(f"{SESSIONS} sessions reported only {len(set(pids))} distinct shell pids")
            rss = [kib(proc_status(pid), "VmRSS") for pid in pids]
            result["shells_vmrss_sum_kib"] = sum(rss)
            result["shell_vmrss_median_kib"] = median(rss)
            result["shells_pss_sum_kib"] = sum(pss_kib(pid) for pid in pids)
            result["shell_exe"] = os.path.realpath(f"/proc/{pids[0]}/exe")
            listed = json.loads(conn.request("GET", "/process/session")[2])
            result["listed_sessions"] = len(listed)

            start = time.perf_counter()
            for sid in ids:
                delete(sid)
            result["delete_s"] = time.perf_counter() - start
            result["daemon_after_delete"] = daemon_info(daemon)
            time.sleep(2)
            result["daemon_after_delete_2s"] = daemon_info(daemon)
            result["shells_alive_after_delete"] = sum(alive(pid) for pid in pids)
            result["listed_after_delete"] = len(json.loads(conn.request("GET", "/process/session")[2]))
    finally:
        daemon.stop()
    before = result["daemon_before"]["VmRSS"]
    result["per_session_kib"] = (result["daemon_after_exec"]["VmRSS"] - before) / SESSIONS
    log(f"sessions: {SESSIONS} created in {result['create_s']:.2f} s, exec in {result['exec_s']:.2f} s, deleted in "
        f"{result['delete_s']:.2f} s; daemon VmRSS {before} -> {result['daemon_after_create']['VmRSS']} -> "
        f"{result['daemon_after_exec']['VmRSS']} KiB ({result['per_session_kib']:.1f} KiB/session), after delete "
        f"{result['daemon_after_delete']['VmRSS']} / 2 s later {result['daemon_after_delete_2s']['VmRSS']} KiB; "
        f"threads {result['daemon_before']['Threads']} -> {result['daemon_after_exec']['Threads']}, fds "
        f"{result['daemon_before']['fds']} -> {result['daemon_after_exec']['fds']}; shells: VmRSS sum "
        f"{result['shells_vmrss_sum_kib'] / 1024:.0f} MiB, PSS sum {result['shells_pss_sum_kib'] / 1024:.0f} MiB; "
        f"alive after delete {result['shells_alive_after_delete']}")
    return result


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


def main() -> None:
    binary = toolboxd_bin()
    cpu_before = cpu_times()
    from transfer import binary_info  # noqa: PLC0415 (same description of the binary as transfer.json)

    results: dict = {"machine": machine_info(), "binary": binary_info(binary), "parts": PARTS}
    parts = {"exec": bench_exec, "stream": bench_stream, "sessions": bench_sessions}
    hz = os.sysconf("SC_CLK_TCK")
    for name in PARTS:
        busy_before = wait_quiet()
        ticks0, own0 = cpu_times(), os.times()
        results[name] = parts[name](binary)
        # The daemon has been stopped and waited for, so its CPU time (and that of the shells it
        # reaped) is in our children's times: what is left of the machine's busy time is others'.
        ticks1, own1 = cpu_times(), os.times()
        delta = [a - b for a, b in zip(ticks1, ticks0)]
        total = max(1, sum(delta[:8]))
        busy = total - delta[3] - delta[4]
        own = (own1.user + own1.system + own1.children_user + own1.children_system
               - own0.user - own0.system - own0.children_user - own0.children_system) * hz
        results[name]["cpu_busy_before"] = busy_before
        results[name]["cpu_busy_during"] = round(busy / total, 3)
        results[name]["cpu_others_during"] = round(max(0.0, (busy - own) / total), 3)
        results[name]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        log(f"{name}: CPUs busy before {busy_before:.2f}; during: {busy / total:.2f} of which other processes "
            f"{results[name]['cpu_others_during']:.2f}")
    shutil.rmtree(DATA_DIR / "process", ignore_errors=True)
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    write_result("process", results)


if __name__ == "__main__":
    main()
