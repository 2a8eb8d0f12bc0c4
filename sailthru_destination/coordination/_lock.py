"""RedisListLock: the list-creation mutex across every machine, with a renewed lease."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from redis.exceptions import LockNotOwnedError, RedisError

from ..once.locks import LockTimeout
from ._health import CoordinationError, digest

if TYPE_CHECKING:
    from ._server import RedisCoordination

__all__ = ["RedisListLock"]

log = logging.getLogger(__name__)


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
                coord.key("lock", digest(self._scope, name)),
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
