"""Pacing of Sailthru calls: one schedule per (method, endpoint), shared by threads and processes.

Sailthru counts calls per account, endpoint and method, per minute, and answers 429 once the
count is spent. Rather than bursting and backing off, each :class:`RateLimiter` hands out send
times spaced ``1 / rate`` apart (a little under the limit, so a one-second window on the server
never sees more than the limit), whatever the number of threads asking: N threads together
reach the limit, not each of them.

A limiter learns from the ``X-Rate-Limit-*`` headers of every reply: the account's real limit
(``Limit`` is per minute), and how much of the minute's budget is left (``Remaining`` until
``Reset``): when the rest of the budget would not last until the reset, it spreads what is left
over the seconds that remain. It never hands out slots faster than ``rate x headroom``, so no
wall-clock minute ever sees more than the minute's budget from one schedule. A caller that
comes up to 20 ms late for the next slot (a busy machine wakes threads late) still gets it,
so a stall does not cost its slots; an idle limiter saves up nothing beyond that.

A 429 means one of two things (:func:`refusal_is_burst`). Either the minute's budget is spent
(it names the minute's own reset, or we know the minute has next to nothing left): then nothing
goes through until the reset. Or calls arrived bunched against a window shorter than the minute
(it resets before the minute ends, or less than a second away while the minute has room): then
the pace slows by 2 % and creeps back, and nothing stops; the refused call is retried. Pausing
to the next second for such a 429 cost up to a second of calls each time (issue 13's note).

Time comes from the caller (``now`` arguments, an injected clock and sleep) so that tests run
in milliseconds. The schedule shared by every process of a machine is in :mod:`.machine_pacer`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ._protocol import DEFAULT_RATE_LIMITS, check_rate_limits, rate_limit_for

if TYPE_CHECKING:  # the machine-wide pacer's names, still importable from here (see below)
    pass

__all__ = [
    "DEFAULT_HEADROOM",
    "RateLimiter",
    "RateLimiterRegistry",
    "refusal_is_burst",
]

# 2.5 % under the limit: thread wake-up jitter and network delays bunch calls a little, and the
# server counts in a window we do not see.
DEFAULT_HEADROOM = 0.975
"""The share of a rate limit the pacer aims for (0.975: 2.5 % under it)."""
_MIN_HEADROOM = 0.8
_RECOVERY = 0.005
# A 429 that resets sooner than this, while the minute has room, is a burst, not a spent minute.
_BURST_RESET = 1.0
# A caller up to this late for the next slot still gets it (a busy machine wakes threads late;
# a missed slot used to be lost). Calls then leave a little bunched, but no second ever holds
# more than (1 + _CATCH_UP) x the pace: 0.9945 of the limit at the default headroom.
_CATCH_UP = 0.02


def refusal_is_burst(
    *,
    reset_in: float,
    reset_at: float | None,
    minute: float | None,
    minute_remaining: float,
    pace: float,
) -> bool:
    """Whether a 429 came from calls bunched against a window shorter than Sailthru's minute
    (slow down, go on) rather than from the minute's budget being spent (wait for the reset).

    ``reset_in``/``reset_at`` are the 429's reset (seconds from now, and the raw header);
    ``minute`` is the reset that the current minute's accepted replies named (None: unknown)
    and ``minute_remaining`` the fewest calls they said were left; ``pace`` the calls per
    second being sent. A reset before the known minute's end is a shorter window's. A reset
    less than a second away is a burst unless the known minute has less than a second of
    calls left. Anything else (the minute's own reset, a second or more away) is a spent budget.
    """
    if reset_at is not None and minute is not None and minute > reset_at - reset_in:
        if reset_at < minute:
            return True
        return reset_in < _BURST_RESET and minute_remaining >= pace
    return reset_in < _BURST_RESET


class RateLimiter:
    """Hands out evenly spaced send times for one (method, endpoint) of one account.

    ``rate`` is Sailthru's limit in calls per second; calls are paced at ``rate * headroom``.
    Thread-safe: a slot is reserved under a lock, the wait happens outside it.
    """

    def __init__(self, rate: float, *, headroom: float = DEFAULT_HEADROOM) -> None:
        if rate <= 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of calls per second, got {rate!r}")
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
        self._lock = threading.Lock()
        self._rate = float(rate)
        self._target_headroom = headroom
        self._headroom = headroom
        self._last_slow_down = -math.inf
        self._next_slot = -math.inf
        self._paused_until = -math.inf
        # Slow-down while the minute's budget runs low: a lower rate until the reset.
        self._budget_rate: float | None = None
        self._budget_until = -math.inf
        self._budget_epoch: float | None = None
        # Whether the budget's minute is a wall-clock reset (comparable with a 429's).
        self._budget_on_wall = False
        self._budget_remaining = math.inf

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate:g}/s, headroom={self._headroom:g})"

    @property
    def headroom(self) -> float:
        """The share of the limit this limiter aims at (lowered by :meth:`slow_down`)."""
        return self._headroom

    @property
    def rate(self) -> float:
        """Sailthru's limit for this endpoint, calls per second (learned from replies)."""
        return self._rate

    def pace(self, now: float) -> float:
        """The calls per second this limiter lets through at time ``now``."""
        with self._lock:
            return self._pace(now)

    def _pace(self, now: float) -> float:
        pace = self._rate * self._headroom
        if self._budget_rate is not None and now < self._budget_until:
            pace = min(pace, self._budget_rate)
        return pace

    def reserve(self, now: float) -> float:
        """Book the next send slot; return the time at which the caller may send."""
        with self._lock:
            slot = max(self._start(now, self._next_slot), self._paused_until)
            self._next_slot = self._after(slot)
            return slot

    def _start(self, now: float, next_slot: float) -> float:
        """The earliest slot for a caller at ``now`` (lock held): the schedule's next slot if it
        is at most ``_CATCH_UP`` behind (a late caller catches up), except while the minute's
        budget is being spread; else ``now`` (an idle limiter saves up nothing)."""
        spreading = self._budget_rate is not None and now < self._budget_until
        if next_slot >= now - (0.0 if spreading else _CATCH_UP):
            return next_slot
        return now

    def _after(self, slot: float) -> float:
        """The slot after ``slot`` (call with the lock held)."""
        following = slot + 1.0 / self._pace(slot)
        if self._headroom < self._target_headroom:
            # Back to the full pace over a few hundred calls after a slow-down.
            self._headroom += (self._target_headroom - self._headroom) * _RECOVERY
        return following

    def acquire(self, clock: Callable[[], float], sleep: Callable[[float], object]) -> float:
        """Wait (with ``sleep``) until this caller may send; return the seconds waited."""
        waited = 0.0
        now = clock()
        while True:
            slot = self.reserve(now)
            booked_at = self._rate
            if slot <= now:
                return waited
            sleep(slot - now)
            waited += slot - now
            now = clock()
            # A reply taught a lower limit while this caller waited: its slot was booked at
            # the old pace (the default 300/s before the first reply), so book again.
            if not self._lowered_since(booked_at, now):
                return waited

    def _lowered_since(self, booked_at: float, now: float) -> bool:
        """Whether the limit learned now is lower than ``booked_at`` (the one a slot was
        booked at)."""
        return self._rate < booked_at

    def slow_down(self, now: float) -> None:
        """Pace 2 % lower (down to 80 % of the limit), then creep back to the headroom.

        For a 429 that came although the minute's budget is not spent: the server saw calls
        bunched closer than the headroom allows (new connections' set-up delays, slow threads),
        so leave more room for a while. The 429s of one bunch (within a second) count once.
        """
        with self._lock:
            self._slow_down(now)

    def _slow_down(self, now: float) -> None:
        if now - self._last_slow_down < 1.0:
            return
        self._last_slow_down = now
        self._headroom = max(self._headroom * 0.98, _MIN_HEADROOM)

    def pause(self, now: float, seconds: float) -> None:
        """Let nothing through for ``seconds`` from ``now`` (after a 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, now + max(seconds, 0.0))

    def observe(
        self,
        now: float,
        *,
        limit_per_minute: float | None = None,
        remaining: float | None = None,
        reset_in: float | None = None,
        reset_at: float | None = None,
        refused: bool = False,
    ) -> bool:
        """Learn from one reply's rate-limit headers; True for a 429 judged a burst.

        ``limit_per_minute`` is ``X-Rate-Limit-Limit``; ``remaining`` is
        ``X-Rate-Limit-Remaining``; ``reset_in`` the seconds until ``X-Rate-Limit-Reset``, whose
        raw value ``reset_at`` names the minute (replies from one minute share it). ``refused``:
        the reply was a 429 (see :func:`refusal_is_burst` for what it does).
        """
        with self._lock:
            if (
                limit_per_minute is not None
                and limit_per_minute > 0
                and math.isfinite(limit_per_minute)
            ):
                learned = limit_per_minute / 60.0
                if learned < self._rate and self._next_slot > now:
                    # Slots booked ahead at the old pace are booked again by their callers
                    # (see acquire); the schedule goes on from now at the learned pace.
                    self._rate = learned
                    self._next_slot = now + 1.0 / self._pace(now)
                self._rate = learned
            if remaining is None or reset_in is None:
                return False
            reset_in = min(max(reset_in, 1e-3), 60.0)
            if refused:
                return self._refused(now, remaining, reset_in, reset_at)
            epoch = reset_at if reset_at is not None else round(now + reset_in)
            if epoch != self._budget_epoch:
                self._budget_epoch = epoch
                self._budget_on_wall = reset_at is not None
                self._budget_remaining = math.inf
                self._budget_rate = None
            # Replies arrive out of order: within one minute, the lowest count is the latest.
            if remaining >= self._budget_remaining:
                return False
            self._budget_remaining = remaining
            if remaining <= 0:
                self._paused_until = max(self._paused_until, now + reset_in)
                return False
            budget_rate = remaining / reset_in
            # Spread what is left unless the full pace, catching up included, fits in it.
            if remaining < self._rate * self._target_headroom * (reset_in + _CATCH_UP):
                self._budget_rate = budget_rate * self._headroom
                self._budget_until = now + reset_in
            else:
                self._budget_rate = None
            return False

    def _refused(
        self, now: float, remaining: float, reset_in: float, reset_at: float | None
    ) -> bool:
        """A 429 (lock held): slow down for a burst, wait for the reset of a spent minute;
        whether it was a burst."""
        minute = self._budget_epoch if self._budget_on_wall else None
        burst = remaining > 0 or refusal_is_burst(
            reset_in=reset_in, reset_at=reset_at, minute=minute,
            minute_remaining=self._budget_remaining, pace=self._pace(now),
        )
        if burst:
            self._slow_down(now)
        else:
            self._paused_until = max(self._paused_until, now + reset_in)
        return burst


class RateLimiterRegistry:
    """The limiters of one or more accounts, one per (account, method, endpoint).

    ``limits`` is a table of calls per second keyed like
    :data:`sailthru_destination.transport._protocol.DEFAULT_RATE_LIMITS`; it gives each limiter its
    starting rate until replies tell the account's real one.
    """

    def __init__(
        self,
        limits: Mapping[str, float] | None = None,
        *,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        # Checked here too: the Redis registry and Celery's settings come this way, not via
        # SailthruApi.
        self._limits: Mapping[str, float] = (
            check_rate_limits(limits) if limits else DEFAULT_RATE_LIMITS
        )
        self._headroom = headroom
        self._lock = threading.Lock()
        self._limiters: dict[tuple[str, str, str], RateLimiter] = {}

    def get(self, method: str, endpoint: str, *, account: str = "") -> RateLimiter:
        """The limiter of ``method`` on ``endpoint`` (for ``account``), created on first use."""
        key = (account, method.upper(), endpoint.strip("/"))
        limiter = self._limiters.get(key)
        if limiter is None:
            with self._lock:
                limiter = self._limiters.get(key)
                if limiter is None:
                    rate = rate_limit_for(self._limits, key[1], key[2])
                    limiter = self._make(key, rate, self._headroom)
                    self._limiters[key] = limiter
        return limiter

    def _make(self, key: tuple[str, str, str], rate: float, headroom: float) -> RateLimiter:
        """A new limiter for ``key`` = (account, method, endpoint)."""
        return RateLimiter(rate, headroom=headroom)


_MOVED = frozenset({"MachineRateLimiter", "MachineRateLimiterRegistry", "machine_limiters"})


def __getattr__(name: str) -> object:
    """The machine-wide pacer's names, from :mod:`.machine_pacer` where they live now.

    They were defined here until this module was split; code importing them from here keeps
    working. Imported on first use: that module builds on this one.
    """
    if name in _MOVED:
        from . import machine_pacer

        return getattr(machine_pacer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
