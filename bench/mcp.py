#!/usr/bin/env python3
"""MCP benchmarks: what the MCP edge adds to a command, and the tool list.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/mcp.py

One daemon (127.0.0.1, ephemeral port, work dir under DATA_DIR/mcp). Every request goes over
one keep-alive connection each (raw HTTP/1.1, TCP_NODELAY), as a client library would send it.

1. `execute_command` of `true` through MCP against `POST /process/execute {"command":"true"}`,
   in the same run. MCP: a session opened with `initialize` (2025-11-25) and
   `notifications/initialized`, then `tools/call` POSTs with its `Mcp-Session-Id`; the answer is
   the request's SSE stream, read to its end, whose JSON-RPC result must hold
   `structuredContent.exit_code == 0` and empty stdout. Also the same call in the 2026-07-28
   revision (no session: `_meta` carries the protocol version and client capabilities).
   BENCH_MCP_WARMUP (default 100) untimed and BENCH_MCP_RUNS (default 1000) timed rounds; in
   each, the kinds take turns (starting one further each round). Goal: MCP p50 <= 1.2x the
   HTTP route's p50.

2. `tools/list` round trip (session) and, for scale, `GET /version` on the same daemon. No goal;
   reported.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time

from common import (
    DATA_DIR, HttpConn, cpu_times, log, machine_info, pct, start_daemon, steal_since, toolboxd_bin,
    write_result,
)

RUNS = int(os.environ.get("BENCH_MCP_RUNS", "1000"))
WARMUP = int(os.environ.get("BENCH_MCP_WARMUP", "100"))
ACCEPT = "application/json, text/event-stream"
LEGACY = "2025-11-25"
MODERN = "2026-07-28"


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


def sse_message(body: bytes, want_id: int) -> dict:
    """The JSON-RPC message with `want_id` among an SSE body's `data:` lines."""
    for line in body.decode().splitlines():
        if line.startswith("data: {"):
            message = json.loads(line[6:])
            if message.get("id") == want_id:
                return message
    raise RuntimeError(f"no JSON-RPC message {want_id} in {body[:500]!r}")


def main() -> None:
    binary = toolboxd_bin()
    root = DATA_DIR / "mcp"
    shutil.rmtree(root, ignore_errors=True)
    (root / "work").mkdir(parents=True)
    (root / "home").mkdir()
    cpu_before = cpu_times()
    daemon = start_daemon(binary, root / "work", "mcp", {"HOME": str(root / "home")})
    with daemon, HttpConn(daemon.port) as http, HttpConn(daemon.port) as mcp, HttpConn(daemon.port) as modern:
        status, headers, body = mcp.request("POST", "/mcp", {
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
        }, {"Accept": ACCEPT})
        if status != 200:
            raise RuntimeError(f"initialize answered {status}: {body[:300]!r}")
        session = headers["mcp-session-id"]
        sse_message(body, 0)
        session_headers = {"Accept": ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
        status, _, _ = mcp.request("POST", "/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                   session_headers)
        if status != 202:
            raise RuntimeError(f"notifications/initialized answered {status}")

        execute = http.prepare("POST", "/process/execute", {"command": "true"})
        call = mcp.prepare("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                            "params": {"name": "execute_command", "arguments": {"command": "true"}}},
                           session_headers)
        listing = mcp.prepare("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, session_headers)
        meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"}}
        modern_call = modern.prepare("POST", "/mcp", {
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "execute_command", "arguments": {"command": "true"}, "_meta": meta},
        }, {"Accept": ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
            "Mcp-Name": "execute_command"})
        version = http.prepare("GET", "/version")

        def timed(conn: HttpConn, raw: bytes) -> tuple[float, int, bytes]:
            start = time.perf_counter()
            status, _, body = conn.roundtrip(raw)
            return time.perf_counter() - start, status, body

        def http_execute() -> float:
            elapsed, status, body = timed(http, execute)
            answer = json.loads(body)
            if status != 200 or answer.get("exitCode") != 0 or answer.get("stdout") != "":
                raise RuntimeError(f"/process/execute answered {status} {body[:300]!r}")
            return elapsed

        def mcp_call(conn: HttpConn, raw: bytes) -> float:
            elapsed, status, body = timed(conn, raw)
            result = sse_message(body, 1).get("result", {})
            content = result.get("structuredContent") or {}
            if status != 200 or result.get("isError") or content.get("exit_code") != 0 or content.get("stdout") != "":
                raise RuntimeError(f"tools/call answered {status} {body[:300]!r}")
            return elapsed

        def tools_list() -> float:
            elapsed, status, body = timed(mcp, listing)
            tools = sse_message(body, 1)["result"]["tools"]
            if status != 200 or len(tools) != 18:
                raise RuntimeError(f"tools/list answered {status} with {len(tools)} tools")
            return elapsed

        def http_version() -> float:
            elapsed, status, _ = timed(http, version)
            if status != 200:
                raise RuntimeError(f"/version answered {status}")
            return elapsed

        kinds = {
            "http_execute": http_execute,
            "mcp_execute": lambda: mcp_call(mcp, call),
            "mcp_execute_2026": lambda: mcp_call(modern, modern_call),
            "mcp_tools_list": tools_list,
            "http_version": http_version,
        }
        names = list(kinds)
        samples: dict[str, list[float]] = {name: [] for name in names}
        cpu0 = daemon.counters()
        for i in range(WARMUP + RUNS):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                elapsed = kinds[name]()
                if i >= WARMUP:
                    samples[name].append(elapsed)
        cpu1 = daemon.counters()
        listed = json.dumps(sse_message(mcp.roundtrip(listing)[2], 1)["result"]).encode()
        rss_kib = int(daemon.status().get("VmRSS", "0 kB").split()[0])
    timings = {name: summary_us(values) for name, values in samples.items()}
    result = {
        "machine": machine_info(),
        "runs": RUNS,
        "warmup": WARMUP,
        "timings": timings,
        "ratio_p50": timings["mcp_execute"]["p50_us"] / timings["http_execute"]["p50_us"],
        "ratio_p50_2026": timings["mcp_execute_2026"]["p50_us"] / timings["http_execute"]["p50_us"],
        "tools_list_bytes": len(listed),
        "daemon_cpu_us_per_round": (cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1]) / (WARMUP + RUNS) * 1e6,
        "daemon_vmrss_kib_after": rss_kib,
        "steal_during_run": round(steal_since(cpu_before), 4),
    }
    for name, s in timings.items():
        log(f"{name}: p50 {s['p50_us']:.0f} us, p99 {s['p99_us']:.0f} us")
    log(f"execute_command through MCP p50 / POST /process/execute p50 = {result['ratio_p50']:.2f}x "
        f"(2026-07-28, no session: {result['ratio_p50_2026']:.2f}x)")
    shutil.rmtree(root, ignore_errors=True)
    write_result("mcp", result)


if __name__ == "__main__":
    main()
