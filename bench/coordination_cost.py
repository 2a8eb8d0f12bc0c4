"""What coordinating through Redis costs per Sailthru call, on loopback.

Starts its own redis-server on a free port, then times, per call: booking a send slot in the
shared GCRA (plus the amortised read of the shared slow-downs), feeding one reply's headers to
``observe``, and a known-lists lookup; against the in-process limiter for reference. Pacing is
Sailthru's 300/s, but the shared schedule runs on a simulated wall clock that moves 10 ms per
call, so every slot is free and the figure is the coordination cost, not the pacing wait.

    python bench/coordination_cost.py [calls]
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from sailthru_destination.coordination import RedisCoordination
from sailthru_destination.transport.ratelimit import RateLimiterRegistry


def _start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
        except OSError:
            time.sleep(0.01)
    return process, f"redis://127.0.0.1:{port}/0"


def _per_call_us(action: Callable[[int], object], calls: int) -> float:
    for i in range(min(200, calls)):
        action(i)
    started = time.perf_counter()
    for i in range(calls):
        action(i)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    process, url = _start_redis()
    try:
        ticks = iter(range(10**12))
        coord = RedisCoordination(
            url, prefix="bench", wall_clock=lambda: 1.7e9 + next(ticks) * 0.01
        )
        shared = coord.limiters().get("POST", "user", account="bench")
        local = RateLimiterRegistry({"default": 1e9}).get("POST", "user", account="bench")
        known = coord.known_lists("bench")
        known.add("newsletter")

        def no_sleep(seconds: float) -> None:
            return None

        def observe(i: int) -> None:
            shared.observe(
                time.monotonic(),
                limit_per_minute=18_000,
                remaining=17_000 - i % 1000,
                reset_in=30.0,
                reset_at=2e9,
            )

        figures = {
            "in-process acquire (reference)": _per_call_us(
                lambda i: local.acquire(time.monotonic, no_sleep), calls
            ),
            "Redis acquire (GCRA slot + shared slow-downs)": _per_call_us(
                lambda i: shared.acquire(time.monotonic, no_sleep), calls
            ),
            "Redis observe (headers of one reply)": _per_call_us(observe, calls),
            "known-lists lookup": _per_call_us(lambda i: known.contains("newsletter"), calls),
        }
        total = figures["Redis acquire (GCRA slot + shared slow-downs)"]
        total += figures["Redis observe (headers of one reply)"]
        for name, micros in figures.items():
            print(f"{name:48s} {micros:8.1f} us/call")
        print(f"{'coordination cost per Sailthru call':48s} {total:8.1f} us/call (target < 1000)")
        coord.close()
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    main()
