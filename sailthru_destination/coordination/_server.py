"""RedisCoordination: one Redis server, and the shared pieces built on it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..transport.ratelimit import DEFAULT_HEADROOM
from ._health import Health
from ._known_lists import RedisKnownLists
from ._lock import RedisListLock
from ._pacing import RedisRateLimiterRegistry
from ._url import is_readable, redact_url, url_secrets

if TYPE_CHECKING:  # imported lazily by sent_keys: it builds on this package
    from ..once.sentkeys_redis import RedisSentKeys

__all__ = ["RedisCoordination"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_UNUSABLE = (
    "the Redis URL {} cannot be used: expected redis://[[user]:password@]host[:port][/db] "
    "(percent-encode '/', '?', '#' and '@' in a password), rediss://... or unix:///path"
)


class RedisCoordination:
    """Cluster-wide list mutex, known-lists cache and pacing for one Redis server.

    ``url`` is a redis-py URL (``redis://host:6379/0``); ``prefix`` starts every key, so
    several installations can share a server. ``lock_timeout`` is how long a worker waits for
    a list lock; ``lease`` how long a lock outlives a worker that stopped renewing it (it is
    renewed every third of the lease while held). ``socket_timeout`` bounds every Redis call
    and ``cooldown`` is how long it fails fast after Redis failed. Raises
    :class:`CoordinationError` at once when Redis does not answer.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "sailthru-destination",
        *,
        lock_timeout: float = 60.0,
        lease: float = 15.0,
        socket_timeout: float = 2.0,
        cooldown: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if lease <= 0 or lock_timeout <= 0:
            raise ValueError("lease and lock_timeout must be positive numbers of seconds")
        self._where = redact_url(url)
        self.prefix = prefix
        self.lock_timeout = lock_timeout
        self.lease = lease
        self.wall_clock = wall_clock
        if not is_readable(url):
            raise ValueError(_UNUSABLE.format(self._where))
        try:
            self.redis = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
            )
        except ValueError:
            # redis-py's message may quote a piece of the URL (a password cut short).
            raise ValueError(_UNUSABLE.format(self._where)) from None
        self._health = Health(self._where, cooldown, time.monotonic, url_secrets(url))
        self._health.run("connect", self.redis.ping)
        log.info("coordinating workers through Redis at %s (prefix %r)", self._where, prefix)

    def __repr__(self) -> str:
        return f"RedisCoordination(url={self._where!r}, prefix={self.prefix!r})"

    @property
    def failed(self) -> bool:
        """Whether Redis failed recently: a batch should stop taking new records."""
        return self._health.failed

    def key(self, *parts: str) -> str:
        """A Redis key under this coordination's prefix."""
        return ":".join((self.prefix, *parts))

    def run(self, what: str, action: Callable[[], _T]) -> _T:
        """Run a Redis ``action``; failures become :class:`CoordinationError`."""
        return self._health.run(what, action)

    def lock(self, scope: str = "") -> RedisListLock:
        """The list-creation mutex; ``scope`` separates accounts (use the API key)."""
        return RedisListLock(self, scope=scope)

    def known_lists(self, scope: str = "") -> RedisKnownLists:
        """The lists known to exist in the account ``scope`` (use the API key)."""
        return RedisKnownLists(self, scope=scope)

    def limiters(
        self,
        limits: Mapping[str, float] | None = None,
        *,
        headroom: float = DEFAULT_HEADROOM,
    ) -> RedisRateLimiterRegistry:
        """Pacing shared by every process using this Redis: pass to ``SailthruApi(limiters=)``."""
        return RedisRateLimiterRegistry(self, limits, headroom=headroom)

    def sent_keys(self, scope: str = "", *, lease: float | None = None) -> RedisSentKeys:
        """The events, purchases and returns sent in account ``scope`` (use the API key)."""
        from ..once.sentkeys_redis import DEFAULT_LEASE, RedisSentKeys

        return RedisSentKeys(self, scope, lease=DEFAULT_LEASE if lease is None else lease)

    def close(self) -> None:
        """Close the connections to Redis."""
        self.redis.close()
