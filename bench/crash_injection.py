"""Crash injection at every call: the CLI's sync stopped at its N-th API call, then resumed.

A 200-row history (see ``tests/crash_harness.py``: v1 synced, then v2 with deletes, email
changes, dropped vars and new rows, then an events model) is stopped at each call index N
of the v2 and events runs, right after the fake applied call N and before its reply
leaves, then the syncs run again to the end. Prints, per signal, the histories run and
those with a problem: users left that should be gone, users missing or unlike their row,
events posted twice.

    python bench/crash_injection.py [--rows 200] [--signal KILL] [--signal TERM]
                                    [--every 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import crash_harness


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="users in the history's v1")
    parser.add_argument("--signal", action="append", choices=("KILL", "TERM", "INT"),
                        help="how to stop the run (repeatable; default KILL)")
    parser.add_argument("--every", type=int, default=1, help="stop at every Nth call index")
    parser.add_argument("--workers", type=int, default=2, help="histories at once")
    args = parser.parse_args()
    signals = [signal.Signals[f"SIG{name}"] for name in args.signal or ["KILL"]]
    root = Path(tempfile.mkdtemp(prefix="crash-injection-"))
    total = crash_harness.calls_in_a_clean_run(root, args.rows)
    print(f"{args.rows}-row history: {total} calls in the runs stopped; every "
          f"{args.every} index, signals {[s.name for s in signals]}")
    failed = 0
    for signum in signals:
        started = time.monotonic()
        indices = range(1, total + 1, args.every)
        outcomes = []
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            for outcome in pool.map(
                    crash_harness.stop_and_resume, [root] * len(indices),
                    [args.rows] * len(indices), indices, [signum] * len(indices)):
                outcomes.append(outcome)  # streamed, so a long run shows where it is
                if outcome.problems:
                    print(f"   at call {outcome.at} ({outcome.stopped_in}): "
                          f"{outcome.problems[:2]}", flush=True)
                elif len(outcomes) % 25 == 0:
                    print(f"   {len(outcomes)} of {len(indices)} histories done", flush=True)
        bad = [o for o in outcomes if o.problems]
        failed += len(bad)
        stopped = Counter(o.stopped_in for o in outcomes)
        print(f"\n== {signum.name}: {len(outcomes)} histories in "
              f"{time.monotonic() - started:.0f} s; stopped in {dict(stopped)}")
        print(f"   with a problem {len(bad)}; doubled events "
              f"{sum(o.doubled_events for o in outcomes)}; users left that should be gone "
              f"{sum(o.users_left for o in outcomes)}; users missing "
              f"{sum(o.missing_users for o in outcomes)}; users unlike their row "
              f"{sum(o.wrong_users for o in outcomes)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
