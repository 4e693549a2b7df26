#!/usr/bin/env python3
"""POST /git/clone of a large local repository vs `git clone`, and GET /git/status vs `git status`.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/git.py

The repository (DATA_DIR/git/big.git: ~100 000 commits, ~50 000 files, one pack with a bitmap)
is built once by bench/gen_git_repo.py and reused.

Clone (BENCH_GIT_TRIALS rounds, default 3, after one untimed `git clone` that warms the page
cache; in each round every method runs once, round-robin, each round starting one method on):
  * toolboxd:      POST /git/clone {"url": "file://DATA/git/big.git", "path": "DATA/git/out/clone-d"}
                   on a fresh daemon per clone, so its VmHWM is that clone's peak RSS
  * git:           git clone -q file://DATA/git/big.git DATA/git/out/clone-g      (the goal reference)
  * git_no_local:  git clone -q --no-local DATA/git/big.git DATA/git/out/clone-n  (extra)
A file:// URL makes git go through upload-pack/pack-objects like a remote, never the local
hardlink shortcut; --no-local with a plain path does the same, recorded to show it. Extra rows
(BENCH_GIT_HTTP=1, the default): the same repository served over smart HTTP on 127.0.0.1 by
`git http-backend` (CGI, run by `python3 bench/git.py serve ROOT` in its own process), cloned by
  * toolboxd_http: POST /git/clone {"url": "http://127.0.0.1:PORT/big.git", ...}
  * git_http:      git clone -q http://127.0.0.1:PORT/big.git DST
where the server (git pack-objects, with the bitmap) builds the pack for both, so these rows
compare the receiving side alone: what a clone from a real remote costs. git's peak
RSS is the largest single process of its tree (wait4's ru_maxrss); the peak of the tree's summed
VmRSS is sampled every 0.25 s from /proc. The daemon's VmRSS is sampled at the same rate, to show
how its memory moves during the clone. Each clone is checked (untimed): HEAD is the source's
main, `git status --porcelain` is empty, the file count, tags and upstream match; the first
toolboxd clone also passes `git fsck --connectivity-only`. Between clones the copy is deleted and
`sync` runs (untimed).

Status (a fresh `git clone` of the same repository, index refreshed by one untimed `git status`;
BENCH_GIT_STATUS_RUNS runs each, default 11, after one untimed warm-up, tools interleaved; p50):
  * toolboxd:  GET /git/status?path=TREE (one keep-alive connection, one daemon)
  * git:       git status --porcelain                      (the reference)
  * git_v2:    git status --porcelain=v2 --branch -uall    (extra: what toolboxd computes too:
                                                           ahead/behind, untracked files one by one)
first on the clean tree, then after appending a line to 100 tracked files and adding 100
untracked files (50 in existing directories, 50 in 5 new ones). toolboxd's answer is compared
with `git status --porcelain -uall`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import (
    DATA_DIR, HttpConn, cpu_times, kib, log, machine_info, median, proc_status, start_daemon,
    steal_since, toolboxd_bin, tool_version, write_result,
)
from gen_git_repo import ensure_repo

TRIALS = int(os.environ.get("BENCH_GIT_TRIALS", "3"))
STATUS_RUNS = int(os.environ.get("BENCH_GIT_STATUS_RUNS", "11"))
PARTS = os.environ.get("BENCH_GIT_PARTS", "clone,status").split(",")
# Extra reference rows: git_no_local (set BENCH_GIT_NO_LOCAL=0 to skip it).
WITH_NO_LOCAL = os.environ.get("BENCH_GIT_NO_LOCAL", "1") == "1"
WITH_HTTP = os.environ.get("BENCH_GIT_HTTP", "1") == "1"
# Keep every client (the daemon's libgit2 included) off any configured proxy: all on 127.0.0.1.
NO_PROXY_ENV = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
SAMPLE_S = 0.25
CLONE_TIMEOUT = float(os.environ.get("BENCH_GIT_CLONE_TIMEOUT", "3600"))

GIT_ENV = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C", **NO_PROXY_ENV)
for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
    GIT_ENV.pop(var, None)


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=GIT_ENV)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.sync()


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_rss_kib(root: int) -> tuple[int, int]:
    """(sum of VmRSS over root and its descendants, number of processes)."""
    kids = children_map()
    todo, total, n = [root], 0, 0
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            total += kib(proc_status(pid), "VmRSS")
            n += 1
        except (OSError, ValueError):
            pass
    return total, n


class Sampler:
    """Samples the RSS of a process (or its whole tree) every SAMPLE_S seconds in a thread."""

    def __init__(self, pid: int, tree: bool) -> None:
        self.pid, self.tree = pid, tree
        self.samples: list[tuple[float, int, int]] = []  # (seconds, KiB, processes)
        self.stop_event = threading.Event()
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.tree:
                    total, n = tree_rss_kib(self.pid)
                else:
                    total, n = kib(proc_status(self.pid), "VmRSS"), 1
                self.samples.append((round(time.perf_counter() - self.t0, 2), total, n))
            except (OSError, ValueError):
                pass
            self.stop_event.wait(SAMPLE_S)

    def stop(self) -> list[tuple[float, int, int]]:
        self.stop_event.set()
        self.thread.join()
        return self.samples


def verify_clone(dst: Path, info: dict, fsck: bool = False) -> dict:
    out: dict = {}
    problems = []
    head = git("-C", str(dst), "rev-parse", "HEAD").strip()
    out["head"] = head
    if head != info["head"]:
        problems.append(f"HEAD {head} != source main {info['head']}")
    branch = git("-C", str(dst), "symbolic-ref", "-q", "HEAD", check=False).strip()
    if branch != "refs/heads/main":
        problems.append(f"HEAD is {branch!r}, not refs/heads/main")
    upstream = git("-C", str(dst), "rev-parse", "--abbrev-ref", "main@{upstream}", check=False).strip()
    out["upstream"] = upstream
    if upstream != "origin/main":
        problems.append(f"upstream {upstream!r} != origin/main")
    t0 = time.perf_counter()
    porcelain = git("-C", str(dst), "status", "--porcelain")
    out["first_git_status_s"] = round(time.perf_counter() - t0, 3)
    if porcelain.strip():
        lines = porcelain.splitlines()
        problems.append(f"git status --porcelain: {len(lines)} lines, e.g. {lines[:3]}")
    files = len(git("-C", str(dst), "ls-files", "-z").split("\0")) - 1
    out["files"] = files
    if files != info["files"]:
        problems.append(f"{files} files in the index, source has {info['files']}")
    tags = len(git("-C", str(dst), "tag").split())
    out["tags"] = tags
    if tags != info["tags"]:
        problems.append(f"{tags} tags, source has {info['tags']}")
    count = dict(line.split(": ", 1) for line in git("-C", str(dst), "count-objects", "-v").splitlines())
    out["packs"] = int(count.get("packs", 0))
    out["loose_objects"] = int(count.get("count", 0))
    out["git_dir_bytes"] = du_bytes(dst / ".git")
    out["worktree_and_git_bytes"] = du_bytes(dst)
    if fsck:
        t0 = time.perf_counter()
        proc = subprocess.run(["git", "-C", str(dst), "fsck", "--connectivity-only", "--no-progress"],
                              capture_output=True, text=True, env=GIT_ENV)
        out["fsck_connectivity_s"] = round(time.perf_counter() - t0, 1)
        out["fsck_exit"] = proc.returncode
        if proc.returncode != 0:
            problems.append(f"git fsck --connectivity-only exited {proc.returncode}: {proc.stderr[-500:]}")
    out["problems"] = problems
    out["ok"] = not problems
    return out


def clone_toolboxd(binary: Path, url: str, dst: Path, name: str) -> dict:
    workdir = DATA_DIR / "git" / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    daemon = start_daemon(binary, workdir, name, env=NO_PROXY_ENV)
    try:
        time.sleep(0.2)
        before = daemon.status()
        daemon.reset_peak_rss()
        user0, sys0, faults0 = daemon.counters()
        sampler = Sampler(daemon.pid, tree=False)
        with HttpConn(daemon.port, timeout=CLONE_TIMEOUT) as conn:
            machine0 = cpu_times()
            start = time.perf_counter()
            status, _headers, body = conn.request("POST", "/git/clone", {"url": url, "path": str(dst)})
            elapsed = time.perf_counter() - start
            machine_busy = busy_cpu_s(machine0)
        samples = sampler.stop()
        after = daemon.status()
        user1, sys1, faults1 = daemon.counters()
        if status != 200:
            raise RuntimeError(f"POST /git/clone answered {status}: {body[:2000]!r}")
        time.sleep(2.0)
        after_2s = daemon.status()
        rss_after_2s = kib(after_2s, "VmRSS")
        threads = int(after.get("Threads", "0"))
    finally:
        code, stop_s = daemon.stop()
    return {
        "seconds": elapsed,
        "machine_busy_cpu_s": machine_busy,
        "http_status": status,
        "body": body.decode(errors="replace")[:200],
        "vmrss_before_kib": kib(before, "VmRSS"),
        "vmhwm_kib": kib(after, "VmHWM"),
        "vmrss_after_kib": kib(after, "VmRSS"),
        "rss_anon_after_kib": kib(after, "RssAnon"),
        "vmrss_2s_after_kib": rss_after_2s,
        "threads_after": threads,
        "sampled_peak_kib": max((s[1] for s in samples), default=0),
        "rss_timeline": [[t, k] for t, k, _n in samples],
        "cpu_user_s": round(user1 - user0, 2),
        "cpu_sys_s": round(sys1 - sys0, 2),
        "minor_faults": faults1 - faults0,
        "daemon_exit": {"code": code, "seconds_after_sigterm": round(stop_s, 3)},
    }


def clone_git(cmd: list[str]) -> dict:
    machine0 = cpu_times()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=GIT_ENV)
    sampler = Sampler(proc.pid, tree=True)
    stderr = b""
    # Read stderr in a thread so a chatty git never blocks; wait4 gives the tree's rusage.
    def drain() -> None:
        nonlocal stderr
        stderr = proc.stderr.read()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    _pid, wait_status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    machine_busy = busy_cpu_s(machine0)
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    samples = sampler.stop()
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd!r} exited {proc.returncode}: {stderr[-2000:]!r}")
    return {
        "seconds": elapsed,
        "machine_busy_cpu_s": machine_busy,
        "max_process_rss_kib": usage.ru_maxrss,
        "sampled_tree_peak_kib": max((s[1] for s in samples), default=0),
        "sampled_max_processes": max((s[2] for s in samples), default=0),
        "rss_timeline": [[t, k] for t, k, _n in samples],
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_sys_s": round(usage.ru_stime, 2),
        "minor_faults": usage.ru_minflt,
    }


class CgiGitHandler(BaseHTTPRequestHandler):
    """Smart HTTP for the clone rows: every request runs `git http-backend` (CGI)."""

    protocol_version = "HTTP/1.1"
    root = "."

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.cgi()

    def do_POST(self) -> None:
        self.cgi()

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def cgi(self) -> None:
        path, _, query = self.path.partition("?")
        body = self.read_body() if self.command == "POST" else b""
        env = dict(os.environ, GIT_PROJECT_ROOT=self.root, GIT_HTTP_EXPORT_ALL="1",
                   PATH_INFO=urllib.parse.unquote(path), QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
                   REMOTE_ADDR="127.0.0.1", REMOTE_USER="", SERVER_PROTOCOL="HTTP/1.1")
        for name in ("Git-Protocol", "Content-Encoding"):
            if self.headers.get(name):
                env["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
        proc = subprocess.Popen(["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        threading.Thread(target=lambda: (proc.stdin.write(body), proc.stdin.close()), daemon=True).start()
        status, headers = "200 OK", []
        while True:
            line = proc.stdout.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").strip().partition(":")
            if key.lower() == "status":
                status = value.strip()
            elif key.lower() not in ("content-length", "transfer-encoding"):
                headers.append((key, value.strip()))
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while chunk := proc.stdout.read1(262144):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        proc.wait()


def serve(root: str) -> None:
    CgiGitHandler.root = root
    server = ThreadingHTTPServer(("127.0.0.1", 0), CgiGitHandler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def start_http_server(root: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve", str(root)],
                            stdout=subprocess.PIPE, env=GIT_ENV)
    port = int(proc.stdout.readline())
    log(f"smart HTTP (git http-backend) for {root} on 127.0.0.1:{port}")
    return proc, port


def busy_cpu_s(before: list[int]) -> float:
    """CPU-seconds the whole machine was busy (not idle, not iowait) since `before`."""
    delta = [a - b for a, b in zip(cpu_times(), before)]
    return round((sum(delta[:8]) - delta[3] - delta[4]) / os.sysconf("SC_CLK_TCK"), 2)


def summarize(trials: list[dict]) -> dict:
    secs = [t["seconds"] for t in trials]
    return {"seconds": secs, "median_s": median(secs), "best_s": min(secs), "worst_s": max(secs)}


def bench_clone(binary: Path, info: dict) -> dict:
    out_dir = DATA_DIR / "git" / "out"
    remove_tree(out_dir)
    out_dir.mkdir(parents=True)
    dsts = {"toolboxd": out_dir / "clone-d", "git": out_dir / "clone-g", "git_no_local": out_dir / "clone-n",
            "toolboxd_http": out_dir / "clone-dh", "git_http": out_dir / "clone-gh"}
    server = start_http_server(Path(info["path"]).parent) if WITH_HTTP else None
    http_url = f"http://127.0.0.1:{server[1]}/{Path(info['path']).name}" if server else ""
    urls = {"toolboxd": info["url"], "toolboxd_http": http_url}
    commands = {
        "git": ["git", "clone", "-q", info["url"], str(dsts["git"])],
        "git_no_local": ["git", "clone", "-q", "--no-local", info["path"], str(dsts["git_no_local"])],
        "git_http": ["git", "clone", "-q", http_url, str(dsts["git_http"])],
    }
    methods = (["toolboxd", "git"] + (["git_no_local"] if WITH_NO_LOCAL else [])
               + (["toolboxd_http", "git_http"] if server else []))
    try:
        return clone_rounds(binary, info, methods, dsts, urls, commands, http_url)
    finally:
        if server:
            server[0].terminate()
            server[0].wait()


def clone_rounds(binary: Path, info: dict, methods: list[str], dsts: dict, urls: dict, commands: dict,
                 http_url: str) -> dict:
    log("git clone: warm-up (untimed git clone, warms the page cache)")
    warm = clone_git(commands["git"])
    remove_tree(dsts["git"])
    trials: dict[str, list[dict]] = {m: [] for m in methods}
    verify: dict[str, list[dict]] = {m: [] for m in methods}
    for rnd in range(TRIALS):
        order = methods[rnd % len(methods):] + methods[:rnd % len(methods)]
        for method in order:
            dst = dsts[method]
            remove_tree(dst)
            if method.startswith("toolboxd"):
                result = clone_toolboxd(binary, urls[method], dst, f"git-{method}-{rnd}")
            else:
                result = clone_git(commands[method])
            result["others_cpu_s"] = round(result["machine_busy_cpu_s"] - result["cpu_user_s"] - result["cpu_sys_s"], 2)
            check = verify_clone(dst, info, fsck=(method == "toolboxd" and rnd == 0))
            result["verify_ok"] = check["ok"]
            trials[method].append(result)
            verify[method].append(check)
            extra = (f"VmHWM {result['vmhwm_kib'] / 1024:.1f} MiB, cpu {result['cpu_user_s']}+{result['cpu_sys_s']} s"
                     if method.startswith("toolboxd") else
                     f"max process RSS {result['max_process_rss_kib'] / 1024:.1f} MiB, tree peak "
                     f"{result['sampled_tree_peak_kib'] / 1024:.1f} MiB, cpu {result['cpu_user_s']}+{result['cpu_sys_s']} s")
            log(f"git clone round {rnd + 1}/{TRIALS} {method}: {result['seconds']:.2f} s, {extra}, "
                f"verify {'ok' if check['ok'] else check['problems']}")
            remove_tree(dst)
    out: dict = {"trials": TRIALS, "warmup_git": {"seconds": warm["seconds"]}, "methods": {}, "verify": verify,
                 "http_url": http_url}
    for method in methods:
        entry = summarize(trials[method])
        entry["runs"] = trials[method]
        entry["others_cpu_s_median"] = median([t["others_cpu_s"] for t in trials[method]])
        entry["cpu_s_median"] = median([t["cpu_user_s"] + t["cpu_sys_s"] for t in trials[method]])
        if method.startswith("toolboxd"):
            entry["peak_rss_kib"] = max(t["vmhwm_kib"] for t in trials[method])
        else:
            entry["max_process_rss_kib"] = max(t["max_process_rss_kib"] for t in trials[method])
            entry["tree_peak_kib"] = max(t["sampled_tree_peak_kib"] for t in trials[method])
        out["methods"][method] = entry
    d, g = out["methods"]["toolboxd"], out["methods"]["git"]
    out["ratio_median"] = d["median_s"] / g["median_s"]
    out["ratio_best"] = d["best_s"] / g["best_s"]
    out["ratio_per_round"] = [a["seconds"] / b["seconds"] for a, b in zip(d["runs"], g["runs"])]
    if "toolboxd_http" in out["methods"]:
        dh, gh = out["methods"]["toolboxd_http"], out["methods"]["git_http"]
        out["http_ratio_median"] = dh["median_s"] / gh["median_s"]
        out["http_ratio_best"] = dh["best_s"] / gh["best_s"]
    out["all_verified"] = all(c["ok"] for checks in verify.values() for c in checks)
    return out


def porcelain_names(raw: str) -> dict[str, str]:
    """`git status --porcelain -uall` (not -z) → {path: XY}."""
    out = {}
    for line in raw.splitlines():
        if len(line) > 3:
            out[line[3:]] = line[:2]
    return out


def bench_status(binary: Path, info: dict) -> dict:
    tree = DATA_DIR / "git" / "status-tree"
    remove_tree(tree)
    log(f"git status: cloning {tree}")
    git("clone", "-q", info["url"], str(tree))
    git("-C", str(tree), "update-index", "--refresh", check=False)
    git("-C", str(tree), "status", "--porcelain")  # refreshes and rewrites the index (racy entries)
    time.sleep(1.1)
    git("-C", str(tree), "status", "--porcelain")
    daemon = start_daemon(binary, DATA_DIR / "git", "git-status", env=NO_PROXY_ENV)
    url = "/git/status?" + urllib.parse.urlencode({"path": str(tree)})
    commands = {
        "git": ["git", "-C", str(tree), "status", "--porcelain"],
        "git_v2": ["git", "-C", str(tree), "status", "--porcelain=v2", "--branch", "-uall"],
    }
    cases: dict = {}
    try:
        daemon.reset_peak_rss()
        with HttpConn(daemon.port, timeout=600) as conn:
            raw = conn.prepare("GET", url)

            def run_case(name: str) -> dict:
                samples: dict[str, list[float]] = {"toolboxd": [], "git": [], "git_v2": []}
                body = b""
                outputs: dict[str, str] = {}
                for run in range(STATUS_RUNS + 1):  # run 0 is an untimed warm-up
                    start = time.perf_counter()
                    status, _h, body = conn.roundtrip(raw)
                    elapsed = time.perf_counter() - start
                    if status != 200:
                        raise RuntimeError(f"GET {url} answered {status}: {body[:1000]!r}")
                    if run:
                        samples["toolboxd"].append(elapsed)
                    for key, cmd in commands.items():
                        start = time.perf_counter()
                        proc = subprocess.run(cmd, capture_output=True, text=True, env=GIT_ENV)
                        elapsed = time.perf_counter() - start
                        if proc.returncode != 0:
                            raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr[-1000:]}")
                        outputs[key] = proc.stdout
                        if run:
                            samples[key].append(elapsed)
                answer = json.loads(body)
                files = answer["fileStatus"]
                expected = porcelain_names(git("-C", str(tree), "status", "--porcelain", "-uall"))
                mine = {f["name"] for f in files}
                words: dict[str, int] = {}
                for f in files:
                    key = f"{f['staging']}/{f['worktree']}"
                    words[key] = words.get(key, 0) + 1
                entry = {
                    "samples": samples,
                    "median_s": {k: median(v) for k, v in samples.items()},
                    "min_s": {k: min(v) for k, v in samples.items()},
                    "toolboxd_entries": len(files),
                    "toolboxd_words": words,
                    "toolboxd_branch": answer.get("currentBranch"),
                    "toolboxd_upstream": answer.get("upstream"),
                    "toolboxd_ahead_behind": [answer.get("ahead"), answer.get("behind")],
                    "response_bytes": len(body),
                    "git_porcelain_lines": len(outputs["git"].splitlines()),
                    "git_uall_entries": len(expected),
                    "only_toolboxd": sorted(mine - set(expected))[:5],
                    "only_git": sorted(set(expected) - mine)[:5],
                }
                entry["agree"] = mine == set(expected)
                entry["ratio"] = entry["median_s"]["toolboxd"] / entry["median_s"]["git"]
                entry["ratio_v2"] = entry["median_s"]["toolboxd"] / entry["median_s"]["git_v2"]
                log(f"git status {name}: toolboxd {entry['median_s']['toolboxd'] * 1000:.0f} ms, git "
                    f"{entry['median_s']['git'] * 1000:.0f} ms ({entry['ratio']:.2f}x), git v2 -uall "
                    f"{entry['median_s']['git_v2'] * 1000:.0f} ms; {len(files)} entries {words}, agree {entry['agree']}")
                return entry

            cases["clean"] = run_case("clean")
            # ~100 modified tracked files, ~100 untracked (50 in existing dirs, 50 in 5 new dirs).
            rng = random.Random(7)
            tracked = sorted(git("-C", str(tree), "ls-files", "-z").split("\0")[:-1])
            modified = rng.sample(tracked, 100)
            for rel in modified:
                with open(tree / rel, "a") as f:
                    f.write("// changed by bench/git.py\n")
            dirs = sorted({rel.rsplit("/", 1)[0] for rel in tracked})
            untracked = [f"{rng.choice(dirs)}/bench_untracked_{i}.txt" for i in range(50)]
            untracked += [f"bench_new_{i % 5}/sub/file_{i}.txt" for i in range(50)]
            for rel in untracked:
                path = tree / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"untracked {rel}\n" * 20)
            cases["modified"] = run_case("modified")
            cases["modified"]["changes"] = {"modified": len(modified), "untracked": len(untracked)}
        st = daemon.status()
        peak = kib(st, "VmHWM")
    finally:
        code, stop_s = daemon.stop()
    remove_tree(tree)
    return {"runs": STATUS_RUNS, "tree_files": info["files"], "cases": cases, "daemon_vmhwm_kib": peak,
            "daemon_exit": {"code": code, "seconds_after_sigterm": round(stop_s, 3)}}


def binary_info(binary: Path) -> dict[str, object]:
    """Path, size, mtime and `file`'s BuildID of the binary under test (as bench/transfer.py)."""
    stat = binary.stat()
    kind = tool_version(["file", "-L", str(binary)])
    build_id = kind.split("BuildID[sha1]=", 1)[1].split(",")[0] if "BuildID[sha1]=" in kind else "?"
    return {"path": str(binary), "bytes": stat.st_size,
            "mtime": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stat.st_mtime)), "build_id": build_id}


def main() -> None:
    binary = toolboxd_bin()
    info = ensure_repo()
    log(f"repository: {info['commits']} commits, {info['files']} files, {info['objects']} objects, "
        f"pack {info['pack_bytes'] / 1e6:.0f} MB at {info['path']}")
    cpu_before = cpu_times()
    results: dict = {
        "repo": info,
        "machine": machine_info(),
        "git": tool_version(["git", "--version"]),
        "binary": binary_info(binary),
    }
    if "clone" in PARTS:
        results["clone"] = bench_clone(binary, info)
    if "status" in PARTS:
        results["status"] = bench_status(binary, info)
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    write_result("git", results)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        main()
