"""Coordination of workers on several machines through Redis: list mutex, known lists, pacing.

Sailthru counts calls per account, and creates duplicate lists when creations race, whatever
machine they come from. Thread and file locks (:mod:`.locks`) and in-process pacing
(:mod:`.ratelimit`) only see one machine; :class:`RedisCoordination` makes the same three things
cluster-wide:

* :meth:`RedisCoordination.lock`: a :class:`~.locks.NamedLock` on redis-py's ``Lock``, with a
  lease (the key expires unless its holder renews it, so a crashed worker cannot hold it
  forever) and a timeout for waiting.
* :meth:`RedisCoordination.known_lists`: the lists known to exist, a Redis set per account, so
  each list name is checked once per cluster.
* :meth:`RedisCoordination.limiters`: a drop-in for :class:`~.ratelimit.RateLimiterRegistry`
  whose send slots come from pyrate-limiter's GCRA kept in Redis (one atomic script call per
  slot), and whose header-driven slow-downs (learned limit, pause after a 429, budget running
  low) are written to Redis so every process on every host obeys them.

Redis unreachable at start: the constructor raises :class:`CoordinationError`. Mid-run, every
operation that needs Redis raises :class:`CoordinationError` (a retryable
:class:`~.errors.SailthruError`, so batches report the record as retryable) before any call
to Sailthru is made; after a failure the coordination fails fast for ``cooldown`` seconds
instead of waiting on Redis again for every record. Nothing is ever done unlocked or unpaced.

Shared times are wall-clock (``time.time``): monotonic clocks mean nothing across machines, so
hosts must keep their clocks in sync (NTP); a skew eats into the pacing headroom.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ._protocol import DEFAULT_RATE_LIMITS, rate_limit_for
from .errors import SailthruError
from .lists import KnownLists
from .locks import LockTimeout
from .ratelimit import DEFAULT_HEADROOM, RateLimiter, RateLimiterRegistry

if TYPE_CHECKING:  # imported lazily by sent_keys: it builds on this module
    from .sentkeys_redis import RedisSentKeys

try:
    import redis
    from pyrate_limiter import GCRA, Rate, RedisStateStore
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import LockNotOwnedError, RedisError
    from redis.retry import Retry
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sailthru_destination.coordination needs the 'redis' extra: "
        "pip install 'sailthru-destination[redis]'"
    ) from _missing

__all__ = [
    "CoordinationError",
    "KnownLists",
    "RedisCoordination",
    "RedisKnownLists",
    "RedisListLock",
    "RedisRateLimiter",
    "RedisRateLimiterRegistry",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MIN_HEADROOM = 0.8
_RECOVERY_SECONDS = 10.0
# Slow-downs are read from Redis at most this often per limiter (writes are immediate locally).
_CONTROL_REFRESH = 0.1


class CoordinationError(SailthruError):
    """Redis, which coordinates the workers, cannot be used: nothing was sent to Sailthru.

    Retryable: the record can be sent again once Redis answers. Raised by the lock, the
    known-lists cache and the limiters; batches report it per record like any retryable
    :class:`~.errors.SailthruError`.
    """

    default_retryable = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)

    def __str__(self) -> str:
        return f"coordination failed: {self.message.rstrip('. ')}. It may succeed if retried."


def _digest(*parts: str) -> str:
    # Keys carry a digest, never an API key or a list name as such.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _redacted(url: str) -> str:
    """The Redis URL without its password, for errors and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class _Health:
    """Fails fast for ``cooldown`` seconds after Redis failed, then lets one attempt through."""

    def __init__(self, where: str, cooldown: float, clock: Callable[[], float]) -> None:
        self._where = where
        self._cooldown = cooldown
        self._clock = clock
        self._failed_until = -math.inf
        self._last_error = ""

    @property
    def failed(self) -> bool:
        """Whether Redis failed less than ``cooldown`` seconds ago."""
        return self._clock() < self._failed_until

    def run(self, what: str, action: Callable[[], _T]) -> _T:
        """``action()``; a Redis failure becomes a :class:`CoordinationError` naming ``what``."""
        if self.failed:
            raise CoordinationError(
                f"Redis at {self._where} failed recently ({self._last_error}); not trying to "
                f"{what} until it has had {self._cooldown:g}s to recover"
            )
        try:
            return action()
        except RedisError as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._failed_until = self._clock() + self._cooldown
            log.error("Redis at %s failed while trying to %s: %s", self._where, what, exc)
            raise CoordinationError(
                f"Redis at {self._where} failed while trying to {what} ({self._last_error})"
            ) from None


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
        self._where = _redacted(url)
        self.prefix = prefix
        self.lock_timeout = lock_timeout
        self.lease = lease
        self.wall_clock = wall_clock
        self.redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
        )
        self._health = _Health(self._where, cooldown, time.monotonic)
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
        from .sentkeys_redis import DEFAULT_LEASE, RedisSentKeys

        return RedisSentKeys(self, scope, lease=DEFAULT_LEASE if lease is None else lease)

    def close(self) -> None:
        """Close the connections to Redis."""
        self.redis.close()


class RedisListLock:
    """A per-name mutex across every thread, process and machine using one Redis.

    Threads of one process queue on a thread lock first, so each process has at most one
    waiter polling Redis per name.
    """

    def __init__(self, coordination: RedisCoordination, *, scope: str = "") -> None:
        self._coord = coordination
        self._scope = scope
        self._guard = threading.Lock()
        self._thread_locks: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"RedisListLock({self._coord!r})"

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock for ``name``; :class:`~.locks.LockTimeout` if it stays taken.

        Raises :class:`CoordinationError` when Redis fails while taking, renewing or
        releasing it: the caller must not count on having been alone.
        """
        coord = self._coord
        timeout = coord.lock_timeout
        with self._guard:
            thread_lock = self._thread_locks.setdefault(name, threading.Lock())
        if not thread_lock.acquire(timeout=timeout):
            raise LockTimeout(f"timed out after {timeout}s waiting for the lock on {name!r}")
        try:
            lock = coord.redis.lock(
                coord.key("lock", _digest(self._scope, name)),
                timeout=coord.lease,
                sleep=0.005,
                blocking_timeout=timeout,
                thread_local=False,
            )
            if not coord.run(f"take the lock on list {name!r}", lock.acquire):
                raise LockTimeout(f"timed out after {timeout}s waiting for the lock on {name!r}")
            keeper = _LeaseKeeper(lock, coord.lease)
            try:
                yield
            finally:
                keeper.stop()
                self._release(lock, name, keeper)
        finally:
            thread_lock.release()

    def _release(self, lock: Any, name: str, keeper: _LeaseKeeper) -> None:
        def release() -> None:
            try:
                lock.release()
            except LockNotOwnedError:
                raise CoordinationError(
                    f"the lease on the lock for list {name!r} ran out before it was released "
                    "(renewing it failed); another worker may have taken it meanwhile"
                ) from None

        self._coord.run(f"release the lock on list {name!r}", release)
        if keeper.lost:
            raise CoordinationError(f"renewing the lease on the lock for list {name!r} failed")


class _LeaseKeeper:
    """Renews a held lock's lease every third of it, until stopped."""

    def __init__(self, lock: Any, lease: float) -> None:
        self._lock = lock
        self._every = lease / 3.0
        self._stopped = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name="lock-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            try:
                self._lock.reacquire()
            except RedisError as exc:  # LockNotOwnedError is a RedisError too
                log.error("could not renew a list lock's lease: %s", exc)
                self.lost = True
                return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


class RedisKnownLists:
    """The lists known to exist in one account: a Redis set, shared by every worker."""

    def __init__(self, coordination: RedisCoordination, *, scope: str = "") -> None:
        self._coord = coordination
        self._key = coordination.key("lists", _digest(scope))

    def __repr__(self) -> str:
        return f"RedisKnownLists({self._coord!r})"

    def contains(self, name: str) -> bool:
        """Whether some worker has seen ``name`` exist."""
        found = self._coord.run(
            "read the known lists", lambda: self._coord.redis.sismember(self._key, name)
        )
        return bool(found)

    def add(self, name: str) -> None:
        """Remember, for every worker, that ``name`` exists."""
        self._coord.run("remember a known list", lambda: self._coord.redis.sadd(self._key, name))

    def forget(self) -> None:
        """Drop every remembered name (e.g. after lists were deleted in Sailthru)."""
        self._coord.run("forget the known lists", lambda: self._coord.redis.delete(self._key))


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
    ) -> None:
        """Learn from one reply's ``X-Rate-Limit-*`` headers, for the whole cluster.

        Sailthru counts per account, so each reply's ``Remaining`` is the cluster's: when the
        rest of the minute's budget would not last until the reset at the current pace, the
        lower rate is shared; with nothing left, everyone pauses until the reset. Redis is
        written only when something changes.
        """
        control = self._shared_control()
        if limit_per_minute is not None and limit_per_minute > 0:
            rate = limit_per_minute / 60.0
            self._rate = rate
            if not math.isclose(rate, control.rate):
                self._write({"rate": rate})
                control.rate = rate
        if remaining is None or reset_in is None:
            return
        wall = self._wall()
        reset_in = min(max(reset_in, 1e-3), 60.0)
        minute = reset_at if reset_at is not None else round(wall + reset_in)
        with self._control_lock:
            if minute != self._minute:
                self._minute, self._minute_remaining = minute, math.inf
            if remaining >= self._minute_remaining:
                return  # replies arrive out of order: the lowest count is the latest
            self._minute_remaining = remaining
        if remaining <= 0:
            self._write({"paused_until": wall + reset_in}, raise_only=True)
            return
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


class RedisRateLimiterRegistry(RateLimiterRegistry):
    """The limiters of one or more accounts, shared by every process using one Redis.

    Pass it to ``SailthruApi(limiters=...)``. ``limits`` gives the starting rates (keys as in
    :data:`~sailthru_destination._protocol.DEFAULT_RATE_LIMITS`) until replies tell the
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
                    redis_key = self._coord.key("pace", _digest(*key))
                    limiter = RedisRateLimiter(
                        self._coord,
                        redis_key,
                        rate,
                        headroom=self._target,
                        wall_clock=self._coord.wall_clock,
                    )
                    self._redis_limiters[key] = limiter
        return limiter
