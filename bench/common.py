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
    # And the SSH listener off port 22220 (bench/ssh.py starts its own).
    if help_mentions(binary, "--ssh-addr"):
        args += ["--ssh-addr", "off"]
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


class HttpConn:
    """A keep-alive HTTP/1.1 connection to 127.0.0.1:PORT (raw socket, TCP_NODELAY, no proxy).

    `request()` sends one request in a single write and reads the whole answer (Content-Length,
    chunked, or no body for 1xx/204/304). `prepare()` + `roundtrip()` let a hot loop reuse the
    request bytes.
    """

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "HttpConn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def prepare(method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> bytes:
        """Request bytes; a dict/list body is sent as JSON."""
        if body is None:
            payload = b""
        elif isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        else:
            payload = json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        if body is not None and not isinstance(body, (bytes, bytearray)):
            head.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(payload)}")
        for key, value in (headers or {}).items():
            head.append(f"{key}: {value}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + payload

    def _read_more(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.pending += data

    def _take(self, n: int) -> bytes:
        if len(self.pending) < n:
            # Gather in a bytearray: appending to `bytes` would copy the body once per recv.
            buf = bytearray(self.pending)
            while len(buf) < n:
                data = self.sock.recv(max(262144, min(n - len(buf), 4 * MIB)))
                if not data:
                    raise ConnectionError("the server closed the connection")
                buf += data
            self.pending = bytes(buf[n:])
            return bytes(buf[:n])
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def _line(self) -> bytes:
        while (end := self.pending.find(b"\r\n")) < 0:
            self._read_more()
        out, self.pending = self.pending[:end], self.pending[end + 2:]
        return out

    def roundtrip(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Sends prepared request bytes; returns (status, lower-case headers, body)."""
        self.sock.sendall(raw)
        while (end := self.pending.find(b"\r\n\r\n")) < 0:
            self._read_more()
        head, self.pending = self.pending[:end].decode("latin-1"), self.pending[end + 4:]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if status < 200 or status in (204, 304) or raw.startswith(b"HEAD "):
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():  # trailers, then the empty line
                        pass
                    return status, headers, bytes(body)
                body += self._take(size)
                self._take(2)
        raise RuntimeError(f"no Content-Length and not chunked: {head!r}")

    def request(self, method: str, path: str, body: object = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return self.roundtrip(self.prepare(method, path, body, headers))


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketClient:
    """A minimal RFC 6455 client over a raw 127.0.0.1 socket, built for throughput.

    Frames are parsed out of one large receive buffer filled with `recv_into`; data frames
    (binary, text, continuation: fragmented messages are streamed as they come) are handed to
    `on_data(buffer, start, end)` in place, with no copy, possibly in several pieces per frame.
    Pings are answered with pongs, a close frame is answered with the same code and ends `run()`.
    Client frames are masked; a masked server frame is a protocol error.
    """

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None,
                 timeout: float = 120.0, buffer_size: int = 4 * MIB) -> None:
        import base64
        import hashlib

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed during the WebSocket handshake: {raw!r}")
            raw += data
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ", 2)[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        if self.status != 101:
            raise RuntimeError(f"WebSocket upgrade answered {status_line!r}: {rest[:500]!r}")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if self.headers.get("sec-websocket-accept") != accept:
            raise RuntimeError(f"bad Sec-WebSocket-Accept {self.headers.get('sec-websocket-accept')!r}")
        self.buf = bytearray(max(buffer_size, 1 << 16))
        self.mv = memoryview(self.buf)
        self.buf[: len(rest)] = rest
        self.r, self.w = 0, len(rest)
        self.stats = {"frames": 0, "data_frames": 0, "binary_frames": 0, "text_frames": 0,
                      "continuation_frames": 0, "pings": 0, "max_frame": 0, "data_bytes": 0}

    def close(self) -> None:
        self.sock.close()

    def send_frame(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _fill(self, need: int) -> None:
        """Makes at least `need` bytes available at buf[r:w]."""
        while self.w - self.r < need:
            if self.r == self.w:
                self.r = self.w = 0
            elif len(self.buf) - self.w < 65536 or len(self.buf) - self.r < need:
                n = self.w - self.r
                self.buf[:n] = self.buf[self.r:self.w]
                self.r, self.w = 0, n
            got = self.sock.recv_into(self.mv[self.w:], len(self.buf) - self.w)
            if got == 0:
                raise ConnectionError("the server closed the TCP connection without a close frame")
            self.w += got

    def read_frame(self) -> tuple[int, bytes]:
        """The next data or close frame, whole: (opcode, payload). Pings are answered on the way.
        For small frames (the buffer must hold the largest one)."""
        buf = self.buf
        while True:
            self._fill(2)
            b0, b1 = buf[self.r], buf[self.r + 1]
            opcode, length, header = b0 & 0x0F, b1 & 0x7F, 2
            if length == 126:
                self._fill(4)
                length, header = int.from_bytes(buf[self.r + 2:self.r + 4], "big"), 4
            elif length == 127:
                self._fill(10)
                length, header = int.from_bytes(buf[self.r + 2:self.r + 10], "big"), 10
            self._fill(header + length)
            payload = bytes(buf[self.r + header:self.r + header + length])
            self.r += header + length
            if opcode == 0x9:
                self.send_frame(0xA, payload)
            elif opcode != 0xA:
                return opcode, payload

    def run(self, on_data) -> tuple[int | None, str]:
        """Reads frames until the server's close frame; returns (close code, reason)."""
        stats = self.stats
        buf = self.buf
        while True:
            self._fill(2)
            b0, b1 = buf[self.r], buf[self.r + 1]
            opcode, length, header = b0 & 0x0F, b1 & 0x7F, 2
            if b1 & 0x80:
                raise RuntimeError("the server sent a masked frame")
            if length == 126:
                self._fill(4)
                length, header = int.from_bytes(buf[self.r + 2:self.r + 4], "big"), 4
            elif length == 127:
                self._fill(10)
                length, header = int.from_bytes(buf[self.r + 2:self.r + 10], "big"), 10
            self.r += header
            stats["frames"] += 1
            stats["max_frame"] = max(stats["max_frame"], length)
            if opcode in (0x0, 0x1, 0x2):
                stats["data_frames"] += 1
                stats[{0: "continuation_frames", 1: "text_frames", 2: "binary_frames"}[opcode]] += 1
                stats["data_bytes"] += length
                remaining = length
                while remaining:
                    if self.r == self.w:
                        self.r = self.w = 0
                        got = self.sock.recv_into(self.mv, len(buf))
                        if got == 0:
                            raise ConnectionError("the server closed the TCP connection mid-frame")
                        self.w = got
                    n = min(remaining, self.w - self.r)
                    on_data(buf, self.r, self.r + n)
                    self.r += n
                    remaining -= n
                continue
            if opcode >= 0x8 and (length > 125 or not b0 & 0x80):
                raise RuntimeError(f"bad control frame: opcode {opcode}, length {length}, fin {b0 >> 7}")
            self._fill(length)
            payload = bytes(buf[self.r:self.r + length])
            self.r += length
            if opcode == 0x9:
                stats["pings"] += 1
                self.send_frame(0xA, payload)
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                reason = payload[2:].decode(errors="replace")
                try:
                    self.send_frame(0x8, payload[:2])
                except OSError:
                    pass
                return code, reason
            elif opcode != 0xA:
                raise RuntimeError(f"unknown opcode {opcode}")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between the closest ranks."""
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
