"""Orders in doubt shared through Redis, beside the :class:`~.sentkeys_redis.RedisSentKeys`
of a cluster, so any worker (a later task) sees when an order went into doubt."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .doubt import Doubt

if TYPE_CHECKING:
    from ..coordination import RedisCoordination

__all__ = ["RedisDoubtLog"]


class RedisDoubtLog:
    """A :class:`~.doubt.DoubtLog` in a Redis hash per kind, under ``prefix``."""

    def __init__(self, coordination: RedisCoordination, prefix: str) -> None:
        self._coord = coordination
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"RedisDoubtLog({self._coord!r})"

    def _hash(self, kind: str) -> str:
        return f"{self._prefix}:doubt:{kind}"

    def doubt(self, kind: str, key: str) -> Doubt | None:
        """What is known of ``key`` in doubt, or None."""
        value = self._coord.run(f"read the doubt of the {kind} {key!r}",
                                lambda: self._coord.redis.hget(self._hash(kind), key))
        if value is None:
            return None
        data = json.loads(value)
        return Doubt(float(data["since"]), int(data["misses"]), str(data["owner"]), data["job"])

    def note_doubt(self, kind: str, key: str, doubt: Doubt) -> None:
        """Remember what is known of ``key`` in doubt."""
        value = json.dumps({"since": doubt.since, "misses": doubt.misses, "owner": doubt.owner,
                            "job": doubt.job})
        self._coord.run(f"record the doubt of the {kind} {key!r}",
                        lambda: self._coord.redis.hset(self._hash(kind), key, value))

    def clear_doubt(self, kind: str, key: str) -> None:
        """Forget ``key``: it is settled."""
        self._coord.run(f"clear the doubt of the {kind} {key!r}",
                        lambda: self._coord.redis.hdel(self._hash(kind), key))
