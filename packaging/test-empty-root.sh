#!/usr/bin/env bash
# Runs the static toolboxd as PID 1 in an otherwise empty root and talks to it
# from the host over 127.0.0.1.
#
#   packaging/test-empty-root.sh [PATH/TO/toolboxd]     (or TOOLBOXD_STATIC_BIN=...)
#
# (Not TOOLBOXD_BIN: tests/run.sh points that at the debug build, which is dynamic.)
#
# Without a path it builds one with packaging/build-static.sh. Needs root,
# unshare(1) and chroot(1); without them it prints SKIP and exits 0.
#
# The root holds only the binary plus empty /proc, /dev and /tmp mount points.
# Inside new mount and PID namespaces (the network namespace is kept, so the
# host reaches the daemon on 127.0.0.1) it mounts proc, a minimal /dev (the
# null, zero, full, random and urandom nodes bind-mounted onto a tmpfs) and a
# tmpfs /tmp, then chroots and execs toolboxd, which becomes PID 1.
#
# Checks: the daemon starts and prints its address; it is PID 1 of its PID
# namespace; GET /version answers 200 with a JSON version; a file uploaded with
# POST /files/upload-v2 (raw body) lands in the chroot's /tmp and reads back
# byte-identical through GET /files/download; SSH (when this build has it and
# the OpenSSH client is installed): the host key is made in HOME (/tmp) with mode
# 0600, a key put into /tmp/.ssh/authorized_keys logs in, sftp moves a file both
# ways (SFTP needs no shell), and a command says clearly that no shell can start
# (exit 127); SIGTERM makes it exit 0.
# Ends with "N passed, M failed"; exits non-zero on any failure.
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
name=test-empty-root

skip() {
    echo "$name: SKIP: $*"
    exit 0
}

if [[ $(id -u) -ne 0 ]]; then
    skip "needs root (unshare --mount --pid and chroot)"
fi
for tool in unshare chroot mount curl cmp; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
if ! unshare --mount --pid --fork --mount-proc true 2>/dev/null; then
    skip "unshare --mount --pid does not work here (no CAP_SYS_ADMIN in this container?)"
fi

bin=${1:-${TOOLBOXD_STATIC_BIN:-}}
if [[ -z "$bin" ]]; then
    echo "$name: no binary given, building one with packaging/build-static.sh"
    bin=$("$repo_root/packaging/build-static.sh" | tail -n1) || {
        echo "$name: FAIL: build-static.sh failed"
        echo "0 passed, 1 failed"
        exit 1
    }
fi
if [[ ! -x "$bin" ]]; then
    echo "$name: FAIL: $bin is not an executable file"
    echo "0 passed, 1 failed"
    exit 1
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
if command -v file >/dev/null 2>&1 && file -L "$bin" | grep -q 'dynamically linked'; then
    echo "$name: note: $bin is dynamically linked; the empty root has no loader, so it cannot start"
fi

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "$name: PASS: $*"; }
fail() { failed=$((failed + 1)); echo "$name: FAIL: $*"; }

work=$(mktemp -d /tmp/toolboxd-empty-root.XXXXXX)
root=$work/root
mkdir -p "$root/proc" "$root/dev" "$root/tmp"
install -m 0755 "$bin" "$root/toolboxd"
ns_pid=""      # the unshare process (host PID namespace)
daemon_pid=""  # toolboxd, as seen from the host

cleanup() {
    if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -KILL "$daemon_pid" 2>/dev/null
    fi
    if [[ -n "$ns_pid" ]] && kill -0 "$ns_pid" 2>/dev/null; then
        kill -KILL "$ns_pid" 2>/dev/null
        wait "$ns_pid" 2>/dev/null
    fi
    # The mounts lived only in the private mount namespace, which is gone with
    # its last process; nothing is mounted under $root on the host.
    if grep -q " $root" /proc/self/mounts; then
        echo "$name: warning: mounts under $root leaked to the host, leaving $work in place"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# Listen on an ephemeral loopback port; pass --terminal-addr and --ssh-addr too
# when this build has them, so the reserved listeners never need ports 22222 and 22220.
extra_args=()
if "$bin" --help 2>/dev/null | grep -q -- '--terminal-addr'; then
    extra_args+=(--terminal-addr 127.0.0.1:0)
fi
with_ssh=0
if "$bin" --help 2>/dev/null | grep -q -- '--ssh-addr'; then
    extra_args+=(--ssh-addr 127.0.0.1:0)
    with_ssh=1
fi

# The inner script runs in the new namespaces, before the chroot, with the
# host's tools; its last step execs chroot, which execs toolboxd as PID 1.
inner='
set -e
root=$1; chroot_bin=$2; shift 2
mount -t tmpfs -o mode=1777,size=64m tmpfs "$root/tmp"
# A minimal /dev by default: five nodes bind-mounted onto a tmpfs, so the test
# shows toolboxd needs nothing else. EMPTY_ROOT_DEVTMPFS=1 mounts devtmpfs.
if [ "${EMPTY_ROOT_DEVTMPFS:-0}" = 1 ]; then
    mount -t devtmpfs -o mode=0755 devtmpfs "$root/dev"
else
    mount -t tmpfs -o mode=0755,size=64k tmpfs "$root/dev"
    for node in null zero full random urandom; do
        : > "$root/dev/$node"
        mount --bind "/dev/$node" "$root/dev/$node"
    done
fi
exec env -i HOME=/tmp PATH=/ RUST_LOG=info "$chroot_bin" "$root" /toolboxd "$@"
'
unshare --mount --pid --fork --propagation private --mount-proc="$root/proc" \
    bash -c "$inner" inner "$root" "$(command -v chroot)" \
    --toolbox-addr 127.0.0.1:0 --workdir /tmp "${extra_args[@]}" \
    >"$work/stdout.log" 2>"$work/stderr.log" &
ns_pid=$!

# Wait for the "listening" line (10 s).
port=""
for _ in $(seq 1 200); do
    line=$(grep -m1 -o 'toolbox listening on http://127\.0\.0\.1:[0-9]*' "$work/stdout.log" 2>/dev/null || true)
    if [[ -n "$line" ]]; then
        port=${line##*:}
        break
    fi
    kill -0 "$ns_pid" 2>/dev/null || break
    sleep 0.05
done
if [[ -z "$port" ]]; then
    fail "toolboxd did not print 'toolbox listening on http://127.0.0.1:PORT' within 10 s"
    echo "--- stdout:"; cat "$work/stdout.log"
    echo "--- stderr:"; tail -n 50 "$work/stderr.log"
    echo "$passed passed, $failed failed"
    exit 1
fi
pass "started in the empty root, listening on 127.0.0.1:$port"

# Find toolboxd's host PID: the child of unshare (sh and chroot exec'd into it).
for _ in $(seq 1 50); do
    daemon_pid=$(cat /proc/"$ns_pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -m1 . || true)
    [[ -n "$daemon_pid" ]] && break
    sleep 0.02
done
if [[ -n "$daemon_pid" ]] && [[ "$(readlink /proc/"$daemon_pid"/exe 2>/dev/null)" == *toolboxd* ]]; then
    nspid=$(awk '/^NSpid:/ {print $NF}' /proc/"$daemon_pid"/status)
    root_link=$(readlink /proc/"$daemon_pid"/root)
    if [[ "$nspid" == 1 ]]; then
        pass "toolboxd is PID 1 in its PID namespace (host PID $daemon_pid, root $root_link)"
    else
        fail "toolboxd is PID $nspid in its namespace, expected 1"
    fi
else
    fail "could not find toolboxd's host PID (unshare child: '${daemon_pid:-none}')"
    daemon_pid=""
fi

base=http://127.0.0.1:$port

# GET /version
code=$(curl -sS -m 5 -o "$work/version.json" -w '%{http_code}' "$base/version" 2>"$work/curl.err")
if [[ "$code" == 200 ]] && grep -q '"version"' "$work/version.json"; then
    pass "GET /version -> 200 $(cat "$work/version.json")"
else
    fail "GET /version -> '$code' body: $(head -c 300 "$work/version.json" 2>/dev/null) $(cat "$work/curl.err")"
fi

# Upload 1 MiB + a bit of random bytes (NULs, CR/LF, everything) and read it back.
head -c $((1024 * 1024 + 4321)) /dev/urandom >"$work/payload.bin"
code=$(curl -sS -m 10 -o "$work/upload.out" -w '%{http_code}' \
    -H 'Content-Type: application/octet-stream' --data-binary @"$work/payload.bin" \
    "$base/files/upload-v2?path=/tmp/x.txt" 2>"$work/curl.err")
if [[ "$code" =~ ^2 ]]; then
    pass "POST /files/upload-v2?path=/tmp/x.txt (raw body, $(stat -c %s "$work/payload.bin") bytes) -> $code"
else
    fail "POST /files/upload-v2?path=/tmp/x.txt -> '$code' body: $(head -c 300 "$work/upload.out" 2>/dev/null) $(cat "$work/curl.err")"
fi

# The file must be in the chroot's tmpfs /tmp, seen from the host via /proc/PID/root.
if [[ -n "$daemon_pid" ]]; then
    if cmp -s "$work/payload.bin" "/proc/$daemon_pid/root/tmp/x.txt"; then
        pass "the uploaded bytes are in the chroot's /tmp/x.txt"
    else
        fail "/proc/$daemon_pid/root/tmp/x.txt is missing or differs from the upload"
    fi
fi

code=$(curl -sS -m 10 -o "$work/download.bin" -w '%{http_code}' \
    "$base/files/download?path=/tmp/x.txt" 2>"$work/curl.err")
if [[ "$code" == 200 ]] && cmp -s "$work/payload.bin" "$work/download.bin"; then
    pass "GET /files/download?path=/tmp/x.txt -> 200, bytes identical to the upload"
else
    fail "GET /files/download?path=/tmp/x.txt -> '$code', $(stat -c %s "$work/download.bin" 2>/dev/null || echo 0) bytes, $(cmp "$work/payload.bin" "$work/download.bin" 2>&1 | head -n1) $(cat "$work/curl.err")"
fi

# Git in-process (static libgit2): init a repository, write a file, read its status.
code=$(curl -sS -m 10 -o "$work/git.out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"path":"/tmp/repo","initial_branch":"main"}' "$base/git/init" 2>"$work/curl.err")
curl -sS -m 10 -o /dev/null --data-binary @"$work/payload.bin" \
    "$base/files/upload-v2?path=/tmp/repo/a.txt" 2>/dev/null || true
status_code=$(curl -sS -m 10 -o "$work/git-status.json" -w '%{http_code}' \
    "$base/git/status?path=/tmp/repo" 2>"$work/curl.err")
if [[ "$code" == 201 && "$status_code" == 200 ]] && grep -q '"currentBranch":"main"' "$work/git-status.json" \
    && grep -q '"name":"a.txt"' "$work/git-status.json"; then
    pass "POST /git/init + GET /git/status -> main with a.txt untracked, no git binary in the root"
else
    fail "git init -> '$code', status -> '$status_code': $(head -c 300 "$work/git-status.json" 2>/dev/null) $(cat "$work/curl.err")"
fi

# SSH: the host key made in the empty root, a key login, SFTP both ways, and a
# command with no shell to run it.
ssh_port=$(grep -m1 -o 'ssh listening on ssh://127\.0\.0\.1:[0-9]*' "$work/stdout.log" 2>/dev/null | sed 's/.*://')
if [[ $with_ssh == 1 && -n "$daemon_pid" ]] && command -v ssh-keygen >/dev/null && command -v sftp >/dev/null; then
    host_key=/proc/$daemon_pid/root/tmp/.toolboxd/ssh_host_ed25519_key
    if [[ -n "$ssh_port" && -f "$host_key" && "$(stat -c %a "$host_key")" == 600 ]]; then
        pass "ssh listening on 127.0.0.1:$ssh_port, host key made at /tmp/.toolboxd/ssh_host_ed25519_key (0600)"
    else
        fail "ssh: port '${ssh_port}', host key $(stat -c '%a %n' "$host_key" 2>&1)"
    fi
    ssh-keygen -q -t ed25519 -N '' -f "$work/id_test"
    mkdir -p "/proc/$daemon_pid/root/tmp/.ssh"
    cp "$work/id_test.pub" "/proc/$daemon_pid/root/tmp/.ssh/authorized_keys"
    ssh_opts=(-F /dev/null -i "$work/id_test" -o IdentitiesOnly=yes -o IdentityAgent=none
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR)
    printf 'put %s /tmp/sftp.bin\nget /tmp/sftp.bin %s\n' "$work/payload.bin" "$work/sftp-back.bin" >"$work/sftp.batch"
    if timeout 60 sftp "${ssh_opts[@]}" -P "$ssh_port" -b "$work/sftp.batch" test@127.0.0.1 >"$work/sftp.out" 2>&1 \
        && cmp -s "$work/payload.bin" "/proc/$daemon_pid/root/tmp/sftp.bin" \
        && cmp -s "$work/payload.bin" "$work/sftp-back.bin"; then
        pass "sftp with a key from /tmp/.ssh/authorized_keys: put and get byte-identical"
    else
        fail "sftp: $(tail -c 300 "$work/sftp.out")"
    fi
    timeout 60 ssh "${ssh_opts[@]}" -p "$ssh_port" test@127.0.0.1 true >"$work/ssh.out" 2>&1 </dev/null
    code=$?
    if [[ $code == 127 ]] && grep -q 'cannot start' "$work/ssh.out"; then
        pass "ssh HOST true with no shell in the root -> exit 127, $(head -n1 "$work/ssh.out" | tr -d '\r')"
    else
        fail "ssh HOST true -> exit $code: $(tail -c 300 "$work/ssh.out")"
    fi
fi

# SIGTERM: drain and exit 0 (PID 1 only gets signals it handles).
if [[ -n "$daemon_pid" ]]; then
    kill -TERM "$daemon_pid"
    status=""
    for _ in $(seq 1 200); do
        if ! kill -0 "$ns_pid" 2>/dev/null; then
            wait "$ns_pid"; status=$?
            break
        fi
        sleep 0.05
    done
    if [[ "$status" == 0 ]]; then
        pass "SIGTERM -> exited 0"
    elif [[ -z "$status" ]]; then
        fail "still running 10 s after SIGTERM"   # cleanup kills it
    else
        fail "SIGTERM -> exit status $status"
    fi
    if [[ -n "$status" ]]; then
        ns_pid=""
        daemon_pid=""
    fi
fi

if [[ $failed -ne 0 ]]; then
    echo "--- toolboxd stderr (last 30 lines):"
    tail -n 30 "$work/stderr.log"
fi
echo "$name: $( [[ $failed -eq 0 ]] && echo PASS || echo FAIL )"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
