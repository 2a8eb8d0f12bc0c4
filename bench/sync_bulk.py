"""Initial sync of many users: per-user path vs the job API bulk path, and a no-change re-run.

The fake Sailthru runs in its own process (``sailthru-destination fake-server``) with 50 ms
latency per request and the documented limits (user 300/s, others 40/s); each sync runs as
the CLI in its own process, so its peak memory (max RSS from ``wait4``) is the runner's alone.
The per-user path is paced at 300 users/s, so by default it is measured on a 10,000-user
sample and extrapolated to the full size (clearly labelled).

    python bench/sync_bulk.py [--size small|full] [--users 100000] [--sample 10000]
        [--full-per-user]

``--size small`` syncs 10,000 users (a 1,000-user per-user sample), ``full`` (the default)
100,000 (10,000).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _cli import COMMAND, start_fake
from _figures import add_size, figure

# 50 ms a call and Sailthru's default limits.
_FAKE_FLAGS = ("--latency", "0.05", "--rate-limit", "POST user=300", "--rate-limit", "GET=300",
               "--rate-limit", "DELETE=40", "--rate-limit", "default=40")
_GROUPS = ("Newsletter", "High LTV", "Churn Risk", "Beta", "Sale Alerts")


def write_model(path: Path, users: int) -> None:
    rng = random.Random(1)
    with path.open("w", encoding="utf-8") as handle:
        for n in range(users):
            row = {"id": n, "email": f"user{n}@example.com", "first_name": f"F{n}",
                   "ltv": round(rng.uniform(0, 900), 2), "orders": rng.randint(0, 30),
                   "address": {"city": rng.choice(["Lyon", "Austin", "Tokyo"])},
                   "groups": [g for g in _GROUPS if rng.random() < 0.3]}
            handle.write(json.dumps(row) + "\n")


def sync(url: str, model: Path, home: Path, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "SAILTHRU_API_KEY": "bench-key", "SAILTHRU_API_SECRET": "bench-secret",
           "SAILTHRU_API_URL": url}
    report = home / f"report-{time.monotonic_ns()}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [*COMMAND, "sync", str(model), "--home", str(home), "--report-dir", str(report),
         "--no-progress", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.stderr.write(process.stderr.read().decode() if process.stderr else "")
        raise SystemExit(f"sync failed with status {status}")
    summary: dict[str, Any] = json.loads((report / "summary.json").read_text())
    summary["wall"] = wall
    summary["peak_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    # The sync process's own CPU: on a loaded machine wall time also counts waiting for a core.
    summary["cpu"] = usage.ru_utime + usage.ru_stime
    return summary


def line(label: str, summary: dict[str, Any]) -> str:
    return (f"{label:<34} {summary['rows']:>8,} rows  {summary['wall']:>8.1f} s  "
            f"{summary['api_calls']:>8,} calls  cpu {summary['cpu']:>6.1f} s  "
            f"peak {summary['peak_mb']:>6.0f} MB  "
            f"({summary['path']}, {summary['jobs']} job(s))")


def _load() -> str:
    """The 1, 5 and 15 minute load averages: the machine is shared, so say how busy it was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size(parser)
    parser.add_argument("--users", type=int, default=None,
                        help="users in the model (default: 10,000 small, 100,000 full)")
    parser.add_argument("--sample", type=int, default=None,
                        help="users the per-user path is measured on (default: a tenth)")
    parser.add_argument("--full-per-user", action="store_true")
    args = parser.parse_args()
    args.users = args.users or (10_000 if args.size == "small" else 100_000)
    args.sample = args.sample or args.users // 10
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="sync-bulk-") as folder:
        base = Path(folder)
        full = base / "full.jsonl"
        write_model(full, args.users)
        per_user_size = args.users if args.full_per_user else min(args.sample, args.users)
        sample = base / "sample.jsonl"
        write_model(sample, per_user_size)

        fake, url = start_fake(*_FAKE_FLAGS)
        try:
            per_user = sync(url, sample, base / "a", "--bulk", "never", "--concurrency", "32",
                            "--name", "peruser")
        finally:
            fake.terminate()
            fake.wait()
        fake, url = start_fake(*_FAKE_FLAGS)
        try:
            bulk = sync(url, full, base / "b", "--bulk", "always", "--name", "bulk")
            again = sync(url, full, base / "b", "--bulk", "always", "--name", "bulk")
        finally:
            fake.terminate()
            fake.wait()

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; "
          f"load average before {load_before}, after {_load()}")
    print(f"fake: latency 50 ms, POST user 300/s, others 40/s; {args.users:,} users")
    print(line("per-user path (measured)", per_user))
    projected = per_user["wall"] * args.users / per_user["rows"]
    if per_user["rows"] != args.users:
        print(f"{'per-user path (EXTRAPOLATED)':<34} {args.users:>8,} rows  {projected:>8.1f} s"
              f"  (linear from the {per_user['rows']:,}-user sample)")
    print(line("bulk path (measured)", bulk))
    per_user_rate = per_user["rows"] / per_user["wall"]
    print(f"bulk speed-up: {projected / bulk['wall']:.1f}x  "
          f"({args.users / bulk['wall']:,.0f} users/s vs {per_user_rate:,.0f})")
    print(line("no-change re-run (measured)", again))
    figure(f"bulk initial sync, {args.users:,} users", bulk["wall"], "s",
           baseline=f"per-user path, {per_user['rows']:,} measured, extrapolated",
           baseline_value=round(projected, 1), ratio=projected / bulk["wall"],
           goal=">= 20" if args.users == 100_000 else None)  # issue 13's goals, at 100,000
    figure(f"no-change re-run, {args.users:,} users", again["wall"], "s",
           baseline=None, goal="<= 2" if args.users == 100_000 else None)


if __name__ == "__main__":
    main()
