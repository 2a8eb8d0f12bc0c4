"""The Celery integration with real parts: a redis-server, two worker processes, four fakes.

Two ``celery worker`` processes with separate lock folders stand in for two hosts. Each
account has its own fake Sailthru with its own limits. The tests measure what the single
process promises: each account under its limit and the cluster near the sum of the limits,
no duplicate lists, per-user order, and no double post when a worker is SIGKILLed mid-task.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import assert_under_limit
from test_coordination import RedisServer

from sailthru_destination.testing import FakeSailthru

TESTS = Path(__file__).resolve().parent
# POST /event limits (calls per second) of the three accounts measured together.
EVENT_LIMITS = {"north": 20, "east": 30, "west": 40}
SLOW = "slow"  # the account of the SIGKILL test: each call takes 0.2 s
WORKERS = 2
THREADS = 6
ROUNDS = 3
SECONDS_AT_FULL_RATE = 5


def _limits(event_limit: float) -> dict[str, float]:
    return {"POST event": event_limit, "POST user": 60, "GET": 300, "default": 40}


@dataclass
class Cluster:
    fakes: dict[str, FakeSailthru]
    app: ModuleType
    workers: list[subprocess.Popen[bytes]]
    marks: Path

    def started(self, task_id: str) -> list[int]:
        """The pids of the workers that started task ``task_id``."""
        return [int(p.name.rsplit("-", 1)[1]) for p in self.marks.glob(f"started-{task_id}-*")]


def _start_worker(index: int, env: dict[str, str], tmp: Path, queues: list[str]) -> Any:
    lock_dir = tmp / f"host{index}-locks"
    lock_dir.mkdir()
    log = (tmp / f"worker{index}.log").open("wb")
    command = [
        sys.executable, "-m", "celery", "-A", "celery_worker_app", "worker",
        "--pool", "threads", "--concurrency", str(THREADS), "-Q", ",".join(queues),
        "-n", f"w{index}@localhost", "--without-mingle", "--without-gossip",
        "--without-heartbeat", "--loglevel", "WARNING",
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        cwd=TESTS,
        env={**env, "SAILTHRU_LOCK_DIR": str(lock_dir)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("celery")
    marks = tmp / "marks"
    marks.mkdir()
    redis = RedisServer()
    fakes = {
        name: FakeSailthru(api_key=f"key-{name}", api_secret=f"secret-{name}",
                           rate_limits=_limits(limit))
        for name, limit in EVENT_LIMITS.items()
    }  # fmt: skip
    fakes[SLOW] = FakeSailthru(
        api_key="key-slow", api_secret="secret-slow", rate_limits=_limits(40), latency=0.2
    )
    workers: list[subprocess.Popen[bytes]] = []
    saved = dict(os.environ)
    try:
        for fake in fakes.values():
            fake.start()
        accounts = {
            name: {
                "url": fake.url,
                "key": f"key-{name}",
                "secret": f"secret-{name}",
                "limits": _limits(EVENT_LIMITS.get(name, 40)),
            }
            for name, fake in fakes.items()
        }
        env = {
            **os.environ,
            "SAILTHRU_TEST_REDIS": redis.url,
            "SAILTHRU_TEST_ACCOUNTS": json.dumps(accounts),
            "SAILTHRU_TEST_MARKS": str(marks),
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        os.environ.update(env)
        app = importlib.import_module("celery_worker_app")
        queues = [q for name in fakes for q in app.tasks.queues(name)]
        workers = [_start_worker(i, env, tmp, queues) for i in range(1, WORKERS + 1)]
        deadline = time.monotonic() + 30
        while len(list(marks.glob("ready-*"))) < WORKERS:
            assert all(w.poll() is None for w in workers), (tmp / "worker1.log").read_text()
            assert time.monotonic() < deadline, "the Celery workers did not start in 30 s"
            time.sleep(0.05)
        yield Cluster(fakes, app, workers, marks)
    finally:
        for worker in workers:
            _stop(worker)
        for fake in fakes.values():
            fake.stop()
        redis.stop()
        os.environ.clear()
        os.environ.update(saved)


def _results(sent: list[Any], timeout: float = 60) -> list[dict[str, Any]]:
    return [record for result in sent for record in result.get(timeout=timeout)]


def test_three_accounts_on_two_workers_keep_pace_order_and_lists(cluster: Cluster) -> None:
    tasks = cluster.app.tasks
    # Lists first: both workers create the same lists of each account at once.
    groups = ["VIP", "Newsletter", "Tier 1", "Tier 2"]
    sent = [
        tasks.enqueue(
            "profiles",
            name,
            [
                {"key": f"p{i}@{name}.test", "new_properties": {"n": i}, "new_groups": groups}
                for i in range(16)
            ],
        )
        for name in EVENT_LIMITS
    ]
    profiles = _results([r for group in sent for r in group])
    assert {r["status"] for r in profiles} == {"created"}, profiles
    for fake in cluster.fakes.values():
        names = [record["name"] for record in fake.lists]
        assert sorted(names) == sorted(set(names))  # 0 duplicate lists

    # Events: every account at its own full rate, each user's rounds in order.
    started = time.monotonic()
    sent = []
    for round_ in range(1, ROUNDS + 1):
        for name, limit in EVENT_LIMITS.items():
            users = limit * SECONDS_AT_FULL_RATE // ROUNDS
            records = [
                {
                    "key": f"u{u}@{name}.test",
                    "key_type": "email",
                    "name": "step",
                    "properties": {"round": round_},
                    "record_id": f"{name}-u{u}-r{round_}",
                }
                for u in range(users)
            ]
            sent += tasks.enqueue("events", name, records)
    events = _results(sent)
    elapsed = time.monotonic() - started
    assert [r for r in events if r["status"] != "sent"] == []

    spans: dict[str, tuple[float, float]] = {}
    times: dict[str, list[float]] = {}
    for name, limit in EVENT_LIMITS.items():
        fake = cluster.fakes[name]
        times[name] = sorted(at for at, m, e in fake.call_times if (m, e) == ("POST", "event"))
        spans[name] = (times[name][0], times[name][-1])
        assert_under_limit(times[name], limit)
        rounds: dict[str, list[int]] = {}
        for event in fake.events:
            rounds.setdefault(event["id"], []).append(int(event["vars"]["round"]))
        assert all(seen == list(range(1, ROUNDS + 1)) for seen in rounds.values()), name
        assert len(rounds) == limit * SECONDS_AT_FULL_RATE // ROUNDS
    # Together: the calls of every account while all three were busy, against the sum.
    start = max(first for first, _ in spans.values())
    end = min(last for _, last in spans.values())
    assert end - start > 2.0, spans
    rates = {name: sum(start <= t <= end for t in ts) / (end - start) for name, ts in times.items()}
    ratio = sum(rates.values()) / sum(EVENT_LIMITS.values())
    print(f"events: {len(events)} in {elapsed:.1f}s; rates {rates}; together {ratio:.3f}")
    # The goal is >= 0.85 (0.92 here on a quiet machine; bench/multi_account.py measures it).
    # On a 2-core machine loaded by other work it fell to 0.80, so CI holds a floor that a
    # real defect breaks (an account starved by another's pacing shows as 0.5 or less).
    assert ratio >= 0.75, rates


def test_a_worker_killed_mid_task_is_redelivered_without_a_double_post(
    cluster: Cluster,
) -> None:
    tasks = cluster.app.tasks
    fake = cluster.fakes[SLOW]
    buyer = "kim@slow.test"
    orders = [
        {
            "order_id": f"order-{i}",
            "email": buyer,
            "items": [
                {"id": "sku", "title": "Tea", "qty": 1, "price": "4.50", "url": "https://x.test/t"}
            ],
        }
        for i in range(12)
    ]
    [purchases] = tasks.enqueue("purchases", SLOW, orders)
    # Queued behind the purchases on the same user's partition: must wait for them.
    events = [
        {"key": buyer, "key_type": "email", "name": "thanks", "properties": {}, "record_id": t}
        for t in ("t0", "t1", "t2", "t3")
    ]
    [thanks] = tasks.enqueue("events", SLOW, events)
    deadline = time.monotonic() + 20
    while not (cluster.started(purchases.id) and len(fake.purchases) >= 3):
        assert time.monotonic() < deadline, "the purchases task did not start"
        time.sleep(0.01)
    [victim] = cluster.started(purchases.id)
    os.kill(victim, signal.SIGKILL)
    killed_at = len(fake.purchases)

    results = purchases.get(timeout=40)
    thanked = thanks.get(timeout=40)
    runners = cluster.started(purchases.id)
    order_ids = Counter(p["purchase_keys"]["extid"] for p in fake.purchases)
    posted_events = [e["event"] for e in fake.events]
    calls = fake.call_times
    assert victim in runners
    assert len(runners) == 2
    assert 3 <= killed_at < 12
    assert order_ids == Counter(o["order_id"] for o in orders)  # each exactly once
    assert len(results) == 12
    for result in results:  # what the lost worker had posted is skipped, the rest sent
        assert result["status"] == "sent" or result["detail"].startswith("already "), result
    assert [r["status"] for r in thanked] == ["sent"] * 4
    assert posted_events == ["thanks"] * 4
    last_purchase = max(at for at, m, e in calls if (m, e) == ("POST", "purchase"))
    first_event = min(at for at, m, e in calls if (m, e) == ("POST", "event"))
    assert last_purchase < first_event  # the user's order held across the lost worker
