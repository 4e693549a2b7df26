#!/usr/bin/env python3
"""schemathesis at bench size: the OpenAPI fuzz of the test suite, run longer and wider.

    TOOLBOXD_BIN=/path/to/toolboxd python3 bench/fuzz.py

Runs `tests/sdk/python/test_openapi_fuzz.py` (the same daemon set-up, exclusions and hooks as in
CI: a temp work dir and HOME, `nobody` when run as root, all checks on) with
BENCH_FUZZ_EXAMPLES (default 300) examples per operation, up to BENCH_FUZZ_SECONDS (default
900) seconds, seed BENCH_FUZZ_SEED (default: a fresh one, printed), and requires at least
BENCH_FUZZ_MIN_REQUESTS (default 20 000) requests with no failure of any kind. Needs the SDK venv
(`bash tests/run.sh` makes it; BENCH_PYTHON_BIN, default target/sdk-venv/bin). Writes
`bench/results/fuzz.json`: requests generated, failures, seed, seconds, and the summary lines.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse(text: str) -> dict:
    """What schemathesis said: test cases generated and passed, failures, and errors of its own."""
    summary = text[text.rfind("SUMMARY"):] if "SUMMARY" in text else ""
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    requests = int(cases.group(1)) if cases else None
    passed = int(cases.group(2)) if cases else 0
    tool_errors = sum(int(n) for n in re.findall(r"Runtime Error: (\d+)", summary))
    failed = (requests - passed) if requests is not None else None
    return {
        "requests": requests,
        "failures": failed,
        # Errors inside schemathesis (its coverage phase raising), not answers of the daemon.
        "tool_errors": tool_errors,
        "passed": failed == 0,
        "summary": summary[:4000] or text[-4000:],
    }


def main() -> int:
    python_bin = Path(os.environ.get("BENCH_PYTHON_BIN", REPO / "target" / "sdk-venv" / "bin"))
    python = python_bin / "python"
    if not (python_bin / "st").exists():
        print("[bench] fuzz: schemathesis is not in BENCH_PYTHON_BIN; run tests/run.sh first", file=sys.stderr)
        return 1
    seed = os.environ.get("BENCH_FUZZ_SEED") or str(random.randrange(1, 2**31))
    results = Path(os.environ.get("BENCH_RESULTS", REPO / "bench" / "results"))
    results.mkdir(parents=True, exist_ok=True)
    output = results / "fuzz-output.txt"
    env = {
        **os.environ,
        "FUZZ_MAX_EXAMPLES": os.environ.get("BENCH_FUZZ_EXAMPLES", "300"),
        "FUZZ_MAX_TIME": os.environ.get("BENCH_FUZZ_SECONDS", "900"),
        "FUZZ_MIN_REQUESTS": os.environ.get("BENCH_FUZZ_MIN_REQUESTS", "20000"),
        "FUZZ_SEED": seed,
        "FUZZ_OUTPUT": str(output),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    print(f"[bench] fuzz: seed {seed}, up to {env['FUZZ_MAX_TIME']} s", file=sys.stderr)
    started = time.monotonic()
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-x", "tests/sdk/python/test_openapi_fuzz.py"],
        cwd=REPO, env=env, check=False,
    )
    seconds = time.monotonic() - started
    text = output.read_text() if output.exists() else ""
    data = {
        "seed": int(seed),
        "seconds": round(seconds, 1),
        "examples_per_operation": int(env["FUZZ_MAX_EXAMPLES"]),
        "min_requests": int(env["FUZZ_MIN_REQUESTS"]),
        **parse(text),
        "pytest_passed": run.returncode == 0,
    }
    (results / "fuzz.json").write_text(json.dumps(data, indent=1))
    print(f"[bench] fuzz: {data['requests']} requests, {data['failures']} failures, "
          f"{data['tool_errors']} schemathesis errors", file=sys.stderr)
    return 0 if data["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
