"""A stand-in benchmark for tests/test_bench_run_all.py: the FIGURE-line convention of
``bench/run_all.py`` in a few lines, plus a malformed line and an optional failure."""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description="a stub benchmark")
    parser.add_argument("--size", choices=("small", "full"), default="full")
    parser.add_argument("--fail", action="store_true", help="exit 3 after one figure")
    args = parser.parse_args()
    value = 290.0 if args.size == "small" else 295.5
    print(f"stub at {args.size}: {value} calls/s")  # a human line, not collected
    figure = {"figure": f"stub pace ({args.size})", "value": value, "unit": "calls/s",
              "baseline": "ceiling | 300/s", "baseline_value": 300.0,
              "ratio": round(value / 300.0, 4), "goal": ">= 0.95",
              "met": value / 300.0 >= 0.95}
    print("FIGURE " + json.dumps(figure))
    print("FIGURE {not json")
    if args.fail:
        print("stub: gave up", file=sys.stderr)
        return 3
    print("FIGURE " + json.dumps({"figure": "stub CPU", "value": 0.41, "unit": "x",
                                  "baseline": None, "baseline_value": None, "ratio": None,
                                  "goal": None, "met": None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
