"""Run one function over a stream of records on a thread pool, in order, with flat memory.

The pool is built for records whose cost is mostly waiting (a paced HTTP call): what it spends
of its own per record is thread hand-offs, and each hand-off costs a wake-up of a sleeping
thread, which on a loaded machine costs more CPU than signing and sending the call. So a
worker that finishes a record takes the next one from the queue itself (no hand-off through
the consumer, as a ``ThreadPoolExecutor`` fed one record at a time needs), and the consumer
is woken for a few results at a time, not for each one.
"""

from __future__ import annotations

import threading
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Generic, TypeVar

from ._adaptive import AdaptiveLimit

__all__ = ["KeyedLocks", "RunStopping", "run_in_order", "stop_event"]

_READ_AHEAD = 16
# The consumer is woken once this share of the records in flight have results in order, so
# at 25 in flight it wakes about once per six results.
_WAKE_SHARE = 4

# Each worker thread's pool stop: a record's retries observe it (see :func:`stop_event`).
_worker_stop = threading.local()

T = TypeVar("T")
R = TypeVar("R")


class KeyedLocks:
    """A fixed set of locks picked by key, so two changes to one user never run at once."""

    def __init__(self, stripes: int = 256) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def for_key(self, key: object) -> threading.Lock:
        """The lock that guards ``key``."""
        return self._locks[zlib.crc32(repr(key).encode("utf-8")) % len(self._locks)]


class RunStopping(KeyboardInterrupt):
    """A record's call not started because its run is stopping (Ctrl-C, SIGTERM).

    A KeyboardInterrupt, so no sender reports it as the record's failure: the record is
    left not done (its result is never recorded), and the next run does it.
    """


def stop_event() -> threading.Event | None:
    """The event set when the run this pool worker serves stops; None outside a pool.

    The retry loop checks it before each attempt and wakes its back-off sleep on it, so a
    stopped run starts no new call while its calls in flight finish.
    """
    event: threading.Event | None = getattr(_worker_stop, "event", None)
    return event


def run_in_order(
    fn: Callable[[T], R], items: Iterable[T], *, concurrency: int | AdaptiveLimit
) -> Generator[R, None, None]:
    """Yield ``fn(item)`` for each item in input order, at most ``concurrency`` at once.

    ``concurrency`` is a fixed number, or an :class:`~._adaptive.AdaptiveLimit` that sets how
    many run at once from what the records' calls measure. At most ``16 ×`` the (largest)
    concurrency items are read ahead, so memory stays flat however long ``items`` is, while one
    slow item at the head (a delete waiting out its backoff) does not stall the others. Items
    are read from ``items`` in the consumer's thread only. ``fn`` must not raise for a bad
    item: it returns its result (what it raises is raised to the consumer in its turn).
    """
    if isinstance(items, (list, tuple)) and len(items) <= 1:
        # One item (the Segment adapter sends one record at a time): no pool.
        yield from map(fn, items)
        return
    if not isinstance(concurrency, AdaptiveLimit) and concurrency <= 1:
        yield from map(fn, items)
        return
    pool = _Pool(fn, concurrency)
    try:
        yield from pool.run(iter(items))
    finally:
        # Normally every worker is idle here. Otherwise the consumer stopped (an interrupt, a
        # stopped run, closing early): start nothing more (the items read ahead are dropped,
        # never sent) and wait for those already running.
        pool.stop()


class _Outcome(Generic[R]):
    """One record's result, or what ``fn`` raised for it."""

    __slots__ = ("error", "value")

    def __init__(self, value: R | None, error: BaseException | None) -> None:
        self.value = value
        self.error = error


class _Pool(Generic[T, R]):
    """Worker threads over a queue of numbered items, with results handed back in order.

    One lock guards the queue, the results and the counts; workers wait on ``_work`` and the
    consumer on ``_ready``, so a finished record wakes nobody unless someone has to act.
    """

    def __init__(self, fn: Callable[[T], R], concurrency: int | AdaptiveLimit) -> None:
        self._fn = fn
        self._limit = concurrency if isinstance(concurrency, AdaptiveLimit) else None
        self._fixed = concurrency if isinstance(concurrency, int) else 0
        self._maximum = self._limit.maximum if self._limit is not None else self._fixed
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._ready = threading.Condition(self._lock)
        self._todo: deque[tuple[int, T]] = deque()
        self._done: dict[int, _Outcome[R]] = {}
        self._next = 0  # the number of the next result to yield
        self._read = 0  # items read from the source so far
        self._window = _READ_AHEAD * self._maximum
        self._running = 0
        self._idle = 0
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._stopped = threading.Event()  # seen by the workers' retry loops
        self._source_done = False

    def _allowed(self) -> int:
        """Records allowed in flight now."""
        return self._limit.current if self._limit is not None else self._fixed

    # -- the consumer's side ------------------------------------------------------------------

    def run(self, items: Iterator[T]) -> Iterator[R]:
        """Read ``items`` into the queue as room allows and yield the results in order."""
        while True:
            # Top the queue up outside the lock: reading may be slow, or raise.
            with self._lock:
                wanted = self._room()
            fresh: list[tuple[int, T]] = []
            exhausted = False
            for number in range(self._read, self._read + wanted):
                try:
                    fresh.append((number, next(items)))
                except StopIteration:
                    exhausted = True
                    break
            ready: list[_Outcome[R]] = []
            with self._lock:
                self._read += len(fresh)
                self._source_done = self._source_done or exhausted
                if fresh:
                    self._todo.extend(fresh)
                    self._start_workers()
                while not self._consumer_has_work():
                    self._ready.wait()
                while self._next in self._done:
                    ready.append(self._done.pop(self._next))
                    self._next += 1
                finished = self._source_done and self._next == self._read
            for outcome in ready:
                if outcome.error is not None:
                    raise outcome.error
                yield outcome.value  # type: ignore[misc]  # R itself may include None
            if finished:
                return

    def _room(self) -> int:
        """How many more items to read now (call with the lock held): enough to keep twice
        the allowed records queued, within the read-ahead window."""
        if self._source_done:
            return 0
        return max(0, min(2 * self._allowed() + 2 - len(self._todo),
                          self._window - (self._read - self._next)))

    def _consumer_has_work(self) -> bool:
        """Whether the consumer should wake (call with the lock held): a few results to yield
        in order (or one that failed, or the last ones), or the queue to top up before the
        workers run dry."""
        if self._next in self._done:
            if self._done[self._next].error is not None or not (self._todo or self._running):
                return True
            in_order = 1
            batch = max(1, self._allowed() // _WAKE_SHARE)
            while in_order < batch and self._next + in_order in self._done:
                in_order += 1
            if in_order >= batch:
                return True
        if self._source_done:
            return self._next == self._read
        return len(self._todo) < self._allowed() and self._room() > 0

    def _start_workers(self) -> None:
        """Wake idle workers, and start new ones, for the queued records the limit allows
        (call with the lock held)."""
        needed = min(self._allowed() - self._running, len(self._todo))
        woken = min(needed, self._idle)
        if woken > 0:
            self._work.notify(woken)
        for _ in range(min(needed - woken, self._maximum - len(self._threads))):
            thread = threading.Thread(
                target=self._worker, name=f"sailthru_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Drop the queued records, let the running ones finish, and end the workers."""
        self._stopped.set()  # wakes a back-off sleep; no retry starts after it
        with self._lock:
            self._stopping = True
            self._todo.clear()
            self._work.notify_all()
        for thread in self._threads:
            thread.join()

    # -- a worker's side ----------------------------------------------------------------------

    def _worker(self) -> None:
        _worker_stop.event = self._stopped
        with self._lock:
            while True:
                while not self._stopping and not (
                    self._todo and self._running < self._allowed()
                ):
                    self._idle += 1
                    self._work.wait()
                    self._idle -= 1
                if self._stopping:
                    return
                number, item = self._todo.popleft()
                self._running += 1
                self._lock.release()
                try:
                    outcome = self._apply(item)
                finally:
                    self._lock.acquire()
                self._running -= 1
                self._done[number] = outcome
                # A limit that rose lets a parked worker take a queued record too.
                if self._idle and self._todo and self._running + 1 < self._allowed():
                    self._work.notify()
                if self._consumer_has_work():
                    self._ready.notify()

    def _apply(self, item: T) -> _Outcome[R]:
        try:
            if self._limit is None:
                return _Outcome(self._fn(item), None)
            with self._limit.timed():
                return _Outcome(self._fn(item), None)
        except BaseException as exc:  # raised to the consumer in its turn
            return _Outcome(None, exc)
