#!/usr/bin/env python3
"""1 GiB bulk-upload / bulk-download through toolboxd vs the loopback ceiling, measured in one run.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/transfer.py

References, measured in the same run on the same disk (DATA_DIR):
  * loopback ceiling: the same file sent through a plain TCP socket on 127.0.0.1 by
    bench/ceiling.rs (compiled with rustc -O; two processes: the sender is std::io::copy from
    the file, i.e. sendfile; the receiver reads into a 1 MiB buffer and writes to a file);
  * cat: `cat big.bin > copy.bin`;
  * curl floor: the same curl commands against bench/ceiling.rs's one-shot HTTP sink (writes
    the request body, multipart framing and all, to a file) or source (sendfile of the file):
    the best any HTTP server could do with this client.
toolboxd is driven with curl, which streams both ways (it never holds the file in memory):
  * bulk-upload:   curl -H 'Expect:' -F 'files[0].path=DST' -F 'files[0].file=@big.bin' /files/bulk-upload
  * bulk-download: curl -d '{"paths":["SRC"]}' -o out /files/bulk-download   (out = the multipart body)
  * upload-v2:     curl -H 'Expect:' -X POST -T big.bin '/files/upload-v2?path=DST'   (raw body)
  * download:      curl -o out '/files/download?path=SRC'
`Expect:` turns off curl's `Expect: 100-continue`; a separate check times curl with it left on.
Every transfer writes a file on the same disk; the written file is deleted and `sync` is run
between trials (outside the timing) so no writeback is left over. Peak RSS is VmHWM of the
daemon, reset (clear_refs=5) before each transfer; the largest over a method's trials is kept.

The methods take turns (round-robin), BENCH_TRIALS rounds after one warm-up round, so a slow
spell of the machine hits all of them alike; the median and the best trial are reported.

Env: BENCH_TRANSFER_MIB (default 1024), BENCH_TRIALS (default 5, plus one warm-up round).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from common import (
    cpu_times, steal_since,
    RESULTS_DIR, DATA_DIR, GIB, MIB, drop_dirty, kib, log, machine_info, median, start_daemon, tool_version,
    toolboxd_bin, write_result,
)

SIZE = int(os.environ.get("BENCH_TRANSFER_MIB", "1024")) * MIB
TRIALS = int(os.environ.get("BENCH_TRIALS", "5"))
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


def build_ceiling() -> Path:
    """Compiles bench/ceiling.rs (std only) with rustc -O into the results dir."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    exe = RESULTS_DIR / "ceiling"
    src = Path(__file__).resolve().parent / "ceiling.rs"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["rustc", "-O", "--edition", "2021", "-o", str(exe), str(src)], check=True)
    return exe


def loopback_ceiling(exe: Path, src: Path, dst: Path) -> float:
    """file -> TCP 127.0.0.1 -> file in compiled code; seconds until the receiver closed its file."""
    recv = subprocess.Popen([str(exe), "recv", str(dst)], stdout=subprocess.PIPE)
    port = recv.stdout.readline().strip().decode()
    start = time.perf_counter()
    send = subprocess.Popen([str(exe), "send", port, str(src)])
    total = recv.stdout.readline().strip()
    elapsed = time.perf_counter() - start
    if send.wait(timeout=60) != 0 or recv.wait(timeout=60) != 0 or int(total) != SIZE:
        raise RuntimeError(f"ceiling transfer failed: sent {total!r} of {SIZE}")
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
    cpu_before = cpu_times()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    src = DATA_DIR / "big.bin"
    out_dir = DATA_DIR / "out"
    out_dir.mkdir(exist_ok=True)
    ensure_source(src)
    warm(src)
    dst = out_dir / "dst.bin"
    resp = out_dir / "response.json"
    drop_dirty(dst)
    ceiling = build_ceiling()

    results: dict[str, object] = {
        "size_bytes": SIZE,
        "trials": TRIALS,
        "machine": machine_info(),
        "curl": tool_version(["curl", "--version"]),
        "methods": {},
    }

    def cat_once() -> float:
        start = time.perf_counter()
        with open(dst, "wb") as out:
            subprocess.run(["cat", str(src)], stdout=out, check=True)
        return time.perf_counter() - start

    def curl(args: list[str], output: Path) -> float:
        start = time.perf_counter()
        proc = subprocess.run(CURL + ["-o", str(output)] + args, capture_output=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            body = output.read_bytes()[:500] if output.exists() else b""
            raise RuntimeError(f"curl {args} exited {proc.returncode}: {proc.stderr!r} body={body!r}")
        return elapsed

    def check_copy() -> str:
        return "" if same_bytes(src, dst) else "written file differs from the source"

    def check_upload_response() -> str:
        problem = check_copy()
        try:
            files = json.loads(resp.read_text())["files"]
            if files != [{"path": str(dst), "bytes": SIZE}]:
                problem += f" response files={files}"
        except (ValueError, KeyError, TypeError) as err:
            problem += f" response not {{files:[...]}}: {err}: {resp.read_bytes()[:300]!r}"
        return problem.strip()

    def curl_floor(mode: str, path: Path, args_for_url) -> float:
        """The same curl command against bench/ceiling.rs's one-shot HTTP sink or source."""
        helper = subprocess.Popen([str(ceiling), mode, str(path)], stdout=subprocess.PIPE)
        url = f"http://127.0.0.1:{helper.stdout.readline().strip().decode()}/"
        try:
            args, output = args_for_url(url)
            return curl(args, output)
        finally:
            if helper.wait(timeout=60) != 0:
                raise RuntimeError(f"ceiling {mode} failed")

    daemon = start_daemon(binary, DATA_DIR, "transfer")
    base = daemon.base
    # name -> (one transfer, content check after the first one, runs through the daemon)
    methods = {
        "loopback_ceiling": (lambda: loopback_ceiling(ceiling, src, dst), check_copy, False),
        "cat": (cat_once, check_copy, False),
        "bulk_upload": (
            lambda: curl(["-H", "Expect:", "-F", f"files[0].path={dst}", "-F", f"files[0].file=@{src}",
                          f"{base}/files/bulk-upload"], resp),
            check_upload_response, True),
        "bulk_download": (
            lambda: curl(["-H", "Content-Type: application/json", "-d", json.dumps({"paths": [str(src)]}),
                          f"{base}/files/bulk-download"], dst),
            lambda: check_bulk_download(src, dst), True),
        "upload_v2_raw": (
            lambda: curl(["-H", "Expect:", "-X", "POST", "-H", "Content-Type: application/octet-stream",
                          "-T", str(src), f"{base}/files/upload-v2?path={dst}"], resp),
            check_copy, True),
        "download": (lambda: curl([f"{base}/files/download?path={src}"], dst), check_copy, True),
        # Client floors: the same curl commands against a minimal HTTP sink/source.
        "curl_floor_multipart_upload": (
            lambda: curl_floor("http-sink", dst, lambda url: (
                ["-H", "Expect:", "-F", f"files[0].path={dst}", "-F", f"files[0].file=@{src}", url], resp)),
            lambda: "", False),
        "curl_floor_raw_upload": (
            lambda: curl_floor("http-sink", dst, lambda url: (
                ["-H", "Expect:", "-X", "POST", "-H", "Content-Type: application/octet-stream", "-T", str(src), url],
                resp)),
            check_copy, False),
        "curl_floor_download": (
            lambda: curl_floor("http-source", src, lambda url: ([url], dst)), check_copy, False),
    }
    samples: dict[str, list[float]] = {name: [] for name in methods}
    problems: dict[str, str] = {}
    peak_kib: dict[str, int] = {name: 0 for name in methods}
    cpu: dict[str, list[float]] = {name: [0.0, 0.0, 0] for name in methods}  # user, sys, faults
    last: dict[str, float] = {}
    try:
        # Round-robin: every round runs each method once, so a slow spell of the machine
        # (page allocation in the VM, a neighbour's build) hits all methods alike.
        for trial in range(TRIALS + 1):
            for name, (once, verify, through_daemon) in methods.items():
                if through_daemon:
                    daemon.reset_peak_rss()
                    before = daemon.counters()
                seconds = once()
                last[name] = seconds
                if through_daemon:
                    peak_kib[name] = max(peak_kib[name], kib(daemon.status(), "VmHWM"))
                    after = daemon.counters()
                    for i in range(3):
                        cpu[name][i] += after[i] - before[i]
                if trial == 0:
                    problems[name] = verify()
                drop_dirty(dst)
                if trial > 0:
                    samples[name].append(seconds)
            log(f"round {trial}: " + ", ".join(
                f"{name} {SIZE / MIB / last[name]:.0f}" for name in methods
            ) + " MiB/s" + (" (warm-up)" if trial == 0 else ""))

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
        results["daemon_idle_after_kib"] = kib(daemon.status(), "VmRSS")
    finally:
        code, stop_s = daemon.stop()
        results["daemon_exit"] = {"code": code, "seconds_after_sigterm": stop_s}
        drop_dirty(dst)

    for name, (_once, _verify, through_daemon) in methods.items():
        entry = {
            "seconds": samples[name],
            "median_s": median(samples[name]),
            "min_s": min(samples[name]),
            "mib_per_s": SIZE / MIB / median(samples[name]),
            "best_mib_per_s": SIZE / MIB / min(samples[name]),
            "verify": problems.get(name) or "ok",
        }
        if through_daemon:
            entry["daemon_vmhwm_kib"] = peak_kib[name]
            per_gib = (TRIALS + 1) * (SIZE / GIB)
            entry["daemon_cpu_s_per_gib"] = (cpu[name][0] + cpu[name][1]) / per_gib
            entry["daemon_user_s_per_gib"] = cpu[name][0] / per_gib
            entry["daemon_sys_s_per_gib"] = cpu[name][1] / per_gib
            entry["daemon_minor_faults_per_gib"] = cpu[name][2] / per_gib
        results["methods"][name] = entry
        log(f"{name}: median {entry['median_s']:.3f} s = {entry['mib_per_s']:.0f} MiB/s "
            f"(best {entry['best_mib_per_s']:.0f}) "
            f"{'peak RSS %d KiB ' % entry['daemon_vmhwm_kib'] if through_daemon else ''}verify={entry['verify']}")
    results["loadavg_end"] = machine_info()["loadavg"]
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    write_result("transfer", results)


if __name__ == "__main__":
    main()
