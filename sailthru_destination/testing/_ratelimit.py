"""Rate limiting as the fake enforces it and as Sailthru reports it in headers.

Two ways of counting, chosen by ``window`` (seconds):

* ``window=1.0`` (the default): a **sliding one-second window** per (method, endpoint) holding
  at most the per-second limit. Stricter than Sailthru's per-minute count (a client that passes
  here passes there) and quick: a test that overshoots gets its 429 at once and room again
  within a second.
* ``window=60.0``: **Sailthru's own count**, per wall-clock minute: up to ``per-second x 60``
  calls from ``:00`` to ``:59``, and the count starts again at the next whole minute, which
  ``X-Rate-Limit-Reset`` names. Calls may bunch within the minute as they like; only the
  minute's total is refused. Use it to measure long runs at the ceiling as the real service
  would let them through. Any other length counts the same way in wall-clock windows of that
  many seconds (``per-second x window`` calls each).

Replies that pass report the per-minute figures, like the real service: limit = per-second x
60, remaining in the current wall-clock minute, reset = the next whole minute as Unix time.

A refused reply (429) says what the fake enforces: ``X-Rate-Limit-Remaining: 0`` until
``X-Rate-Limit-Reset``, the Unix second when the window has room again (for the minute window,
the next whole minute), so a client that waits for the reset is let through. A refused call
takes no room in the window and is not counted in the remaining budget (**inferred**: Sailthru
documents the per-minute count and the reset, not whether refused calls count); the fake counts
it in ``fake.calls`` and in :meth:`RateLimiter.refused`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from ..transport._protocol import DEFAULT_RATE_LIMITS, check_rate_limits, rate_limit_for

__all__ = ["DEFAULT_WINDOW", "RateLimiter"]

DEFAULT_WINDOW = 1.0
"""The fake's default counting window, seconds: sliding, one second (quick 429s for tests)."""

_Key = tuple[str, str]


def _check_window_fits(window: float, limits: Mapping[str, float]) -> None:
    """ValueError unless every limit allows at least one call per fixed ``window``: a window
    counting zero calls would answer 429 to every request, forever."""
    # Keys missing from the table fall back to the documented defaults.
    table = dict(limits) if "default" in limits else {**DEFAULT_RATE_LIMITS, **limits}
    for key, per_second in sorted(table.items(), key=lambda item: item[1]):
        if math.floor(per_second * window + 1e-9) < 1:
            raise ValueError(
                f"the rate window of {window:g} s holds no call at the {key!r} limit of "
                f"{per_second:g}/s (limit x window must be at least 1); use a longer window"
            )


class RateLimiter:
    """Counts requests per (method, endpoint) and says whether one more is allowed.

    ``window`` is the counting window in seconds (see the module's docs): 1.0 slides, any
    other length counts in fixed wall-clock windows (60.0: Sailthru's minute).
    """

    def __init__(
        self,
        limits: Mapping[str, float] | None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        *,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        if not (math.isfinite(window) and window > 0):
            raise ValueError(
                f"the rate window must be a positive number of seconds, got {window!r}"
            )
        self.window = float(window)
        self._limits: Mapping[str, float] = (
            check_rate_limits(limits) if limits is not None else DEFAULT_RATE_LIMITS
        )
        if self.window != DEFAULT_WINDOW:
            _check_window_fits(self.window, self._limits)
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._windows: dict[_Key, deque[float]] = {}
        self._minutes: dict[_Key, tuple[int, int]] = {}
        self._refused: dict[_Key, int] = {}
        # Fixed windows: (index of the window, calls counted in it) per key.
        self._fixed: dict[_Key, tuple[int, int]] = {}

    def per_second(self, method: str, endpoint: str) -> float:
        """The per-second limit that applies to ``method`` on ``endpoint``."""
        return rate_limit_for(self._limits, method, endpoint)

    def take(
        self,
        method: str,
        endpoint: str,
        refuse_anyway: Callable[[], bool] | None = None,
    ) -> tuple[bool, dict[str, str]]:
        """Count one request if the window allows it; return (allowed, X-Rate-Limit headers).

        ``refuse_anyway`` (asked only when the window has room) refuses a request within the
        limit, as a burst fault; it is answered like any refusal.
        """
        return self._check(method, endpoint, consume=True, refuse_anyway=refuse_anyway)

    def refused(self, method: str, endpoint: str) -> int:
        """How many requests to ``method`` ``endpoint`` were answered 429."""
        with self._lock:
            return self._refused.get((method.upper(), endpoint), 0)

    def peek(self, method: str, endpoint: str) -> dict[str, str]:
        """The headers for a reply that does not count against the limit (e.g. refused auth)."""
        return self._check(method, endpoint, consume=False)[1]

    def reset(self) -> None:
        """Forget every request counted so far."""
        with self._lock:
            self._windows.clear()
            self._minutes.clear()
            self._refused.clear()
            self._fixed.clear()

    def _check(
        self,
        method: str,
        endpoint: str,
        consume: bool,
        refuse_anyway: Callable[[], bool] | None = None,
    ) -> tuple[bool, dict[str, str]]:
        per_second = self.per_second(method, endpoint)
        per_minute = int(per_second * 60)
        key = (method.upper(), endpoint)
        with self._lock:
            now = self._monotonic()
            wall = self._wall()
            if self.window != DEFAULT_WINDOW:
                allowed, refusal = self._fixed_window(key, per_second, wall, consume,
                                                      refuse_anyway)
                if not allowed:
                    return False, _headers(per_minute, 0, refusal)
                return True, self._count_in_minute(key, per_minute, wall, consume)
            window = self._windows.setdefault(key, deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            allowed = len(window) < per_second
            if consume and allowed and refuse_anyway is not None and refuse_anyway():
                # A burst refusal: the window has room, so it frees by the next second.
                self._refused[key] = self._refused.get(key, 0) + 1
                return False, _headers(per_minute, 0, math.floor(wall) + 1)
            if not allowed:
                if consume:
                    self._refused[key] = self._refused.get(key, 0) + 1
                frees_at = wall + (window[0] + 1.0 - now)
                return False, _headers(per_minute, 0, math.ceil(frees_at))
            if consume:
                window.append(now)
            return True, self._count_in_minute(key, per_minute, wall, consume)

    def _fixed_window(
        self,
        key: _Key,
        per_second: float,
        wall: float,
        consume: bool,
        refuse_anyway: Callable[[], bool] | None,
    ) -> tuple[bool, int]:
        """Count one request in its wall-clock window (lock held): (allowed, the Unix second
        a refusal names as its reset: the window's end, or the next second for a burst)."""
        index = math.floor(wall / self.window)
        ends = math.ceil((index + 1) * self.window)
        seen, count = self._fixed.get(key, (index, 0))
        if seen != index:
            count = 0
        if count >= math.floor(per_second * self.window + 1e-9):
            if consume:
                self._refused[key] = self._refused.get(key, 0) + 1
            return False, ends
        if consume and refuse_anyway is not None and refuse_anyway():
            # A burst refusal (a fault): the window has room; say so for the next second.
            self._refused[key] = self._refused.get(key, 0) + 1
            return False, math.floor(wall) + 1
        self._fixed[key] = (index, count + 1 if consume else count)
        return True, ends

    def _count_in_minute(
        self, key: _Key, per_minute: int, wall: float, consume: bool
    ) -> dict[str, str]:
        """Count an accepted request in its wall-clock minute (lock held): the reply's headers."""
        minute = int(wall // 60)
        seen_minute, count = self._minutes.get(key, (minute, 0))
        if seen_minute != minute:
            count = 0
        if consume:
            count += 1
        self._minutes[key] = (minute, count)
        return _headers(per_minute, max(0, per_minute - count), (minute + 1) * 60)


def _headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": str(reset),
    }
