"""Speed by default: the share of the rate limit reached with no tuning, at 50/100/200 ms.

For each latency, a fake Sailthru runs in its own process (POST/GET /user 300/s, other POSTs
40/s, the given latency per request and 100 ms per new connection), counting as Sailthru does,
per wall-clock minute (``--window 60``), or in the fake's quick sliding one-second window
(``--window 1``). Through it go profiles (POST /user, 300/s) with default
``DestinationOptions()`` (adaptive concurrency): each line prints records/s, the ratio to the
endpoint's limit (the ceiling), records failed on a 429 and the 429 replies retried.

``--size full`` is issue 26's measurement, in one run: long runs (130 s) against the minute
window at 50, 100 and 200 ms, then 20 s against the one-second window at 50 ms; ``--size
small`` the same at 15 s and 10 s. Each figure is also printed as a FIGURE line for
``bench/run_all.py``.

``--compare`` adds issue 13's table at ``--seconds`` per row: the old fixed concurrency of 8,
custom events (POST /event, 40/s), and the official ``sailthru-client`` as people use it, in a
16- and a 32-thread pool, one ``api_post("user", ...)`` per profile (its own connection per
call, no pacing, no retry: each 429 is a lost record).

    python bench/adaptive_concurrency.py [--size small|full] [--latencies 0.05,0.1,0.2]
    python bench/adaptive_concurrency.py --compare [--seconds 8] [--window 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection

from _figures import add_size, figure, header, load
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
# (seconds per latency against the minute window, seconds against the one-second window)
SIZES = {"small": (15.0, 10.0), "full": (130.0, 20.0)}
GOAL = ">= 0.95"


def _serve(conn: Connection, latency: float, window: float) -> None:
    from sailthru_destination.testing import FakeSailthru

    with FakeSailthru(
        api_key=KEY, api_secret=SECRET, latency=latency, connect_latency=0.1,
        rate_limits=LIMITS, rate_window=window,
    ) as fake:
        conn.send(fake.url)
        conn.recv()


@contextmanager
def _fake(latency: float, window: float) -> Iterator[str]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(theirs, latency, window), daemon=True)
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
) -> tuple[float, int, int]:
    """(records/s, records failed on a 429, 429 replies retried) for ``count`` records."""
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
        elapsed = time.perf_counter() - started
        refused = sum(1 for record in dest.api.call_log if record.status == 429)
    return count / elapsed, failed, refused


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


def _ceiling(latencies: list[float], window: float, seconds: float, tag: str) -> None:
    """Default options, POST /user at the ceiling: one line and one FIGURE per latency."""
    kind = "minute" if window == 60 else f"{window:g} s"
    for latency in latencies:
        with _fake(latency, window) as url:
            rate, lost, refused = _ours(url, "user", int(300 * seconds), None, f"{tag}{latency}-")
        ms = round(latency * 1000)
        print(f"{ms:>5d} ms  {kind:>6} window  {seconds:>5.0f} s  {rate:>7.1f} records/s  "
              f"{rate / 300:.3f} of 300/s  {lost} lost to 429s  {refused} 429s retried  "
              f"(load {load()})", flush=True)
        figure(f"export at the ceiling, {kind} window, {ms} ms, {seconds:g} s", rate,
               "records/s", baseline="ceiling: POST /user 300/s", baseline_value=300.0, goal=GOAL)


def _compare(latencies: list[float], seconds: float, window: float) -> None:
    """Issue 13's table: default and fixed 8, users and events, beside the official client."""
    print(f"{'latency':>8} {'what':<34} {'records/s':>10} {'of limit':>9} {'429-lost':>9}")
    row = 0
    for latency in latencies:
        with _fake(latency, window) as url:
            for kind, limit in (("user", 300.0), ("event", 40.0)):
                count = int(limit * seconds)
                for label, concurrency in (("default (adaptive)", None), ("fixed 8", 8)):
                    row += 1
                    rate, lost, _ = _ours(url, kind, count, concurrency, f"r{row}-")
                    print(f"{latency * 1000:>6.0f}ms {'ours ' + kind + ', ' + label:<34} "
                          f"{rate:>10.1f} {rate / limit:>9.3f} {lost:>9}")
            count = int(300 * seconds)
            for threads in (16, 32):
                row += 1
                rate, lost = _official(url, count, threads, f"r{row}-")
                print(f"{latency * 1000:>6.0f}ms {f'official client, {threads} threads':<34} "
                      f"{rate:>10.1f} {rate / 300:>9.3f} {lost:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size(parser)
    parser.add_argument("--latencies", default="0.05,0.1,0.2")
    parser.add_argument("--compare", action="store_true",
                        help="issue 13's table (fixed 8, events, the official client) instead")
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="target length of each --compare row")
    parser.add_argument("--window", type=float, default=60.0,
                        help="the fake's rate window for --compare (60: Sailthru's minute)")
    parser.add_argument("--windows", default="60,1",
                        help="which runs: 60 (the long runs against the minute window), 1 (the "
                        "short run against the one-second window) or both (default)")
    args = parser.parse_args()
    latencies = [float(x) for x in args.latencies.split(",")]
    if args.compare:
        header(f"issue 13's comparison, {args.seconds:g} s a row, {args.window:g} s window")
        _compare(latencies, args.seconds, args.window)
    else:
        long, short = SIZES[args.size]
        header(f"default options at the ceiling (--size {args.size}): {long:g} s per latency "
               f"against the per-minute window, {short:g} s against the one-second window")
        windows = {float(w) for w in args.windows.split(",")}
        if 60.0 in windows:
            _ceiling(latencies, 60.0, long, "m")
        if 1.0 in windows:
            _ceiling([0.05], 1.0, short, "s")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
