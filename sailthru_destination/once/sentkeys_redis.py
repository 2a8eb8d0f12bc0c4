"""Sent keys kept in Redis, so an event, purchase or return goes out once across every host.

:class:`RedisSentKeys` is the :class:`~.sentkeys.SentKeys` store of a cluster: the claim that
comes before each send is one atomic ``HSETNX`` in a Redis hash per account and kind, so two
workers on two machines (or one task delivered twice) cannot both send the same key. It comes
from :meth:`RedisCoordination.sent_keys <.coordination.RedisCoordination.sent_keys>`, and a
:class:`~.destination.SailthruDestination` whose options carry a ``coordination`` uses it by
default.

A ``pending`` claim carries a lease (wall-clock seconds) and its owner. When the owner dies
mid-send (a worker killed, a host lost), the claim outlives it; after the lease, the key may be
**reclaimed** (:meth:`RedisSentKeys.reclaim`) by a caller that can find out whether the send
was applied. Purchases can: Sailthru reads a purchase back by its order id (GET /purchase with
``purchase_key: extid``), so a purchase left pending or unknown is looked up and then either
recorded as sent or sent once (exactly-once). Events and returns cannot be read back, so they
stay at most once: a key left pending is reported for reconciliation, never sent again.

Redis lost mid-run: every operation raises :class:`~.coordination.CoordinationError`
(retryable) before anything is sent, as the list lock and the pacing do. Keys last as long as
Redis keeps them: run Redis with persistence (``appendonly yes``) so a Redis restart does not
forget what was sent.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

from .doubt_redis import RedisDoubtLog
from .sentkeys import KeyState

if TYPE_CHECKING:  # coordination imports this module lazily; no import cycle at run time
    from ..coordination import RedisCoordination

__all__ = ["DEFAULT_LEASE", "RedisSentKeys", "scope_digest"]

DEFAULT_LEASE = 300.0
"""Seconds a pending claim is kept for its owner: longer than a send with all its retries
(pacing waits, up to 90 s of retrying, a 30 s read timeout)."""


def scope_digest(scope: str) -> str:
    """What stands for an account (an API key) in Redis keys: never the key itself."""
    return hashlib.sha256(scope.encode()).hexdigest()[:32]


# An unknown outcome (ARGV[4] 'unknown'), or a pending claim whose lease ran out (ARGV[4]
# 'pending'), becomes the caller's pending claim.
_RECLAIM = """
local value = redis.call('hget', KEYS[1], ARGV[1])
if not value then return 0 end
if ARGV[4] == 'unknown' and value == 'unknown' then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
local until_at = string.match(value, '^pending ([^ ]+) ')
if ARGV[4] == 'pending' and until_at and tonumber(until_at) < tonumber(ARGV[2]) then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

# Forget a key unless another owner reclaimed it meanwhile (its send must not lose its claim).
_RELEASE = """
local value = redis.call('hget', KEYS[1], ARGV[1])
if not value then return 0 end
local owner = string.match(value, '^pending [^ ]+ (.+)$')
if owner and owner ~= ARGV[2] then return 0 end
return redis.call('hdel', KEYS[1], ARGV[1])
"""


class RedisSentKeys:
    """A :class:`~.sentkeys.SentKeys` store shared through Redis by every worker of a cluster.

    ``scope`` separates accounts (the destination uses the API key; only its digest is in
    Redis). ``lease`` is how long a pending claim belongs to its owner before it may be
    reclaimed; it must be longer than any one send takes. Thread-safe. Also implements
    :class:`~.sentkeys.Leased`.
    """

    def __init__(
        self, coordination: RedisCoordination, scope: str = "", *, lease: float = DEFAULT_LEASE
    ) -> None:
        if not lease > 0:
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        self._coord = coordination
        self._prefix = coordination.key("sent", scope_digest(scope))
        self._lease = lease
        self._owner = uuid.uuid4().hex
        self._reclaim = coordination.redis.register_script(_RECLAIM)
        self._release = coordination.redis.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisSentKeys({self._coord!r}, lease={self._lease:g}s)"

    def _hash(self, kind: str) -> str:
        return f"{self._prefix}:{kind}"

    def doubt_log(self) -> RedisDoubtLog:
        """The orders in doubt of this store, in the same Redis (see :mod:`.doubt`)."""
        return RedisDoubtLog(self._coord, self._prefix)

    def _pending(self) -> str:
        return f"pending {self._coord.wall_clock() + self._lease!r} {self._owner}"

    def claim(self, kind: str, key: str) -> bool:
        """Record ``key`` as pending (leased to this store) and return True, or return False."""
        claimed = self._coord.run(
            f"claim the {kind} {key!r}",
            lambda: self._coord.redis.hsetnx(self._hash(kind), key, self._pending()),
        )
        return bool(claimed)

    def state(self, kind: str, key: str) -> KeyState | None:
        """The recorded state of ``key``, or None when it is not recorded."""
        value = self._coord.run(
            f"read the state of the {kind} {key!r}",
            lambda: self._coord.redis.hget(self._hash(kind), key),
        )
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return KeyState(text.split(" ", 1)[0])

    def in_flight(self, kind: str, key: str) -> bool:
        """Whether ``key`` is pending and its claim's lease has not run out."""
        value = self._coord.run(
            f"read the state of the {kind} {key!r}",
            lambda: self._coord.redis.hget(self._hash(kind), key),
        )
        if value is None:
            return False
        parts = (value.decode() if isinstance(value, bytes) else str(value)).split(" ")
        return parts[0] == KeyState.PENDING.value and float(parts[1]) >= self._coord.wall_clock()

    def settle(self, kind: str, key: str, state: KeyState) -> None:
        """Record the outcome of a claimed send: ``SENT`` or ``UNKNOWN``."""
        if state is KeyState.PENDING:
            raise ValueError("settle records an outcome: SENT or UNKNOWN")
        self._coord.run(
            f"record the {kind} {key!r} as {state.value}",
            lambda: self._coord.redis.hset(self._hash(kind), key, state.value),
        )

    def release(self, kind: str, key: str) -> None:
        """Forget ``key`` (its send surely did not apply), unless another owner holds it now."""
        self._coord.run(
            f"release the {kind} {key!r}",
            lambda: self._release(keys=[self._hash(kind)], args=[key, self._owner]),
        )

    def reclaim(self, kind: str, key: str, state: KeyState) -> bool:
        """Take over ``key`` if it is in ``state``: ``UNKNOWN``, or ``PENDING`` under a claim
        whose lease ran out (a live claim is never taken from its owner).

        True means the key is now pending for this store: the caller must find out whether
        the earlier send was applied, then settle or send it.
        """
        if state is KeyState.SENT:
            return False
        taken = self._coord.run(
            f"reclaim the {kind} {key!r}",
            lambda: self._reclaim(
                keys=[self._hash(kind)],
                args=[key, repr(self._coord.wall_clock()), self._pending(), state.value],
            ),
        )
        return bool(taken)
