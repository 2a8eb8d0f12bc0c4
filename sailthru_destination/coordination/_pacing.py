"""Pacing shared through Redis: GCRA send slots and header-driven slow-downs for the cluster."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyrate_limiter import GCRA, Rate, RedisStateStore

from ..transport._protocol import DEFAULT_RATE_LIMITS, rate_limit_for
from ..transport.ratelimit import (
    DEFAULT_HEADROOM,
    RateLimiter,
    RateLimiterRegistry,
    refusal_is_burst,
)
from ._health import digest

if TYPE_CHECKING:
    from ._server import RedisCoordination

__all__ = ["RedisRateLimiter", "RedisRateLimiterRegistry"]

_MIN_HEADROOM = 0.8
_RECOVERY_SECONDS = 10.0
# Slow-downs are read from Redis at most this often per limiter (writes are immediate locally).
_CONTROL_REFRESH = 0.1


@dataclass
class _Control:
    """The shared slow-downs of one limiter, as stored in Redis (wall-clock times)."""

    rate: float
    paused_until: float = 0.0
    budget_rate: float = 0.0
    budget_until: float = 0.0
    headroom: float = 1.0
    slowed_at: float = 0.0

    def pace(self, target_headroom: float, now: float) -> float:
        headroom = target_headroom
        if self.headroom < target_headroom:
            # Back to the target headroom linearly over a few seconds after a slow-down.
            recovered = min(max((now - self.slowed_at) / _RECOVERY_SECONDS, 0.0), 1.0)
            headroom = self.headroom + (target_headroom - self.headroom) * recovered
        pace = self.rate * headroom
        if self.budget_rate > 0 and now < self.budget_until:
            pace = min(pace, self.budget_rate)
        return pace

    @classmethod
    def parse(cls, rate: float, stored: Mapping[bytes | str, bytes | str]) -> _Control:
        values = {_text(k): float(v) for k, v in stored.items()}
        return cls(
            rate=values.get("rate", rate),
            paused_until=values.get("paused_until", 0.0),
            budget_rate=values.get("budget_rate", 0.0),
            budget_until=values.get("budget_until", 0.0),
            headroom=values.get("headroom", 1.0),
            slowed_at=values.get("slowed_at", 0.0),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# Raise a stored number only (pauses and deadlines never move backwards when replies race).
_MAX_SCRIPT = """
local current = tonumber(redis.call('hget', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > current then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('expire', KEYS[1], 86400)
return 0
"""


class RedisRateLimiter(RateLimiter):
    """Pacing of one (method, endpoint) of one account, shared through Redis by every process.

    A drop-in for :class:`~.ratelimit.RateLimiter` as :class:`~.api.SailthruApi` uses it
    (``acquire``, ``observe``, ``pause``, ``slow_down``). Send slots come from pyrate-limiter's
    GCRA (burst 1: evenly spaced) in Redis; the learned limit, pauses and budget slow-downs are
    stored in a Redis hash beside it, read back at most every 0.1 s. Times given as ``now`` are
    the caller's monotonic clock and are ignored for shared state, which uses the wall clock.
    """

    def __init__(
        self,
        coordination: RedisCoordination,
        key: str,
        rate: float,
        *,
        headroom: float = DEFAULT_HEADROOM,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(rate, headroom=headroom)
        self._coord = coordination
        self._store = RedisStateStore(coordination.redis, f"{key}:gcra")
        self._control_key = f"{key}:control"
        self._algorithm = GCRA()
        self._wall = wall_clock
        self._gate = threading.Lock()
        self._control_lock = threading.Lock()
        self._control = _Control(rate=float(rate))
        self._control_read = -math.inf
        self._raise = coordination.redis.register_script(_MAX_SCRIPT)
        self._minute: float | None = None
        self._minute_remaining = math.inf
        self._last_slow_down = -math.inf

    def __repr__(self) -> str:
        return f"RedisRateLimiter(rate={self.rate:g}/s, key={self._control_key!r})"

    @property
    def rate(self) -> float:
        """Sailthru's limit for this endpoint, calls per second (as learned by any worker)."""
        return self._shared_control().rate

    @property
    def headroom(self) -> float:
        """The share of the limit aimed at now (lower for a while after a 429)."""
        control = self._shared_control()
        return control.pace(self._target_headroom, self._wall()) / control.rate

    def pace(self, now: float) -> float:
        """The calls per second the whole cluster lets through now (``now`` is ignored)."""
        return self._shared_control().pace(self._target_headroom, self._wall())

    def reserve(self, now: float) -> float:
        """Book the next send slot (waiting with ``time.sleep``); return the caller's ``now``."""
        self.acquire(lambda: now, time.sleep)
        return now

    def acquire(self, clock: Callable[[], float], sleep: Callable[[float], object]) -> float:
        """Wait until the cluster's schedule has a slot for this caller; the seconds waited.

        Raises :class:`CoordinationError` if Redis fails: the call must then not be made.
        """
        waited = 0.0
        with self._gate:  # one thread per process asks Redis; the others queue here
            while True:
                wall = self._wall()
                control = self._shared_control()
                if control.paused_until > wall:
                    delay = control.paused_until - wall
                else:
                    delay = self._try_slot(control.pace(self._target_headroom, wall), wall)
                    if delay <= 0:
                        return waited
                sleep(delay)
                waited += delay

    def _try_slot(self, pace: float, wall: float) -> float:
        per_minute = max(1, math.floor(pace * 60.0))
        rates = [Rate(per_minute, 60_000, burst=1)]
        now_ms = int(wall * 1000)
        decision = self._coord.run(
            "book a send slot",
            lambda: self._store.check(self._algorithm, rates, now_ms, 1),  # type: ignore[no-untyped-call]
        )
        if decision.allowed:
            return 0.0
        retry_ms = decision.retry_after_ms
        return max(retry_ms if retry_ms is not None else 1, 1) / 1000.0

    def _shared_control(self) -> _Control:
        now = time.monotonic()
        with self._control_lock:
            if now - self._control_read < _CONTROL_REFRESH:
                return self._control
        stored = self._coord.run(
            "read the shared pacing", lambda: self._coord.redis.hgetall(self._control_key)
        )
        control = _Control.parse(self._rate, stored)
        with self._control_lock:
            self._control = control
            self._control_read = now
        return control

    def _write(self, values: Mapping[str, float], *, raise_only: bool = False) -> None:
        def write() -> None:
            if raise_only:
                for field, value in values.items():
                    self._raise(keys=[self._control_key], args=[field, repr(value)])
                return
            pipe = self._coord.redis.pipeline(transaction=False)
            pipe.hset(self._control_key, mapping={k: repr(v) for k, v in values.items()})
            pipe.expire(self._control_key, 86400)
            pipe.execute()

        self._coord.run("share a pacing change", write)
        with self._control_lock:
            self._control_read = -math.inf  # read the merged state on the next call

    def slow_down(self, now: float) -> None:
        """Pace the whole cluster 2 % lower (down to 80 %) for a while after a burst 429."""
        wall = self._wall()
        with self._control_lock:
            if wall - self._last_slow_down < 1.0:
                return
            self._last_slow_down = wall
        control = self._shared_control()
        headroom = max(control.pace(self._target_headroom, wall) / control.rate, _MIN_HEADROOM)
        self._write({"headroom": max(headroom * 0.98, _MIN_HEADROOM), "slowed_at": wall})

    def pause(self, now: float, seconds: float) -> None:
        """Let nothing through, on any host, for ``seconds`` (after a 429 with no budget left)."""
        self._write({"paused_until": self._wall() + max(seconds, 0.0)}, raise_only=True)

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
        """Learn from one reply's ``X-Rate-Limit-*`` headers, for the whole cluster; True for a
        429 judged a burst.

        Sailthru counts per account, so each reply's ``Remaining`` is the cluster's: when the
        rest of the minute's budget would not last until the reset at the current pace, the
        lower rate is shared; with nothing left, everyone pauses until the reset. A 429
        (``refused``) slows everyone down when it is a burst (:func:`~.ratelimit.refusal_is_burst`)
        and pauses everyone until the reset when the minute is spent. Redis is written only
        when something changes.
        """
        control = self._shared_control()
        if limit_per_minute is not None and limit_per_minute > 0:
            rate = limit_per_minute / 60.0
            self._rate = rate
            if not math.isclose(rate, control.rate):
                self._write({"rate": rate})
                control.rate = rate
        if remaining is None or reset_in is None:
            return False
        wall = self._wall()
        reset_in = min(max(reset_in, 1e-3), 60.0)
        if refused:
            with self._control_lock:
                known, left = self._minute, self._minute_remaining
            burst = remaining > 0 or refusal_is_burst(
                reset_in=reset_in, reset_at=reset_at, minute=known, minute_remaining=left,
                pace=control.pace(self._target_headroom, wall),
            )
            if burst:
                self.slow_down(now)
            else:
                self._write({"paused_until": wall + reset_in}, raise_only=True)
            return burst
        minute = reset_at if reset_at is not None else round(wall + reset_in)
        with self._control_lock:
            if minute != self._minute:
                self._minute, self._minute_remaining = minute, math.inf
            if remaining >= self._minute_remaining:
                return False  # replies arrive out of order: the lowest count is the latest
            self._minute_remaining = remaining
        if remaining <= 0:
            self._write({"paused_until": wall + reset_in}, raise_only=True)
            return False
        budget_rate = remaining / reset_in
        full = control.rate * self._target_headroom
        if budget_rate < full:
            self._write(
                {
                    "budget_rate": budget_rate * self._target_headroom,
                    "budget_until": wall + reset_in,
                }
            )
        elif control.budget_rate > 0 and wall < control.budget_until:
            self._write({"budget_rate": 0.0, "budget_until": 0.0})
        return False


class RedisRateLimiterRegistry(RateLimiterRegistry):
    """The limiters of one or more accounts, shared by every process using one Redis.

    Pass it to ``SailthruApi(limiters=...)``. ``limits`` gives the starting rates (keys as in
    :data:`~sailthru_destination.transport._protocol.DEFAULT_RATE_LIMITS`) until replies tell the
    account's real ones.
    """

    def __init__(
        self,
        coordination: RedisCoordination,
        limits: Mapping[str, float] | None = None,
        *,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        super().__init__(limits, headroom=headroom)
        self._coord = coordination
        self._table: Mapping[str, float] = dict(limits) if limits else DEFAULT_RATE_LIMITS
        self._redis_limiters: dict[tuple[str, str, str], RedisRateLimiter] = {}
        self._guard = threading.Lock()
        self._target = headroom

    def __repr__(self) -> str:
        return f"RedisRateLimiterRegistry({self._coord!r})"

    def get(self, method: str, endpoint: str, *, account: str = "") -> RedisRateLimiter:
        """The shared limiter of ``method`` on ``endpoint`` (for ``account``)."""
        key = (account, method.upper(), endpoint.strip("/"))
        limiter = self._redis_limiters.get(key)
        if limiter is None:
            with self._guard:
                limiter = self._redis_limiters.get(key)
                if limiter is None:
                    rate = rate_limit_for(self._table, key[1], key[2])
                    redis_key = self._coord.key("pace", digest(*key))
                    limiter = RedisRateLimiter(
                        self._coord,
                        redis_key,
                        rate,
                        headroom=self._target,
                        wall_clock=self._coord.wall_clock,
                    )
                    self._redis_limiters[key] = limiter
        return limiter
