#!/usr/bin/env python3
"""SSH benchmarks: toolboxd's SSH server next to OpenSSH's own sshd, started in the same run.

    TOOLBOXD_BIN=/path/to/static/toolboxd python3 bench/ssh.py

Two servers on 127.0.0.1, each on an ephemeral port, with the same authorized key (a fresh
ed25519 pair): toolboxd (`--ssh-addr 127.0.0.1:0 --ssh-authorized-keys FILE`) and OpenSSH's
`sshd -D -e -f CFG` (Debian openssh-server: a temp sshd_config with its own ed25519 host key,
public keys only, no PAM, `Subsystem sftp /usr/lib/openssh/sftp-server`). The client is the
OpenSSH client with `-F /dev/null`, our key only, no known_hosts, BatchMode: whatever the two
negotiate (the cipher and key exchange are recorded).

1. `ssh host true`: a whole connection per run (key exchange, public key login, exec, close),
   BENCH_SSH_RUNS times per series (default 50, after 5 untimed), taking turns: toolboxd, sshd,
   and sshd with `-o KexAlgorithms=curve25519-sha256` (toolboxd's key exchange; with sshd the
   client otherwise picks the post-quantum sntrup761x25519). p50, p90, mean.
2. `scp` of BENCH_SSH_MIB MiB (default 1024) of random bytes up (`scp FILE host:dst`) and back
   down, BENCH_SSH_TRIALS rounds (default 3) per direction and server, alternating which goes
   first; median MB/s. Goal: toolboxd >= 0.8x sshd. Files live in BENCH_SSH_DIR (default
   /dev/shm/toolboxd-bench-ssh, a tmpfs, so the disk does not set the pace; every copy is
   compared with `cmp`). scp speaks SFTP to both (OpenSSH 9).
3. Memory with BENCH_SSH_SESSIONS (default 50) open sessions (measured before the transfers): that many `ssh -tt host`
   connections, each with a login shell on a terminal that answered a marker, held open. The
   daemon's VmRSS before and with them, per session; for sshd, the summed RSS and PSS of its
   processes (the listener and one or two per connection; PSS splits shared pages, RSS counts
   them in every process). The shells themselves are counted for neither.

Env: BENCH_SSH_RUNS (50), BENCH_SSH_MIB (1024), BENCH_SSH_TRIALS (3), BENCH_SSH_SESSIONS (50),
BENCH_SSH_DIR, BENCH_SSHD (/usr/sbin/sshd), BENCH_SFTP_SERVER (/usr/lib/openssh/sftp-server).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    MIB, cpu_busy, cpu_times, kib, log, machine_info, pct, proc_status, steal_since,
    subprocess_drain, tool_version, toolboxd_bin, write_result,
)

RUNS = int(os.environ.get("BENCH_SSH_RUNS", "50"))
WARMUP = 5
SIZE = int(os.environ.get("BENCH_SSH_MIB", "1024")) * MIB
TRIALS = int(os.environ.get("BENCH_SSH_TRIALS", "3"))
SESSIONS = int(os.environ.get("BENCH_SSH_SESSIONS", "50"))
SSHD = os.environ.get("BENCH_SSHD", "/usr/sbin/sshd")
SFTP_SERVER = os.environ.get("BENCH_SFTP_SERVER", "/usr/lib/openssh/sftp-server")
DEFAULT_DIR = "/dev/shm/toolboxd-bench-ssh" if Path("/dev/shm").is_dir() else "/var/tmp/toolboxd-bench-ssh"
WORK = Path(os.environ.get("BENCH_SSH_DIR", DEFAULT_DIR))
SSH_LISTEN_RE = re.compile(rb"ssh listening on ssh://127\.0\.0\.1:(\d+)")
# sshd logs in a real user; toolboxd takes any name (its commands run as the daemon's user).
USER = pwd.getpwuid(os.getuid()).pw_name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Servers:
    """toolboxd and sshd, each serving its own directory with the same authorized key."""

    def __init__(self, binary: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ssh-", dir=WORK))
        self.key = self.root / "id_bench"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.authorized = self.root / "authorized_keys"
        shutil.copy(self.key.with_suffix(".pub"), self.authorized)
        self.dirs = {"toolboxd": self.root / "toolboxd", "sshd": self.root / "sshd"}
        for d in self.dirs.values():
            d.mkdir()
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self._start_toolboxd(binary)
        self._start_sshd()

    def _start_toolboxd(self, binary: Path) -> None:
        home = self.root / "home"
        home.mkdir()
        env = dict(os.environ, HOME=str(home), RUST_LOG="warn")
        stderr = open(self.root / "toolboxd.stderr.log", "wb")
        proc = subprocess.Popen(
            [str(binary), "--toolbox-addr", "127.0.0.1:0", "--terminal-addr", "127.0.0.1:0",
             "--ssh-addr", "127.0.0.1:0", "--ssh-authorized-keys", str(self.authorized),
             "--workdir", str(self.dirs["toolboxd"])],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = SSH_LISTEN_RE.search(line)
            if match:
                self.procs["toolboxd"] = proc
                self.ports["toolboxd"] = int(match.group(1))
                subprocess_drain(proc)
                return
        proc.kill()
        raise RuntimeError("toolboxd did not print its ssh address")

    def _start_sshd(self) -> None:
        host_key = self.root / "sshd_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        port = free_port()
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {self.authorized}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin yes",
            f"PidFile {self.root / 'sshd.pid'}",
            f"Subsystem sftp {SFTP_SERVER}",
            "LogLevel ERROR",
            "",
        ]))
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=open(self.root / "sshd.stderr.log", "wb"))
        self.procs["sshd"] = proc
        self.ports["sshd"] = port
        wait_listening(port)

    def options(self) -> list[str]:
        return ["-F", "/dev/null", "-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o",
                "IdentityAgent=none", "-o", "StrictHostKeyChecking=no", "-o",
                "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]

    def ssh(self, server: str, *command: str, options: tuple[str, ...] = ()) -> list[str]:
        return ["ssh", *options, *self.options(), "-p", str(self.ports[server]), f"{USER}@127.0.0.1", *command]

    def scp(self, server: str, source: str, destination: str) -> list[str]:
        return ["scp", *self.options(), "-P", str(self.ports[server]), source, destination]

    def remote(self, server: str, path: Path) -> str:
        return f"{USER}@127.0.0.1:{path}"

    def negotiated(self, server: str) -> str:
        out = subprocess.run(self.ssh(server, "true", options=("-o", "LogLevel=DEBUG")), capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL).stderr
        found = re.findall(r"kex: (algorithm|host key algorithm|server->client cipher): (\S+)", out)
        return ", ".join(value for _kind, value in found)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1e3, 3),
        "p90_ms": round(pct(values, 90) * 1e3, 3),
        "p99_ms": round(pct(values, 99) * 1e3, 3),
        "mean_ms": round(statistics.fmean(values) * 1e3, 3),
        "min_ms": round(min(values) * 1e3, 3),
        "max_ms": round(max(values) * 1e3, 3),
    }


# The series of section 1: a server, and client options (sshd also with the key exchange
# toolboxd negotiates, curve25519, since OpenSSH picks its post-quantum hybrid with sshd).
SERIES = {
    "toolboxd": ("toolboxd", ()),
    "sshd": ("sshd", ()),
    "sshd_curve25519": ("sshd", ("-o", "KexAlgorithms=curve25519-sha256")),
}


def bench_true(servers: Servers) -> dict:
    samples: dict[str, list[float]] = {name: [] for name in SERIES}
    order = list(SERIES)
    for i in range(WARMUP + RUNS):
        for name in order[i % len(order):] + order[:i % len(order)]:
            server, options = SERIES[name]
            start = time.perf_counter()
            subprocess.run(servers.ssh(server, "true", options=options), check=True,
                           stdin=subprocess.DEVNULL, timeout=60)
            took = time.perf_counter() - start
            if i >= WARMUP:
                samples[name].append(took)
    out = {name: summary_ms(values) for name, values in samples.items()}
    out["ratio_p50"] = round(out["toolboxd"]["p50_ms"] / out["sshd"]["p50_ms"], 3)
    out["ratio_p50_same_kex"] = round(out["toolboxd"]["p50_ms"] / out["sshd_curve25519"]["p50_ms"], 3)
    for name in order:
        log(f"ssh true via {name}: p50 {out[name]['p50_ms']:.2f} ms, p90 {out[name]['p90_ms']:.2f} ms")
    return {"runs": RUNS, "warmup": WARMUP, "timings": out}


def source_file() -> Path:
    path = WORK / f"scp-{SIZE // MIB}m.bin"
    if path.exists() and path.stat().st_size == SIZE:
        return path
    log(f"writing {SIZE // MIB} MiB of random bytes to {path}")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        left = SIZE
        while left:
            n = min(left, 16 * MIB)
            out.write(os.urandom(n))
            left -= n
    tmp.rename(path)
    return path


def same(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def bench_scp(servers: Servers) -> dict:
    source = source_file()
    rates: dict[str, dict[str, list[float]]] = {
        direction: {"toolboxd": [], "sshd": []} for direction in ("upload", "download")
    }
    cpu: dict[str, list[float]] = {"toolboxd": [], "sshd_listener": []}
    order = ["toolboxd", "sshd"]
    for trial in range(TRIALS):
        for server in (order if trial % 2 == 0 else order[::-1]):
            remote = servers.dirs[server] / "dst.bin"
            pid = servers.procs[server].pid
            before = cpu_seconds(pid)
            start = time.perf_counter()
            subprocess.run(servers.scp(server, str(source), servers.remote(server, remote)), check=True,
                           stdin=subprocess.DEVNULL, timeout=1800)
            up = time.perf_counter() - start
            if server == "toolboxd":
                cpu["toolboxd"].append(cpu_seconds(pid) - before)
            if not same(source, remote):
                raise RuntimeError(f"the upload to {server} differs from the source")
            back = WORK / "back.bin"
            start = time.perf_counter()
            subprocess.run(servers.scp(server, servers.remote(server, remote), str(back)), check=True,
                           stdin=subprocess.DEVNULL, timeout=1800)
            down = time.perf_counter() - start
            if not same(source, back):
                raise RuntimeError(f"the download from {server} differs from the source")
            remote.unlink()
            back.unlink()
            rates["upload"][server].append(SIZE / up / 1e6)
            rates["download"][server].append(SIZE / down / 1e6)
            log(f"scp trial {trial + 1} {server}: up {SIZE / up / 1e6:.0f} MB/s, down {SIZE / down / 1e6:.0f} MB/s")
    out: dict[str, object] = {"bytes": SIZE, "trials": TRIALS, "dir": str(WORK)}
    for direction, by_server in rates.items():
        medians = {server: round(statistics.median(values), 1) for server, values in by_server.items()}
        out[direction] = {
            "median_mb_s": medians,
            "all_mb_s": {server: [round(v, 1) for v in values] for server, values in by_server.items()},
            "ratio": round(medians["toolboxd"] / medians["sshd"], 3),
        }
    out["toolboxd_cpu_s_per_gib_upload"] = round(statistics.median(cpu["toolboxd"]) * (1 << 30) / SIZE, 2)
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_of(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pss(pid: int) -> int:
    """Proportional set size (KiB): shared pages split between the processes sharing them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def rss_of(pids: list[int], exe_suffix: str) -> tuple[int, int, int]:
    """Summed VmRSS and PSS (KiB) and the count of the processes in `pids` running `exe_suffix`."""
    total, proportional, count = 0, 0, 0
    for pid in pids:
        try:
            if not os.readlink(f"/proc/{pid}/exe").endswith(exe_suffix):
                continue
            total += kib(proc_status(pid), "VmRSS")
            proportional += pss(pid)
            count += 1
        except OSError:
            continue
    return total, proportional, count


def open_sessions(servers: Servers, server: str, count: int) -> list[subprocess.Popen]:
    clients = []
    for i in range(count):
        client = subprocess.Popen(servers.ssh(server, options=("-tt",)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        marker = f"READY{i}X".encode()
        client.stdin.write(b"echo READY" + str(i).encode() + b"X\n")
        client.stdin.flush()
        seen = b""
        deadline = time.monotonic() + 60
        while marker not in seen.replace(b"echo READY" + str(i).encode() + b"X", b""):
            if time.monotonic() > deadline:
                raise RuntimeError(f"session {i} on {server} never answered: {seen[-300:]!r}")
            data = os.read(client.stdout.fileno(), 65536)
            if not data:
                raise RuntimeError(f"session {i} on {server} ended: {seen[-300:]!r}")
            seen += data
        clients.append(client)
    return clients


def close_sessions(clients: list[subprocess.Popen]) -> None:
    for client in clients:
        try:
            client.stdin.write(b"exit\n")
            client.stdin.flush()
        except OSError:
            pass
    for client in clients:
        try:
            client.wait(timeout=20)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()


def bench_sessions(servers: Servers) -> dict:
    out: dict[str, object] = {"sessions": SESSIONS}
    toolboxd = servers.procs["toolboxd"].pid
    before = kib(proc_status(toolboxd), "VmRSS")
    clients = open_sessions(servers, "toolboxd", SESSIONS)
    time.sleep(1)
    status = proc_status(toolboxd)
    with_sessions = kib(status, "VmRSS")
    out["toolboxd"] = {
        "vmrss_before_kib": before,
        "vmrss_with_sessions_kib": with_sessions,
        "per_session_kib": round((with_sessions - before) / SESSIONS, 1),
        "threads": int(status.get("Threads", "0")),
    }
    close_sessions(clients)
    out["toolboxd"]["pss_with_sessions_kib"] = pss(toolboxd)
    sshd = servers.procs["sshd"].pid
    listener_before, listener_pss, _ = rss_of([sshd], "sshd")
    clients = open_sessions(servers, "sshd", SESSIONS)
    time.sleep(1)
    total, proportional, processes = rss_of(tree_of(sshd), "sshd")
    out["sshd"] = {
        "listener_rss_kib": listener_before,
        "listener_pss_kib": listener_pss,
        "rss_with_sessions_kib": total,
        "pss_with_sessions_kib": proportional,
        "processes": processes,
        "per_session_kib": round((total - listener_before) / SESSIONS, 1),
        "per_session_pss_kib": round((proportional - listener_pss) / SESSIONS, 1),
    }
    close_sessions(clients)
    log(f"{SESSIONS} sessions: toolboxd {before / 1024:.1f} -> {with_sessions / 1024:.1f} MiB; "
        f"sshd processes {listener_before / 1024:.1f} -> {total / 1024:.1f} MiB RSS, "
        f"{proportional / 1024:.1f} MiB PSS ({processes} processes)")
    return out


def main() -> None:
    binary = toolboxd_bin()
    for tool in ("ssh", "scp", "ssh-keygen", "cmp", SSHD, SFTP_SERVER):
        if shutil.which(tool) is None and not os.access(tool, os.X_OK):
            sys.exit(f"bench/ssh.py needs {tool} (apt-get install openssh-client openssh-server)")
    WORK.mkdir(parents=True, exist_ok=True)
    steal_before = cpu_times()
    result: dict[str, object] = {
        "machine": machine_info(),
        "client": tool_version(["ssh", "-V"]),
        "sshd": tool_version([SSHD, "-V"]),
        "cpu_busy_before": round(cpu_busy(2.0), 3),
    }
    servers = Servers(binary)
    try:
        result["negotiated"] = {server: servers.negotiated(server) for server in ("toolboxd", "sshd")}
        result["true"] = bench_true(servers)
        # Before the transfers, so the memory they used (and the allocator keeps) is not counted.
        result["sessions"] = bench_sessions(servers)
        result["scp"] = bench_scp(servers)
    finally:
        servers.close()
        for leftover in WORK.glob("scp-*.bin"):
            leftover.unlink()
    result["steal_during_run"] = round(steal_since(steal_before), 4)
    write_result("ssh", result)


if __name__ == "__main__":
    main()
