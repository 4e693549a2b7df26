"""Shared helpers for the toolboxd benchmarks: start/stop the daemon, read its memory, time things.

Everything talks to 127.0.0.1 only. Standard library only (Python 3.11).
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS", BENCH_DIR / "results"))
# Scratch data (1 GiB file, the search corpus). Must be on the same disk as the
# files toolboxd writes, which it is: toolboxd writes under DATA_DIR too.
DATA_DIR = Path(os.environ.get("BENCH_DATA", "/var/tmp/toolboxd-bench"))

LISTEN_RE = re.compile(rb"toolbox listening on http://127\.0\.0\.1:(\d+)")
MIB = 1024 * 1024
GIB = 1024 * MIB


def log(*args: object) -> None:
    print("[bench]", *args, file=sys.stderr, flush=True)


def toolboxd_bin() -> Path:
    value = os.environ.get("TOOLBOXD_BIN")
    if not value:
        sys.exit("TOOLBOXD_BIN is not set (bench/run-all.sh sets it to the static release build)")
    path = Path(value).resolve()
    if not os.access(path, os.X_OK):
        sys.exit(f"TOOLBOXD_BIN={path} is not executable")
    # The benchmarks are for the static release build (packaging/build-static.sh). A dynamic
    # binary is most likely target/debug/toolboxd, which tests/run.sh exports as TOOLBOXD_BIN.
    try:
        kind = subprocess.run(["file", "-L", str(path)], capture_output=True, text=True).stdout
    except OSError:
        kind = ""
    if "dynamically linked" in kind and os.environ.get("BENCH_ALLOW_DYNAMIC") != "1":
        sys.exit(f"TOOLBOXD_BIN={path} is dynamically linked (a debug build?); benchmark the static "
                 "release build from packaging/build-static.sh, or set BENCH_ALLOW_DYNAMIC=1")
    return path


def help_mentions(binary: Path, flag: str) -> bool:
    try:
        out = subprocess.run([str(binary), "--help"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag.encode() in out


def daemon_args(binary: Path, workdir: Path, addr: str = "127.0.0.1:0") -> list[str]:
    args = [str(binary), "--toolbox-addr", addr, "--workdir", str(workdir)]
    # Keep the reserved terminal listener off port 22222 if this build has the flag.
    if help_mentions(binary, "--terminal-addr"):
        args += ["--terminal-addr", "127.0.0.1:0"]
    return args


@dataclass
class Daemon:
    """A running toolboxd on an ephemeral 127.0.0.1 port."""

    proc: subprocess.Popen
    port: int
    stderr_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, str]:
        return proc_status(self.pid)

    def reset_peak_rss(self) -> bool:
        """Resets VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def counters(self) -> tuple[float, float, int]:
        """(user CPU s, system CPU s, minor page faults) so far, from /proc/PID/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / ticks, int(fields[12]) / ticks, int(fields[7])

    def cpu_seconds(self) -> float:
        user, system, _faults = self.counters()
        return user + system

    def stop(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM, wait; returns (exit code, seconds to exit). SIGKILL after timeout."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None, time.perf_counter() - start
        return code, time.perf_counter() - start

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_daemon(binary: Path, workdir: Path, name: str, env: dict[str, str] | None = None) -> Daemon:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stderr_path = RESULTS_DIR / f"toolboxd-{name}.stderr.log"
    args = daemon_args(binary, workdir)
    full_env = dict(os.environ)
    full_env.setdefault("RUST_LOG", "warn")
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=open(stderr_path, "wb"),
        stdin=subprocess.DEVNULL,
        env=full_env,
    )
    deadline = time.monotonic() + 20
    buf = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        buf += line
        match = LISTEN_RE.search(line)
        if match:
            # Drain stdout in the background so the daemon never blocks on a full pipe.
            subprocess_drain(proc)
            return Daemon(proc, int(match.group(1)), stderr_path, args)
    proc.kill()
    proc.wait()
    raise RuntimeError(
        f"toolboxd did not print its address; stdout={buf!r}; stderr={stderr_path.read_text()[-2000:]}"
    )


def subprocess_drain(proc: subprocess.Popen) -> None:
    import threading

    def drain() -> None:
        for _ in iter(lambda: proc.stdout.read(65536), b""):
            pass

    threading.Thread(target=drain, daemon=True).start()


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def kib(status: dict[str, str], key: str) -> int:
    """A `NNN kB` field of /proc/PID/status, in KiB."""
    return int(status.get(key, "0 kB").split()[0])


def http_get(port: int, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET over a fresh socket (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body


def dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def run_timed(cmd: list[str] | str, *, shell: bool = False, stdout=None, env=None, timeout=600) -> float:
    """Runs a command to completion, returns wall seconds; raises on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, shell=shell, stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=env, timeout=timeout,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd!r} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def drop_dirty(path: Path) -> None:
    """Deletes a written file and syncs, so the next trial starts with no writeback pending."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    os.sync()


def cpu_times() -> list[int]:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def steal_since(before: list[int]) -> float:
    """Fraction of CPU time the hypervisor stole since `before` (a cpu_times() sample)."""
    after = cpu_times()
    delta = [a - b for a, b in zip(after, before)]
    return delta[7] / max(1, sum(delta[:8]))


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy (not idle/iowait) over `seconds`, from /proc/stat."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def machine_info() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    try:
        fs = subprocess.run(["df", "-hT", str(DATA_DIR)], capture_output=True, text=True).stdout.splitlines()[-1]
    except (OSError, IndexError):
        fs = "unknown"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / MIB, 1),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "data_dir": str(DATA_DIR),
        "data_fs": fs,
        "python": platform.python_version(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "cpu_busy_1s": round(cpu_busy(), 3),
    }


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "missing"


def write_result(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    log(f"wrote {path}")
    return path
