#!/usr/bin/env python3
"""Builds (once) the large bare repository the git benchmark clones: DATA_DIR/git/big.git.

    python3 bench/gen_git_repo.py            # prints the JSON description; cached by its parameters
    BENCH_GIT_COMMITS=100000 BENCH_GIT_FILES=50000 python3 bench/gen_git_repo.py

Deterministic (seeded PRNG, fixed dates): the same parameters give the same commit ids on any
machine with the same git. The history is streamed into `git fast-import`:

* commit 1 imports 40 % of the files (an "initial import"); every later commit touches a few
  files (1-4 edits, mostly inside one directory, a hot set of 10 % of the files taking 60 % of
  the edits), adds a new file now and then (so the tree reaches BENCH_GIT_FILES at the last
  commit) and sometimes deletes one;
* files are code-like text lines (identifiers, keywords, numbers) of 200 B - 8 KB (log-uniform,
  1 % up to 40 KB), spread over 2 levels of directories (~25 files per directory);
* an edit replaces, inserts or deletes a few lines, as a real change does;
* a lightweight tag every 1 000 commits.

Then the pack is rebuilt once as a server keeps it: `git repack -adf` (one pack, deltas
recomputed; in a bare repository git also writes a reachability bitmap), `git pack-refs --all`
and `git commit-graph write --reachable`. A JSON marker next to the repository records the
parameters and the result; a repository with a marker for the same parameters is reused.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, log  # noqa: E402

FORMAT = 1  # bump when the generator's output changes
WORDS_SEED = 4242


def params_from_env() -> dict:
    return {
        "format": FORMAT,
        "commits": int(os.environ.get("BENCH_GIT_COMMITS", "100000")),
        "files": int(os.environ.get("BENCH_GIT_FILES", "50000")),
        "seed": int(os.environ.get("BENCH_GIT_SEED", "1")),
    }


def make_words(rng: random.Random, count: int) -> list[str]:
    syllables = ["ka", "lo", "ri", "ven", "tor", "mi", "sa", "del", "qu", "ex", "an", "po", "ly", "ser",
                 "gra", "ph", "na", "te", "ul", "com", "pre", "di", "ct", "ion", "ma", "st", "er", "ze"]
    words = set()
    while len(words) < count:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words)


class Text:
    """Code-like lines: identifiers from a fixed vocabulary, keywords, numbers, indentation."""

    KEYWORDS = ["fn", "let", "if", "else", "return", "match", "for", "while", "pub", "struct", "impl",
                "use", "def", "class", "import", "const", "static", "self", "None", "true", "false"]

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = make_words(random.Random(WORDS_SEED), 3000)

    def ident(self) -> str:
        r = self.rng
        n = r.randint(1, 3)
        return "_".join(r.choice(self.words) for _ in range(n))

    def line(self) -> str:
        r = self.rng
        indent = "    " * r.choice((0, 1, 1, 2, 2, 2, 3, 4))
        kind = r.random()
        if kind < 0.08:
            return ""
        if kind < 0.25:
            return f"{indent}// {' '.join(r.choice(self.words) for _ in range(r.randint(3, 12)))}"
        if kind < 0.45:
            return f"{indent}let {self.ident()} = {self.ident()}({self.ident()}, {r.randint(0, 99999)});"
        if kind < 0.6:
            return f"{indent}{r.choice(self.KEYWORDS)} {self.ident()}.{self.ident()}({self.ident()}) {{"
        if kind < 0.7:
            return f"{indent}}}"
        if kind < 0.85:
            return f"{indent}{self.ident()}: {r.choice(self.KEYWORDS)} = \"{' '.join(r.choice(self.words) for _ in range(r.randint(1, 6)))}\","
        return f"{indent}{r.choice(self.KEYWORDS)} {self.ident()} {r.choice('+-*/<>=')} {r.randint(0, 1 << 20)}"

    def file(self, size: int) -> bytes:
        lines = []
        total = 0
        while total < size:
            line = self.line()
            lines.append(line)
            total += len(line) + 1
        return ("\n".join(lines) + "\n").encode()

    def size(self) -> int:
        r = self.rng
        if r.random() < 0.01:
            return r.randint(8192, 40960)
        return int(200 * (40 ** r.random()))  # log-uniform 200 B .. 8 KB

    def edit(self, content: bytes) -> bytes:
        lines = content.decode().split("\n")
        r = self.rng
        for _ in range(r.randint(1, 3)):
            op = r.random()
            pos = r.randrange(len(lines))
            if op < 0.5 or len(lines) < 4:
                lines[pos] = self.line()
            elif op < 0.85:
                for _ in range(r.randint(1, 4)):
                    lines.insert(pos, self.line())
            else:
                del lines[pos]
        out = "\n".join(lines)
        if not out.endswith("\n"):
            out += "\n"
        return out.encode()


EXTS = [".rs", ".rs", ".py", ".py", ".ts", ".go", ".c", ".h", ".md", ".txt", ".json", ".toml"]


def generate(repo: Path, p: dict) -> dict:
    """Streams the history into `git fast-import` in the (empty, bare) repo."""
    rng = random.Random(p["seed"])
    text = Text(rng)
    n_commits, n_files = p["commits"], p["files"]
    top = max(1, int(round((n_files / 25) ** 0.5 * 1.2)))
    sub = max(1, int(round(n_files / 25 / top)))
    dirs = [f"{text.words[i * 7 % len(text.words)]}{i}/{text.words[(i * 13 + j) % len(text.words)]}{j}"
            for i in range(top) for j in range(sub)]
    initial = int(n_files * 0.4)
    later = n_commits - 1
    deletes_per_commit = 0.02 if later > 0 else 0.0
    # Adds over the later commits so that the final tree holds n_files files.
    adds_needed = n_files - initial + int(later * deletes_per_commit)
    add_rate = adds_needed / later if later else 0.0

    files: dict[str, bytes] = {}
    by_dir: dict[str, list[str]] = {d: [] for d in dirs}
    names: list[str] = []            # all live paths (order = creation; deletions swap-removed)
    index_of: dict[str, int] = {}
    counter = 0

    def new_path() -> str:
        nonlocal counter
        counter += 1
        d = rng.choice(dirs)
        return f"{d}/{rng.choice(text.words)}_{counter}{rng.choice(EXTS)}"

    def add_live(path: str) -> None:
        index_of[path] = len(names)
        names.append(path)
        by_dir[path.rsplit("/", 1)[0]].append(path)

    def remove_live(path: str) -> None:
        i = index_of.pop(path)
        last = names.pop()
        if last != path:
            names[i] = last
            index_of[last] = i
        by_dir[path.rsplit("/", 1)[0]].remove(path)

    proc = subprocess.Popen(
        ["git", "-C", str(repo), "fast-import", "--quiet", "--done"],
        stdin=subprocess.PIPE, bufsize=1 << 20,
    )
    out = proc.stdin
    stats = {"blobs_written": 0, "bytes_written": 0, "edits": 0, "adds": 0, "deletes": 0}
    start_time = 1_600_000_000
    authors = [(f"{w.capitalize()} {v.capitalize()}", f"{w}.{v}@example.com")
               for w, v in zip(text.words[::97], text.words[5::89])][:25]

    def emit_file(path: str, content: bytes) -> None:
        out.write(f"M 100644 inline {path}\ndata {len(content)}\n".encode())
        out.write(content)
        out.write(b"\n")
        stats["blobs_written"] += 1
        stats["bytes_written"] += len(content)

    hot: list[str] = []
    acc = 0.0
    t0 = time.monotonic()
    for c in range(1, n_commits + 1):
        name, email = authors[rng.randrange(len(authors))] if c > 1 else ("Initial Importer", "import@example.com")
        when = start_time + c * 600 + rng.randrange(600)
        words = " ".join(rng.choice(text.words) for _ in range(rng.randint(2, 8)))
        msg = f"{rng.choice(text.words)}: {words} (#{c})\n"
        if rng.random() < 0.3:
            msg += "\n" + "\n".join(" ".join(rng.choice(text.words) for _ in range(rng.randint(4, 12)))
                                    for _ in range(rng.randint(1, 5))) + "\n"
        msg_b = msg.encode()
        out.write(f"commit refs/heads/main\nmark :{c}\nauthor {name} <{email}> {when} +0000\n"
                  f"committer {name} <{email}> {when} +0000\ndata {len(msg_b)}\n".encode())
        out.write(msg_b)
        out.write(b"\n")
        if c == 1:
            for _ in range(initial):
                path = new_path()
                files[path] = text.file(text.size())
                add_live(path)
                emit_file(path, files[path])
            hot = rng.sample(names, max(1, len(names) // 10))
        else:
            touched: set[str] = set()
            # Edits: mostly in one directory.
            n_edits = rng.choice((1, 1, 1, 2, 2, 3, 4))
            anchor = rng.choice(hot) if rng.random() < 0.6 else rng.choice(names)
            if anchor not in index_of:
                anchor = rng.choice(names)
            siblings = by_dir[anchor.rsplit("/", 1)[0]]
            candidates = [anchor] + [rng.choice(siblings) for _ in range(n_edits - 1)]
            for path in candidates:
                if path in touched or path not in index_of:
                    continue
                touched.add(path)
                files[path] = text.edit(files[path])
                emit_file(path, files[path])
                stats["edits"] += 1
            acc += add_rate
            while acc >= 1.0:
                acc -= 1.0
                path = new_path()
                while path in index_of:
                    path = new_path()
                files[path] = text.file(text.size())
                add_live(path)
                emit_file(path, files[path])
                touched.add(path)
                stats["adds"] += 1
                if rng.random() < 0.2:
                    hot.append(path)
            if rng.random() < deletes_per_commit and len(names) > 10:
                victim = rng.choice(names)
                if victim not in touched:
                    remove_live(victim)
                    del files[victim]
                    out.write(f"D {victim}\n".encode())
                    stats["deletes"] += 1
        out.write(b"\n")
        if c % 1000 == 0:
            out.write(f"reset refs/tags/v{c // 1000}.0\nfrom :{c}\n\n".encode())
        if c % 10000 == 0:
            log(f"gen_git_repo: {c}/{n_commits} commits, {len(names)} files, "
                f"{stats['bytes_written'] / 1e6:.0f} MB of blobs, {time.monotonic() - t0:.0f} s")
    out.write(b"done\n")
    out.close()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import exited {proc.returncode}")
    stats["final_files"] = len(names)
    stats["final_tree_bytes"] = sum(len(v) for v in files.values())
    stats["directories"] = len({p.rsplit("/", 1)[0] for p in names})
    stats["generate_s"] = round(time.monotonic() - t0, 1)
    return stats


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def ensure_repo(p: dict | None = None) -> dict:
    """Returns the description of DATA_DIR/git/big.git, building it first if needed."""
    p = p or params_from_env()
    base = DATA_DIR / "git"
    repo = base / "big.git"
    marker = base / "big.json"
    if repo.is_dir() and marker.exists():
        info = json.loads(marker.read_text())
        if info.get("params") == p:
            return info
        log(f"gen_git_repo: {repo} was built with {info.get('params')}, rebuilding for {p}")
    base.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    tmp = base / "big.git.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(repo, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(tmp)], check=True)
    log(f"gen_git_repo: generating {p['commits']} commits, {p['files']} files into {tmp}")
    stats = generate(tmp, p)
    t0 = time.monotonic()
    log("gen_git_repo: git repack -adf (one pack, deltas recomputed) ...")
    subprocess.run(["git", "-C", str(tmp), "repack", "-a", "-d", "-f", "-q"], check=True)
    subprocess.run(["git", "-C", str(tmp), "pack-refs", "--all"], check=True)
    subprocess.run(["git", "-C", str(tmp), "commit-graph", "write", "--reachable"], check=True,
                   capture_output=True)
    subprocess.run(["git", "-C", str(tmp), "prune", "--expire=now"], check=True)
    stats["repack_s"] = round(time.monotonic() - t0, 1)
    tmp.rename(repo)
    packs = sorted((repo / "objects/pack").glob("*.pack"))
    count = dict(line.split(": ", 1) for line in git(repo, "count-objects", "-v").splitlines())
    info = {
        "params": p,
        "path": str(repo),
        "url": f"file://{repo}",
        "head": git(repo, "rev-parse", "refs/heads/main"),
        "commits": int(git(repo, "rev-list", "--count", "main")),
        "files": int(subprocess.run(f"git -C {repo} ls-tree -r --name-only main | wc -l", shell=True,
                                    check=True, capture_output=True, text=True).stdout),
        "tags": len(git(repo, "tag").split()),
        "objects": int(count.get("in-pack", 0)),
        "packs": len(packs),
        "pack_bytes": sum(pk.stat().st_size for pk in packs),
        "bitmap": any((repo / "objects/pack").glob("*.bitmap")),
        "commit_graph": (repo / "objects/info/commit-graph").exists(),
        "git_version": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **stats,
    }
    marker.write_text(json.dumps(info, indent=2) + "\n")
    os.sync()
    log(f"gen_git_repo: {info['commits']} commits, {info['files']} files, {info['objects']} objects, "
        f"pack {info['pack_bytes'] / 1e6:.0f} MB, bitmap {info['bitmap']}")
    return info


if __name__ == "__main__":
    print(json.dumps(ensure_repo(), indent=2))
