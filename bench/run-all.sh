#!/usr/bin/env bash
# Runs every toolboxd benchmark against a static release build and rewrites BENCHMARKS.md.
#
#   bench/run-all.sh                          # builds with packaging/build-static.sh
#   TOOLBOXD_BIN=/path/to/toolboxd bench/run-all.sh
#   BENCH_DATA=/var/tmp/toolboxd-bench        # scratch: 1 GiB file + ~300 MiB corpus (default)
#   BENCH_TRIALS=3 BENCH_FIND_RUNS=7 BENCH_START_RUNS=21 BENCH_TRANSFER_MIB=1024
#
# All traffic goes to 127.0.0.1. Takes about 5 minutes once the build and the data exist
# (each step is also bounded by `timeout`). Raw results land in bench/results/*.json.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
started=$(date +%s)
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)

# Tools: curl, rg, grep, cmp, file, python3 (3.11 stdlib only).
missing=()
for tool in curl rg grep cmp file python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "run-all: installing ${missing[*]}" >&2
        apt-get update -qq && apt-get install -y -qq curl ripgrep grep diffutils file python3 >/dev/null
    else
        echo "run-all: missing tools: ${missing[*]}" >&2
        exit 1
    fi
fi

if [[ -z "${TOOLBOXD_BIN:-}" ]]; then
    TOOLBOXD_BIN=$(NICE=${NICE:-10} packaging/build-static.sh | tail -n1)
fi
export TOOLBOXD_BIN
export BENCH_RESULTS=${BENCH_RESULTS:-$repo_root/bench/results}
mkdir -p "$BENCH_RESULTS"
rm -f "$BENCH_RESULTS"/*.json

source_desc=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    source_desc="$source_desc + uncommitted changes in src/"
fi

status=0
run() {
    local name=$1
    shift
    echo "run-all: $name" >&2
    if ! timeout "${BENCH_STEP_TIMEOUT:-900}" python3 "bench/$name.py"; then
        echo "run-all: $name FAILED (see above); the report leaves it out" >&2
        status=1
    fi
}
# Cheapest and most noise-sensitive first.
run startup
run transfer
run find

python3 - "$BENCH_RESULTS/meta.json" <<EOF
import json, sys
json.dump({
    "binary": "$TOOLBOXD_BIN",
    "source": "$source_desc",
    "loadavg_start": "$loadavg_start".split(),
    "command": "bench/run-all.sh",
    "seconds": $(( $(date +%s) - started )),
}, open(sys.argv[1], "w"), indent=2)
EOF
python3 bench/report.py >BENCHMARKS.md
echo "run-all: wrote BENCHMARKS.md ($(( $(date +%s) - started )) s)" >&2
grep -E '^- \*\*(met|NOT met)\*\*' BENCHMARKS.md >&2 || true
exit $status
