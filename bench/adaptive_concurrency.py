"""Speed by default: the share of the rate limit reached with no tuning, at 50/100/200 ms.

For each latency, a fake Sailthru runs in its own process (POST/GET /user 300/s, other POSTs
40/s, the given latency per request and 100 ms per new connection). Through it go:
- profiles (POST /user, 300/s) and custom events (POST /event, 40/s) with default
  ``DestinationOptions()`` (adaptive concurrency), and with the old fixed default of 8;
- the official ``sailthru-client`` as people use it, in a 16- and a 32-thread pool, one
  ``api_post("user", ...)`` per profile (its own connection per call, no pacing), beside ours.

Each row prints records/s, the ratio to the endpoint's limit, and records that failed on a
429 (ours retries them; the official client has no retry, so each is a lost record).

    python bench/adaptive_concurrency.py [--seconds 8] [--latencies 0.05,0.1,0.2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from multiprocessing.connection import Connection

from sailthru.sailthru_client import SailthruClient

from sailthru_destination import (
    AppOptions,
    DestinationOptions,
    Event,
    ProfileChange,
    SailthruDestination,
)
from sailthru_destination.results import ExportResult

KEY, SECRET = "bench-key", "bench-secret"
LIMITS = {"POST user": 300.0, "GET": 300.0, "DELETE": 40.0, "default": 40.0}


def _serve(conn: Connection, latency: float) -> None:
    from sailthru_destination.testing import FakeSailthru

    with FakeSailthru(
        api_key=KEY, api_secret=SECRET, latency=latency, connect_latency=0.1, rate_limits=LIMITS
    ) as fake:
        conn.send(fake.url)
        conn.recv()


@contextmanager
def _fake(latency: float) -> Iterator[str]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(theirs, latency), daemon=True)
    process.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(10)


def _profile(run: str, n: int) -> ProfileChange:
    return ProfileChange(
        key=f"{run}{n}@example.com",
        new_properties={"first_name": f"F{n}", "plan": "pro", "n": n},
        record_id=str(n),
    )


def _event(run: str, n: int) -> Event:
    return Event(key=f"{run}{n}@example.com", key_type="email", name="viewed",
                 properties={"n": n}, record_id=f"{run}-{n}")


def _ours(
    url: str, kind: str, count: int, concurrency: int | None, run: str
) -> tuple[float, int]:
    app = AppOptions(KEY, SECRET, api_url=url)
    options = DestinationOptions(concurrency=concurrency, lock_dir=tempfile.mkdtemp())
    send: Callable[[SailthruDestination], Iterator[ExportResult]]
    if kind == "user":
        def send(dest: SailthruDestination) -> Iterator[ExportResult]:
            return dest.iter_export_profiles(_profile(run, n) for n in range(count))
    else:
        def send(dest: SailthruDestination) -> Iterator[ExportResult]:
            return iter(dest.send_events([_event(run, n) for n in range(count)]).results)
    failed = 0
    started = time.perf_counter()
    with SailthruDestination(app, options) as dest:
        for result in send(dest):
            failed += result.error is not None and result.error.code == 43
    return count / (time.perf_counter() - started), failed


def _official(url: str, count: int, threads: int, run: str) -> tuple[float, int]:
    client = SailthruClient(KEY, SECRET, api_url=url)

    def one(n: int) -> bool:
        change = _profile(run, n)
        reply = client.api_post("user", {"id": change.key, "key": "email",
                                         "vars": dict(change.new_properties)})
        return bool(reply.is_ok())

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ok = sum(pool.map(one, range(count)))
    return count / (time.perf_counter() - started), count - ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="target length of each row")
    parser.add_argument("--latencies", default="0.05,0.1,0.2")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores")
    print(f"{'latency':>8} {'what':<34} {'records/s':>10} {'of limit':>9} {'429-lost':>9}")
    row = 0
    for latency in (float(x) for x in args.latencies.split(",")):
        with _fake(latency) as url:
            for kind, limit in (("user", 300.0), ("event", 40.0)):
                count = int(limit * args.seconds)
                for label, concurrency in (("default (adaptive)", None), ("fixed 8", 8)):
                    row += 1
                    rate, lost = _ours(url, kind, count, concurrency, f"r{row}-")
                    print(f"{latency * 1000:>6.0f}ms {'ours ' + kind + ', ' + label:<34} "
                          f"{rate:>10.1f} {rate / limit:>9.3f} {lost:>9}")
            count = int(300 * args.seconds)
            for threads in (16, 32):
                row += 1
                rate, lost = _official(url, count, threads, f"r{row}-")
                print(f"{latency * 1000:>6.0f}ms {f'official client, {threads} threads':<34} "
                      f"{rate:>10.1f} {rate / 300:>9.3f} {lost:>9}")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
