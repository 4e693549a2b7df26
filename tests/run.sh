#!/usr/bin/env bash
# The one test command: installs what the suites need, then runs them all.
#
#   bash tests/run.sh
#
# 1. cargo test            unit tests + tests/it (the real binary over HTTP on 127.0.0.1)
# 2. Python SDK suite      daytona==0.226.1 from PyPI, through local SDK mode (venv in target/)
# 3. TypeScript SDK suite  @daytonaio/sdk from npm (package-lock.json), same way, and the web
#                          terminal in headless Chromium (playwright-core with /usr/bin/chromium:
#                          `apt-get install chromium`; skipped without it; screenshots in
#                          target/browser/)
# 4. empty-root test       the static binary as PID 1 in an empty chroot (root only; else SKIP)
#
# Set TOOLBOXD_SKIP_STATIC=1 to leave out step 4 (it needs a release build, ~8 minutes cold).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# Tests talk to 127.0.0.1 only: keep any configured HTTP proxy out of the way.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

step() { printf '\n==> %s\n' "$*"; }

step "test dependencies: Python venv (SDK, pytest, matplotlib, pylsp), npm packages (SDK, tsx, typescript-language-server)"
mkdir -p target
venv="$repo/target/sdk-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/python/requirements.txt
(cd tests/sdk/ts && npm ci --no-audit --no-fund --loglevel=error)
# code_run and interpreter tests put this python3 (with matplotlib) first on the daemon's PATH;
# the LSP tests take pylsp from it and typescript-language-server from tests/sdk/ts/node_modules.
export TOOLBOXD_TEST_CHARTS_PYTHON_BIN="$venv/bin"

step "cargo build + cargo test"
cargo build --locked
cargo test --locked 2>&1 | tee target/cargo-test.log
export TOOLBOXD_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/toolboxd"

step "Python SDK suite (daytona==0.226.1) and the chart hook's own tests"
"$venv/bin/python" -m pytest -q tests/sdk/python tests/charts 2>&1 | tee target/pytest.log

step "TypeScript SDK suite (@daytonaio/sdk) and the browser test of the web terminal"
(cd tests/sdk/ts && npm test) 2>&1 | tee target/node-test.log

if [ "${TOOLBOXD_SKIP_STATIC:-0}" != 1 ]; then
    step "static binary in an empty root"
    bash packaging/test-empty-root.sh
fi
# One closing line for every suite together (each failing suite already stopped the script).
cargo_passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/cargo-test.log | awk '{s += $4} END {print s + 0}')
pytest_passed=$(grep -Eo '^[0-9]+ passed' target/pytest.log | tail -n1 | awk '{print $1 + 0}')
node_passed=$(grep -Eo '^# pass [0-9]+' target/node-test.log | tail -n1 | awk '{print $3 + 0}')
step "cargo ${cargo_passed}, python SDK ${pytest_passed:-0}, TypeScript SDK ${node_passed:-0}"
echo "$((cargo_passed + ${pytest_passed:-0} + ${node_passed:-0})) passed, 0 failed"
