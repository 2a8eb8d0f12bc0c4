"""CPU per exported profile, ours beside the official client, at the realistic setting.

The fake Sailthru runs in its own process (50 ms per request, 100 ms per new connection,
Sailthru's default limits: POST/GET /user 300/s), so what is measured is the client's CPU
alone: this process's user + system time (``os.times``, every thread), not wall time.

- **ours**: ``SailthruDestination`` with default options (adaptive concurrency, the machine-wide
  pacer, the in-memory call log) exporting profiles through ``iter_export_profiles``;
- **official**: ``sailthru-client``'s ``api_post("user", ...)`` per profile in a 16-thread
  ``ThreadPoolExecutor``: what a user would write. The client has no session to reuse (each call
  goes through ``requests.request``, a new session and connection), so none is.

The headline figure is ours ÷ official (goal ≤ 0.5). Sequential rows (one thread, the fake
without latency) split the cost: the API layer alone, and the official client's signing over a
keep-alive session.

    python bench/cpu_per_call.py [--size small|full] [--profiles N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlencode

import requests
from _figures import add_size, figure
from sailthru.sailthru_client import SailthruClient

from sailthru_destination import AppOptions, DestinationOptions, ProfileChange, SailthruDestination
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog
from sailthru_destination.transport.ratelimit import RateLimiterRegistry

KEY, SECRET = "bench-key", "bench-secret"
LIMITS = {"POST user": 300.0, "GET": 300.0, "DELETE": 40.0, "default": 40.0}
UNLIMITED = {"default": 1_000_000.0}
GOAL = 0.5
SIZES = {"small": (1500, 1, 1000), "full": (6000, 3, 3000)}  # profiles, runs, sequential calls


def _serve(conn: Connection, latency: float, connect_latency: float,
           limits: dict[str, float]) -> None:
    from sailthru_destination.testing import FakeSailthru

    with FakeSailthru(api_key=KEY, api_secret=SECRET, latency=latency,
                      connect_latency=connect_latency, rate_limits=limits) as fake:
        conn.send(fake.url)
        conn.recv()


@contextmanager
def _fake(latency: float, connect_latency: float, limits: dict[str, float]) -> Iterator[str]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(
        target=_serve, args=(theirs, latency, connect_latency, limits), daemon=True)
    process.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(10)


def _cpu_seconds() -> float:
    """This process's user + system CPU time, all threads."""
    times = os.times()
    return times.user + times.system


def _properties(n: int) -> dict[str, Any]:
    return {"first_name": f"F{n}", "plan": "pro", "n": n, "city": "Oslo"}


def _change(run: str, n: int) -> ProfileChange:
    return ProfileChange(key=f"{run}{n}@example.com", new_properties=_properties(n),
                         record_id=str(n))


def ours_concurrent(url: str, count: int, run: str) -> tuple[float, float, int]:
    """(CPU µs per profile, profiles/s, failed) for the default destination."""
    app = AppOptions(KEY, SECRET, api_url=url)
    with tempfile.TemporaryDirectory() as folder, \
            SailthruDestination(app, DestinationOptions(lock_dir=folder)) as dest:
        # Warm up (connections, the list registry, caches), outside the measurement.
        for _ in dest.iter_export_profiles(_change(f"w{run}", n) for n in range(50)):
            pass
        failed = 0
        started, cpu = time.perf_counter(), _cpu_seconds()
        for result in dest.iter_export_profiles(_change(run, n) for n in range(count)):
            failed += result.error is not None
        cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - started
    return cpu / count * 1e6, count / wall, failed


def official_concurrent(url: str, count: int, run: str, threads: int = 16
                        ) -> tuple[float, float, int]:
    """(CPU µs per profile, profiles/s, failed) for sailthru-client in a thread pool."""
    client = SailthruClient(KEY, SECRET, api_url=url)

    def one(n: int, prefix: str = run) -> bool:
        reply = client.api_post("user", {"id": f"{prefix}{n}@example.com", "key": "email",
                                         "vars": _properties(n)})
        return bool(reply.is_ok())

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: one(n, f"w{run}"), range(50)))
        started, cpu = time.perf_counter(), _cpu_seconds()
        ok = sum(pool.map(one, range(count)))
        cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - started
    return cpu / count * 1e6, count / wall, count - ok


def _payload(n: int) -> dict[str, Any]:
    return {"id": f"u{n}@example.com", "key": "email", "vars": _properties(n)}


def _sequential(call: Callable[[int], object], calls: int) -> float:
    for n in range(50):  # warm up: connections, caches
        call(-n - 1)
    started = _cpu_seconds()
    for n in range(calls):
        call(n)
    return (_cpu_seconds() - started) / calls * 1e6


def sequential_rows(calls: int) -> list[tuple[str, float]]:
    """CPU µs per call, one thread, the fake without latency or limits."""
    with _fake(0.0, 0.0, UNLIMITED) as url:
        official = SailthruClient(KEY, SECRET, api_url=url)
        session = requests.Session()

        def keepalive(n: int) -> object:
            prepared = official._prepare_json_payload(_payload(n))
            return session.post(f"{url}/user", data=prepared, timeout=10).json()

        api = SailthruApi(AppOptions(KEY, SECRET, api_url=url), call_log=CallLog(),
                          limiters=RateLimiterRegistry(UNLIMITED))
        rows = [
            ("official api_post, one thread", _sequential(
                lambda n: official.api_post("user", _payload(n)), calls)),
            ("official signing over a keep-alive session", _sequential(keepalive, calls)),
            ("ours, SailthruApi.post (API layer alone)", _sequential(
                lambda n: api.post("user", _payload(n)), calls)),
        ]
        api.close()
        session.close()
    return rows


# -- the options of issue 26, item 3, each measured on its own ---------------------------------


def threads_api_layer(url: str, calls: int, threads: int = 25) -> float:
    """CPU µs per call of SailthruApi.post from ``threads`` threads, paced to 300/s."""
    api = SailthruApi(AppOptions(KEY, SECRET, api_url=url), call_log=CallLog(),
                      limiters=RateLimiterRegistry(LIMITS))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: api.post("user", _payload(-n - 1)), range(50)))
        cpu = _cpu_seconds()
        list(pool.map(lambda n: api.post("user", _payload(n)), range(calls)))
        cpu = _cpu_seconds() - cpu
    api.close()
    return cpu / calls * 1e6


def asyncio_api_layer(url: str, calls: int, in_flight: int = 25) -> float | None:
    """CPU µs per call of the same work on one asyncio thread over aiohttp (None: no aiohttp).

    A prototype of the transport alone: signed by sailthru-client, paced at 292.5/s, the reply
    decoded and its rate-limit headers read; no retries, classification or call log.
    """
    try:
        import aiohttp
    except ImportError:
        return None
    import asyncio

    signer = SailthruClient(KEY, SECRET, api_url=url)

    async def run(first: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        next_slot = 0.0
        room = asyncio.Semaphore(in_flight)
        connector = aiohttp.TCPConnector(limit=in_flight)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def one(n: int) -> None:
                nonlocal next_slot
                async with room:
                    now = loop.time()
                    slot = max(now, next_slot)
                    next_slot = slot + 1 / (300 * 0.975)
                    if slot > now:
                        await asyncio.sleep(slot - now)
                    form = signer._prepare_json_payload(_payload(n))
                    async with session.post(f"{url}/user", data=form) as reply:
                        json.loads(await reply.read())
                        reply.headers.get("X-Rate-Limit-Remaining")

            await asyncio.gather(*(one(n) for n in range(first, first + count)))

    asyncio.run(run(-50, 50))
    cpu = _cpu_seconds()
    asyncio.run(run(0, calls))
    return (_cpu_seconds() - cpu) / calls * 1e6


def pipelined(url: str, depth: int = 8) -> tuple[float, float]:
    """Seconds for ``depth`` POSTs pipelined on one keep-alive connection, and on ``depth``
    connections at once (the fake at 50 ms)."""
    host, port = url.split("//")[1].split(":")
    signer = SailthruClient(KEY, SECRET, api_url=url)

    def request(n: int) -> bytes:
        body = urlencode(signer._prepare_json_payload(_payload(n))).encode()
        return (f"POST /user HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n\r\n").encode() + body

    def replies(sock: socket.socket, count: int) -> None:
        reader = sock.makefile("rb")
        for _ in range(count):
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)

    socks = [socket.create_connection((host, int(port))) for _ in range(depth)]
    try:
        started = time.perf_counter()
        socks[0].sendall(b"".join(request(n) for n in range(depth)))
        replies(socks[0], depth)
        one_connection = time.perf_counter() - started
        started = time.perf_counter()
        for n, sock in enumerate(socks):
            sock.sendall(request(100 + n))
        for sock in socks:
            replies(sock, 1)
        return one_connection, time.perf_counter() - started
    finally:
        for sock in socks:
            sock.close()


def signing_us(calls: int = 20_000) -> float:
    """CPU µs to sign one payload: the most a batch signed in one pass could save per call."""
    signer = SailthruClient(KEY, SECRET)
    payloads = [_payload(n) for n in range(100)]
    started = _cpu_seconds()
    for n in range(calls):
        signer._prepare_json_payload(payloads[n % 100])
    return (_cpu_seconds() - started) / calls * 1e6


def options(calls: int) -> None:
    """Print the options' figures (the fake at 50 ms, 300/s, in its own process)."""
    with _fake(0.05, 0.0, LIMITS) as url:
        threaded = threads_api_layer(url, calls)
        loop = asyncio_api_layer(url, calls)
        one, many = pipelined(url)
    print(f"option: API layer, 25 threads (ours)          {threaded:6.0f} µs CPU/call")
    print("option: asyncio + aiohttp, one thread         " + (
        "  (aiohttp not installed)" if loop is None
        else f"{loop:6.0f} µs CPU/call, {loop / threaded:.2f}x of the threads' (no retries, "
             "no classification, no call log)"))
    print(f"option: 8 calls pipelined on one connection   {one * 1000:6.0f} ms; "
          f"on 8 connections {many * 1000:.0f} ms")
    print(f"option: signing one payload                   {signing_us():6.1f} µs CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size(parser)
    parser.add_argument("--profiles", type=int, help="profiles per run (default: by size)")
    parser.add_argument("--runs", type=int, help="runs; the figure is their median")
    parser.add_argument("--sequential", type=int, help="calls per sequential row (0: none)")
    parser.add_argument("--options", action="store_true",
                        help="also measure the options: threads, asyncio, pipelining, signing")
    args = parser.parse_args()
    profiles, runs, calls = SIZES[args.size]
    profiles = args.profiles or profiles
    runs = args.runs or runs
    calls = calls if args.sequential is None else args.sequential
    load = os.getloadavg()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores; "
          f"{profiles} profiles per run, {runs} run(s); 50 ms, 300/s, fake in its own process")
    ratios: list[float] = []
    ours_us: list[float] = []
    theirs_us: list[float] = []
    with _fake(0.05, 0.1, LIMITS) as url:
        for run in range(runs):
            ours = ours_concurrent(url, profiles, f"o{run}-")
            theirs = official_concurrent(url, profiles, f"t{run}-")
            ratios.append(ours[0] / theirs[0])
            ours_us.append(ours[0])
            theirs_us.append(theirs[0])
            print(f"run {run + 1}: ours {ours[0]:6.0f} µs CPU/profile at {ours[1]:5.1f}/s "
                  f"({ours[2]} failed); official, 16 threads {theirs[0]:6.0f} µs at "
                  f"{theirs[1]:5.1f}/s ({theirs[2]} failed); ratio {ratios[-1]:.3f}")
    if args.options:
        options(profiles)
    if calls:
        rows = sequential_rows(calls)
        base = rows[0][1]
        for label, micros in rows:
            print(f"sequential: {label:<44} {micros:6.0f} µs CPU/call  {micros / base:5.2f}x")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    ratio = statistics.median(ratios)
    print(f"median ratio of {runs} run(s): {ratio:.3f} (goal <= {GOAL})")
    # The ratio is the median of each run's (ours and theirs measured together), so it need
    # not equal the ratio of the two medians.
    figure("CPU per profile, 50 ms, 300/s", statistics.median(ours_us), "µs",
           baseline="sailthru-client api_post, 16 threads",
           baseline_value=statistics.median(theirs_us), ratio=ratio, goal=f"<= {GOAL}")


if __name__ == "__main__":
    main()
