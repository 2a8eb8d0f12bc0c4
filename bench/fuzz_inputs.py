"""The hostile-input property tests at a big budget: the postback parser and the batch boundary.

Runs tests/test_postbacks_tampering.py and tests/test_record_validation.py with
``SAILTHRU_FUZZ_SCALE`` (CI runs them at scale 1: 150 to 300 examples per property) and prints
the examples run, failures and time. Run: python bench/fuzz_inputs.py [--scale 40]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_postbacks_tampering.py", "tests/test_record_validation.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=40, help="times the CI example budget")
    args = parser.parse_args()
    env = {**os.environ, "SAILTHRU_FUZZ_SCALE": str(args.scale)}
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--hypothesis-show-statistics", *TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    seconds = time.monotonic() - started
    passing = sum(int(n) for n in re.findall(r"(\d+) passing", run.stdout))
    failing = sum(int(n) for n in re.findall(r"(\d+) failing", run.stdout))
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-400:]
    print(f"scale {args.scale}: {passing} property examples passed, {failing} failed, "
          f"in {seconds:.1f} s ({passing / seconds:.0f} examples/s)")
    print(f"pytest: {summary}")
    if run.returncode:
        print(run.stdout[-4000:])
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
