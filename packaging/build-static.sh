#!/usr/bin/env bash
# Build toolboxd as one static binary (static-pie on glibc, not musl).
#
#   packaging/build-static.sh            # release build, prints the path and size
#   CARGO_TARGET_DIR=/tmp/t packaging/build-static.sh
#   CARGO_BUILD_JOBS=1 NICE=19 packaging/build-static.sh   # gentle on a shared machine
#   LOCKED=1 packaging/build-static.sh                      # CI: refuse a stale Cargo.lock
#
# The last line of stdout is the absolute path of the binary, so other scripts
# can do: BIN=$(packaging/build-static.sh | tail -n1)
#
# Why glibc + crt-static rather than musl: the musl allocator is much slower
# under the multi-threaded tokio runtime, and the toolchain here already has the
# x86_64-unknown-linux-gnu target. `--target` must be given explicitly so that
# RUSTFLAGS (and so crt-static) are not applied to build scripts and proc-macros.
#
# libgit2 / OpenSSL: when the crate adds git2 it must use vendored libgit2
# (`git2 = { features = ["vendored-libgit2"] }`) and a vendored, statically
# linked OpenSSL (`git2`'s `vendored-openssl` feature, or `openssl-sys` with
# `vendored`). Without vendored-openssl the link step pulls the host's
# libssl.so / libcrypto.so (or fails on their missing .a files) and the binary
# is no longer static; the `ldd` check below catches that.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_triple=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo_root/target}

# Keep any flags the caller set and add crt-static.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"

build_cmd=(cargo build --release --target "$target_triple" --bin toolboxd)
if [[ "${LOCKED:-0}" == 1 ]]; then
    build_cmd+=(--locked)
fi
if [[ -n "${CARGO_BUILD_JOBS:-}" ]]; then
    build_cmd+=(-j "$CARGO_BUILD_JOBS")
fi
if [[ -n "${NICE:-}" ]]; then
    build_cmd=(nice -n "$NICE" "${build_cmd[@]}")
fi

echo "build-static: ${build_cmd[*]}" >&2
echo "build-static: RUSTFLAGS='$RUSTFLAGS' CARGO_TARGET_DIR=$CARGO_TARGET_DIR" >&2
(cd "$repo_root" && "${build_cmd[@]}") >&2

bin="$CARGO_TARGET_DIR/$target_triple/release/toolboxd"
if [[ ! -x "$bin" ]]; then
    echo "build-static: FAIL: $bin was not produced" >&2
    exit 1
fi

# Verify that it is static: `file` says "static-pie linked" (or "statically
# linked"), and ldd finds no shared libraries.
if command -v file >/dev/null 2>&1; then
    file_out=$(file -L "$bin")
    echo "build-static: file: $file_out" >&2
    if ! grep -Eq 'static-pie linked|statically linked' <<<"$file_out"; then
        echo "build-static: FAIL: binary is not statically linked" >&2
        exit 1
    fi
else
    echo "build-static: file(1) is not installed; checking with ldd only" >&2
fi
# glibc's ldd lists the libraries of a dynamic binary and says "statically linked"
# (static-pie) or "not a dynamic executable" (static) otherwise; its exit code varies.
ldd_out=$(ldd "$bin" 2>&1 || true)
if ! grep -q 'statically linked\|not a dynamic executable' <<<"$ldd_out"; then
    echo "build-static: FAIL: ldd lists shared libraries:" >&2
    echo "$ldd_out" >&2
    exit 1
fi
echo "build-static: ldd: $(head -n1 <<<"$ldd_out" | sed 's/^[[:space:]]*//')" >&2

size=$(stat -c %s "$bin")
echo "build-static: OK: $bin ($size bytes, $(awk -v s="$size" 'BEGIN{printf "%.2f MiB", s/1048576}'))" >&2
echo "$bin"
