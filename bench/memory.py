#!/usr/bin/env python3
"""Memory given back: the daemon's RSS across capped command outputs and after a search load.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/memory.py

Two parts, each with its own fresh daemon (work dir under DATA_DIR/memory/), RSS from
/proc/PID/status (VmRSS; VmHWM reset with clear_refs=5 where a peak is wanted):

1. Capped outputs. Idle RSS (VmRSS 2 s after the first answer), then BENCH_MEMORY_CAPPED_RUNS
   (default 10) `POST /process/execute` of `yes LINE | head -c 100663296` (96 MiB of printable
   text on stdout) under the default 64 MiB output cap, one after the other on one keep-alive
   connection; each answer must be exit code 0, `truncated` true, `result` and `stdout` the first
   64 MiB with the truncation marker. Then two executes that write to both streams (50 MiB of
   stdout, then 50 MiB of stderr: `result` holds 64 MiB of both, `stdout` 50 MiB, `stderr` the
   rest). Peak: VmHWM over all of them (reset before the first). After: VmRSS 2 s and 5 s after
   the last answer. Goals: peak ≤ 2x idle RSS + 64 MiB, RSS 2 s after ≤ 16 MiB.

2. Search load. Idle RSS, then BENCH_MEMORY_FIND_SECONDS (default 150) of `GET /files/find` over
   the find benchmark's corpus (DATA_DIR/corpus, built as bench/find.py builds it) by
   BENCH_MEMORY_FIND_CLIENTS (default 4) clients at once, each on its own keep-alive connection,
   cycling through the patterns of bench/find.py (0 to ~167 000 matches, up to a 20 MB answer)
   and a few sub-directories; every answer must be 200 and a JSON array. VmRSS is sampled
   every 0.5 s during the load (peak and mean), then 1, 2, 5, 10 and 20 s after it. Goal: RSS 2 s
   after the load ≤ 2x the idle RSS at start.

Env: BENCH_MEMORY_PARTS (capped,find), BENCH_MEMORY_CAPPED_RUNS, BENCH_MEMORY_FIND_SECONDS,
BENCH_MEMORY_FIND_CLIENTS.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.parse
from pathlib import Path

from common import (
    DATA_DIR, MIB, HttpConn, cpu_busy, cpu_times, kib, log, machine_info, start_daemon, steal_since,
    toolboxd_bin, write_result,
)

PARTS = [p.strip() for p in os.environ.get("BENCH_MEMORY_PARTS", "capped,find").split(",") if p.strip()]
CAPPED_RUNS = int(os.environ.get("BENCH_MEMORY_CAPPED_RUNS", "10"))
FIND_SECONDS = float(os.environ.get("BENCH_MEMORY_FIND_SECONDS", "150"))
FIND_CLIENTS = int(os.environ.get("BENCH_MEMORY_FIND_CLIENTS", "4"))
CAP = 64 * MIB  # the daemon's default --max-output
LINE = "toolboxd memory benchmark " * 10  # 260 printable characters


def workdir(name: str) -> Path:
    root = DATA_DIR / "memory" / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


def rss(daemon) -> dict[str, int]:
    status = daemon.status()
    out = {key: kib(status, key) for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
    out["Threads"] = int(status.get("Threads", "0"))
    return out


def idle_rss(daemon, conn: HttpConn) -> dict[str, int]:
    status, _headers, _body = conn.request("GET", "/version")
    if status != 200:
        raise RuntimeError(f"/version answered {status}")
    time.sleep(2.0)
    return rss(daemon)


def execute(conn: HttpConn, command: str) -> tuple[float, dict]:
    start = time.perf_counter()
    status, headers, body = conn.request("POST", "/process/execute", {"command": command})
    elapsed = time.perf_counter() - start
    if status != 200:
        raise RuntimeError(f"/process/execute answered {status}: {body[:500]!r}")
    answer = json.loads(body)
    answer["_bytes"] = len(body)
    answer["_chunked"] = "chunked" in headers.get("transfer-encoding", "")
    return elapsed, answer


def bench_capped(binary: Path) -> dict:
    root = workdir("capped")
    expected = (LINE + "\n").encode() * (CAP // (len(LINE) + 1) + 1)
    expected = expected[:CAP]
    marker = f"\n[toolboxd: output truncated at {CAP} bytes]\n".encode()
    busy_before = cpu_busy(2.0)
    daemon = start_daemon(binary, root, "memory-capped")
    runs = []
    with daemon, HttpConn(daemon.port, timeout=300) as conn:
        idle = idle_rss(daemon, conn)
        daemon.reset_peak_rss()
        for i in range(CAPPED_RUNS):
            elapsed, answer = execute(conn, f"yes '{LINE}' | head -c {96 * MIB}")
            result = answer["result"].encode()
            ok = (answer["exitCode"] == 0 and answer.get("truncated") is True
                  and result == expected + marker and answer["stdout"] == answer["result"]
                  and answer["stderr"] == "")
            if not ok:
                raise RuntimeError(f"capped execute {i}: exit {answer['exitCode']}, truncated "
                                   f"{answer.get('truncated')}, result {len(result)} bytes "
                                   f"(starts {result[:80]!r}, ends {result[-80:]!r})")
            after = rss(daemon)
            runs.append({"seconds": round(elapsed, 3), "response_bytes": answer["_bytes"],
                         "chunked": answer["_chunked"], "vmrss_kib": after["VmRSS"], "vmhwm_kib": after["VmHWM"]})
            log(f"capped {i}: {elapsed:.2f} s, {answer['_bytes'] / MIB:.0f} MiB answer, "
                f"VmRSS {after['VmRSS'] / 1024:.1f} MiB, VmHWM {after['VmHWM'] / 1024:.1f} MiB")
        both = []
        half = 50 * MIB
        for i in range(2):
            elapsed, answer = execute(conn, f"yes '{LINE}' | head -c {half}; yes '{LINE}' | head -c {half} >&2")
            ok = (answer["exitCode"] == 0 and answer.get("truncated") is True
                  and len(answer["stdout"]) == half
                  and len(answer["stderr"]) == CAP - half + len(marker)
                  and answer["result"] == answer["stdout"] + answer["stderr"])
            if not ok:
                raise RuntimeError(f"two-stream execute {i}: exit {answer['exitCode']}, stdout "
                                   f"{len(answer['stdout'])}, stderr {len(answer['stderr'])}, result {len(answer['result'])}")
            after = rss(daemon)
            both.append({"seconds": round(elapsed, 3), "response_bytes": answer["_bytes"],
                         "vmrss_kib": after["VmRSS"], "vmhwm_kib": after["VmHWM"]})
            log(f"two streams {i}: {elapsed:.2f} s, VmRSS {after['VmRSS'] / 1024:.1f} MiB, "
                f"VmHWM {after['VmHWM'] / 1024:.1f} MiB")
        peak = rss(daemon)["VmHWM"]
        time.sleep(2.0)
        after_2s = rss(daemon)
        time.sleep(3.0)
        after_5s = rss(daemon)
        cpu = daemon.counters()
    result = {
        "runs": CAPPED_RUNS,
        "cap_bytes": CAP,
        "command_bytes": 96 * MIB,
        "busy_before": round(busy_before, 3),
        "idle": idle,
        "executes": runs,
        "two_streams": both,
        "peak_kib": peak,
        "after_2s": after_2s,
        "after_5s": after_5s,
        "daemon_cpu_s": round(cpu[0] + cpu[1], 2),
        "goal_peak_kib": 2 * idle["VmRSS"] + CAP // 1024,
        "goal_after_kib": 16 * 1024,
    }
    log(f"capped: idle {idle['VmRSS'] / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB "
        f"(goal ≤ {result['goal_peak_kib'] / 1024:.1f}), after 2 s {after_2s['VmRSS'] / 1024:.1f} MiB, "
        f"after 5 s {after_5s['VmRSS'] / 1024:.1f} MiB")
    return result


def bench_find(binary: Path) -> dict:
    from find import PATTERNS, build_corpus

    corpus = DATA_DIR / "corpus"
    info = build_corpus(corpus)
    subdirs = sorted(p for p in corpus.iterdir() if p.is_dir())
    roots = [corpus] + subdirs
    root = workdir("find")
    busy_before = cpu_busy(2.0)
    daemon = start_daemon(binary, root, "memory-find")
    stop = threading.Event()
    counts = {"requests": 0, "bytes": 0, "errors": 0}
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        n = index
        try:
            with HttpConn(daemon.port, timeout=600) as conn:
                while not stop.is_set():
                    pattern = PATTERNS[n % len(PATTERNS)]
                    path = roots[(n // len(PATTERNS)) % len(roots)]
                    n += FIND_CLIENTS
                    query = urllib.parse.urlencode({"path": str(path), "pattern": pattern})
                    status, _headers, body = conn.request("GET", f"/files/find?{query}")
                    if status != 200 or not body.startswith(b"[") or not body.endswith(b"]"):
                        raise RuntimeError(f"find {pattern!r} in {path}: {status} {body[:200]!r}")
                    with lock:
                        counts["requests"] += 1
                        counts["bytes"] += len(body)
        except Exception as err:  # noqa: BLE001 - reported in the result
            with lock:
                counts["errors"] += 1
                errors.append(repr(err))

    samples = []
    with daemon, HttpConn(daemon.port) as conn:
        idle = idle_rss(daemon, conn)
        cpu0 = cpu_times()
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(FIND_CLIENTS)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        while time.monotonic() - start < FIND_SECONDS:
            time.sleep(0.5)
            samples.append(rss(daemon)["VmRSS"])
        stop.set()
        for thread in threads:
            thread.join()
        ended = time.monotonic()
        load_busy = 1.0 - 0.0
        delta = [a - b for a, b in zip(cpu_times(), cpu0)]
        load_busy = 1.0 - (delta[3] + delta[4]) / max(1, sum(delta))
        peak = max(samples) if samples else 0
        after = {}
        for mark in (1, 2, 5, 10, 20):
            time.sleep(max(0.0, ended + mark - time.monotonic()))
            after[str(mark)] = rss(daemon)
            log(f"find load: {mark} s after, VmRSS {after[str(mark)]['VmRSS'] / 1024:.1f} MiB, "
                f"{after[str(mark)]['Threads']} threads")
    if errors:
        raise RuntimeError(f"find load: {len(errors)} clients failed: {errors[:3]}")
    result = {
        "seconds": FIND_SECONDS,
        "clients": FIND_CLIENTS,
        "corpus": info,
        "roots": len(roots),
        "patterns": PATTERNS,
        "busy_before": round(busy_before, 3),
        "busy_during": round(load_busy, 3),
        "requests": counts["requests"],
        "response_bytes": counts["bytes"],
        "idle": idle,
        "load_peak_kib": peak,
        "load_mean_kib": round(sum(samples) / max(1, len(samples))),
        "after": after,
        "goal_after_kib": 2 * idle["VmRSS"],
    }
    log(f"find load: {counts['requests']} requests, {counts['bytes'] / MIB:.0f} MiB; idle {idle['VmRSS'] / 1024:.1f} MiB, "
        f"peak {peak / 1024:.1f} MiB, 2 s after {after['2']['VmRSS'] / 1024:.1f} MiB "
        f"(goal ≤ {result['goal_after_kib'] / 1024:.1f})")
    return result


def main() -> None:
    binary = toolboxd_bin()
    cpu_before = cpu_times()
    path = Path(os.environ.get("BENCH_RESULTS", Path(__file__).resolve().parent / "results")) / "memory.json"
    results: dict = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = machine_info()
    if "capped" in PARTS:
        results["capped"] = bench_capped(binary)
    if "find" in PARTS:
        results["find"] = bench_find(binary)
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    shutil.rmtree(DATA_DIR / "memory", ignore_errors=True)
    write_result("memory", results)


if __name__ == "__main__":
    main()
