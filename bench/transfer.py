#!/usr/bin/env python3
"""1 GiB bulk-upload / bulk-download through toolboxd vs the loopback ceiling, measured in one run.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/transfer.py

References, measured in the same run on the same disk (DATA_DIR):
  * loopback ceiling: the same file sent through a plain TCP socket on 127.0.0.1
    (sender: socket.sendfile; receiver: recv_into a 1 MiB buffer + write to a file);
  * cat: `cat big.bin > copy.bin`.
toolboxd is driven with curl, which streams both ways (it never holds the file in memory):
  * bulk-upload:   curl -H 'Expect:' -F 'files[0].path=DST' -F 'files[0].file=@big.bin' /files/bulk-upload
  * bulk-download: curl -d '{"paths":["SRC"]}' -o out /files/bulk-download   (out = the multipart body)
  * upload-v2:     curl -H 'Expect:' -X POST -T big.bin '/files/upload-v2?path=DST'   (raw body)
  * download:      curl -o out '/files/download?path=SRC'
`Expect:` turns off curl's `Expect: 100-continue`; a separate check times curl with it left on.
Every transfer writes a file on the same disk; the written file is deleted and `sync` is run
between trials (outside the timing) so no writeback is left over. Peak RSS is VmHWM of the
daemon, reset (clear_refs=5) before each method.

Env: BENCH_TRANSFER_MIB (default 1024), BENCH_TRIALS (default 3, plus one warm-up).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from common import (
    DATA_DIR, GIB, MIB, drop_dirty, kib, log, machine_info, median, start_daemon, tool_version,
    toolboxd_bin, write_result,
)

SIZE = int(os.environ.get("BENCH_TRANSFER_MIB", "1024")) * MIB
TRIALS = int(os.environ.get("BENCH_TRIALS", "3"))
CURL = ["curl", "-sS", "--fail-with-body", "--max-time", "600"]
BOUNDARY = b"DAYTONA-FILE-BOUNDARY"


def ensure_source(path: Path) -> None:
    if path.exists() and path.stat().st_size == SIZE:
        return
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
    os.sync()


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as src:
        while src.read(16 * MIB):
            pass


def loopback_ceiling(src: Path, dst: Path) -> float:
    """file -> TCP 127.0.0.1 -> file; seconds until the receiver has closed its file."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()
    received = [0]

    def receive() -> None:
        conn, _ = listener.accept()
        buf = bytearray(MIB)
        view = memoryview(buf)
        with conn, open(dst, "wb", buffering=0) as out:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                out.write(view[:n])
                received[0] += n
        done.set()

    thread = threading.Thread(target=receive)
    thread.start()
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, open(src, "rb") as data:
        sock.sendfile(data)
    thread.join()
    elapsed = time.perf_counter() - start
    listener.close()
    assert received[0] == SIZE, (received[0], SIZE)
    return elapsed


def same_bytes(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def check_bulk_download(src: Path, body: Path) -> str:
    """Checks that the multipart body holds exactly src as its one part; returns '' or a problem."""
    with open(body, "rb") as got, open(src, "rb") as want:
        head = got.read(8192)
        if not head.startswith(b"--" + BOUNDARY + b"\r\n"):
            return f"body does not start with --{BOUNDARY.decode()}: {head[:200]!r}"
        end = head.find(b"\r\n\r\n")
        if end < 0:
            return "no end of part headers in the first 8 KiB"
        headers = head[: end + 4]
        got.seek(len(headers))
        left = SIZE
        while left:
            n = min(left, 16 * MIB)
            if got.read(n) != want.read(n):
                return f"content differs near offset {SIZE - left}"
            left -= n
        tail = got.read(4096)
        if tail.strip() != b"--" + BOUNDARY + b"--":
            return f"unexpected trailer {tail[:200]!r}"
    return ""


def main() -> None:
    binary = toolboxd_bin()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    src = DATA_DIR / "big.bin"
    out_dir = DATA_DIR / "out"
    out_dir.mkdir(exist_ok=True)
    ensure_source(src)
    warm(src)
    dst = out_dir / "dst.bin"
    drop_dirty(dst)

    results: dict[str, object] = {
        "size_bytes": SIZE,
        "trials": TRIALS,
        "machine": machine_info(),
        "curl": tool_version(["curl", "--version"]),
        "methods": {},
    }
    methods = results["methods"]

    def measure(name: str, once, verify=None, daemon=None) -> None:
        samples = []
        cpu0 = daemon.cpu_seconds() if daemon else 0.0
        if daemon:
            daemon.reset_peak_rss()
        problem = ""
        for trial in range(TRIALS + 1):
            seconds = once()
            if trial == 0 and verify:
                problem = verify()
            drop_dirty(dst)
            if trial > 0:
                samples.append(seconds)
        entry = {
            "seconds": samples,
            "median_s": median(samples),
            "mib_per_s": SIZE / MIB / median(samples),
            "verify": problem or "ok",
        }
        if daemon:
            status = daemon.status()
            entry["daemon_vmhwm_kib"] = kib(status, "VmHWM")
            entry["daemon_vmrss_after_kib"] = kib(status, "VmRSS")
            entry["daemon_cpu_s_per_gib"] = (daemon.cpu_seconds() - cpu0) / (TRIALS + 1) / (SIZE / GIB)
        methods[name] = entry
        log(f"{name}: median {entry['median_s']:.3f} s = {entry['mib_per_s']:.0f} MiB/s "
            f"{'peak RSS %d KiB' % entry['daemon_vmhwm_kib'] if daemon else ''} verify={entry['verify']}")

    # References.
    measure("loopback_ceiling", lambda: loopback_ceiling(src, dst), lambda: "" if same_bytes(src, dst) else "differs")

    def cat_once() -> float:
        start = time.perf_counter()
        with open(dst, "wb") as out:
            subprocess.run(["cat", str(src)], stdout=out, check=True)
        return time.perf_counter() - start

    measure("cat", cat_once, lambda: "" if same_bytes(src, dst) else "differs")

    daemon = start_daemon(binary, DATA_DIR, "transfer")
    base = daemon.base
    try:
        resp = out_dir / "response.json"

        def curl(args: list[str], output: Path) -> float:
            start = time.perf_counter()
            proc = subprocess.run(CURL + ["-o", str(output)] + args, capture_output=True)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                body = output.read_bytes()[:500] if output.exists() else b""
                raise RuntimeError(f"curl {args} exited {proc.returncode}: {proc.stderr!r} body={body!r}")
            return elapsed

        def check_upload_response() -> str:
            problem = "" if same_bytes(src, dst) else "written file differs"
            try:
                files = json.loads(resp.read_text())["files"]
                if files != [{"path": str(dst), "bytes": SIZE}]:
                    problem += f" response {files}"
            except (ValueError, KeyError, TypeError) as err:
                problem += f" response not {{files:[...]}}: {err}: {resp.read_bytes()[:300]!r}"
            return problem.strip()

        measure(
            "bulk_upload",
            lambda: curl(["-H", "Expect:", "-F", f"files[0].path={dst}", "-F", f"files[0].file=@{src}",
                          f"{base}/files/bulk-upload"], resp),
            check_upload_response,
            daemon,
        )
        measure(
            "bulk_download",
            lambda: curl(["-H", "Content-Type: application/json", "-d", json.dumps({"paths": [str(src)]}),
                          f"{base}/files/bulk-download"], dst),
            lambda: check_bulk_download(src, dst),
            daemon,
        )
        measure(
            "upload_v2_raw",
            lambda: curl(["-H", "Expect:", "-X", "POST", "-H", "Content-Type: application/octet-stream",
                          "-T", str(src), f"{base}/files/upload-v2?path={dst}"], resp),
            lambda: "" if same_bytes(src, dst) else "written file differs",
            daemon,
        )
        measure(
            "download",
            lambda: curl([f"{base}/files/download?path={src}"], dst),
            lambda: "" if same_bytes(src, dst) else "downloaded bytes differ",
            daemon,
        )

        # curl's default `Expect: 100-continue` (sent for bodies over 1 MiB): a server that does
        # not answer `100 Continue` costs a 1 s stall per upload.
        small = out_dir / "small.bin"
        small.write_bytes(os.urandom(4 * MIB))
        timings = {}
        for label, extra in (("expect_100_continue", []), ("no_expect", ["-H", "Expect:"])):
            runs = []
            for _ in range(3):
                runs.append(curl(extra + ["-F", f"files[0].path={dst}", "-F", f"files[0].file=@{small}",
                                          f"{base}/files/bulk-upload"], resp))
                drop_dirty(dst)
            timings[label] = median(runs)
        small.unlink()
        results["expect_100_continue_check"] = timings
        log(f"Expect: 100-continue check: {timings}")
    finally:
        code, stop_s = daemon.stop()
        results["daemon_exit"] = {"code": code, "seconds_after_sigterm": stop_s}
        drop_dirty(dst)
    write_result("transfer", results)


if __name__ == "__main__":
    main()
