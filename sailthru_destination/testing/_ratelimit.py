"""Rate limiting as the fake enforces it and as Sailthru reports it in headers.

Enforcement is a sliding one-second window per (method, endpoint): stricter than Sailthru's
per-minute count, so a client that passes here passes there. Replies that pass report the
per-minute equivalents, like the real service: limit = per-second x 60, remaining in the current
wall-clock minute, reset = the next whole minute as Unix time.

A refused reply (429) says what the fake enforces: ``X-Rate-Limit-Remaining: 0`` until
``X-Rate-Limit-Reset``, the Unix second when the window has room again, so a client that waits
for the reset is let through. A refused call takes no room in the window and is not counted in
the remaining budget (inferred: Sailthru does not document whether refused calls count); the
fake counts it in ``fake.calls`` and in :meth:`RateLimiter.refused`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from ..transport._protocol import DEFAULT_RATE_LIMITS, rate_limit_for

__all__ = ["RateLimiter"]

_Key = tuple[str, str]


class RateLimiter:
    """Counts requests per (method, endpoint) and says whether one more is allowed."""

    def __init__(
        self,
        limits: Mapping[str, float] | None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._limits: Mapping[str, float] = (
            dict(limits) if limits is not None else (DEFAULT_RATE_LIMITS)
        )
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._windows: dict[_Key, deque[float]] = {}
        self._minutes: dict[_Key, tuple[int, int]] = {}
        self._refused: dict[_Key, int] = {}

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
            minute = int(wall // 60)
            seen_minute, count = self._minutes.get(key, (minute, 0))
            if seen_minute != minute:
                count = 0
            if consume:
                window.append(now)
                count += 1
            self._minutes[key] = (minute, count)
        return allowed, _headers(per_minute, max(0, per_minute - count), (minute + 1) * 60)


def _headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": str(reset),
    }
