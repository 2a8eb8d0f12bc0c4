"""Sailthru lists: make sure a list exists, creating each missing one exactly once.

Sailthru creates duplicate lists when several requests that name a new list run
at once (seen with 20 parallel workers on an initial sync of 1,500 users), so a
list is never created implicitly by a user update: the registry checks that it
exists and creates it under the list mutex first. Known lists are cached.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from ..errors import NotFound
from ..transport.api import SailthruApi
from .locks import NamedLock

__all__ = ["KnownLists", "ListRegistry", "membership_changes"]

log = logging.getLogger(__name__)


@runtime_checkable
class KnownLists(Protocol):
    """Names of lists known to exist in one account, shared by every worker that sees it."""

    def contains(self, name: str) -> bool:
        """Whether ``name`` is known to exist."""
        ...

    def add(self, name: str) -> None:
        """Remember that ``name`` exists."""
        ...


class ListRegistry:
    """Knows which lists exist in the account and creates missing ones under a mutex.

    ``shared`` is an optional cache of known lists that other workers see too (such as
    Redis), so each list name is checked once per cluster rather than once per process.
    """

    def __init__(self, api: SailthruApi, lock: NamedLock, shared: KnownLists | None = None) -> None:
        self._api = api
        self._lock = lock
        self._shared = shared
        self._known: set[str] = set()
        self._loaded = False
        self._guard = threading.Lock()
        self._load_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ListRegistry(known={len(self._known)})"

    def _load_all(self) -> None:
        # One GET /list answers for every list that already exists, so an initial sync
        # into existing lists costs one call, not one per list; threads wait for it.
        with self._load_lock:
            if self._loaded:
                return
            reply = self._api.get("list", {})
            names = {str(item["name"]) for item in reply.get("lists") or [] if "name" in item}
            with self._guard:
                self._known.update(names)
            self._loaded = True

    def _is_known(self, name: str) -> bool:
        with self._guard:
            if name in self._known:
                return True
        if self._shared is not None and self._shared.contains(name):
            with self._guard:
                self._known.add(name)
            return True
        return False

    def _remember(self, name: str) -> None:
        with self._guard:
            self._known.add(name)
        if self._shared is not None:
            self._shared.add(name)

    def exists(self, name: str) -> bool:
        """Whether the list exists (from the cache, else asking Sailthru)."""
        self._load_all()
        if self._is_known(name):
            return True
        try:
            self._api.get("list", {"list": name})
        except NotFound:
            return False
        self._remember(name)
        return True

    def ensure(self, name: str) -> None:
        """Make sure the list exists: created at most once across every worker sharing the lock."""
        self._load_all()
        if self._is_known(name):
            return
        with self._lock.hold(name):
            # Another thread or process may have created it while this one waited.
            if self._is_known(name):
                return
            try:
                self._api.get("list", {"list": name})
            except NotFound:
                log.info("creating Sailthru list %r", name)
                self._api.post("list", {"list": name})
            self._remember(name)

    def ensure_all(self, names: Iterable[str]) -> None:
        """:meth:`ensure` for each name."""
        for name in names:
            self.ensure(name)


def membership_changes(
    old: Iterable[str], new: Iterable[str], *, always: Iterable[str] = ()
) -> dict[str, int]:
    """The ``lists`` payload for a move from ``old`` to ``new`` memberships.

    Joined lists map to 1, left lists to 0; lists in both are not mentioned, except
    the ``always`` ones (such as the default list) which are always joined.
    """
    old_set, new_set = set(old), set(new)
    changes: dict[str, int] = dict.fromkeys(sorted(old_set - new_set), 0)
    changes.update(dict.fromkeys(sorted(new_set - old_set), 1))
    changes.update(dict.fromkeys(always, 1))
    return changes


def joined(changes: Mapping[str, int]) -> list[str]:
    """The lists a ``lists`` payload joins."""
    return [name for name, flag in changes.items() if flag]
