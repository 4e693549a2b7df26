#!/usr/bin/env python3
"""Load (issue 17): many concurrent clients mixing every kind of request, and `/version` while user
code saturates the CPUs and memory.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/load.py                  # both parts, ~10 minutes
    TOOLBOXD_BIN=... python3 bench/load.py --part load --seconds 60 --clients 50    # a shorter load
    TOOLBOXD_BIN=... python3 bench/load.py --part saturate                          # /version under saturation

Results go to bench/results/load.json (a part run alone keeps the other part's results). All
traffic goes to 127.0.0.1. Standard library only.

1. Load. One daemon (work dir and HOME under DATA_DIR/load, removed at the end). `--clients`
   (BENCH_LOAD_CLIENTS, default 200) clients, spread over `--procs` (BENCH_LOAD_PROCS, default 4)
   processes of threads, so the client is not one GIL. Each client has its own keep-alive
   connection (raw HTTP/1.1, TCP_NODELAY; a new one after any error), its own session and MCP
   session, and loops over a weighted mix of operations for `--seconds` (BENCH_LOAD_SECONDS,
   default 300):

   * exec: `POST /process/execute` of `echo exec-N`; stdout checked.
   * upload + download: 1–64 KiB of random bytes by `POST /files/bulk-upload` (multipart, as the
     SDKs' upload_file), read back by `POST /files/bulk-download` (the SDKs' download_file) or
     `GET /files/download` in turn; the bytes compared.
   * list: `GET /files?path=WORK` (the clients' 200 directories and the corpus).
   * find: `GET /files/find?path=CORPUS&pattern=needle` (64 files, 5 matching lines each); the
     match count checked.
   * session: `POST /process/session/ID/exec` (async) of `echo out-N; echo err-N >&2`, then its
     logs followed over the WebSocket (`?follow=true`, `X-Daytona-SDK-Version: 0.226.1`) until the
     server closes it; both streams checked.
   * pty: `GET /process/pty/create-connect` (as the SDKs create a PTY), the `connected` frame,
     `echo LOAD$((40+2))` typed, read until `LOAD42` comes back, `DELETE /process/pty/ID`, then
     the WebSocket read to its close frame.
   * mcp: `POST /mcp` `tools/call` of `list_files` (the client's directory) or `execute_command`
     (`echo mcp-N`) in turn, in an MCP session; the SSE answer read to its end and checked.

   An error is any unexpected status, a body that does not check, an exception or a timeout
   (60 s per socket operation); each kind is counted with up to 3 samples. Latency p50/p99/max
   per operation is over the successful ones. The daemon's VmRSS, heap in use and free (its
   `/metrics`), open fds, threads and child processes: before the clients start (idle), every
   10 s of their warm-up, after it ("start", after an idle settle of 3 s), every 10 s during the
   load, after the clients stop (settle of 5 s: "end"), and after they deleted their sessions
   (settle 5 s). The warm-up: each client does one of each operation, then the mix until
   `--warmup` (BENCH_LOAD_WARMUP, default 150) seconds after the clients started, so that what a
   connection or a session holds once it is in use has reached its working size before "start":
   an MCP session's four channels (rmcp's, tokio mpsc) take a second 12 KiB block each once some
   32 calls went through them, about 120 s into this mix (heaptrack, RELIABILITY.md); `--warmup 0`
   measures from the first round. Goals: 0 errors, VmRSS end within 10% of start, open fds end equal to start.
   BENCH_LOAD_OPS (comma-separated) runs a subset of the mix.

2. `/version` under saturation. A fresh daemon. Through it (a session command, async), user code
   burns the CPUs (`nproc + 2` `python3` busy loops) and a `python3` allocator fills memory up to
   the bound and holds it (pages written, 16 MiB at a time): run as root with a writable cgroup v1
   memory hierarchy, the daemon starts in a new memory cgroup limited to BENCH_SATURATE_MEM_MIB
   (default 2048) MiB, and the allocator fills it to 99% of what is left of it (so the kernel
   reclaims inside the cgroup, the daemon's pages included, as in a sandbox at its limit);
   otherwise the daemon's own cgroup limit if it has one, else BENCH_SATURATE_MEM_FRACTION
   (default 0.5, at most 0.8) of MemAvailable: this machine is shared. Then `GET /version` on a
   fresh connection every 20 ms for `--saturate-seconds` (BENCH_SATURATE_SECONDS, default 60):
   p50/p99/max and failures (timeout 5 s). The same sampling runs before the load, for reference.
   Goal: p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
import traceback
from pathlib import Path

from common import (
    DATA_DIR, RESULTS_DIR, HttpConn, WebSocketClient, cpu_busy, cpu_times, kib, log, machine_info, pct,
    proc_status, start_daemon, steal_since, toolboxd_bin, write_result,
)

ACCEPT = "application/json, text/event-stream"
MCP_VERSION = "2025-11-25"
SDK_VERSION = "0.226.1"
SDK = {"X-Daytona-SDK-Version": SDK_VERSION}
TIMEOUT = 60.0
CORPUS_FILES = 64
CORPUS_MATCHES = 5
# Relative weights of the operations in the mix.
# The `/version` sampler's nice value (Linux: per thread); below 0 needs root.
SAMPLER_NICE = int(os.environ.get("BENCH_SATURATE_SAMPLER_NICE", "-10" if os.geteuid() == 0 else "0"))
WEIGHTS = {"exec": 3, "file": 3, "list": 2, "find": 2, "session": 2, "pty": 1, "mcp": 2}
# The operations in the mix (BENCH_LOAD_OPS, comma-separated; default all): one alone shows
# which one a growth comes from.
OPS = [n.strip() for n in os.environ.get("BENCH_LOAD_OPS", ",".join(WEIGHTS)).split(",") if n.strip() in WEIGHTS]


class Check(Exception):
    """An answer that came but was wrong."""


# ---------------------------------------------------------------------------------------------
# The clients


class Client:
    def __init__(self, cid: int, port: int, work: Path, corpus: Path, stats: "Stats") -> None:
        self.cid = cid
        self.port = port
        self.dir = work / f"c{cid}"
        self.work = work
        self.corpus = corpus
        self.stats = stats
        self.rng = random.Random(cid)
        self.seq = 0
        self.conn: HttpConn | None = None
        self.session = f"load-{cid}"
        self.mcp_session: str | None = None

    # -- plumbing

    def http(self) -> HttpConn:
        if self.conn is None:
            self.conn = HttpConn(self.port, timeout=TIMEOUT)
        return self.conn

    def drop_conn(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None

    def request(self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
                want: int = 200) -> tuple[dict[str, str], bytes]:
        status, head, data = self.http().request(method, path, body, headers)
        if status != want:
            raise Check(f"status {status}: {method} {path.split('?')[0]} answered {data[:300]!r}")
        return head, data

    def timed(self, name: str, fn) -> bool:
        start = time.perf_counter()
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - every failure is a recorded error
            elapsed = time.perf_counter() - start
            if isinstance(err, Check):
                kind = str(err).split(":")[0]
            elif isinstance(err, (socket.timeout, TimeoutError)):
                kind = "timeout"
            else:
                kind = type(err).__name__
            self.stats.error(name, kind, f"{err!s}"[:400], elapsed)
            self.drop_conn()
            return False
        self.stats.ok(name, time.perf_counter() - start)
        return True

    # -- set-up and tear-down

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.request("POST", "/process/session", {"sessionId": self.session}, want=201)
        head, body = self.request("POST", "/mcp", {
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": MCP_VERSION, "capabilities": {},
                       "clientInfo": {"name": "load", "version": "1"}},
        }, {"Accept": ACCEPT})
        sse_message(body, 0)
        self.mcp_session = head["mcp-session-id"]
        status, _, body = self.http().request("POST", "/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                              self.mcp_headers())
        if status != 202:
            raise Check(f"status {status}: notifications/initialized answered {body[:200]!r}")

    def teardown(self) -> None:
        self.request("DELETE", f"/process/session/{self.session}", want=204)
        if self.mcp_session:
            status, _, body = self.http().request("DELETE", "/mcp", None, self.mcp_headers())
            if status not in (200, 202, 204):
                raise Check(f"status {status}: DELETE /mcp answered {body[:200]!r}")
        self.drop_conn()

    def mcp_headers(self) -> dict[str, str]:
        return {"Accept": ACCEPT, "Mcp-Session-Id": self.mcp_session or "", "MCP-Protocol-Version": MCP_VERSION}

    # -- the operations

    def op_exec(self) -> None:
        n = self.next()
        _, body = self.request("POST", "/process/execute", {"command": f"echo exec-{n}"})
        answer = json.loads(body)
        if answer.get("exitCode") != 0 or answer.get("result") != f"exec-{n}\n":
            raise Check(f"mismatch: execute answered {body[:300]!r}")

    def op_file(self) -> None:
        n = self.next()
        data = self.rng.randbytes(self.rng.randint(1024, 64 * 1024))
        path = str(self.dir / f"f{n % 4}.bin")
        self.timed_part("upload", lambda: self.upload(path, data))
        self.timed_part("download", lambda: self.download(path, data, bulk=n % 2 == 0))

    def timed_part(self, name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        self.stats.ok(name, time.perf_counter() - start)

    def upload(self, path: str, data: bytes) -> None:
        boundary = f"loadbench{self.rng.getrandbits(64):016x}"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\n{path}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"f.bin\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        self.request("POST", "/files/bulk-upload", body,
                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def download(self, path: str, data: bytes, bulk: bool) -> None:
        if bulk:
            head, body = self.request("POST", "/files/bulk-download", {"paths": [path]})
            got = one_part(head.get("content-type", ""), body)
        else:
            _, got = self.request("GET", f"/files/download?path={path}")
        if got != data:
            raise Check(f"mismatch: {'bulk-download' if bulk else 'download'} of {path}: {len(got)} bytes, "
                        f"{len(data)} written")

    def op_list(self) -> None:
        _, body = self.request("GET", f"/files?path={self.work}")
        names = {entry["name"] for entry in json.loads(body)}
        if f"c{self.cid}" not in names or "corpus" not in names:
            raise Check(f"mismatch: listing of {self.work} has {len(names)} entries, without c{self.cid} or corpus")

    def op_find(self) -> None:
        _, body = self.request("GET", f"/files/find?path={self.corpus}&pattern=needle")
        matches = json.loads(body)
        if len(matches) != CORPUS_FILES * CORPUS_MATCHES:
            raise Check(f"mismatch: find answered {len(matches)} matches, {CORPUS_FILES * CORPUS_MATCHES} expected")

    def op_session(self) -> None:
        n = self.next()
        _, body = self.request("POST", f"/process/session/{self.session}/exec",
                               {"command": f"echo out-{n}; echo err-{n} >&2", "runAsync": True}, SDK, want=202)
        cmd = json.loads(body)["cmdId"]
        ws = WebSocketClient(self.port, f"/process/session/{self.session}/command/{cmd}/logs?follow=true", SDK,
                             timeout=TIMEOUT, buffer_size=65536)
        try:
            log_bytes = bytearray()
            while True:
                opcode, payload = ws.read_frame()
                if opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    try:
                        ws.send_frame(0x8, payload[:2])
                    except OSError:
                        pass
                    break
                log_bytes += payload
        finally:
            ws.close()
        if code != 1000:
            raise Check(f"close {code}: session logs closed with {payload!r}")
        out, err = demux(bytes(log_bytes))
        if out != f"out-{n}\n".encode() or err != f"err-{n}\n".encode():
            raise Check(f"mismatch: session log {bytes(log_bytes)[:200]!r}")

    def op_pty(self) -> None:
        pty_id = f"load-{self.cid}-{self.next()}"
        ws = WebSocketClient(self.port, f"/process/pty/create-connect?id={pty_id}&cols=80&rows=24", SDK,
                             timeout=TIMEOUT, buffer_size=65536)
        try:
            opcode, payload = ws.read_frame()
            if opcode != 0x1 or json.loads(payload).get("status") != "connected":
                raise Check(f"mismatch: expected the connected frame, got {opcode} {payload[:200]!r}")
            ws.send_frame(0x2, b"echo LOAD$((40+2))\n")
            seen = b""
            while b"LOAD42" not in seen:
                opcode, payload = ws.read_frame()
                if opcode == 0x8:
                    raise Check(f"closed: the PTY closed before the echo: {payload!r}; output {seen[-200:]!r}")
                seen += payload
            self.request("DELETE", f"/process/pty/{pty_id}")
            while True:
                opcode, payload = ws.read_frame()
                if opcode == 0x8:
                    try:
                        ws.send_frame(0x8, payload[:2])
                    except OSError:
                        pass
                    break
        finally:
            ws.close()

    def op_mcp(self) -> None:
        n = self.next()
        if n % 2:
            args = {"name": "list_files", "arguments": {"path": str(self.dir)}}
        else:
            args = {"name": "execute_command", "arguments": {"command": f"echo mcp-{n}"}}
        _, body = self.request("POST", "/mcp", {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": args},
                               self.mcp_headers())
        result = sse_message(body, n).get("result", {})
        content = result.get("structuredContent") or {}
        if result.get("isError"):
            raise Check(f"mcp error: tools/call {args['name']} answered {body[:300]!r}")
        if args["name"] == "execute_command":
            if content.get("exit_code") != 0 or content.get("stdout") != f"mcp-{n}\n":
                raise Check(f"mismatch: execute_command answered {body[:300]!r}")
        elif not isinstance(content.get("entries"), list):
            raise Check(f"mismatch: list_files answered {body[:300]!r}")

    def next(self) -> int:
        self.seq += 1
        return self.seq

    def one_of_each(self) -> None:
        for name in WEIGHTS:
            self.timed(name, getattr(self, f"op_{name}"))

    def loop(self, stop: threading.Event | mp.synchronize.Event) -> None:
        names = [n for n in WEIGHTS if n in OPS]
        weights = [WEIGHTS[n] for n in names]
        while not stop.is_set():
            name = self.rng.choices(names, weights)[0]
            self.timed(name, getattr(self, f"op_{name}"))


def sse_message(body: bytes, want_id: int) -> dict:
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("data: {"):
            message = json.loads(line[6:])
            if message.get("id") == want_id:
                return message
    raise Check(f"mismatch: no JSON-RPC message {want_id} in {body[:300]!r}")


def one_part(content_type: str, body: bytes) -> bytes:
    """The body of the one file part of a bulk-download answer."""
    boundary = content_type.partition("boundary=")[2].strip().strip('"').encode()
    if not boundary:
        raise Check(f"mismatch: bulk-download Content-Type {content_type!r}")
    start = body.find(b"--" + boundary + b"\r\n")
    head_end = body.find(b"\r\n\r\n", start)
    end = body.find(b"\r\n--" + boundary, head_end)
    if start < 0 or head_end < 0 or end < 0 or not body.rstrip().endswith(b"--" + boundary + b"--"):
        raise Check(f"mismatch: bulk-download body is not one part: {body[:200]!r}")
    if b'name="file"' not in body[start:head_end]:
        raise Check(f"mismatch: bulk-download part is not a file: {body[start:head_end]!r}")
    return body[head_end + 4:end]


def demux(raw: bytes) -> tuple[bytes, bytes]:
    """A session log (`01 01 01`: stdout follows, `02 02 02`: stderr follows) split by stream."""
    out, err = bytearray(), bytearray()
    target = out
    i = 0
    while i < len(raw):
        if raw[i:i + 3] == b"\x01\x01\x01":
            target, i = out, i + 3
        elif raw[i:i + 3] == b"\x02\x02\x02":
            target, i = err, i + 3
        else:
            target.append(raw[i])
            i += 1
    return bytes(out), bytes(err)


class Stats:
    """Latencies and errors of one worker process's clients."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, dict[str, dict]] = {}
        self.recording = False

    def ok(self, name: str, elapsed: float) -> None:
        if self.recording:
            with self.lock:
                self.samples.setdefault(name, []).append(elapsed)

    def error(self, name: str, kind: str, message: str, elapsed: float) -> None:
        with self.lock:
            phase = "load" if self.recording else "other"
            entry = self.errors.setdefault(phase, {}).setdefault(f"{name}: {kind}", {"count": 0, "samples": []})
            entry["count"] += 1
            if len(entry["samples"]) < 3:
                entry["samples"].append({"message": message, "seconds": round(elapsed, 3)})

    def snapshot(self) -> dict:
        """A copy (a Queue pickles what it is given later, on a thread of its own)."""
        with self.lock:
            return json.loads(json.dumps({"samples": self.samples, "errors": self.errors}))


def worker(cids: list[int], port: int, work: str, corpus: str, warmup: float, ready, go, stop, teardown,
           out) -> None:
    """One client process: a thread per client. Reports "ready" after set-up and warm-up (one of
    each operation, then the mix until `warmup` seconds after the process started), runs the mix
    from `go` to `stop`, sends its results, then tears down after `teardown`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stats = Stats()
    clients = [Client(cid, port, Path(work), Path(corpus), stats) for cid in cids]
    phase_done = threading.Barrier(len(clients) + 1)
    warm = threading.Event()
    threading.Timer(warmup, warm.set).start()

    def run(client: Client) -> None:
        try:
            client.timed("setup", client.setup)
            client.one_of_each()
            client.loop(warm)
        except Exception:  # noqa: BLE001
            stats.error("thread", "crash", traceback.format_exc()[-400:], 0)
        phase_done.wait()
        go.wait()
        try:
            client.loop(stop)
        except Exception:  # noqa: BLE001
            stats.error("thread", "crash", traceback.format_exc()[-400:], 0)
        phase_done.wait()
        teardown.wait()
        client.timed("teardown", client.teardown)
        phase_done.wait()

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    phase_done.wait()
    stats.recording = True
    ready.put(len(clients))
    phase_done.wait()
    stats.recording = False
    out.put(("load", stats.snapshot()))
    with stats.lock:
        stats.errors.pop("other", None)
    teardown.wait()
    phase_done.wait()
    out.put(("teardown", stats.snapshot()["errors"]))


# ---------------------------------------------------------------------------------------------
# Daemon samples


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def heap_kib(port: int) -> dict:
    """The daemon's heap in use and free (its `/metrics` gauges, glibc's mallinfo2), in KiB."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            text = b"".join(iter(lambda: conn.recv(65536), b"")).decode(errors="replace")
    except OSError:
        return {}
    out = {}
    for name, key in (("toolboxd_heap_in_use_bytes", "heap_in_use"), ("toolboxd_heap_free_bytes", "heap_free")):
        match = re.search(rf"^{name} (\d+)$", text, re.M)
        if match:
            out[key] = int(match.group(1)) // 1024
    return out


def sample(pid: int, port: int, t0: float) -> dict:
    status = proc_status(pid)
    return {
        "t": round(time.monotonic() - t0, 1),
        "VmRSS": kib(status, "VmRSS"),
        "VmHWM": kib(status, "VmHWM"),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status.get("Threads", "0")),
        "children": len(descendants(pid)),
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
        **heap_kib(port),
    }


def summary_ms(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1e3, 2),
        "p90_ms": round(pct(values, 90) * 1e3, 2),
        "p99_ms": round(pct(values, 99) * 1e3, 2),
        "mean_ms": round(statistics.fmean(values) * 1e3, 2),
        "max_ms": round(max(values) * 1e3, 2),
    }


def merge_errors(into: dict, errors: dict) -> None:
    for key, entry in errors.items():
        mine = into.setdefault(key, {"count": 0, "samples": []})
        mine["count"] += entry["count"]
        mine["samples"] = (mine["samples"] + entry["samples"])[:3]


def ensure_nofile(need: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))


def bench_load(binary: Path, seconds: float, clients: int, procs: int, warmup: float) -> dict:
    root = DATA_DIR / "load"
    shutil.rmtree(root, ignore_errors=True)
    work, home = root / "work", root / "home"
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    home.mkdir()
    for i in range(CORPUS_FILES):
        lines = [f"line {j} of file {i}: {'needle here' if j % 20 == 7 else 'nothing'}" for j in range(100)]
        (corpus / f"f{i:03}.txt").write_text("\n".join(lines) + "\n")
    ensure_nofile(16 * clients + 1024)
    busy_before = round(cpu_busy(2.0), 3)
    cpu_before = cpu_times()
    daemon = start_daemon(binary, work, "load", {"HOME": str(home)})
    t0 = time.monotonic()
    result: dict = {"clients": clients, "procs": procs, "seconds": seconds,
                    "weights": {n: w for n, w in WEIGHTS.items() if n in OPS},
                    "cpu_busy_before": busy_before, "machine": machine_info()}
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    go, stop, teardown = ctx.Event(), ctx.Event(), ctx.Event()
    workers = []
    with daemon:
        time.sleep(2)
        result["idle"] = sample(daemon.pid, daemon.port, t0)
        shares = [list(range(i, clients, procs)) for i in range(procs)]
        for cids in shares:
            p = ctx.Process(target=worker, args=(cids, daemon.port, str(work), str(corpus), warmup, ready, go, stop,
                                                 teardown, out))
            p.start()
            workers.append(p)
        started = 0
        warmup_samples = []
        deadline = time.monotonic() + warmup + 600
        while started < clients:
            try:
                started += ready.get(timeout=10)
            except queue.Empty:
                assert time.monotonic() < deadline, "the clients never finished their warm-up"
                warmup_samples.append(sample(daemon.pid, daemon.port, t0))
                log(f"warm-up: {warmup_samples[-1]}")
        result["warmup_seconds"] = warmup
        result["warmup_samples"] = warmup_samples
        log(f"{clients} clients set up and warmed up in {time.monotonic() - t0:.1f} s; settling")
        time.sleep(3)
        result["start"] = sample(daemon.pid, daemon.port, t0)
        cpu0 = daemon.counters()
        busy0 = cpu_times()
        log(f"start: {result['start']}")
        go.set()
        load_start = time.monotonic()
        samples = []
        while (left := seconds - (time.monotonic() - load_start)) > 0:
            time.sleep(min(10.0, left))
            samples.append(sample(daemon.pid, daemon.port, t0))
            log(f"load: {samples[-1]}")
        stop.set()
        merged: dict[str, list[float]] = {}
        errors: dict = {}
        other_errors: dict = {}
        for _ in workers:
            _kind, snap = out.get(timeout=600)
            for name, values in snap["samples"].items():
                merged.setdefault(name, []).extend(values)
            merge_errors(errors, snap["errors"].get("load", {}))
            merge_errors(other_errors, snap["errors"].get("other", {}))
        load_seconds = time.monotonic() - load_start
        cpu1 = daemon.counters()
        busy = cpu_times()
        delta = [a - b for a, b in zip(busy, busy0)]
        result["machine_busy_during_load"] = round(1 - (delta[3] + delta[4]) / max(1, sum(delta[:8])), 3)
        time.sleep(5)
        result["end"] = sample(daemon.pid, daemon.port, t0)
        log(f"end: {result['end']}")
        teardown.set()
        teardown_errors: dict = {}
        for _ in workers:
            _kind, errs = out.get(timeout=600)
            merge_errors(teardown_errors, errs.get("other", {}))
        for p in workers:
            p.join(timeout=60)
        time.sleep(5)
        result["after_teardown"] = sample(daemon.pid, daemon.port, t0)
        log(f"after teardown: {result['after_teardown']}")
        leftovers = [(pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode(errors="replace"))
                     for pid in descendants(daemon.pid)[:10] if Path(f"/proc/{pid}").exists()]
        result["leftover_children"] = leftovers
        result["samples"] = samples
        result["load_seconds"] = round(load_seconds, 1)
        result["daemon_cpu_s"] = round(cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1], 1)
        code, took = daemon.stop()
        result["daemon_exit"] = {"code": code, "seconds": round(took, 2)}
    ops = {name: summary_ms(values) for name, values in merged.items()}
    total = sum(v["n"] for v in ops.values() if v.get("n"))
    result.update({
        "operations": ops,
        "requests_ok": total,
        "errors": errors,
        "error_count": sum(e["count"] for e in errors.values()),
        "setup_errors": other_errors,
        "teardown_errors": teardown_errors,
        "rss_drift": round(result["end"]["VmRSS"] / result["start"]["VmRSS"] - 1, 4),
        "fds_equal": result["end"]["fds"] == result["start"]["fds"],
        "steal_during_run": round(steal_since(cpu_before), 4),
        "stderr_tail": daemon.stderr_path.read_text(errors="replace")[-2000:],
    })
    for name, s in ops.items():
        if s.get("n"):
            log(f"{name}: n {s['n']}, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms")
    log(f"errors: {result['error_count']} {json.dumps(errors)[:2000]}")
    log(f"RSS start {result['start']['VmRSS']} KiB, end {result['end']['VmRSS']} KiB "
        f"({result['rss_drift'] * 100:+.1f}%); fds {result['start']['fds']} -> {result['end']['fds']}")
    shutil.rmtree(root, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------------------------
# /version under saturation

MEM_FILL = r"""
import os, sys, time
bound = int(sys.argv[1])
chunk = 16 << 20
held = []
total = 0
while total + chunk <= bound:
    held.append(b"\x5a" * chunk)
    total += chunk
print(f"FILLED {total}", flush=True)
while True:
    time.sleep(3600)
"""


def memory_cgroup_v1() -> Path | None:
    base = Path("/sys/fs/cgroup/memory")
    if os.geteuid() != 0 or not (base / "cgroup.procs").exists():
        return None
    return base


def own_memory_limit(pid: int) -> int | None:
    """The memory limit of `pid`'s cgroup (v2 memory.max or v1 memory.limit_in_bytes), if any."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hier, controllers, path = line.split(":", 2)
        candidates = []
        if hier == "0":
            candidates = [Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.max",
                          Path("/sys/fs/cgroup/unified") / path.lstrip("/") / "memory.max"]
        elif "memory" in controllers.split(","):
            candidates = [Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.limit_in_bytes"]
        for c in candidates:
            try:
                text = c.read_text().strip()
            except OSError:
                continue
            if text != "max" and int(text) < (1 << 60):
                return int(text)
    return None


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def version_samples(port: int, seconds: float, interval: float = 0.02) -> dict:
    """`GET /version` on a fresh connection every `interval` for `seconds`, from a thread at
    SAMPLER_NICE: a real client sits outside the sandbox, so its own wait for a CPU is not the
    daemon's."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(_version_samples(port, seconds, interval)))
    thread.start()
    thread.join()
    return box


def _version_samples(port: int, seconds: float, interval: float) -> dict:
    nice = None
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SAMPLER_NICE)
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        pass
    samples: list[float] = []
    failures: dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                raw = b""
                while chunk := sock.recv(65536):
                    raw += chunk
            if not raw.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"answered {raw[:100]!r}")
            samples.append(time.perf_counter() - start)
        except Exception as err:  # noqa: BLE001
            kind = "timeout" if isinstance(err, (socket.timeout, TimeoutError)) else type(err).__name__
            failures[kind] = failures.get(kind, 0) + 1
        time.sleep(max(0.0, interval - (time.perf_counter() - start)))
    out = summary_ms(samples)
    out["sampler_nice"] = nice
    out["failures"] = failures
    out["over_50ms"] = sum(1 for s in samples if s > 0.05)
    return out


def bench_saturate(binary: Path, seconds: float) -> dict:
    root = DATA_DIR / "saturate"
    shutil.rmtree(root, ignore_errors=True)
    (root / "work").mkdir(parents=True)
    (root / "home").mkdir()
    cores = os.cpu_count() or 2
    result: dict = {"seconds": seconds, "burners": cores + 2, "machine": machine_info(),
                    "cpu_busy_before": round(cpu_busy(2.0), 3)}
    limit_mib = int(os.environ.get("BENCH_SATURATE_MEM_MIB", "2048"))
    fraction = min(0.8, float(os.environ.get("BENCH_SATURATE_MEM_FRACTION", "0.5")))
    cgroup: Path | None = None
    v1 = memory_cgroup_v1()
    if v1 is not None and limit_mib > 0:
        cgroup = v1 / f"toolboxd-bench-{os.getpid()}"
        cgroup.mkdir()
        (cgroup / "memory.limit_in_bytes").write_text(str(limit_mib << 20))
        # Join it ourselves for the start, so the daemon is born inside; leave right after.
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        # Drop the binary's cached pages, so the daemon's text is read again, charged to this
        # cgroup, and reclaimable inside it, as in a sandbox whose image holds the binary.
        fd = os.open(binary, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    cpu_before = cpu_times()
    try:
        daemon = start_daemon(binary, root / "work", "saturate", {"HOME": str(root / "home")})
    finally:
        if cgroup is not None:
            (v1 / "cgroup.procs").write_text(str(os.getpid()))
    fill = None
    try:
        with daemon, HttpConn(daemon.port) as conn:
            time.sleep(1)
            if cgroup is not None:
                usage = int((cgroup / "memory.usage_in_bytes").read_text())
                bound = int(((limit_mib << 20) - usage) * 0.99)
                result["memory"] = {"how": f"cgroup v1 memory limit {limit_mib} MiB made for the daemon; "
                                           "fill to 99% of what was left", "limit_bytes": limit_mib << 20,
                                    "usage_before": usage}
            elif (limit := own_memory_limit(daemon.pid)) is not None:
                bound = int(limit * 0.97)
                result["memory"] = {"how": "the daemon's cgroup memory limit, 97% of it", "limit_bytes": limit}
            else:
                avail = mem_available()
                bound = int(avail * fraction)
                result["memory"] = {"how": f"no cgroup limit: {fraction:.0%} of MemAvailable", "mem_available": avail}
            result["memory"]["fill_bytes"] = bound
            result["baseline"] = version_samples(daemon.port, min(20.0, seconds))
            log(f"/version before saturation: {result['baseline']}")
            status, _, body = conn.request("POST", "/process/session", {"sessionId": "hog"})
            assert status == 201, body
            (root / "fill.py").write_text(MEM_FILL)
            burn = " ".join(["python3 -c 'while True: pass' &"] * (cores + 2))
            command = f"{burn} python3 {root / 'fill.py'} {bound} & wait"
            status, _, body = conn.request("POST", "/process/session/hog/exec", {"command": command, "runAsync": True},
                                           SDK)
            assert status == 202, body
            cmd = json.loads(body)["cmdId"]
            # Wait for the allocator to reach its bound (it prints FILLED) or 120 s.
            deadline = time.monotonic() + 120
            filled = None
            while time.monotonic() < deadline:
                status, _, body = conn.request("GET", f"/process/session/hog/command/{cmd}/logs", None, SDK)
                text = body.decode(errors="replace")
                if match := re.search(r"FILLED (\d+)", text):
                    filled = int(match.group(1))
                    break
                time.sleep(0.5)
            result["memory"]["filled_bytes"] = filled
            result["memory"]["seconds_to_fill"] = round(120 - (deadline - time.monotonic()), 1)
            if cgroup is not None:
                result["memory"]["usage_at_start"] = int((cgroup / "memory.usage_in_bytes").read_text())
            log(f"memory: {result['memory']}")
            busy0 = cpu_times()
            rss0 = kib(daemon.status(), "VmRSS")
            result["saturated"] = version_samples(daemon.port, seconds)
            delta = [a - b for a, b in zip(cpu_times(), busy0)]
            result["machine_busy_during"] = round(1 - (delta[3] + delta[4]) / max(1, sum(delta[:8])), 3)
            result["daemon_rss_kib"] = {"before": rss0, "after": kib(daemon.status(), "VmRSS")}
            if cgroup is not None:
                stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
                result["memory"]["usage_at_end"] = int((cgroup / "memory.usage_in_bytes").read_text())
                result["memory"]["failcnt"] = int((cgroup / "memory.failcnt").read_text())
                result["memory"]["pgmajfault"] = int(stat.get("total_pgmajfault", stat.get("pgmajfault", 0)))
            result["daemon_majflt"] = int(Path(f"/proc/{daemon.pid}/stat").read_text().rsplit(")", 1)[1].split()[9])
            log(f"/version under saturation: {result['saturated']}")
            status, _, _ = conn.request("DELETE", "/process/session/hog")
            result["session_delete_status"] = status
            time.sleep(1)
            result["children_after"] = len(descendants(daemon.pid))
    finally:
        for pid in descendants(daemon.pid) if daemon.proc.poll() is None else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if cgroup is not None:
            for _ in range(50):
                try:
                    cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
    result["steal_during_run"] = round(steal_since(cpu_before), 4)
    result["goal_met"] = result["saturated"].get("p99_ms", 1e9) <= 50 and not result["saturated"]["failures"]
    shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "load", "saturate"], default=os.environ.get("BENCH_LOAD_PARTS", "all"))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_LOAD_SECONDS", "300")))
    parser.add_argument("--clients", type=int, default=int(os.environ.get("BENCH_LOAD_CLIENTS", "200")))
    parser.add_argument("--procs", type=int, default=int(os.environ.get("BENCH_LOAD_PROCS", "4")))
    parser.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_LOAD_WARMUP", "150")))
    parser.add_argument("--saturate", action="store_true", help="same as --part saturate")
    parser.add_argument("--saturate-seconds", type=float,
                        default=float(os.environ.get("BENCH_SATURATE_SECONDS", "60")))
    args = parser.parse_args()
    part = "saturate" if args.saturate else args.part
    binary = toolboxd_bin()
    path = RESULTS_DIR / "load.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if part in ("all", "load"):
        data["load"] = bench_load(binary, args.seconds, args.clients, max(1, min(args.procs, args.clients)),
                                  args.warmup)
        write_result("load", data)
    if part in ("all", "saturate"):
        data["saturate"] = bench_saturate(binary, args.saturate_seconds)
        write_result("load", data)


if __name__ == "__main__":
    main()
