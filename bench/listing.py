#!/usr/bin/env python3
"""Daemon peak RSS while it streams a deep listing and a find with over a million matches.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/listing.py

Both answers are JSON arrays streamed as the walk goes, so the daemon's memory should not grow
with the tree or the number of matches. Three requests, each on a fresh daemon (VmHWM reset
just before the request, read after the answer ended):

  * `GET /files?path=/&depth=50`: this machine's whole root (/proc and /sys included; symlinked
    directories are described, not entered), cut after BENCH_LIST_TIMEOUT s (default 300; the
    row says so);
  * `GET /files?path=DATA/tree&depth=50`: a generated tree, the same on every machine:
    BENCH_TREE_DIRS (default 100) directories of 10 subdirectories of BENCH_TREE_FILES
    (default 100) files, plus a chain of 60 nested directories that depth 50 cuts;
  * `GET /files/find?path=DATA/find-1m&pattern=needle`: a generated corpus of 1000 files of
    BENCH_FIND_LINES (default 1100) matching lines each, 1.1 million matches.

curl writes each answer to a file. It is checked without loading it whole: a JSON array, the
expected number of entries or matches (the root's is counted), and for the generated ones the
order the SDKs get (names sorted per directory, parents first; matches by file, then line).
For context, `rg -F -uuu -n --sort path needle DATA/find-1m` runs the same search (its time and
its own peak RSS, from wait4).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

from common import (
    DATA_DIR, MIB, cpu_busy, cpu_times, kib, log, machine_info, start_daemon, steal_since, tool_version,
    toolboxd_bin, write_result,
)

LIST_TIMEOUT = int(os.environ.get("BENCH_LIST_TIMEOUT", "300"))
TREE_DIRS = int(os.environ.get("BENCH_TREE_DIRS", "100"))
TREE_FILES = int(os.environ.get("BENCH_TREE_FILES", "100"))
CHAIN = 60
DEPTH = 50
FIND_FILES = 1000
FIND_LINES = int(os.environ.get("BENCH_FIND_LINES", "1100"))
ENTRY_RE = re.compile(rb'\{"name":"((?:[^"\\]|\\.)*)","path":"((?:[^"\\]|\\.)*)"')
MATCH_RE = re.compile(rb'\{"file":"((?:[^"\\]|\\.)*)","line":(\d+),')


def build_tree(root: Path) -> dict:
    marker = root.with_suffix(".json")
    if root.is_dir() and marker.exists():
        return json.loads(marker.read_text())
    if root.exists():
        shutil.rmtree(root)
    log(f"building {root}")
    for top in range(TREE_DIRS):
        for sub in range(10):
            d = root / f"t{top:03}" / f"s{sub}"
            d.mkdir(parents=True)
            for f in range(TREE_FILES):
                (d / f"f{f:04}.txt").write_bytes(b"x\n")
    chain = root / "chain"
    for level in range(CHAIN):
        chain = chain / f"c{level:02}"
    chain.mkdir(parents=True)
    (chain / "bottom.txt").write_bytes(b"x\n")
    info = {"path": str(root), "dirs": TREE_DIRS * 11, "files": TREE_DIRS * 10 * TREE_FILES, "chain": CHAIN}
    marker.write_text(json.dumps(info, indent=2))
    os.sync()
    return info


def build_find_corpus(root: Path) -> dict:
    marker = root.with_suffix(".json")
    wanted = {"path": str(root), "files": FIND_FILES, "lines_per_file": FIND_LINES}
    if root.is_dir() and marker.exists() and json.loads(marker.read_text()).get("lines_per_file") == FIND_LINES:
        return json.loads(marker.read_text())
    if root.exists():
        shutil.rmtree(root)
    log(f"building {root}")
    text = "".join(f"needle {n:05} in a line of about sixty bytes, plus some words\n"
                   for n in range(1, FIND_LINES + 1)).encode()
    for d in range(FIND_FILES // 100):
        sub = root / f"d{d:02}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f:03}.txt").write_bytes(text)
    wanted["bytes"] = len(text) * FIND_FILES
    marker.write_text(json.dumps(wanted, indent=2))
    os.sync()
    return wanted


def sorted_walk(root: Path, depth: int):
    """Paths in the order of `GET /files?depth=N`: names sorted bytewise, parents first."""
    names = sorted(os.listdir(root), key=os.fsencode)
    for name in names:
        path = root / name
        yield str(path)
        if depth > 1 and path.is_dir() and not path.is_symlink():
            yield from sorted_walk(path, depth - 1)


def scan(path: Path, start: bytes, pattern: re.Pattern) -> tuple[bool, int, object]:
    """(one JSON array, items in it, an iterator over the items' captures). An item starts with
    `start` (`{"name":"` or `{"file":"`), which a string value cannot hold unescaped."""
    data = path.read_bytes()
    whole = data.startswith(b"[") and data.endswith(b"]")
    return whole, data.count(start), (m.groups() for m in pattern.finditer(data))


def request(binary: Path, workdir: Path, name: str, route: str, out: Path, timeout: int) -> dict:
    """One request on a fresh daemon: curl to `out`, the daemon's peak RSS and CPU."""
    daemon = start_daemon(binary, workdir, name)
    entry: dict = {"route": route}
    try:
        time.sleep(0.5)
        daemon.reset_peak_rss()
        idle = daemon.status()
        cpu0 = daemon.cpu_seconds()
        start = time.perf_counter()
        proc = subprocess.run(
            ["curl", "-sS", "--max-time", str(timeout), "-o", str(out), "-w", "%{http_code} %{size_download}",
             f"{daemon.base}{route}"],
            capture_output=True, text=True, timeout=timeout + 60,
        )
        elapsed = time.perf_counter() - start
        status = daemon.status()
        code, size = (proc.stdout.split() + ["", ""])[:2]
        entry.update({
            "http_status": code,
            "bytes": int(size or 0),
            "seconds": elapsed,
            "cut_after_timeout": proc.returncode == 28,
            "curl_exit": proc.returncode,
            "curl_stderr": proc.stderr[-300:],
            "daemon_idle_vmrss_kib": kib(idle, "VmRSS"),
            "daemon_vmhwm_kib": kib(status, "VmHWM"),
            "daemon_vmrss_after_kib": kib(status, "VmRSS"),
            "daemon_cpu_s": daemon.cpu_seconds() - cpu0,
            "daemon_threads_after": int(status.get("Threads", "0")),
        })
    finally:
        code, stop_s = daemon.stop()
        entry["daemon_exit"] = {"code": code, "seconds_after_sigterm": stop_s}
    log(f"{name}: HTTP {entry['http_status']}, {entry['bytes'] / MIB:.1f} MiB in {entry['seconds']:.1f} s"
        f"{' (cut)' if entry['cut_after_timeout'] else ''}, daemon peak RSS {entry['daemon_vmhwm_kib'] / 1024:.1f} MiB")
    return entry


def main() -> None:
    binary = toolboxd_bin()
    cpu_before = cpu_times()
    results: dict = {
        "machine": machine_info(),
        "curl": tool_version(["curl", "--version"]),
        "rg": tool_version(["rg", "--version"]),
        "depth": DEPTH,
        "list_timeout_s": LIST_TIMEOUT,
        "rows": {},
    }
    tree = build_tree(DATA_DIR / "tree")
    corpus = build_find_corpus(DATA_DIR / "find-1m")
    results["tree"] = tree
    results["find_corpus"] = corpus
    out_dir = DATA_DIR / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = DATA_DIR

    # 1. The machine's root.
    out = out_dir / "list-root.json"
    results["cpu_busy_before_root"] = round(cpu_busy(1.0), 3)
    entry = request(binary, workdir, "list-root", f"/files?path=/&depth={DEPTH}", out, LIST_TIMEOUT)
    whole, count, _ = scan(out, b'{"name":"', ENTRY_RE)
    entry.update(items=count, complete_array=whole)
    results["rows"]["list_root"] = entry
    out.unlink(missing_ok=True)

    # 2. The generated tree: every entry, in order.
    out = out_dir / "list-tree.json"
    root = Path(tree["path"])
    entry = request(binary, workdir, "list-tree", f"/files?path={urllib.parse.quote(str(root))}&depth={DEPTH}",
                    out, LIST_TIMEOUT)
    whole, count, items = scan(out, b'{"name":"', ENTRY_RE)
    expected = sorted_walk(root, DEPTH)
    in_order = all(path.decode() == want for (_name, path), want in zip(items, expected, strict=False))
    expected_count = sum(1 for _ in sorted_walk(root, DEPTH))
    entry.update(items=count, expected_items=expected_count, complete_array=whole,
                 verify="ok" if whole and in_order and count == expected_count else "MISMATCH")
    results["rows"]["list_tree"] = entry
    out.unlink(missing_ok=True)

    # 3. A million matches, in order; rg for context.
    out = out_dir / "find-1m.json"
    root = Path(corpus["path"])
    route = "/files/find?" + urllib.parse.urlencode({"path": str(root), "pattern": "needle"})
    entry = request(binary, workdir, "find-1m", route, out, LIST_TIMEOUT)
    whole, count, items = scan(out, b'{"file":"', MATCH_RE)
    files = [str(root / f"d{d:02}" / f"f{f:03}.txt") for d in range(FIND_FILES // 100) for f in range(100)]
    expected = ((f, n) for f in files for n in range(1, FIND_LINES + 1))
    in_order = all(file.decode() == want[0] and int(line) == want[1]
                   for (file, line), want in zip(items, expected, strict=False))
    entry.update(items=count, expected_items=FIND_FILES * FIND_LINES, complete_array=whole,
                 verify="ok" if whole and in_order and count == FIND_FILES * FIND_LINES else "MISMATCH")
    out.unlink(missing_ok=True)
    if shutil.which("rg"):
        rg_out = out_dir / "find-1m.rg.txt"
        start = time.perf_counter()
        with open(rg_out, "wb") as sink:
            rg = subprocess.Popen(["rg", "-F", "-uuu", "-n", "--sort", "path", "needle", str(root)], stdout=sink)
            _pid, rg_status, rg_usage = os.wait4(rg.pid, 0)
        entry["rg"] = {"seconds": time.perf_counter() - start, "exit": os.waitstatus_to_exitcode(rg_status),
                       "maxrss_kib": rg_usage.ru_maxrss, "bytes": rg_out.stat().st_size}
        rg_out.unlink(missing_ok=True)
        log(f"rg --sort path: {entry['rg']['seconds']:.1f} s, peak RSS {entry['rg']['maxrss_kib'] / 1024:.1f} MiB")
    results["rows"]["find_1m"] = entry

    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    write_result("listing", results)


if __name__ == "__main__":
    main()
