"""CPU per export call, end to end: ours beside the official client, in one run.

The fake Sailthru runs in its own process with no latency and limits high enough that pacing
never waits, so what is measured is this process's CPU (``time.process_time``) per POST /user:
building and signing the payload, the HTTP round trip's client side, classification, pacing,
retry policy and the call log. The baseline is ``sailthru-client``'s ``api_post`` (a new
connection per call, as it is shipped), and the same client over a keep-alive session.

    python bench/cpu_per_call.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any

import requests
from sailthru.sailthru_client import SailthruClient

from sailthru_destination import AppOptions
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog, JsonLinesSink
from sailthru_destination.transport.ratelimit import machine_limiters

KEY, SECRET = "bench-key", "bench-secret"
LIMITS = {"default": 1_000_000.0}


def _serve(conn: Connection) -> None:
    from sailthru_destination.testing import FakeSailthru

    with FakeSailthru(api_key=KEY, api_secret=SECRET, rate_limits=LIMITS) as fake:
        conn.send(fake.url)
        conn.recv()


@contextmanager
def _fake() -> Iterator[str]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(theirs,), daemon=True)
    process.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(10)


def _payload(n: int) -> dict[str, Any]:
    return {"id": f"u{n}@example.com", "key": "email",
            "vars": {"first_name": f"F{n}", "plan": "pro", "n": n, "city": "Oslo"},
            "lists": {"Newsletter": 1}}


def _cpu(call: Callable[[int], object], calls: int) -> float:
    for n in range(50):  # warm up: connections, caches
        call(-n - 1)
    started = time.process_time()
    for n in range(calls):
        call(n)
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores, "
          f"{args.calls} calls each")
    with _fake() as url, tempfile.TemporaryDirectory() as folder:
        official = SailthruClient(KEY, SECRET, api_url=url)
        kept = SailthruClient(KEY, SECRET, api_url=url)
        session = requests.Session()

        def official_keepalive(n: int) -> object:
            prepared = kept._prepare_json_payload(_payload(n))
            return session.post(f"{url}/user", data=prepared, timeout=10).json()

        app = AppOptions(KEY, SECRET, api_url=url)
        sink = JsonLinesSink(os.path.join(folder, "calls.jsonl"))
        ours = SailthruApi(app, call_log=CallLog(max_records=100, sink=sink),
                           limiters=machine_limiters(folder, LIMITS))
        rows = [
            ("official client, api_post (new connection per call)",
             _cpu(lambda n: official.api_post("user", _payload(n)), args.calls)),
            ("official client's signing over a keep-alive session",
             _cpu(official_keepalive, args.calls)),
            ("ours, SailthruApi.post (paced, retried, logged to calls.jsonl)",
             _cpu(lambda n: ours.post("user", _payload(n)), args.calls)),
        ]
        ours.close()
        sink.close()
    baseline = rows[0][1]
    for label, micros in rows:
        print(f"{label:<64} {micros:>8.0f} µs CPU/call  {micros / baseline:>5.2f}x")


if __name__ == "__main__":
    main()
