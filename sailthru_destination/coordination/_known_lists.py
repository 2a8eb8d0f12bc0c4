"""RedisKnownLists: the lists known to exist, one Redis set per account."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._health import digest

if TYPE_CHECKING:
    from ._server import RedisCoordination

__all__ = ["RedisKnownLists"]


class RedisKnownLists:
    """The lists known to exist in one account: a Redis set, shared by every worker."""

    def __init__(self, coordination: RedisCoordination, *, scope: str = "") -> None:
        self._coord = coordination
        self._key = coordination.key("lists", digest(scope))

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
