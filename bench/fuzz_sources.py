"""The source properties at a large budget: arbitrary bytes into the CSV and JSON-lines
sources, and csv.writer / json.dumps round trips (the properties are
``tests/sync/source_properties.py``, which the CI tests run at 60 examples each).

    python bench/fuzz_sources.py [--examples 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "sync"))

from hypothesis import HealthCheck, settings
from source_properties import arbitrary_bytes, csv_round_trip, jsonl_round_trip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="examples per property")
    args = parser.parse_args()
    budget = settings(max_examples=args.examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
    for name, prop in (("arbitrary bytes", arbitrary_bytes), ("CSV round trip", csv_round_trip),
                       ("JSON lines round trip", jsonl_round_trip)):
        started = time.perf_counter()
        prop(budget)()
        print(f"{name:<24}{args.examples:>8,} examples   ok   "
              f"{time.perf_counter() - started:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
