"""N accounts at once against N fakes: each account's ratio to its limit, CPU and Redis per call.

One fake Sailthru per account, all in a child process (so their CPU is not the client's), a
redis-server of its own, and this process doing what one Celery worker process does: the tasks'
code path (:meth:`SailthruTasks.run`) for every account at once, one thread per account, each
sending events in batches for ``--seconds``. Every account's POST /event limit is ``--limit``
calls per second. Prints, per account, the calls per second while all accounts were busy and
the ratio to the limit; then the client's CPU per call, and what Redis did per call (commands
and its own CPU), the inputs of the capacity model in the README.

    python bench/multi_account.py [--accounts 3] [--limit 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from celery import Celery
from coordination_cost import _start_redis

from sailthru_destination.coordination import RedisCoordination
from sailthru_destination.integrations.celery import Account, SailthruTasks
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.testing import FakeSailthru

BATCH = 50


def _limits(limit: float) -> dict[str, float]:
    return {"POST event": limit, "GET": 300, "POST user": 300, "default": 40}


def _serve(conn: Connection, accounts: int, limit: float) -> None:
    fakes = [
        FakeSailthru(api_key=f"key-{i}", api_secret=f"secret-{i}", rate_limits=_limits(limit))
        for i in range(accounts)
    ]
    for fake in fakes:
        fake.start()
    conn.send([fake.url for fake in fakes])
    conn.recv()  # the run is over: report each fake's POST /event times
    conn.send(
        [[at for at, m, e in fake.call_times if (m, e) == ("POST", "event")] for fake in fakes]
    )
    for fake in fakes:
        fake.stop()


def _redis_counters(coordination: RedisCoordination) -> tuple[float, int]:
    cpu = coordination.redis.info("cpu")
    stats = coordination.redis.info("stats")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), int(
        stats["total_commands_processed"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--limit", type=float, default=20.0, help="POST /event calls/s each")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    redis_process, redis_url = _start_redis()
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(
        target=_serve, args=(theirs, args.accounts, args.limit), daemon=True
    )
    server.start()
    try:
        urls: list[str] = ours.recv()
        coordination = RedisCoordination(redis_url, prefix="bench")

        def resolve(account: str) -> Account:
            i = int(account)
            return Account(
                AppOptions(f"key-{i}", f"secret-{i}", urls[i]),
                DestinationOptions(concurrency=8),
                rate_limits=_limits(args.limit),
            )

        tasks = SailthruTasks(Celery("bench"), resolve, coordination)
        for i in range(args.accounts):
            tasks.destination(str(i))  # built before the clock starts, as in a warm worker
        deadline = time.monotonic() + args.seconds
        results: dict[str, int] = {}

        def drive(account: str) -> None:
            sent = 0
            while time.monotonic() < deadline:
                batch = [
                    {
                        "key": f"u{sent + j}@{account}.bench",
                        "key_type": "email",
                        "name": "viewed",
                        "properties": {"n": sent + j},
                        "record_id": f"{account}-{sent + j}",
                    }
                    for j in range(BATCH)
                ]
                sent += sum(r["status"] == "sent" for r in tasks.run("events", account, batch))
            results[account] = sent

        redis_cpu, redis_commands = _redis_counters(coordination)
        cpu = time.process_time()
        threads = [threading.Thread(target=drive, args=(str(i),)) for i in range(args.accounts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cpu = time.process_time() - cpu
        redis_cpu_end, redis_commands_end = _redis_counters(coordination)
        ours.send("report")
        times: list[list[float]] = ours.recv()
        tasks.close()
        coordination.close()
    finally:
        server.join(timeout=10)
        redis_process.kill()
        redis_process.wait()
    redis_used = (redis_cpu_end - redis_cpu, redis_commands_end - redis_commands)
    _report(args, times, results, cpu, *redis_used)


def _report(
    args: Any,
    times: list[list[float]],
    results: dict[str, int],
    cpu: float,
    redis_cpu: float,
    redis_commands: int,
) -> None:
    start = max(min(t) for t in times)
    end = min(max(t) for t in times)
    window = end - start
    calls = sum(len(t) for t in times)
    print(f"{args.accounts} accounts, POST /event limit {args.limit:g}/s each, {args.seconds:g} s")
    print(f"{'account':>8} {'calls':>6} {'calls/s':>8} {'ratio':>6}")
    total = 0.0
    for i, stamps in enumerate(times):
        rate = sum(start <= t <= end for t in stamps) / window
        total += rate
        print(f"{i:>8} {len(stamps):>6} {rate:>8.1f} {rate / args.limit:>6.3f}")
    print(f"{'all':>8} {calls:>6} {total:>8.1f} {total / (args.limit * args.accounts):>6.3f}")
    print(f"sent (reported by the tasks): {sum(results.values())}")
    per_call = cpu / calls
    print(f"client CPU per call: {per_call * 1e3:.2f} ms (all threads of this process)")
    commands, redis_us = redis_commands / calls, redis_cpu / calls * 1e6
    print(f"Redis per call: {commands:.1f} commands, {redis_us:.0f} us CPU")
    for rate in (40, 300):
        print(f"accounts per worker core at {rate}/s each: {1 / (per_call * rate):.1f}")


if __name__ == "__main__":
    main()
