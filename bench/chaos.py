"""The chaos run at full size: 4 processes x 20 threads against a fake with every fault on.

20,000 profiles into 30 new lists, then 10 % changed, 5 % moved between lists and 5 %
deleted, with 5,000 events, 2,000 purchases and 2,000 cart additions, against a fake
Sailthru that drops 2.6 % of connections, answers 1 % with a 500, 1 % of writes with a 504
after applying them and 6.7 % of deletes with a false 200, adds 429 bursts, stale reads,
list races and latency, at its default rate limits. Prints what happened and every promise
checked (the workload and the checks are ``tests/chaos/chaos_workload.py``, which the CI-size
tests run too).

    python bench/chaos.py [--size full|ci|<profiles>] [--processes 4] [--threads 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "chaos"))

from chaos_workload import CI, FAULTS, FULL, Outcome, Size, run


def _size(text: str) -> Size:
    if text == "full":
        return FULL
    if text == "ci":
        return CI
    try:
        profiles = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use full, ci or a number of profiles") from None
    if profiles < 100:
        raise argparse.ArgumentTypeError("at least 100 profiles")
    scale = profiles / FULL.profiles
    return dataclasses.replace(
        FULL,
        profiles=profiles,
        events=max(int(FULL.events * scale), 20),
        purchases=max(int(FULL.purchases * scale), 20),
        carts=max(int(FULL.carts * scale), 20),
    )


def _table(outcome: Outcome) -> str:
    size = outcome.size
    seconds = sum(outcome.seconds.values())
    rows = [
        ("machine", f"{os.cpu_count()} cores"),
        ("workers", f"{size.processes} processes x {size.threads} threads"),
        ("faults", f"conn {FAULTS.connection_error_rate:.1%}, 5xx {FAULTS.server_error_rate:.1%},"
                   f" 504 after applying {FAULTS.error_after_apply_rate:.1%},"
                   f" false-200 delete {FAULTS.false_ok_delete_rate:.1%},"
                   f" 429 burst {FAULTS.rate_limit_burst:.1%}"),
        ("", f"stale reads {FAULTS.stale_read_window} s, list race {FAULTS.list_race_window} s,"
             f" latency {size.latency * 1000:.0f} ms"),
        ("rate limits", "defaults" if size.rate_limits is None else str(size.rate_limits)),
        ("records", ", ".join(f"{k} {v}" for k, v in sorted(outcome.records.items()))),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(outcome.statuses.items()))),
        ("failure reasons", "; ".join(f"{k} x{v}" for k, v in outcome.failures.most_common())
         or "none"),
        ("time", ", ".join(f"{k} {v:.1f} s" for k, v in outcome.seconds.items())
         + f" (total {seconds:.1f} s)"),
        ("call attempts", f"{outcome.attempts} (fake counted {outcome.fake_calls})"),
        ("429s answered", f"{outcome.rate_limited_attempts} (all retried)"),
        ("records failed on a 429", f"{outcome.failed_on_429} "
         f"{dict(outcome.failed_on_429_by_kind) or ''}"),
        ("lists", f"{outcome.lists}, duplicates {outcome.duplicate_lists}"),
        ("reported deleted but present", str(outcome.deleted_but_present)),
        ("events / purchases posted twice",
         f"{outcome.duplicate_events} / {outcome.duplicate_purchases}"),
        ("events / purchases with an unknown outcome",
         f"{outcome.unknown_events} / {outcome.unknown_purchases}"),
        ("verified in the fake", f"{outcome.verified_profiles} profiles,"
                                 f" {outcome.verified_carts} carts"),
        ("broken promises", str(len(outcome.problems))),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=_size, default=FULL, help="full, ci or a profile count")
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    size: Size = args.size
    if args.processes:
        size = dataclasses.replace(size, processes=args.processes)
    if args.threads:
        size = dataclasses.replace(size, threads=args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        outcome = run(size, Path(workdir), seed=args.seed)
    print(_table(outcome))
    for problem in outcome.problems[:20]:
        print(f"  ! {problem}")
    return 1 if outcome.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
