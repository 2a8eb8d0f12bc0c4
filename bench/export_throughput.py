"""Profile export throughput: the destination against a naive per-profile loop.

20,000 changed profiles (vars with nesting and dates, two groups each) exported through
SailthruDestination against a fake Sailthru in its own process (50 ms latency per request,
100 ms per new connection, POST/GET /user limit 300/s). Prints profiles/s, the ratio to the
limit, calls per profile, 429s that reached the caller, peak memory, and the CPU µs per profile
of mapping + signing. The baseline is what Grouparoo's plugin does: the official client, one
thread, a GET then a POST per profile, a new connection per call (measured on a sample).

    python bench/export_throughput.py [--size small|full] [--profiles 20000] [--baseline 150]
        [--concurrency 32]

``--size small`` exports 2,000 profiles (baseline 30), ``full`` (the default) 20,000 (150).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any

from _figures import add_size, figure, header
from sailthru.sailthru_client import SailthruClient

from sailthru_destination import AppOptions, DestinationOptions, ProfileChange, SailthruDestination
from sailthru_destination.shaping.mapping import changed_vars
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog
from sailthru_destination.transport.ratelimit import RateLimiterRegistry

KEY, SECRET = "bench-key", "bench-secret"
LIMIT = 300.0
RATE_LIMITS = {"POST user": LIMIT, "GET": LIMIT, "DELETE": 40.0, "default": 40.0}


def _serve(conn: Connection) -> None:
    from sailthru_destination.testing import FakeSailthru

    with FakeSailthru(
        api_key=KEY, api_secret=SECRET, latency=0.05, connect_latency=0.1, rate_limits=RATE_LIMITS
    ) as fake:
        conn.send(fake.url)
        conn.recv()
        conn.send(dict(fake.calls))


@contextmanager
def _fake() -> Iterator[tuple[str, dict[str, Any]]]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(theirs,), daemon=True)
    process.start()
    url = ours.recv()
    stats: dict[str, Any] = {}
    try:
        yield url, stats
    finally:
        ours.send("stop")
        stats["calls"] = ours.recv()
        process.join(10)


def _properties(i: int) -> dict[str, Any]:
    return {
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "plan": ("free", "pro", "team")[i % 3],
        "lifetime_value": round(i * 1.37, 2),
        "vip": i % 7 == 0,
        "signup_date": datetime(2024, 1 + i % 12, 1 + i % 28, tzinfo=timezone.utc),
        "last_seen_time": datetime(2026, 11, 1, 12, i % 60, tzinfo=timezone.utc),
        "address": {"city": "Oslo", "country": "NO", "zip": f"{i % 10000:04d}"},
        "interests": ["running", "books"],
    }


def _changes(count: int, run: str) -> Iterator[ProfileChange]:
    for i in range(count):
        yield ProfileChange(
            key=f"{run}{i}@example.com",
            new_properties=_properties(i),
            new_groups={f"Plan {i % 3}", "Newsletter"},
            record_id=str(i),
        )


def measure_destination(url: str, count: int, concurrency: int) -> dict[str, float]:
    app = AppOptions(KEY, SECRET, api_url=url)
    opts = DestinationOptions(concurrency=concurrency, lock_dir=tempfile.mkdtemp())
    api = SailthruApi(
        app,
        concurrency=concurrency,
        call_log=CallLog(max_records=100),
        limiters=RateLimiterRegistry(RATE_LIMITS),
    )
    statuses: dict[str, int] = {}
    rate_limited = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    with SailthruDestination(app, opts, api=api) as dest:
        for result in dest.iter_export_profiles(_changes(count, "d")):
            statuses[str(result.status)] = statuses.get(str(result.status), 0) + 1
            if result.error is not None and result.error.code == 43:
                rate_limited += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    # Peak resident memory of this process (KiB on Linux); the fake runs in another one.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "elapsed": elapsed,
        "per_second": count / elapsed,
        "cpu_us": cpu / count * 1e6,
        "peak_mb": peak / 1e6,
        "failed": statuses.get("failed", 0),
        "rate_limited": rate_limited,
    }


def measure_mapping_and_signing(count: int) -> float:
    client = SailthruClient(KEY, SECRET)
    profiles = [_properties(i) for i in range(1000)]
    started = time.process_time()
    for i in range(count):
        variables = changed_vars(None, profiles[i % 1000], exclude=("email",))
        payload = {
            "id": f"x{i}@example.com",
            "key": "email",
            "vars": variables,
            "lists": {"Newsletter": 1},
        }
        client._prepare_json_payload(payload)
    return (time.process_time() - started) / count * 1e6


def measure_baseline(url: str, count: int) -> float:
    client = SailthruClient(KEY, SECRET, api_url=url)
    started = time.perf_counter()
    for i, change in enumerate(_changes(count, "b")):
        client.api_get("user", {"id": change.key, "key": "email"})
        payload = {
            "id": change.key,
            "key": "email",
            "lists": {"Newsletter": 1},
            "vars": changed_vars(None, change.new_properties),
        }
        client.api_post("user", payload)
        del i
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size(parser)
    parser.add_argument("--profiles", type=int, default=None,
                        help="profiles exported (default: 2,000 small, 20,000 full)")
    parser.add_argument("--baseline", type=int, default=None,
                        help="profiles through the naive loop (default: 30 small, 150 full)")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    small = args.size == "small"
    args.profiles = args.profiles or (2_000 if small else 20_000)
    args.baseline = args.baseline or (30 if small else 150)
    header(f"profile export, {args.profiles:,} profiles, concurrency {args.concurrency}")

    mapping_us = measure_mapping_and_signing(20_000)
    with _fake() as (url, stats):
        ours = measure_destination(url, args.profiles, args.concurrency)
    calls = stats["calls"]
    user_posts = calls.get(("POST", "user"), 0)
    with _fake() as (url, _):
        naive = measure_baseline(url, args.baseline)

    print(f"profiles exported        {args.profiles:,} in {ours['elapsed']:.1f} s")
    print(f"profiles/s               {ours['per_second']:.1f}")
    print(f"ratio to the 300/s limit {ours['per_second'] / LIMIT:.3f}")
    print(f"POST /user per profile   {user_posts / args.profiles:.3f}")
    print(f"all calls per profile    {sum(calls.values()) / args.profiles:.3f}  {calls}")
    print(f"failed / 429 to caller   {ours['failed']:.0f} / {ours['rate_limited']:.0f}")
    print(f"peak RSS of the exporter {ours['peak_mb']:.1f} MB")
    print(f"CPU µs/profile, total    {ours['cpu_us']:.0f}  (mapping, signing, HTTP, threads)")
    print(f"CPU µs/profile, mapping+signing  {mapping_us:.0f}")
    print(f"naive baseline           {naive:.1f} profiles/s (official client, GET+POST, 1 thread)")
    print(f"speed-up over baseline   {ours['per_second'] / naive:.1f}x")
    figure(f"profile export, {args.profiles:,} profiles", ours["per_second"], "profiles/s",
           baseline="ceiling: POST /user 300/s", baseline_value=LIMIT, goal=">= 0.95")
    figure("calls per changed profile", user_posts / args.profiles, "POST /user",
           baseline="one call per profile", baseline_value=1.0, goal="<= 1.01")
    figure("CPU per profile, mapping + signing", mapping_us, "µs",
           baseline="target 100 µs", baseline_value=100.0, goal="<= 1")


if __name__ == "__main__":
    main()
