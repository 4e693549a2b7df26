#!/usr/bin/env python3
"""GET /files/find (literal content search) over a ~300 MB source tree vs ripgrep and GNU grep.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/find.py

Corpus (built once under DATA_DIR/corpus, symlinks removed so that no tool follows one):
~/.cargo/registry/src + /usr/include + /usr/lib/python3.X, topped up with copies of
~/.cargo/registry/src until it holds at least BENCH_CORPUS_MB (default 300) MB.

Each pattern is run with (output to a file, never /dev/null, which grep and rg short-circuit):
  * toolboxd: curl -sS -o out.json 'http://127.0.0.1:PORT/files/find?path=CORPUS&pattern=PAT'
  * ripgrep:  rg -F -uuu -n PAT CORPUS > out.txt
  * grep:     LC_ALL=C grep -rnF PAT CORPUS > out.txt   (C locale: bytes, NUL-only binary test)
The page cache is warmed first (one untimed run of each tool), then the tools take turns,
BENCH_FIND_RUNS times (default 7); the median is reported. The match sets are compared:
toolboxd skips a file with a NUL byte whole, rg -uuu prints "binary file matches" for it and
grep says so on stderr, so lines of files the other tools call binary are set aside first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from common import (
    DATA_DIR, MIB, cpu_times, kib, log, machine_info, median, start_daemon, steal_since, tool_version,
    toolboxd_bin, write_result,
)

RUNS = int(os.environ.get("BENCH_FIND_RUNS", "7"))
CORPUS_BYTES = int(os.environ.get("BENCH_CORPUS_MB", "300")) * 1000 * 1000
# No match, ~1 600, ~7 000 (also in binary files) and ~115 000 matches (a 13 MB answer).
PATTERNS = os.environ.get("BENCH_FIND_PATTERNS", "xyzzy_never_there|unsafe impl|deprecated|return").split("|")
LINE_RE = re.compile(rb"^(.*?):(\d+):")
RG_BINARY_RE = re.compile(rb"^(.*?): binary file matches")
GREP_BINARY_RE = re.compile(rb"^grep: (.*?): binary file matches")


def tree_stats(root: Path) -> tuple[int, int]:
    files = 0
    size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            files += 1
            size += st.st_size
    return files, size


def build_corpus(corpus: Path) -> dict:
    marker = corpus.with_suffix(".json")
    if corpus.is_dir() and marker.exists():
        return json.loads(marker.read_text())
    if corpus.exists():
        shutil.rmtree(corpus)
    corpus.mkdir(parents=True)
    sources = [Path.home() / ".cargo/registry/src", Path("/usr/include"),
               Path(f"/usr/lib/python3.{sys.version_info.minor}")]
    used = []
    for src in sources:
        if src.is_dir():
            dest = corpus / str(src).strip("/").replace("/", "-")
            log(f"copying {src} -> {dest}")
            subprocess.run(["cp", "-r", "--no-preserve=ownership", str(src), str(dest)], check=True)
            used.append(str(src))
    subprocess.run(["find", str(corpus), "-type", "l", "-delete"], check=True)
    files, size = tree_stats(corpus)
    copy = 1
    while size < CORPUS_BYTES and sources[0].is_dir() and copy < 10:
        dest = corpus / f"cargo-registry-copy{copy}"
        log(f"corpus is {size // MIB} MiB, adding {dest}")
        subprocess.run(["cp", "-r", str(sources[0]), str(dest)], check=True)
        subprocess.run(["find", str(dest), "-type", "l", "-delete"], check=True)
        used.append(f"{sources[0]} (copy {copy})")
        files, size = tree_stats(corpus)
        copy += 1
    info = {"path": str(corpus), "sources": used, "files": files, "bytes": size}
    marker.write_text(json.dumps(info, indent=2))
    os.sync()
    return info


def parse_lines(raw: bytes, binary_re: re.Pattern) -> tuple[set, set]:
    """(file, line) pairs and the files reported as binary, from grep-style output."""
    found = set()
    binary = set()
    for line in raw.split(b"\n"):
        if not line:
            continue
        m = binary_re.match(line)
        if m:
            binary.add(m.group(1).decode(errors="surrogateescape"))
            continue
        m = LINE_RE.match(line)
        if m:
            found.add((m.group(1).decode(errors="surrogateescape"), int(m.group(2))))
    return found, binary


def compare(name: str, mine: set, theirs: set, their_binary: set) -> dict:
    theirs_text = {m for m in theirs if m[0] not in their_binary}
    mine_text = {m for m in mine if m[0] not in their_binary}
    only_mine = sorted(mine_text - theirs_text)
    only_theirs = sorted(theirs_text - mine_text)
    return {
        "tool": name,
        "their_lines": len(theirs),
        "their_binary_files": len(their_binary),
        "their_text_lines": len(theirs_text),
        "toolboxd_lines_outside_their_binary_files": len(mine_text),
        "only_toolboxd": len(only_mine),
        "only_theirs": len(only_theirs),
        "examples_only_toolboxd": [f"{f}:{n}" for f, n in only_mine[:5]],
        "examples_only_theirs": [f"{f}:{n}" for f, n in only_theirs[:5]],
        "agree": not only_mine and not only_theirs,
    }


def main() -> None:
    binary = toolboxd_bin()
    cpu_before = cpu_times()
    corpus = DATA_DIR / "corpus"
    info = build_corpus(corpus)
    log(f"corpus: {info['files']} files, {info['bytes'] / MIB:.0f} MiB at {corpus}")
    out_dir = DATA_DIR / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    grep_env = dict(os.environ, LC_ALL="C")

    results: dict = {
        "corpus": info,
        "runs": RUNS,
        "machine": machine_info(),
        "rg": tool_version(["rg", "--version"]),
        "grep": tool_version(["grep", "--version"]),
        "curl": tool_version(["curl", "--version"]),
        "patterns": {},
    }
    daemon = start_daemon(binary, DATA_DIR, "find")
    try:
        for pattern in PATTERNS:
            url = f"{daemon.base}/files/find?" + urllib.parse.urlencode({"path": str(corpus), "pattern": pattern})
            outputs = {name: out_dir / f"find-{name}.out" for name in ("toolboxd", "rg", "grep")}
            commands = {
                "toolboxd": (["curl", "-sS", "--max-time", "600", "-o", str(outputs["toolboxd"]), "-w", "%{http_code}", url], None),
                "rg": (["rg", "-F", "-uuu", "-n", pattern, str(corpus)], None),
                "grep": (["grep", "-rnF", pattern, str(corpus)], grep_env),
            }
            samples: dict[str, list[float]] = {name: [] for name in commands}
            stderr: dict[str, bytes] = {}
            http_code = b""
            daemon.reset_peak_rss()
            for run in range(RUNS + 1):  # run 0 warms the page cache and is not counted
                for name, (cmd, env) in commands.items():
                    start = time.perf_counter()
                    if name == "toolboxd":
                        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
                        http_code = proc.stdout
                    else:
                        with open(outputs[name], "wb") as out:
                            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, env=env, timeout=600)
                    elapsed = time.perf_counter() - start
                    stderr[name] = proc.stderr
                    # rg/grep exit 1 when nothing matched; 2 is an error (grep also uses 2 for
                    # unreadable files, which a root run over this corpus does not have).
                    if proc.returncode not in (0, 1) or (name == "toolboxd" and proc.returncode != 0):
                        raise RuntimeError(f"{name} exited {proc.returncode}: {proc.stderr[-1000:]!r}")
                    if run > 0:
                        samples[name].append(elapsed)
            status = daemon.status()

            body = outputs["toolboxd"].read_bytes()
            entry: dict = {"http_status": http_code.decode(), "response_bytes": len(body)}
            try:
                matches = json.loads(body)
                mine = {(m["file"], int(m["line"])) for m in matches}
                entry["toolboxd_matches"] = len(matches)
                entry["toolboxd_distinct_file_lines"] = len(mine)
            except (ValueError, KeyError, TypeError) as err:
                mine = set()
                entry["toolboxd_matches"] = None
                entry["toolboxd_error"] = f"{err}: {body[:300]!r}"
            rg_found, rg_binary = parse_lines(outputs["rg"].read_bytes(), RG_BINARY_RE)
            grep_found, _ = parse_lines(outputs["grep"].read_bytes(), re.compile(rb"^$^"))
            _, grep_binary = parse_lines(stderr["grep"], GREP_BINARY_RE)
            entry["vs_rg"] = compare("rg", mine, rg_found, rg_binary)
            entry["vs_grep"] = compare("grep", mine, grep_found, grep_binary)
            entry["seconds"] = samples
            entry["median_s"] = {name: median(vals) for name, vals in samples.items()}
            entry["ratio_vs_rg"] = entry["median_s"]["toolboxd"] / entry["median_s"]["rg"]
            entry["ratio_vs_grep"] = entry["median_s"]["toolboxd"] / entry["median_s"]["grep"]
            entry["daemon_vmhwm_kib"] = kib(status, "VmHWM")
            entry["daemon_vmrss_after_kib"] = kib(status, "VmRSS")
            results["patterns"][pattern] = entry
            log(f"{pattern!r}: toolboxd {entry['median_s']['toolboxd']:.3f}s rg {entry['median_s']['rg']:.3f}s "
                f"grep {entry['median_s']['grep']:.3f}s ratio/rg {entry['ratio_vs_rg']:.2f} "
                f"matches toolboxd={entry['toolboxd_matches']} rg_text={entry['vs_rg']['their_text_lines']} "
                f"agree rg={entry['vs_rg']['agree']} grep={entry['vs_grep']['agree']} "
                f"peak RSS {entry['daemon_vmhwm_kib']} KiB")
    finally:
        code, stop_s = daemon.stop()
        results["daemon_exit"] = {"code": code, "seconds_after_sigterm": stop_s}
    results["steal_during_run"] = round(steal_since(cpu_before), 4)
    write_result("find", results)


if __name__ == "__main__":
    main()
