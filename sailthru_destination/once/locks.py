"""The list-creation mutex.

Sailthru creates several lists with the same name when requests that name a new
list race (seen with 20 parallel workers on an initial sync of 1,500 users), so
list creation is serialised: by a thread lock inside a process and a file lock
(``filelock``) across processes on one machine. A lock that spans machines (such
as Redis) plugs in through the :class:`NamedLock` protocol.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from filelock import FileLock, Timeout

__all__ = ["LocalLock", "LockTimeout", "NamedLock", "default_lock_dir"]


class LockTimeout(RuntimeError):
    """The list-creation lock could not be taken in time; nothing was created."""


@runtime_checkable
class NamedLock(Protocol):
    """A mutex per name, held across every worker that may create the same Sailthru list."""

    def hold(self, name: str) -> AbstractContextManager[None]:
        """A context manager that holds the lock for ``name`` while it is open."""
        ...


def default_lock_dir() -> Path:
    """Where lock files live when the host does not choose: a per-user temp folder."""
    user = os.environ.get("USER") or os.environ.get("USERNAME") or str(os.getuid())
    return Path(tempfile.gettempdir()) / f"sailthru-destination-locks-{user}"


class LocalLock:
    """A per-name mutex across the threads of this process and the processes of this machine.

    ``scope`` separates accounts (use the API key) so two accounts never wait on each other.
    """

    def __init__(
        self,
        lock_dir: str | os.PathLike[str] | None = None,
        *,
        scope: str = "",
        timeout: float = 60.0,
    ) -> None:
        self._dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._scope = scope
        self._timeout = timeout
        self._guard = threading.Lock()
        self._thread_locks: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"LocalLock(lock_dir={str(self._dir)!r})"

    def _file_for(self, name: str) -> Path:
        # Hashing keeps any list name (spaces, slashes, unicode) a safe file name and
        # keeps the API key out of the file system.
        digest = hashlib.sha256(f"{self._scope}\0{name}".encode()).hexdigest()[:32]
        return self._dir / f"list-{digest}.lock"

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock for ``name``; raises :class:`LockTimeout` after ``timeout`` seconds."""
        with self._guard:
            thread_lock = self._thread_locks.setdefault(name, threading.Lock())
        if not thread_lock.acquire(timeout=self._timeout):
            raise LockTimeout(f"timed out after {self._timeout}s waiting for the lock on {name!r}")
        try:
            file_lock = FileLock(str(self._file_for(name)), timeout=self._timeout)
            try:
                file_lock.acquire()
            except Timeout as exc:
                raise LockTimeout(
                    f"timed out after {self._timeout}s waiting for the file lock on {name!r}"
                ) from exc
            try:
                yield
            finally:
                file_lock.release()
        finally:
            thread_lock.release()
