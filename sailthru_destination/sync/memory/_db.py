"""The SQLite file under the sync state: WAL mode, shared by threads, never waited on.

Writes are short transactions that never span a call to Sailthru, so another process on
the same file is never locked out: single statements commit at once, and the temporary
tables of a run (private to this connection) are written in batches.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

from ..._private import private_file

__all__ = ["StateDb", "StateError"]

BATCH = 500
_BUSY_TIMEOUT = 30.0  # seconds another process may hold the file's write lock


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


class StateError(Exception):
    """The state file cannot be used (unreadable, or made for another kind of model)."""


class StateDb:
    """One connection to a state file; subclasses add their tables in :meth:`_prepare`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            private_file(self.path)  # it holds customer data: the owner's only
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None, timeout=_BUSY_TIMEOUT)
            # Two processes opening one new file at once: switching it to WAL (and creating
            # the tables) can answer "database is locked" without waiting for the other.
            for attempt in Retrying(
                retry=retry_if_exception(_locked), stop=stop_after_delay(_BUSY_TIMEOUT),
                wait=wait_random(0.01, 0.1), reraise=True,
            ):
                with attempt:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    # WAL + NORMAL survives a killed process (not a power cut), commits fast.
                    self._db.execute("PRAGMA synchronous=NORMAL")
                    self._prepare()
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open the state file {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._temp_batch = 0

    def _prepare(self) -> None:
        """Create the tables (each class in the hierarchy adds its own)."""

    def _flush(self) -> None:
        """Commit what is batched (subclasses add their buffers).

        Asks the connection whether a transaction is open rather than trusting a counter: a
        Ctrl-C or SIGTERM arrives between any two bytecodes, also between a BEGIN and the
        bookkeeping after it, and the state is still closed (and flushed) after it.
        """
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._temp_batch = 0

    def _write_now(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """One statement in its own transaction, committed before returning."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._temp_batch = 0
        return self._db.execute(sql, params)

    def _write_temp(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """A write to this connection's temporary tables, batched (they lock nothing shared)."""
        if not self._db.in_transaction:
            self._db.execute("BEGIN")
        self._temp_batch += 1
        try:
            return self._db.execute(sql, params)
        finally:
            if self._temp_batch >= BATCH:
                self._db.execute("COMMIT")
                self._temp_batch = 0

    def _paged(self, sql: str, batch: int) -> Iterator[tuple[Any, ...]]:
        """The rows of ``sql`` read ``batch`` at a time, so rows may change between batches.

        ``sql`` selects ``pk`` first, takes ``pk > ?`` and ``LIMIT ?`` and orders by ``pk``.
        """
        last = ""
        while True:
            with self._lock:
                self._flush()
                rows = self._db.execute(sql, (last, batch)).fetchall()
            if not rows:
                return
            yield from rows
            last = str(rows[-1][0])
