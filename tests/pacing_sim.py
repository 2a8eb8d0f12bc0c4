"""A run at the ceiling on a virtual clock: the pacer, the adaptive limit and the fake's own
rate window, driven event by event, so the pacing law is tested without a thread or a timing.

What it models, and why each part is there:

- the library's :class:`~sailthru_destination.transport.ratelimit.RateLimiter` hands out send
  slots and learns from each reply's headers as
  :class:`~sailthru_destination.transport.api.SailthruApi` feeds them
  (``refused`` for a 429); a refused call is retried after the wait the retry policy gives it
  (:func:`~sailthru_destination.transport.retries.rate_limited_wait`);
- the library's :class:`~sailthru_destination.transport._adaptive.AdaptiveLimit` decides how many
  records are in flight, from each record's service time (its wall time less its pacing wait);
- connections: a call takes an idle one or opens a new one, which costs ``connect`` seconds
  (the ramp pays for them);
- stalls: the client freezes for a moment (a busy machine, a garbage collection), so the calls
  whose slots fall in it leave together at its end, bunched;
- the server is the fake's :class:`~sailthru_destination.testing._ratelimit.RateLimiter` with
  its one-second or per-minute window, on the same virtual clock.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from sailthru_destination.errors import RateLimited
from sailthru_destination.testing._ratelimit import RateLimiter as ServerWindow
from sailthru_destination.transport._adaptive import AdaptiveLimit, RecordStats, backoff_for
from sailthru_destination.transport.ratelimit import RateLimiter
from sailthru_destination.transport.retries import rate_limited_wait

WALL0 = 1_800_000_000.0  # Unix time at the start of a run: a whole minute
LIMIT = 300.0


@dataclass
class Outcome:
    """What a simulated run did: accepted calls' arrival times (seconds from the start), the
    number of 429s, and the records in flight at each record start."""

    accepted: list[float] = field(default_factory=list)
    refused: int = 0
    in_flight: list[tuple[float, int]] = field(default_factory=list)

    def ratio(self, start: float, end: float) -> float:
        """Accepted calls per second in [start, end), over the ceiling."""
        done = sum(1 for t in self.accepted if start <= t < end)
        return done / (LIMIT * (end - start))

    def most_in_a_wall_minute(self) -> int:
        """The most accepted calls that fell in one wall-clock minute."""
        minutes: dict[int, int] = {}
        for t in self.accepted:
            minute = math.floor((WALL0 + t) / 60)
            minutes[minute] = minutes.get(minute, 0) + 1
        return max(minutes.values(), default=0)


@dataclass
class _Record:
    started: float
    stats: RecordStats = field(default_factory=RecordStats)
    headers: dict[str, str] = field(default_factory=dict)  # of its last reply
    attempt: int = 0


def run(
    *,
    seconds: float,
    latency: float,
    window: float,
    connect: float = 0.1,
    stalls: tuple[tuple[float, float], ...] = (),
    start_wall: float = WALL0,
) -> Outcome:
    """Send POST /user records at the ceiling for ``seconds`` of virtual time.

    ``stalls`` are (start, length) client freezes; ``window`` the fake's rate window;
    ``start_wall`` the Unix time the run starts at.
    """
    now = 0.0
    pacer = RateLimiter(LIMIT)
    limit = AdaptiveLimit()
    server = ServerWindow({"POST user": LIMIT}, monotonic=lambda: now,
                          wall=lambda: start_wall + now, window=window)
    events: list[tuple[float, int, str, _Record]] = []
    order = 0
    idle_connections = 0
    in_flight = 0
    outcome = Outcome()

    def at(time: float, kind: str, record: _Record) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (time, order, kind, record))

    def leave_at(slot: float) -> float:
        for begin, length in stalls:
            if begin <= slot < begin + length:
                return begin + length
        return slot

    def start_records() -> None:
        nonlocal in_flight
        while in_flight < limit.current and now < seconds:
            in_flight += 1
            outcome.in_flight.append((now, in_flight))
            record = _Record(now)
            at(now, "attempt", record)

    start_records()
    while events:
        now, _, kind, record = heapq.heappop(events)
        if kind == "attempt":
            record.attempt += 1
            slot = pacer.reserve(now)
            record.stats.paced += slot - now
            record.stats.pace = min(record.stats.pace, pacer.pace(slot))
            at(leave_at(slot), "send", record)
        elif kind == "send":
            if idle_connections:
                idle_connections -= 1
                at(now, "arrive", record)
            else:
                at(now + connect, "arrive", record)
        elif kind == "arrive":
            allowed, record.headers = server.take("POST", "user")
            if allowed:
                outcome.accepted.append(now)
            else:
                outcome.refused += 1
            at(now + latency, "ok" if allowed else "refused", record)
        else:
            idle_connections += 1
            refused = kind == "refused"
            reset_at = float(record.headers["X-Rate-Limit-Reset"])
            remaining = float(record.headers["X-Rate-Limit-Remaining"])
            reset_in = reset_at - (start_wall + now)
            burst = pacer.observe(now, limit_per_minute=LIMIT * 60, remaining=remaining,
                                  reset_in=reset_in, reset_at=reset_at, refused=refused)
            if refused:
                record.stats.backoff = min(record.stats.backoff, backoff_for(429))
                error = RateLimited("too many requests", reset_at=reset_at, remaining=remaining)
                error.burst = burst
                wait = rate_limited_wait(error, record.attempt, start_wall + now)
                at(now + (0.5 if wait is None else wait), "attempt", record)
                continue
            limit.finish(record.stats, now - record.started)
            in_flight -= 1
            start_records()
    return outcome

