#!/usr/bin/env python3
"""1 GiB bulk-upload / bulk-download through toolboxd vs the loopback ceiling, measured in one run.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/transfer.py

References, measured in the same run on the same disk (DATA_DIR):
  * loopback ceiling: the same file sent through a plain TCP socket on 127.0.0.1 by
    bench/ceiling.rs (compiled with rustc -O; two processes: the sender is one sendfile(2) call
    for the whole file; the receiver reads into a 1 MiB buffer and writes to a file);
  * cat: `cat big.bin > copy.bin`;
  * client floors: each client's requests against bench/ceiling.rs's one-shot HTTP sink (writes
    the request body, multipart framing and all, to a file) or source (sendfile of the file):
    the best any HTTP server could do with that client.

Two clients drive toolboxd:
  * the native client (the goal rows): `ceiling MODE PORT SRC DST` from bench/ceiling.rs, as lean
    as the ceiling's own sender/receiver. Uploads send the request head and multipart preamble,
    then the file with sendfile, then the closing boundary, with a computed Content-Length (no
    chunking, no Expect); downloads read 1 MiB at a time into the file, decoding chunked framing
    and (bulk-download) the one part's headers, writing exactly its Content-Length bytes and
    checking the closing boundary:
      - bulk-upload:   ceiling bulk-upload PORT big.bin DST     (POST /files/bulk-upload, multipart)
      - bulk-download: ceiling bulk-download PORT big.bin DST   (POST /files/bulk-download)
      - upload-v2:     ceiling upload-v2 PORT big.bin DST       (POST /files/upload-v2?path=DST, raw body)
      - download:      ceiling download PORT big.bin DST        (GET /files/download?path=SRC)
  * curl (extra rows, shown with their curl-floor ratios: curl itself caps them near the goal):
      - bulk-upload:   curl -H 'Expect:' -F 'files[0].path=DST' -F 'files[0].file=@big.bin' /files/bulk-upload
      - bulk-download: curl -d '{"paths":["SRC"]}' -o out /files/bulk-download   (out = the multipart body)
      - upload-v2:     curl -H 'Expect:' -X POST -T big.bin '/files/upload-v2?path=DST'   (raw body)
      - download:      curl -o out '/files/download?path=SRC'
    `Expect:` turns off curl's `Expect: 100-continue`; a separate check times curl with it left on.
Every transfer writes a file on the same disk; the written file is deleted and `sync` is run
between trials (outside the timing) so no writeback is left over.

Each method that goes through toolboxd has its own daemon, started before the first round, so
one method's memory high-water mark never shows under another. Peak RSS is that daemon's VmHWM,
reset (clear_refs=5) before each transfer and read after it; the largest over the method's
transfers (warm-up round included) is reported.

The methods take turns (round-robin), BENCH_TRIALS rounds after one warm-up round, so a slow
spell of the machine hits all of them alike; the median and the best trial are reported.

Env: BENCH_TRANSFER_MIB (default 1024), BENCH_TRIALS (default 5, plus one warm-up round),
BENCH_TRANSFER_METHODS (comma-separated subset of the method names, for a quick look; the ceiling and
cat always run).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from common import (
    cpu_times, steal_since,
    RESULTS_DIR, DATA_DIR, GIB, MIB, drop_dirty, http_get, kib, log, machine_info, median, start_daemon,
    tool_version, toolboxd_bin, write_result,
)

SIZE = int(os.environ.get("BENCH_TRANSFER_MIB", "1024")) * MIB
TRIALS = int(os.environ.get("BENCH_TRIALS", "5"))
CURL = ["curl", "-sS", "--fail-with-body", "--max-time", "600"]


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
        log(f"compiling {src}")
        subprocess.run(["nice", "-n", os.environ.get("NICE", "10"), "rustc", "-O", "--edition", "2021",
                        "-o", str(exe), str(src)], check=True)
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
    """Checks that the multipart body holds exactly src as its one part; returns '' or a problem.

    The boundary is random per response (`toolboxd-` and 32 hex digits); curl -o keeps only the
    body, so it is taken from the body's first line and must close the body too."""
    with open(body, "rb") as got, open(src, "rb") as want:
        head = got.read(8192)
        first = head.split(b"\r\n", 1)[0]
        boundary = first[2:]
        if not (first.startswith(b"--toolboxd-") and len(boundary) == 41
                and all(c in b"0123456789abcdef" for c in boundary[9:])):
            return f"body does not start with --toolboxd-<32 hex digits>: {head[:200]!r}"
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
        if tail.strip() != b"--" + boundary + b"--":
            return f"unexpected trailer {tail[:200]!r}"
    return ""


def binary_info(binary: Path) -> dict[str, object]:
    """Path, size, mtime and `file`'s BuildID of the binary under test."""
    stat = binary.stat()
    kind = tool_version(["file", "-L", str(binary)])
    build_id = kind.split("BuildID[sha1]=", 1)[1].split(",")[0] if "BuildID[sha1]=" in kind else "?"
    return {
        "path": str(binary),
        "bytes": stat.st_size,
        "mtime": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stat.st_mtime)),
        "build_id": build_id,
    }


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
        "binary": binary_info(binary),
        "curl": tool_version(["curl", "--version"]),
        "methods": {},
    }

    def cat_once(_port: int | None) -> float:
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

    def native(mode: str, port: int) -> float:
        """bench/ceiling.rs's HTTP client: uploads src to dst (answer to `resp`), downloads src to dst."""
        start = time.perf_counter()
        proc = subprocess.run([str(ceiling), mode, str(port), str(src), str(dst)], capture_output=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"ceiling {mode} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
        if "upload" in mode:
            resp.write_bytes(proc.stdout)
        elif int(proc.stdout) != SIZE:
            raise RuntimeError(f"ceiling {mode} wrote {proc.stdout!r} bytes, not {SIZE}")
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

    def helper(mode: str, path: Path, client) -> float:
        """One request of `client(port)` to bench/ceiling.rs's one-shot HTTP sink or source."""
        proc = subprocess.Popen([str(ceiling), mode, str(path)], stdout=subprocess.PIPE)
        port = int(proc.stdout.readline().strip().decode())
        try:
            return client(port)
        finally:
            if proc.wait(timeout=60) != 0:
                raise RuntimeError(f"ceiling {mode} failed")

    def url(port: int) -> str:
        return f"http://127.0.0.1:{port}"

    curl_multipart = lambda base: curl(  # noqa: E731
        ["-H", "Expect:", "-F", f"files[0].path={dst}", "-F", f"files[0].file=@{src}", f"{base}/files/bulk-upload"],
        resp)
    curl_raw = lambda base: curl(  # noqa: E731
        ["-H", "Expect:", "-X", "POST", "-H", "Content-Type: application/octet-stream", "-T", str(src),
         f"{base}/files/upload-v2?path={dst}"], resp)
    curl_bulk_download = lambda base: curl(  # noqa: E731
        ["-H", "Content-Type: application/json", "-d", json.dumps({"paths": [str(src)]}),
         f"{base}/files/bulk-download"], dst)
    curl_download = lambda base: curl([f"{base}/files/download?path={src}"], dst)  # noqa: E731

    # name -> (one transfer given the daemon's port, content check after the first one,
    #          runs through its own daemon). The native-client rows are the goal rows.
    methods = {
        "loopback_ceiling": (lambda _port: loopback_ceiling(ceiling, src, dst), check_copy, False),
        "cat": (cat_once, check_copy, False),
        "bulk_upload": (lambda port: native("bulk-upload", port), check_upload_response, True),
        "bulk_download": (lambda port: native("bulk-download", port), check_copy, True),
        "upload_v2_raw": (lambda port: native("upload-v2", port), check_upload_response, True),
        "download": (lambda port: native("download", port), check_copy, True),
        "curl_bulk_upload": (lambda port: curl_multipart(url(port)), check_upload_response, True),
        "curl_bulk_download": (lambda port: curl_bulk_download(url(port)), lambda: check_bulk_download(src, dst),
                               True),
        "curl_upload_v2_raw": (lambda port: curl_raw(url(port)), check_upload_response, True),
        "curl_download": (lambda port: curl_download(url(port)), check_copy, True),
        # Client floors: the same client requests against a minimal HTTP sink/source. The sink
        # keeps the whole request body (multipart framing and all), so only sizes are checked there.
        "native_floor_multipart_upload": (
            lambda _port: helper("http-sink", dst, lambda port: native("bulk-upload", port)),
            lambda: "", False),
        "native_floor_raw_upload": (
            lambda _port: helper("http-sink", dst, lambda port: native("upload-v2", port)), check_copy, False),
        "native_floor_download": (
            lambda _port: helper("http-source", src, lambda port: native("download", port)), check_copy, False),
        "curl_floor_multipart_upload": (
            lambda _port: helper("http-sink", dst, lambda port: curl_multipart(url(port))), lambda: "", False),
        "curl_floor_raw_upload": (
            lambda _port: helper("http-sink", dst, lambda port: curl_raw(url(port))), check_copy, False),
        "curl_floor_download": (
            lambda _port: helper("http-source", src, lambda port: curl_download(url(port))), check_copy, False),
    }
    only = [name for name in os.environ.get("BENCH_TRANSFER_METHODS", "").split(",") if name]
    if only:  # a subset, for a quick look (the ceiling and cat stay: the report needs them)
        unknown = set(only) - set(methods)
        if unknown:
            raise SystemExit(f"BENCH_TRANSFER_METHODS: unknown {sorted(unknown)}; known: {', '.join(methods)}")
        methods = {name: v for name, v in methods.items() if name in only or name in ("loopback_ceiling", "cat")}
    samples: dict[str, list[float]] = {name: [] for name in methods}
    problems: dict[str, str] = {}
    peak_kib: dict[str, int] = {name: 0 for name in methods}
    cpu: dict[str, list[float]] = {name: [0.0, 0.0, 0] for name in methods}  # user, sys, faults
    last: dict[str, float] = {}
    daemons = {}
    exits: dict[str, dict[str, object]] = {}
    after_kib: dict[str, int] = {}
    try:
        # A fresh daemon per method: one method's high-water mark must not show under another.
        for name, (_once, _verify, through_daemon) in methods.items():
            if through_daemon:
                daemons[name] = start_daemon(binary, DATA_DIR, f"transfer-{name}")
        first = next(iter(daemons.values()))
        status, body = http_get(first.port, "/version")
        results["version_response"] = {"status": status, "body": body.decode(errors="replace")}
        # Round-robin: every round runs each method once, so a slow spell of the machine
        # (page allocation in the VM, a neighbour's build) hits all methods alike. Each round
        # starts one method further on, so no method always runs first or after the same one.
        names = list(methods)
        for trial in range(TRIALS + 1):
            shift = trial % len(names)
            for name in names[shift:] + names[:shift]:
                once, verify, _through_daemon = methods[name]
                daemon = daemons.get(name)
                if daemon:
                    daemon.reset_peak_rss()
                    before = daemon.counters()
                seconds = once(daemon.port if daemon else None)
                last[name] = seconds
                if daemon:
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
        for name, daemon in daemons.items():
            after_kib[name] = kib(daemon.status(), "VmRSS")

        # curl's default `Expect: 100-continue` (sent for bodies over 1 MiB): a server that does
        # not answer `100 Continue` costs a 1 s stall per upload. Its own daemon too.
        daemons["expect_check"] = start_daemon(binary, DATA_DIR, "transfer-expect-check")
        base = daemons["expect_check"].base
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
        for name, daemon in daemons.items():
            code, stop_s = daemon.stop()
            exits[name] = {"code": code, "seconds_after_sigterm": stop_s}
        results["daemon_exits"] = exits
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
            entry["daemon_rss_after_kib"] = after_kib.get(name)
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
