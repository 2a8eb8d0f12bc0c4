"""The record pool under every exporter: order, limits, failures and stopping early."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sailthru_destination.transport._adaptive import AdaptiveLimit
from sailthru_destination.transport._concurrency import run_in_order


class _Gauge:
    """Counts the records running at once, and the most ever seen."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started: list[int] = []
        self._guard = threading.Lock()

    def enter(self, n: int) -> None:
        with self._guard:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(n)

    def leave(self) -> None:
        with self._guard:
            self.running -= 1


@settings(max_examples=25, deadline=None)
@given(
    waits=st.lists(st.integers(0, 3), max_size=60),
    concurrency=st.integers(2, 6),
    adaptive=st.booleans(),
)
def test_results_come_in_input_order_within_the_limit(
    waits: list[int], concurrency: int, adaptive: bool
) -> None:
    gauge = _Gauge()
    # A record waits for as many later ones to start as it says (or the last to start).
    started = [threading.Event() for _ in waits]

    def work(n: int) -> int:
        gauge.enter(n)
        started[n].set()
        for later in range(n + 1, min(n + 1 + waits[n], len(waits))):
            if not started[later].wait(0.05):
                break
        gauge.leave()
        return n * 3

    limit: int | AdaptiveLimit = (
        AdaptiveLimit(minimum=1, maximum=8, initial=concurrency) if adaptive else concurrency
    )
    assert list(run_in_order(work, range(len(waits)), concurrency=limit)) == [
        n * 3 for n in range(len(waits))
    ]
    assert gauge.most <= concurrency
    assert sorted(gauge.started) == list(range(len(waits)))


def test_items_are_read_in_the_consumers_thread_only() -> None:
    readers: set[str] = set()

    def items() -> Iterator[int]:
        for n in range(100):
            readers.add(threading.current_thread().name)
            yield n

    assert list(run_in_order(lambda n: n, items(), concurrency=4)) == list(range(100))
    assert readers == {threading.current_thread().name}


@pytest.mark.parametrize("concurrency", [3, AdaptiveLimit(minimum=1, maximum=3, initial=3)])
def test_what_a_record_raises_reaches_the_consumer_in_its_turn(
    concurrency: int | AdaptiveLimit,
) -> None:
    def work(n: int) -> int:
        if n == 7:
            raise LookupError("record 7")
        return n

    results = run_in_order(work, range(30), concurrency=concurrency)
    assert [next(results) for _ in range(7)] == list(range(7))
    with pytest.raises(LookupError, match="record 7"):
        next(results)


def test_closing_early_starts_nothing_more_and_waits_for_the_running() -> None:
    gauge = _Gauge()
    finished: list[int] = []
    release = threading.Event()

    def work(n: int) -> int:
        gauge.enter(n)
        if n >= 2:
            release.wait(5)
        finished.append(n)
        gauge.leave()
        return n

    results = run_in_order(work, range(1000), concurrency=3)
    assert [next(results), next(results)] == [0, 1]
    threading.Timer(0.05, release.set).start()
    results.close()
    started_at_close = list(gauge.started)
    # Every record started has finished by the time close returns; none started after.
    assert gauge.running == 0
    assert sorted(finished) == sorted(started_at_close)
    assert len(started_at_close) < 20
    assert not [t for t in threading.enumerate() if t.name.startswith("sailthru_")]


def test_a_source_that_fails_stops_the_pool() -> None:
    def items() -> Iterator[int]:
        yield from range(10)
        raise OSError("the source broke")

    results = run_in_order(lambda n: n, items(), concurrency=4)
    with pytest.raises(OSError, match="the source broke"):
        list(results)
    assert not [t for t in threading.enumerate() if t.name.startswith("sailthru_")]


def test_memory_stays_flat_for_a_slow_consumer() -> None:
    read = 0

    def items() -> Iterator[int]:
        nonlocal read
        for n in range(2000):
            read += 1
            yield n

    most_ahead = 0
    for done, _ in enumerate(run_in_order(lambda n: n, items(), concurrency=4), start=1):
        most_ahead = max(most_ahead, read - done)
    assert most_ahead <= 16 * 4
