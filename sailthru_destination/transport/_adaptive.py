"""Adaptive concurrency: as many records in flight as the pacer can use, and no more.

A destination's speed is set by Sailthru's rate limit, not by its thread count, but only if
enough records are in flight to fill the pacer's slots while each one waits for its reply.
By Little's law that is the allowed rate times the time a record spends being served: 300/s
at 50 ms needs 15 in flight, at 200 ms 60, while a 40/s endpoint at 50 ms needs only 2.
A fixed default is wrong for most of these, so :class:`AdaptiveLimit` measures each record's
service time (its wall time less the time it waited for a pacing slot) and the slowest pace
among the endpoints it called, and keeps ``rate × service time × headroom`` records in flight,
plus two spare, between ``minimum`` and ``maximum``, re-estimated as latency changes.

It never raises the rate: the pacer alone decides when a call is sent. More in flight only
means that a slot is never missed for want of a thread. After a 5xx or a lost connection it
halves the number in flight (``cap``) and lets it grow back by about one per window of
records (AIMD), so a struggling server gets room. A 429 only trims it by a tenth: the rate is
the pacer's business (it slows itself down and pauses), and halving the records in flight
for a 429 that came from calls bunched on the network cost a tenth of the throughput at the
ceiling in our measurements, for nothing. One cut per window of records (as TCP cuts once
per round trip): the twenty records refused by one bunch of calls are one event, where a
tenth each took 25 in flight down to 2.

The ramp starts wide: until a record has been measured, ``maximum`` may be in flight. The
pacer spaces their calls, so starting wide costs threads, not rate; starting narrow (it used
to be 8) left the pacer's first slots unused while the first calls paid for their new
connections (100 ms each against the bench's fake, a TLS handshake against Sailthru). Those
first records' service times include the set-up, so the estimate starts high and comes down
as the connections are reused: it never starves the pacer on the way.

The API layer reports each attempt through :func:`note_attempt`; the statistics are per
thread, so each record, run on one pool thread, sees only its own calls.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_IN_FLIGHT", "AdaptiveLimit", "RecordStats", "backoff_for", "note_attempt"]

# 300/s at 200 ms needs 60 in flight, 92 with the headroom that absorbs a stall; past that,
# latency is not what holds a run back.
MAX_IN_FLIGHT = 96
# A couple of records always waiting at the pacer, so a slot is never missed when a reply or
# a thread is late (a missed slot is lost: the pacer does not bank unused time).
_SPARE = 2

_local = threading.local()


@dataclass
class RecordStats:
    """What one record's calls cost: time waiting for pacing slots, the slowest pace among
    the endpoints called (calls per second), and the strongest back-off a reply asked for
    (1.0: none; see :func:`backoff_for`)."""

    paced: float = 0.0
    pace: float = math.inf
    backoff: float = 1.0


def backoff_for(status: int | None) -> float:
    """What a reply's HTTP status (None: no reply) does to the records in flight: the factor
    they are multiplied by."""
    if status is None or status >= 500:
        return 0.5
    if status == 429:
        return 0.9
    return 1.0


def note_attempt(
    *, waited: float, pace: Callable[[float], float], at: float, status: int | None
) -> None:
    """Add one call attempt to the statistics of the record this thread is running, if any.

    ``pace`` is the endpoint's limiter's (asked for its pace ``at`` the attempt's start only
    when a record is being measured: most calls of a fixed-concurrency run are not).
    """
    stats: RecordStats | None = getattr(_local, "stats", None)
    if stats is None:
        return
    stats.paced += waited
    stats.pace = min(stats.pace, pace(at))
    stats.backoff = min(stats.backoff, backoff_for(status))


class AdaptiveLimit:
    """How many records may be in flight now: Little's law with headroom, AIMD on trouble.

    Thread-safe. ``current`` starts at ``initial`` (by default ``maximum``: the ramp starts
    wide) and follows the estimate after each record.
    """

    def __init__(
        self,
        *,
        minimum: int = 2,
        maximum: int = MAX_IN_FLIGHT,
        initial: int | None = None,
        headroom: float = 1.5,
        smoothing: float = 0.1,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum!r}, {maximum!r}")
        if headroom < 1 or not 0 < smoothing <= 1:
            raise ValueError("headroom must be >= 1 and smoothing in (0, 1]")
        self.minimum = minimum
        self.maximum = maximum
        self._headroom = headroom
        self._smoothing = smoothing
        self._lock = threading.Lock()
        self._service: float | None = None
        self._pace = math.inf
        self._cap = float(maximum)
        self._since_cut = math.inf  # records finished since the last cut
        self._current = max(minimum, min(maximum if initial is None else initial, maximum))

    def __repr__(self) -> str:
        return f"AdaptiveLimit({self.minimum}..{self.maximum}, now {self._current})"

    @property
    def current(self) -> int:
        """Records allowed in flight now."""
        return self._current

    def start(self) -> RecordStats:
        """Begin measuring the record this thread runs next."""
        stats = RecordStats()
        _local.stats = stats
        return stats

    def finish(self, stats: RecordStats, wall: float) -> None:
        """End this thread's record, which took ``wall`` seconds, and re-estimate."""
        _local.stats = None
        service = max(wall - stats.paced, 0.0)
        with self._lock:
            self._since_cut += 1
            if stats.backoff < 1.0:
                if self._since_cut > self._current:  # one cut per window of records
                    self._cap = max(float(self.minimum), self._current * stats.backoff)
                    self._since_cut = 0
            else:
                self._cap = min(float(self.maximum), self._cap + 1 / max(self._cap, 1.0))
            if math.isfinite(stats.pace):
                self._pace = stats.pace
            if self._service is None:
                self._service = service
            else:
                self._service += self._smoothing * (service - self._service)
            if not math.isfinite(self._pace):
                return  # no call made yet: nothing to estimate from
            wanted = math.ceil(self._pace * self._service * self._headroom) + _SPARE
            self._current = int(max(self.minimum, min(wanted, self._cap, self.maximum)))

    def timed(self) -> _Timed:
        """A context manager measuring one record: ``with limit.timed(): fn(item)``."""
        return _Timed(self)


class _Timed:
    def __init__(self, limit: AdaptiveLimit) -> None:
        self._limit = limit
        self._stats = RecordStats()
        self._started = 0.0

    def __enter__(self) -> None:
        self._stats = self._limit.start()
        self._started = time.monotonic()

    def __exit__(self, *exc_info: object) -> None:
        self._limit.finish(self._stats, time.monotonic() - self._started)
