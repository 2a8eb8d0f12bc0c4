"""Pacing through the API: threads together stay under the limit, learn it, and recover from 429."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from _api_stub import Reply, stub_server
from helpers import max_in_any_window

from sailthru_destination.options import AppOptions
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi
from sailthru_destination.transport.ratelimit import RateLimiterRegistry

KEY, SECRET = "test-key", "test-secret"


def test_threads_together_stay_under_the_limit_and_reach_ninety_percent_of_it() -> None:
    limit, duration, threads = 50, 1.5, 8
    with FakeSailthru(api_key=KEY, api_secret=SECRET, rate_limits={"POST user": limit}) as fake:
        api = SailthruApi(
            AppOptions(KEY, SECRET, api_url=fake.url),
            # 5 % headroom (50 ms of slack a second) rather than the default 2.5 %, so that a
            # loaded test machine's late thread wake-ups do not bunch calls over the limit.
            limiters=RateLimiterRegistry({"POST user": limit}, headroom=0.95),
            concurrency=threads,
        )
        stop = time.monotonic() + duration

        def work(worker: int) -> int:
            done = 0
            while time.monotonic() < stop:
                api.post("user", {"id": f"w{worker}-{done}@example.com", "vars": {"n": done}})
                done += 1
            return done

        with api, ThreadPoolExecutor(threads) as pool:
            done = sum(pool.map(work, range(threads)))
        times = [
            t for t, method, endpoint in fake.call_times if (method, endpoint) == ("POST", "user")
        ]
    assert len(times) == done
    assert max_in_any_window(times) <= limit
    assert done >= 0.9 * limit * duration
    assert not [r for r in api.call_log if r.status == 429]


def test_the_real_limit_is_learned_from_the_first_reply() -> None:
    with FakeSailthru(api_key=KEY, api_secret=SECRET, rate_limits={"default": 5}) as fake:
        with SailthruApi(AppOptions(KEY, SECRET, api_url=fake.url)) as api:
            limiter = api.limiter("GET", "list")
            assert limiter.rate == 300
            api.get("list", {})
            assert limiter.rate == 5


def test_a_low_remaining_budget_slows_calls_down_until_the_reset() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    wall_start = 1_800_000_000.0
    low = Reply(
        200,
        {"ok": True},
        {
            "X-Rate-Limit-Limit": "6000",
            "X-Rate-Limit-Remaining": "20",
            "X-Rate-Limit-Reset": str(int(wall_start + 10)),
        },
    )
    with stub_server(low) as stub:
        api = SailthruApi(
            AppOptions(KEY, SECRET, api_url=stub.url),
            clock=lambda: now[0],
            wall_clock=lambda: wall_start + now[0],
            sleep=sleep,
        )
        with api:
            for _ in range(4):
                api.post("user", {"id": "a@example.com"})
    limiter = api.limiter("POST", "user")
    assert limiter.rate == 100  # 6000 a minute
    # 20 calls left for 10 s: about 2 a second instead of 97.5.
    assert limiter.pace(now[0]) == pytest.approx(2 * 0.975, rel=0.05)
    assert slept[-1] == pytest.approx(1 / (2 * 0.975), rel=0.05)


def test_refused_calls_are_retried_without_reaching_the_caller() -> None:
    # A wrong starting rate no longer overshoots (callers waiting on slots booked at the old
    # pace book again once the real limit is learned), so the 429s come from burst faults.
    with FakeSailthru(
        api_key=KEY, api_secret=SECRET, rate_limits={"GET": 10}, seed=7,
        faults=Faults(rate_limit_burst=0.5),
    ) as fake:
        api = SailthruApi(
            AppOptions(KEY, SECRET, api_url=fake.url),
            rate_limits={"GET": 1000},  # wrong on purpose: learned from the first reply
            retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.5),
            concurrency=16,
        )
        api.post("user", {"id": "a@example.com"})
        barrier = threading.Barrier(16)

        def read(_: int) -> str:
            barrier.wait()
            return str(api.get("user", {"id": "a@example.com"})["keys"]["email"])

        with api, ThreadPoolExecutor(16) as pool:
            emails = list(pool.map(read, range(16)))
    assert emails == ["a@example.com"] * 16
    statuses = [r.status for r in api.call_log if r.method == "GET"]
    assert statuses.count(429) >= 1
    assert statuses.count(200) == 16
    assert api.limiter("GET", "user").rate == 10


def test_apis_sharing_a_registry_share_one_schedule() -> None:
    registry = RateLimiterRegistry()
    app = AppOptions(KEY, SECRET, api_url="http://127.0.0.1:9")
    with (
        SailthruApi(app, limiters=registry) as first,
        SailthruApi(app, limiters=registry) as second,
    ):
        assert first.limiter("POST", "user") is second.limiter("POST", "/user")
    other = AppOptions("other-key", SECRET, api_url="http://127.0.0.1:9")
    with SailthruApi(other, limiters=registry) as third:
        assert third.limiter("POST", "user") is not first.limiter("POST", "user")
    with SailthruApi(app) as own:
        assert own.limiter("POST", "user") is not first.limiter("POST", "user")
