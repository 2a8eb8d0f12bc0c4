"""Adaptive concurrency: Little's law sets how many records are in flight, AIMD on trouble."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers import app_for, make_fake

from sailthru_destination import DestinationOptions, ProfileChange, SailthruDestination
from sailthru_destination.transport._adaptive import AdaptiveLimit, RecordStats, backoff_for
from sailthru_destination.transport._concurrency import run_in_order


def _settle(limit: AdaptiveLimit, *, pace: float, service: float, records: int = 200) -> int:
    for _ in range(records):
        stats = limit.start()
        stats.pace = pace
        limit.finish(stats, service)
    return limit.current


@pytest.mark.parametrize(
    ("pace", "latency", "expected"),
    [
        (300, 0.05, 25),   # 300/s x 50 ms x 1.5, plus 2 spare
        (300, 0.10, 47),
        (300, 0.20, 92),   # 300/s x 200 ms x 1.5, plus 2: under the maximum of 96
        (300, 0.30, 96),   # 137 wanted, capped at the maximum
        (40, 0.05, 5),
        (40, 0.20, 14),
        (300, 0.001, 3),
    ],
)
def test_in_flight_follows_rate_times_latency(pace: float, latency: float, expected: int) -> None:
    assert _settle(AdaptiveLimit(), pace=pace, service=latency) == expected


def test_time_waiting_for_a_pacing_slot_is_not_service_time() -> None:
    limit = AdaptiveLimit()
    for _ in range(200):
        stats = limit.start()
        stats.pace, stats.paced = 300, 0.95  # waited 950 ms of a 1 s record for its slot
        limit.finish(stats, 1.0)
    assert limit.current == 25


def test_follows_latency_as_it_changes() -> None:
    limit = AdaptiveLimit()
    assert _settle(limit, pace=300, service=0.05) == 25
    assert _settle(limit, pace=300, service=0.12) == 56
    assert _settle(limit, pace=300, service=0.05) == 25


def test_a_5xx_halves_the_records_in_flight_then_they_grow_back() -> None:
    limit = AdaptiveLimit()
    assert _settle(limit, pace=300, service=0.2) == 92
    stats = limit.start()
    stats.pace, stats.backoff = 300, backoff_for(503)
    limit.finish(stats, 0.2)
    assert limit.current == 46
    after_one_window = _settle(limit, pace=300, service=0.2, records=50)
    assert 46 < after_one_window < 50  # about one more per window of records: additive
    assert _settle(limit, pace=300, service=0.2, records=5000) == 92


def test_a_lost_connection_halves_and_a_429_only_trims() -> None:
    for status, expected in ((None, 46), (429, 82)):
        limit = AdaptiveLimit()
        assert _settle(limit, pace=300, service=0.2) == 92
        stats = limit.start()
        stats.pace, stats.backoff = 300, backoff_for(status)
        limit.finish(stats, 0.2)
        assert limit.current == expected
    assert backoff_for(200) == 1.0


def test_never_under_the_minimum() -> None:
    assert _settle(AdaptiveLimit(minimum=4), pace=40, service=0.001) == 4


def test_records_with_no_call_leave_the_estimate_alone() -> None:
    limit = AdaptiveLimit(initial=8)
    for _ in range(50):
        limit.finish(RecordStats(), 0.5)
    assert limit.current == 8


def test_run_in_order_keeps_input_order_and_never_exceeds_the_limit() -> None:
    limit = AdaptiveLimit(minimum=2, maximum=16, initial=3)
    running = 0
    most = 0
    guard = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        time.sleep(0.002 if n % 7 else 0.01)
        with guard:
            running -= 1
        return n * 2

    # No call is made, so the limit stays at its initial 3 throughout.
    assert list(run_in_order(work, range(200), concurrency=limit)) == [n * 2 for n in range(200)]
    assert 2 <= most <= 3


def test_default_destination_adapts_past_the_old_fixed_eight(tmp_path: Path) -> None:
    # 100 ms replies at 300/s: Little's law wants about 47 records in flight, not 8.
    with make_fake(latency=0.1) as fake, SailthruDestination(
        app_for(fake), DestinationOptions(lock_dir=str(tmp_path))
    ) as dest:
        changes = [
            ProfileChange(key=f"u{n}@example.com", new_properties={"n": n}, record_id=str(n))
            for n in range(150)
        ]
        batch = dest.export_profiles(changes)
        limit = dest.concurrency_for("ProfileChange")
    assert batch.counts["created"] == 150
    assert isinstance(limit, AdaptiveLimit)
    assert 30 <= limit.current <= 96


def test_pinned_concurrency_is_kept(tmp_path: Path) -> None:
    with make_fake() as fake, SailthruDestination(
        app_for(fake), DestinationOptions(lock_dir=str(tmp_path), concurrency=5)
    ) as dest:
        assert dest.concurrency_for("ProfileChange") == 5


def test_an_unknown_record_kind_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    # Issue 26: a typo got a fresh limit of 96 that no batch ever used.
    with make_fake() as fake, SailthruDestination(
        app_for(fake), DestinationOptions(lock_dir=str(tmp_path))
    ) as dest:
        with pytest.raises(ValueError, match="ProfileChang'") as refused:
            dest.concurrency_for("ProfileChang")
        kinds = ("ProfileChange", "Event", "Purchase", "Return", "CartChange", "segment")
        assert all(kind in str(refused.value) for kind in kinds)
        assert isinstance(dest.concurrency_for("segment"), AdaptiveLimit)
