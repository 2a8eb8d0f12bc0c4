"""Run one function over a stream of records on a thread pool, in order, with flat memory."""

from __future__ import annotations

import threading
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ._adaptive import AdaptiveLimit

__all__ = ["KeyedLocks", "run_in_order"]

_READ_AHEAD = 16

T = TypeVar("T")
R = TypeVar("R")


class KeyedLocks:
    """A fixed set of locks picked by key, so two changes to one user never run at once."""

    def __init__(self, stripes: int = 256) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def for_key(self, key: object) -> threading.Lock:
        """The lock that guards ``key``."""
        return self._locks[zlib.crc32(repr(key).encode("utf-8")) % len(self._locks)]


def run_in_order(
    fn: Callable[[T], R], items: Iterable[T], *, concurrency: int | AdaptiveLimit
) -> Generator[R, None, None]:
    """Yield ``fn(item)`` for each item in input order, at most ``concurrency`` at once.

    ``concurrency`` is a fixed number, or an :class:`~._adaptive.AdaptiveLimit` that sets how
    many run at once from what the records' calls measure. At most ``16 ×`` the (largest)
    concurrency items are read ahead, so memory stays flat however long ``items`` is, while one
    slow item at the head (a delete waiting out its backoff) does not stall the others. ``fn``
    must not raise for a bad item: it returns its result.
    """
    if isinstance(items, (list, tuple)) and len(items) <= 1:
        # One item (the Segment adapter sends one record at a time): no pool.
        yield from map(fn, items)
        return
    if isinstance(concurrency, AdaptiveLimit):
        yield from _run_adaptive(fn, items, concurrency)
        return
    if concurrency <= 1:
        yield from map(fn, items)
        return
    window: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sailthru") as pool:
        try:
            for item in items:
                window.append(pool.submit(fn, item))
                if len(window) >= _READ_AHEAD * concurrency:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        except BaseException:
            _stop(pool)
            raise


def _run_adaptive(fn: Callable[[T], R], items: Iterable[T], limit: AdaptiveLimit) -> Iterator[R]:
    """:func:`run_in_order` with as many items in flight as ``limit`` allows at each moment."""
    room = threading.Condition()
    running = 0

    def measured(item: T) -> R:
        nonlocal running
        try:
            with limit.timed():
                return fn(item)
        finally:
            with room:
                running -= 1
                room.notify()

    window: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=limit.maximum, thread_name_prefix="sailthru") as pool:
        try:
            for item in items:
                with room:
                    while running >= limit.current:
                        room.wait()
                    running += 1
                window.append(pool.submit(measured, item))
                while window and (window[0].done()
                                  or len(window) >= _READ_AHEAD * limit.maximum):
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        except BaseException:
            _stop(pool)
            raise


def _stop(pool: ThreadPoolExecutor) -> None:
    """The consumer stopped (an interrupt, a stopped run, closing early): start nothing more
    (the items read ahead are dropped, never sent) and wait for those already running."""
    pool.shutdown(wait=True, cancel_futures=True)
