"""The stateful sync test (tests/sync/test_sync_stateful.py) with a big budget and random seeds.

Its alphabet is the CI test's: every field of the row contract (vars and typed dates, lists,
opt-out transitions, email moves, the deleted flag with every null-like spelling), faults,
SIGKILLed runs and two runs at once.

CI runs 40 fixed examples per delete behaviour; this runs as many as asked, from a random
seed (printed, so a failure can be replayed with ``--seed``); ``--threads 4`` lets runs use
up to 4 threads (more interleavings, but an example may then not replay exactly).
Prints each behaviour's outcome and the shrunk failing histories hypothesis found.

    python bench/stateful.py [--examples 1000] [--steps 50] [--seed N] [--threads 1]
                             [--behavior delete]
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
TEST = ROOT / "tests" / "sync" / "test_sync_stateful.py"
CLASSES = {"nothing": "TestSyncDeleteNothing", "clear": "TestSyncDeleteClear",
           "delete": "TestSyncDeleteDelete"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="histories per behaviour")
    parser.add_argument("--steps", type=int, default=50, help="most steps in one history")
    parser.add_argument("--seed", type=int, default=None, help="replay this seed")
    parser.add_argument("--threads", type=int, default=1, help="most threads per run")
    parser.add_argument("--behavior", choices=sorted(CLASSES), action="append",
                        help="only this delete behaviour (repeatable; default all three)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    env = {**os.environ, "SAILTHRU_STATEFUL": "bench",
           "SAILTHRU_STATEFUL_EXAMPLES": str(args.examples),
           "SAILTHRU_STATEFUL_STEPS": str(args.steps),
           "SAILTHRU_STATEFUL_THREADS": str(args.threads)}
    print(f"seed {seed}: {args.examples} histories of at most {args.steps} steps per behaviour")
    failed = 0
    for behavior in args.behavior or list(CLASSES):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:logging", "-p", "no:cacheprovider",
             f"{TEST}::{CLASSES[behavior]}", f"--hypothesis-seed={seed}",
             "--hypothesis-show-statistics"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )
        seconds = time.monotonic() - started
        verdict = "passed" if result.returncode == 0 else "FAILED"
        print(f"\n== {behavior}: {verdict} in {seconds:.1f} s")
        if result.returncode != 0:
            failed += 1
            print(result.stdout[-20_000:])
        else:
            stats = [line for line in result.stdout.splitlines() if "passing" in line]
            print("\n".join(stats))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
