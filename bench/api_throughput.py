"""Throughput of SailthruApi against the fake, beside the official client's own path.

Profile-shaped POST /user calls from 32 threads for ~10 s against a fake Sailthru with 50 ms of
latency per request, 100 ms per new connection (TCP + TLS) and a 300/s user limit. Prints calls
per second, the ratio to the limit, the 429s the caller saw, and the client's CPU µs per call.
The fake runs in its own process, so the CPU figures are the client's alone.

    python bench/api_throughput.py [--size small|full] [--seconds 10] [--threads 32]

``--size small`` runs 5 s each, ``full`` (the default) 10 s; ``--seconds`` overrides either.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from _figures import add_size, figure, header
from sailthru.sailthru_client import SailthruClient

from sailthru_destination.errors import RateLimited, SailthruError
from sailthru_destination.options import AppOptions
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog

KEY, SECRET = "bench-key", "bench-secret"
LIMIT = 300.0
RATE_LIMITS = {"POST user": LIMIT, "GET": 300.0, "DELETE": 40.0, "default": 40.0}


def _serve(conn: Connection) -> None:
    from sailthru_destination.testing import FakeSailthru

    with FakeSailthru(
        api_key=KEY,
        api_secret=SECRET,
        latency=0.05,
        connect_latency=0.1,
        rate_limits=RATE_LIMITS,
    ) as fake:
        conn.send(fake.url)
        conn.recv()
        conn.send((fake.calls[("POST", "user")], fake.connections))


@contextmanager
def _fake() -> Iterator[tuple[str, list[Any]]]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(theirs,), daemon=True)
    process.start()
    url = ours.recv()
    stats: list[Any] = []
    try:
        yield url, stats
    finally:
        ours.send("stop")
        stats.extend(ours.recv())
        process.join(10)


def _profile(worker: int, n: int) -> dict[str, Any]:
    return {
        "id": f"user{worker}-{n}@example.com",
        "key": "email",
        "keys": {"extid": f"cust-{worker}-{n}"},
        "vars": {
            "first_name": "Ann",
            "last_name": "Example",
            "ltv": 1234.5,
            "orders": n,
            "signup_date": "2024-05-01",
            "tags": ["vip", "newsletter"],
            "address_city": "Lyon",
        },
        "lists": {"Newsletter": 1},
        "optout_email": "none",
        "fields": {"keys": 1},
    }


@dataclass
class Result:
    name: str
    calls: int
    seconds: float
    cpu: float
    rate_limited: int
    failed: int
    server_calls: int = 0
    connections: int = 0

    def show(self) -> None:
        rate = self.calls / self.seconds
        print(
            f"{self.name:<28} {rate:7.1f} calls/s  {rate / LIMIT:5.3f} of limit  "
            f"429s to caller {self.rate_limited:4d}  other failures {self.failed:3d}  "
            f"CPU {self.cpu / max(self.calls, 1) * 1e6:6.0f} µs/call  "
            f"connections {self.connections}"
        )


def _run(name: str, call: Callable[[int, int], str], threads: int, seconds: float) -> Result:
    lock = threading.Lock()
    counts = {"ok": 0, "429": 0, "failed": 0}
    stop = time.monotonic() + seconds

    def work(worker: int) -> None:
        n = 0
        while time.monotonic() < stop:
            outcome = call(worker, n)
            n += 1
            with lock:
                counts[outcome] += 1

    cpu0, t0 = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    return Result(name, counts["ok"], elapsed, cpu, counts["429"], counts["failed"])


def _ours(threads: int, seconds: float) -> Result:
    with _fake() as (url, stats):
        api = SailthruApi(
            AppOptions(KEY, SECRET, api_url=url),
            concurrency=threads,
            call_log=CallLog(max_records=1_000_000),
        )

        def call(worker: int, n: int) -> str:
            try:
                api.post("user", _profile(worker, n))
            except RateLimited:
                return "429"
            except SailthruError:
                return "failed"
            return "ok"

        with api:
            result = _run("sailthru-destination", call, threads, seconds)
        retried = sum(1 for record in api.call_log if record.status == 429)
    result.server_calls, result.connections = stats
    result.show()
    print(f"{'':<28} 429s absorbed by retries: {retried} of {len(api.call_log)} attempts")
    return result


def _official(threads: int, seconds: float) -> Result:
    with _fake() as (url, stats):
        client = SailthruClient(KEY, SECRET, api_url=url)

        def call(worker: int, n: int) -> str:
            try:
                response = client.api_post("user", _profile(worker, n))
            except Exception:
                return "failed"
            if response.get_status_code() == 429:
                return "429"
            return "ok" if response.is_ok() else "failed"

        result = _run("sailthru-client (baseline)", call, threads, seconds)
    result.server_calls, result.connections = stats
    result.show()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size(parser)
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds per client (default: 5 small, 10 full)")
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()
    seconds = args.seconds or {"small": 5.0, "full": 10.0}[args.size]
    header(f"POST /user, {args.threads} threads, {seconds:g} s, limit {LIMIT:g}/s, "
           "latency 50 ms, connect 100 ms")
    ours = _ours(args.threads, seconds)
    official = _official(args.threads, seconds)
    ours_rate, official_rate = ours.calls / ours.seconds, official.calls / official.seconds
    figure(f"API layer, {args.threads} threads, {seconds:g} s", ours_rate, "calls/s",
           baseline="ceiling: POST /user 300/s", baseline_value=LIMIT, goal=">= 0.95")
    figure(f"API layer beside the official client, {args.threads} threads", ours_rate,
           "calls/s", baseline="official client's api_post, same threads",
           baseline_value=round(official_rate, 1))


if __name__ == "__main__":
    main()
