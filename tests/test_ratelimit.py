"""Pacing: evenly spaced slots shared by threads, learned from Sailthru's rate-limit headers."""

from __future__ import annotations

import itertools
import multiprocessing
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import max_in_any_window

from sailthru_destination.transport.ratelimit import (
    DEFAULT_HEADROOM,
    MachineRateLimiter,
    MachineRateLimiterRegistry,
    RateLimiter,
    RateLimiterRegistry,
    machine_limiters,
)


def test_slots_are_spaced_one_over_the_paced_rate() -> None:
    limiter = RateLimiter(100.0, headroom=0.95)
    slots = [limiter.reserve(10.0) for _ in range(5)]
    step = 1 / 95.0
    assert slots == pytest.approx([10.0 + i * step for i in range(5)])


def test_an_idle_limiter_does_not_save_up_a_burst() -> None:
    limiter = RateLimiter(10.0, headroom=1.0)
    assert limiter.reserve(0.0) == 0.0
    assert limiter.reserve(100.0) == 100.0
    assert limiter.reserve(100.0) == pytest.approx(100.1)


def test_threads_share_one_schedule_so_together_they_reach_the_limit_not_each() -> None:
    limiter = RateLimiter(50.0)
    slots: list[float] = []
    lock = threading.Lock()

    def book() -> None:
        mine = [limiter.reserve(0.0) for _ in range(100)]
        with lock:
            slots.extend(mine)

    threads = [threading.Thread(target=book) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slots.sort()
    assert slots == pytest.approx([i / (50.0 * DEFAULT_HEADROOM) for i in range(800)])
    assert max_in_any_window(slots) == 49


def test_acquire_sleeps_until_the_reserved_slot() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    limiter = RateLimiter(4.0, headroom=1.0)
    waited = [limiter.acquire(lambda: now[0], sleep) for _ in range(3)]
    assert waited == [0.0, 0.25, 0.5]
    assert sleeps == [0.25, 0.5]


def test_the_real_limit_is_learned_from_the_limit_header_per_minute() -> None:
    limiter = RateLimiter(40.0, headroom=1.0)
    limiter.observe(0.0, limit_per_minute=36000)
    assert limiter.rate == 600.0
    assert limiter.pace(0.0) == 600.0


def test_a_nearly_spent_minute_spreads_what_is_left_until_the_reset() -> None:
    limiter = RateLimiter(100.0, headroom=1.0)
    limiter.observe(0.0, limit_per_minute=6000, remaining=50, reset_in=10.0, reset_at=60.0)
    assert limiter.pace(0.0) == pytest.approx(5.0)
    first, second = limiter.reserve(0.0), limiter.reserve(0.0)
    assert second - first == pytest.approx(0.2)
    # After the reset, the full rate again.
    assert limiter.pace(10.5) == 100.0


def test_a_healthy_budget_does_not_slow_down() -> None:
    limiter = RateLimiter(100.0)
    limiter.observe(0.0, limit_per_minute=6000, remaining=3000, reset_in=30.0, reset_at=60.0)
    assert limiter.pace(0.0) == pytest.approx(100.0 * DEFAULT_HEADROOM)


def test_late_replies_with_more_remaining_do_not_undo_a_slow_down() -> None:
    limiter = RateLimiter(100.0, headroom=1.0)
    limiter.observe(0.0, remaining=50, reset_in=10.0, reset_at=60.0)
    limiter.observe(0.1, remaining=900, reset_in=9.9, reset_at=60.0)
    assert limiter.pace(0.1) == pytest.approx(5.0)
    # A new minute (new reset value) starts afresh.
    limiter.observe(10.0, remaining=6000, reset_in=60.0, reset_at=120.0)
    assert limiter.pace(10.0) == 100.0


def test_no_calls_left_pauses_until_the_reset() -> None:
    limiter = RateLimiter(100.0, headroom=1.0)
    limiter.observe(5.0, remaining=0, reset_in=3.0, reset_at=60.0)
    assert limiter.reserve(5.0) == pytest.approx(8.0)


def test_a_pause_holds_every_caller_back() -> None:
    limiter = RateLimiter(100.0, headroom=1.0)
    limiter.pause(1.0, 2.0)
    assert limiter.reserve(1.5) == 3.0
    assert limiter.reserve(1.5) == pytest.approx(3.01)


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="headroom"):
        RateLimiter(10, headroom=1.5)


def test_the_registry_keeps_one_limiter_per_account_method_and_endpoint() -> None:
    registry = RateLimiterRegistry({"POST user": 300, "DELETE": 40, "default": 20})
    user = registry.get("post", "/user/", account="a")
    assert registry.get("POST", "user", account="a") is user
    assert registry.get("POST", "user", account="b") is not user
    assert user.rate == 300
    assert registry.get("DELETE", "user").rate == 40
    assert registry.get("POST", "event").rate == 20
    assert RateLimiterRegistry().get("GET", "list").rate == 300
    assert machine_limiters() is machine_limiters()


def test_threads_in_real_time_stay_under_the_limit_and_close_to_it() -> None:
    limit = 200.0
    limiter = RateLimiter(limit)
    sends: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + 1.1

    def work() -> None:
        while True:
            limiter.acquire(time.monotonic, time.sleep)
            now = time.monotonic()
            if now >= stop:
                return
            with lock:
                sends.append(now)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max_in_any_window(sends) <= limit
    assert len(sends) >= 0.9 * limit * 1.1


def test_a_burst_429_slows_the_pace_once_per_second_then_it_creeps_back() -> None:
    limiter = RateLimiter(100.0, headroom=0.975)
    limiter.slow_down(10.0)
    limiter.slow_down(10.5)  # the same bunch of 429s
    assert limiter.headroom == pytest.approx(0.975 * 0.98)
    for _ in range(30):
        limiter.slow_down(11.0 + _)
    assert limiter.headroom == pytest.approx(0.8)
    for _ in range(2000):
        limiter.reserve(100.0)
    assert limiter.headroom == pytest.approx(0.975, abs=1e-3)


# -- one schedule for every process of the machine ------------------------------------------------


def _book(folder: str, count: int, out: Any) -> None:
    limiter = machine_limiters(folder, {"default": 50.0}).get("POST", "user", account="acct")
    slots = []
    for _ in range(count):
        now = time.monotonic()
        slot = limiter.reserve(now)
        time.sleep(max(slot - now, 0.0))
        slots.append(slot)
    out.put(slots)


def test_processes_of_one_machine_share_one_schedule(tmp_path: Path) -> None:
    # Four processes each pacing to 50/s on their own would book 200 slots a second.
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=_book, args=(str(tmp_path), 20, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    slots = sorted(t for _ in procs for t in out.get(timeout=60))
    for proc in procs:
        proc.join(10)
    assert len(slots) == 80
    assert len(set(slots)) == 80
    # One schedule at 48.75/s (50/s less the headroom): never 50 slots in a second ...
    assert max_in_any_window(slots) <= 49
    # ... and consecutive slots, whichever process booked them, are a pace apart.
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= 1 / 48.75 - 1e-9


def test_slots_of_two_limiters_on_one_file_never_coincide(tmp_path: Path) -> None:
    one = MachineRateLimiter(10.0, tmp_path / "pace", headroom=1.0)
    two = MachineRateLimiter(10.0, tmp_path / "pace", headroom=1.0)
    now = time.monotonic()
    slots = [one.reserve(now), two.reserve(now), one.reserve(now), two.reserve(now)]
    assert slots == pytest.approx([now, now + 0.1, now + 0.2, now + 0.3])


def test_a_pause_holds_every_limiter_sharing_the_file(tmp_path: Path) -> None:
    one = MachineRateLimiter(10.0, tmp_path / "pace", headroom=1.0)
    two = MachineRateLimiter(10.0, tmp_path / "pace", headroom=1.0)
    now = time.monotonic()
    one.pause(now, 5.0)
    assert two.reserve(now) == pytest.approx(now + 5.0)


def test_a_schedule_left_from_before_a_reboot_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "pace"
    path.write_bytes(struct.pack("<dd", time.monotonic() + 10_000, time.monotonic() + 10_000))
    limiter = MachineRateLimiter(10.0, path, headroom=1.0)
    now = time.monotonic()
    assert limiter.reserve(now) == now


def test_the_machine_registry_keeps_keys_and_urls_off_the_disk(tmp_path: Path) -> None:
    registry = MachineRateLimiterRegistry(tmp_path)
    registry.get("POST", "user", account="https://api.sailthru.com secret-looking-key")
    names = " ".join(p.name for p in tmp_path.iterdir())
    assert names
    assert "secret" not in names
    assert "sailthru" not in names
