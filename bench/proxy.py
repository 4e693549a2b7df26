#!/usr/bin/env python3
"""The preview proxy (`/proxy/{port}/…`) against the same app fetched directly, in one run.

The app is `bench/results/ceiling http-serve big.bin` (bench/ceiling.rs, rustc -O): keep-alive
HTTP/1.1 on 127.0.0.1, `GET /small` answers `ok`, any other GET answers the 1 GiB file by
sendfile(2), a POST's body is read and dropped. So the app is never the slower end.

  * 14. Throughput: 1 GiB each way with bench/ceiling.rs's client (1 MiB reads, the body
    dropped, `Connection: close`, one request per process):
      - download direct:  ceiling get APP_PORT /big
      - download proxied: ceiling get PORT /proxy/APP_PORT/big
      - upload direct:    ceiling post APP_PORT /sink big.bin
      - upload proxied:   ceiling post PORT /proxy/APP_PORT/sink big.bin
    The four take turns (round-robin, each round starting one further on), BENCH_PROXY_TRIALS
    rounds after one warm-up round; medians and best rounds. Goal: proxied download ≥ 0.8× of
    direct. The daemon's VmHWM is reset before each proxied transfer and read after it (largest
    reported), with its CPU seconds per GiB.
  * 15. Added latency: `GET /small` over one keep-alive connection to the app and
    `GET /proxy/APP_PORT/small` over one keep-alive connection to the daemon (which keeps its
    own pooled connection to the app), taking turns every iteration (which goes first
    alternates), BENCH_PROXY_RUNS timed after BENCH_PROXY_WARMUP untimed; plus `GET /version` on
    a third connection (the daemon's own per-request floor). Goal: p50(proxied) − p50(direct)
    ≤ 0.3 ms.

Env: BENCH_PROXY_TRIALS (5), BENCH_PROXY_RUNS (2000), BENCH_PROXY_WARMUP (200),
BENCH_TRANSFER_MIB (1024: the size of big.bin, shared with bench/transfer.py).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import (
    DATA_DIR, GIB, MIB, HttpConn, cpu_busy, cpu_times, kib, log, machine_info, median, pct,
    start_daemon, steal_since, toolboxd_bin, write_result,
)
from transfer import SIZE, binary_info, build_ceiling, ensure_source, warm

TRIALS = int(os.environ.get("BENCH_PROXY_TRIALS", "5"))
RUNS = int(os.environ.get("BENCH_PROXY_RUNS", "2000"))
WARMUP = int(os.environ.get("BENCH_PROXY_WARMUP", "200"))


class App:
    """`ceiling http-serve SRC` on an ephemeral 127.0.0.1 port."""

    def __init__(self, ceiling: Path, src: Path) -> None:
        self.proc = subprocess.Popen([str(ceiling), "http-serve", str(src)], stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line.strip():
            self.proc.kill()
            raise RuntimeError("ceiling http-serve did not print its port")
        self.port = int(line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def client(ceiling: Path, args: list[str]) -> tuple[float, bytes]:
    start = time.perf_counter()
    proc = subprocess.run([str(ceiling), *args], capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ceiling {args} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return elapsed, proc.stdout.strip()


def throughput(ceiling: Path, src: Path, app: App, daemon) -> dict:
    size = src.stat().st_size
    # name: (arguments, the same with placeholders for the report, through the daemon)
    methods = {
        "download_direct": (["get", str(app.port), "/big"], "get APP_PORT /big", False),
        "download_proxied": (["get", str(daemon.port), f"/proxy/{app.port}/big"],
                             "get PORT /proxy/APP_PORT/big", True),
        "upload_direct": (["post", str(app.port), "/sink", str(src)], "post APP_PORT /sink big.bin", False),
        "upload_proxied": (["post", str(daemon.port), f"/proxy/{app.port}/sink", str(src)],
                           "post PORT /proxy/APP_PORT/sink big.bin", True),
    }
    names = list(methods)
    times: dict[str, list[float]] = {name: [] for name in names}
    peak_kib = {name: 0 for name in names}
    cpu = {name: [0.0, 0.0] for name in names}
    for round_no in range(TRIALS + 1):
        speeds = []
        order = names[round_no % len(names):] + names[: round_no % len(names)]
        for name in order:
            args, _label, proxied = methods[name]
            if proxied:
                daemon.reset_peak_rss()
                user0, sys0, _ = daemon.counters()
            elapsed, out = client(ceiling, args)
            if int(out) != size:
                raise RuntimeError(f"{name}: {out!r} bytes, expected {size}")
            if proxied:
                user1, sys1, _ = daemon.counters()
                cpu[name][0] += user1 - user0
                cpu[name][1] += sys1 - sys0
                peak_kib[name] = max(peak_kib[name], kib(daemon.status(), "VmHWM"))
            if round_no > 0:  # round 0 warms up
                times[name].append(elapsed)
            speeds.append(f"{name} {size / MIB / elapsed:.0f} MiB/s")
        log(f"round {round_no}{' (warm-up)' if round_no == 0 else ''}: " + ", ".join(speeds))
    result: dict[str, object] = {"size_bytes": size, "trials": TRIALS, "methods": {}}
    for name in names:
        entry = {
            "times_s": times[name],
            "median_s": median(times[name]),
            "mib_per_s": size / MIB / median(times[name]),
            "best_mib_per_s": size / MIB / min(times[name]),
            "command": methods[name][1],
        }
        if methods[name][2]:
            per_gib = (TRIALS + 1) * size / GIB
            entry["daemon_vmhwm_kib"] = peak_kib[name]
            entry["daemon_user_s_per_gib"] = cpu[name][0] / per_gib
            entry["daemon_sys_s_per_gib"] = cpu[name][1] / per_gib
        result["methods"][name] = entry
    for kind in ("download", "upload"):
        direct, proxied = times[f"{kind}_direct"], times[f"{kind}_proxied"]
        per_round = [d / p for d, p in zip(direct, proxied)]  # speed ratio = time ratio inverted
        result[f"{kind}_ratio"] = median(direct) / median(proxied)
        result[f"{kind}_ratio_best"] = min(direct) / min(proxied)
        result[f"{kind}_ratio_range"] = [min(per_round), max(per_round)]
    return result


def latency(app: App, daemon) -> dict:
    direct = HttpConn(app.port)
    proxied = HttpConn(daemon.port)
    version = HttpConn(daemon.port)
    requests = {
        "direct": (direct, HttpConn.prepare("GET", "/small"), b"ok"),
        "proxied": (proxied, HttpConn.prepare("GET", f"/proxy/{app.port}/small"), b"ok"),
        "version": (version, HttpConn.prepare("GET", "/version"), None),
    }
    samples: dict[str, list[float]] = {name: [] for name in requests}
    busy_before = cpu_busy(1.0)
    cpu0 = daemon.counters()
    for i in range(WARMUP + RUNS):
        order = ["direct", "proxied", "version"] if i % 2 == 0 else ["proxied", "direct", "version"]
        for name in order:
            conn, raw, expect = requests[name]
            start = time.perf_counter_ns()
            status, _headers, body = conn.roundtrip(raw)
            elapsed = time.perf_counter_ns() - start
            if status != 200 or (expect is not None and body != expect):
                raise RuntimeError(f"{name}: HTTP {status} {body[:200]!r}")
            if i >= WARMUP:
                samples[name].append(elapsed / 1e6)
    cpu1 = daemon.counters()
    for conn in (direct, proxied, version):
        conn.close()
    result: dict[str, object] = {"runs": RUNS, "warmup": WARMUP, "cpu_busy_before": round(busy_before, 3)}
    for name, values in samples.items():
        result[name] = {"p50_ms": pct(values, 50), "p90_ms": pct(values, 90), "p99_ms": pct(values, 99),
                        "mean_ms": sum(values) / len(values)}
    paired = [p - d for p, d in zip(samples["proxied"], samples["direct"])]
    result["added_p50_ms"] = result["proxied"]["p50_ms"] - result["direct"]["p50_ms"]
    result["added_p90_ms"] = result["proxied"]["p90_ms"] - result["direct"]["p90_ms"]
    result["paired_difference_p50_ms"] = pct(paired, 50)
    # The daemon's CPU per request over the run (two daemon requests per iteration: proxied and
    # /version, so this is their average).
    result["daemon_cpu_us_per_request"] = (
        ((cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1])) * 1e6 / (2 * (WARMUP + RUNS)))
    return result


def main() -> None:
    binary = toolboxd_bin()
    cpu_before = cpu_times()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    src = DATA_DIR / "big.bin"
    ensure_source(src)
    warm(src)
    ceiling = build_ceiling()
    results: dict[str, object] = {"machine": machine_info(), "binary": binary_info(binary)}
    app = App(ceiling, src)
    try:
        with tempfile.TemporaryDirectory(prefix="toolboxd-proxy-bench-") as workdir:
            with start_daemon(binary, Path(workdir), "proxy") as daemon:
                log(f"app on 127.0.0.1:{app.port}, toolboxd on 127.0.0.1:{daemon.port}")
                results["latency"] = latency(app, daemon)
                lat = results["latency"]
                log(f"small GET p50: direct {lat['direct']['p50_ms']:.3f} ms, proxied "
                    f"{lat['proxied']['p50_ms']:.3f} ms (added {lat['added_p50_ms']:.3f} ms), "
                    f"/version {lat['version']['p50_ms']:.3f} ms")
                results["throughput"] = throughput(ceiling, src, app, daemon)
                thr = results["throughput"]
                log(f"{thr['size_bytes'] // MIB} MiB download: proxied/direct {thr['download_ratio']:.2f}x, "
                    f"upload {thr['upload_ratio']:.2f}x")
    finally:
        app.stop()
    results["loadavg_end"] = machine_info()["loadavg"]
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    write_result("proxy", results)


if __name__ == "__main__":
    main()
