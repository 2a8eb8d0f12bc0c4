"""Pacing: evenly spaced slots shared by threads, learned from Sailthru's rate-limit headers."""

from __future__ import annotations

import itertools
import math
import multiprocessing
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import max_in_any_window

from sailthru_destination.transport.machine_pacer import (
    MachineRateLimiter,
    MachineRateLimiterRegistry,
    machine_limiters,
)
from sailthru_destination.transport.ratelimit import (
    DEFAULT_HEADROOM,
    RateLimiter,
    RateLimiterRegistry,
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


def test_a_limit_learned_by_one_process_paces_every_process_of_the_machine(
    tmp_path: Path,
) -> None:
    # Issue 26: a limit learned from X-Rate-Limit-Limit stayed in the process that read it, so
    # two processes on one account together sent more than the minute's budget.
    one = MachineRateLimiter(5.0, tmp_path / "pace", headroom=1.0)
    two = MachineRateLimiter(5.0, tmp_path / "pace", headroom=1.0)
    now = time.monotonic()
    one.observe(now, limit_per_minute=120)  # 2/s, where both started at 5/s
    slots = [two.reserve(now), two.reserve(now), two.reserve(now)]
    assert slots == pytest.approx([now, now + 0.5, now + 1.0])
    assert two.rate == pytest.approx(2.0)
    # A process that starts later adopts the learned limit before its own first reply.
    late = MachineRateLimiter(5.0, tmp_path / "pace", headroom=1.0)
    assert late.reserve(now) == pytest.approx(now + 1.5)
    assert late.reserve(now) == pytest.approx(now + 2.0)


def test_a_schedule_in_the_older_two_number_layout_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "pace"
    now = time.monotonic()
    path.write_bytes(struct.pack("<dd", now + 1.0, -math.inf))
    limiter = MachineRateLimiter(10.0, path, headroom=1.0)
    assert limiter.reserve(now) == pytest.approx(now + 1.0)
    assert limiter.rate == 10.0


def _send_time_when_the_limit_is_learned_meanwhile(
    waiter: RateLimiter, learner: RateLimiter, start: float
) -> float:
    """When ``waiter``'s second caller may send, if ``learner`` hears 120/min (2/s) while it
    waits on a slot booked at the starting 300/s (virtual clock)."""
    clock = [start]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if learner.rate > 2.0:
            learner.observe(clock[0] - seconds / 2, limit_per_minute=120)

    waiter.acquire(lambda: clock[0], sleep)
    waiter.acquire(lambda: clock[0], sleep)
    return clock[0] - start


def test_a_caller_waiting_on_a_slot_booked_at_the_old_pace_books_again() -> None:
    # Issue 26: slots booked at the default 300/s before the first reply were all honoured
    # after the real limit was learned, a burst that spent the minute's budget.
    limiter = RateLimiter(300.0, headroom=1.0)
    assert _send_time_when_the_limit_is_learned_meanwhile(limiter, limiter, 0.0) >= 0.5


def test_a_limit_learned_by_another_process_rebooks_waiting_callers(tmp_path: Path) -> None:
    waiter = MachineRateLimiter(300.0, tmp_path / "pace", headroom=1.0)
    learner = MachineRateLimiter(300.0, tmp_path / "pace", headroom=1.0)
    start = time.monotonic()
    assert _send_time_when_the_limit_is_learned_meanwhile(waiter, learner, start) >= 0.5
