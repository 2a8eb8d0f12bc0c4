"""Rate limiting as the fake enforces it and as Sailthru reports it in headers.

Enforcement is a sliding one-second window per (method, endpoint): stricter than Sailthru's
per-minute count, so a client that passes here passes there. The headers report the per-minute
equivalents, like the real service: limit = per-second x 60, remaining in the current wall-clock
minute, reset = the next whole minute as Unix time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from .._protocol import DEFAULT_RATE_LIMITS, rate_limit_for

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

    def per_second(self, method: str, endpoint: str) -> float:
        """The per-second limit that applies to ``method`` on ``endpoint``."""
        return rate_limit_for(self._limits, method, endpoint)

    def take(self, method: str, endpoint: str) -> tuple[bool, dict[str, str]]:
        """Count one request if the window allows it; return (allowed, X-Rate-Limit headers)."""
        return self._check(method, endpoint, consume=True)

    def peek(self, method: str, endpoint: str) -> dict[str, str]:
        """The headers for a reply that does not count against the limit (e.g. refused auth)."""
        return self._check(method, endpoint, consume=False)[1]

    def reset(self) -> None:
        """Forget every request counted so far."""
        with self._lock:
            self._windows.clear()
            self._minutes.clear()

    def _check(self, method: str, endpoint: str, consume: bool) -> tuple[bool, dict[str, str]]:
        per_second = self.per_second(method, endpoint)
        key = (method.upper(), endpoint)
        with self._lock:
            now = self._monotonic()
            window = self._windows.setdefault(key, deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            allowed = len(window) < per_second
            minute = int(self._wall() // 60)
            seen_minute, count = self._minutes.get(key, (minute, 0))
            if seen_minute != minute:
                count = 0
            if consume and allowed:
                window.append(now)
                count += 1
            self._minutes[key] = (minute, count)
        per_minute = int(per_second * 60)
        headers = {
            "X-Rate-Limit-Limit": str(per_minute),
            "X-Rate-Limit-Remaining": str(max(0, per_minute - count)),
            "X-Rate-Limit-Reset": str((minute + 1) * 60),
        }
        return allowed, headers
