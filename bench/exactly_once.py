"""The exactly-once stateful test (tests/test_exactly_once_stateful.py) at ten times CI's budget.

Random histories of orders, unclear replies, lagging reads, asynchronous jobs, kills and
restarts: every order must end in Sailthru exactly once or be reported in doubt, never
twice. Prints the verdict, the seed (replay with ``--seed``), the time and hypothesis's
statistics.

    python bench/exactly_once.py [--scale 10] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT / "tests" / "test_exactly_once_stateful.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="times CI's number of histories")
    parser.add_argument("--seed", type=int, default=None, help="replay this seed")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    env = {**os.environ, "SAILTHRU_EXACTLY_ONCE_SCALE": str(args.scale)}
    print(f"seed {seed}: {12 * args.scale} histories of at most 12 steps")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:logging", "-p", "no:cacheprovider",
         str(TEST), f"--hypothesis-seed={seed}", "--hypothesis-show-statistics"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    seconds = time.monotonic() - started
    verdict = "passed" if result.returncode == 0 else "FAILED"
    print(f"{verdict} in {seconds:.1f} s")
    if result.returncode != 0:
        print(result.stdout[-20_000:])
    else:
        print("\n".join(line for line in result.stdout.splitlines() if "passing" in line
                        or "invalid" in line or "runtimes" in line))
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
