"""What the last runs applied, in an embedded SQLite file (WAL mode).

Per primary key: a hash of the row as last applied, its match value (and that value as
Sailthru compares it: the user *key*), properties and groups (the "old values" the next
change is exported with). The users rows left behind when their key changed to another
user's (they get the delete behaviour, as a gone row's user does). The users the sync
deleted, with their last values (so an audit can tell a user that came back), and the rows
marked deleted whose delete was applied (their tombstones: the same flagged row is then
unchanged, not deleted again, see :meth:`SyncState.bury`). Also the keys
of events and orders already sent, so a re-run never posts one twice, and the write-ahead
intents of user writes in flight (:mod:`.intents`): each is committed before its call leaves
and settled in the transaction that records the reply, so a run killed at any point resumes
knowing what Sailthru holds (the next run settles what is left open, :mod:`.settle`).

No write transaction is ever open while the caller talks to Sailthru: applied records are
buffered in memory and written in one short transaction (at most every 0.2 s or 500
records), and sent keys commit at once. A second process on the same file (another sync
is kept out by :class:`~sailthru_destination.sync.memory.runlock.RunLock`) is never locked out.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ._db import BATCH, StateDb, StateError
from .doubtstore import DoubtTable
from .intents import Intent, IntentTable
from .readahead import ReadAhead
from .records import AppliedRecord, from_row, to_row
from .retry_memory import RetryRowsTable
from .seen import Contender, RunRows
from .sentstore import SentKeysTable

__all__ = ["AppliedRecord", "Contender", "StateError", "SyncState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    pk TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    match TEXT,
    properties TEXT NOT NULL,
    groups TEXT NOT NULL,
    optout TEXT
);
CREATE TABLE IF NOT EXISTS left_users (
    key TEXT PRIMARY KEY,
    pk TEXT NOT NULL,
    hash TEXT NOT NULL,
    match TEXT,
    properties TEXT NOT NULL,
    groups TEXT NOT NULL,
    optout TEXT
);
CREATE TABLE IF NOT EXISTS removed_users (
    key TEXT PRIMARY KEY,
    pk TEXT NOT NULL,
    hash TEXT NOT NULL,
    match TEXT,
    properties TEXT NOT NULL,
    groups TEXT NOT NULL,
    optout TEXT
);
CREATE TABLE IF NOT EXISTS tombstones (pk TEXT PRIMARY KEY, digest TEXT NOT NULL);
"""
_FLUSH_AFTER = 0.2


class SyncState(RunRows, SentKeysTable, DoubtTable, RetryRowsTable, IntentTable, StateDb):
    """The state of one model's sync, in a SQLite file; usable from any thread.

    Also a :class:`~sailthru_destination.once.sentkeys.SentKeys` store: the events and orders
    claimed, sent or of unknown outcome, so a re-run never posts one twice; a
    :class:`~sailthru_destination.once.doubt.DoubtLog` of the orders in doubt; the rows to try
    again on the incremental paths (:mod:`.retry_memory`); and the write-ahead
    :mod:`intents <.intents>` of the user writes in flight.
    """

    def __init__(self, path: str | Path) -> None:
        # Applied records confirmed but not yet written: pk -> record, or None to forget.
        self._pending: dict[str, AppliedRecord | None] = {}
        # Users left behind, the same way, by user key.
        self._pending_left: dict[str, AppliedRecord | None] = {}
        self._pending_since = 0.0
        super().__init__(path)
        self._ahead = ReadAhead(self._db)

    def _prepare(self) -> None:
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
        if "key" not in columns:  # a state file from before user keys were kept
            try:
                self._db.execute("ALTER TABLE records ADD COLUMN key TEXT")
            except sqlite3.OperationalError as exc:
                # Another process opening the same new file added it first.
                if "duplicate column" not in str(exc):
                    raise
        self._db.execute("CREATE INDEX IF NOT EXISTS records_key ON records (key)")
        super()._prepare()

    def __repr__(self) -> str:
        return f"SyncState({str(self.path)!r})"

    def __enter__(self) -> SyncState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Write what is buffered and close the file."""
        with self._lock:
            self._flush()
            self._db.close()

    def flush(self) -> None:
        """Write what is buffered so far."""
        with self._lock:
            self._flush()

    # Confirmed records are written in one short transaction per batch (losing the last
    # batch to a crash only re-sends idempotent user updates); the transaction never spans
    # a call to Sailthru, so nothing else waits on it. Sent keys commit at once.

    def _flush(self) -> None:
        self._commit()

    def _commit_with(self, sql: str, params: tuple[Any, ...]) -> int:
        """Commit ``sql`` in the transaction that writes what is buffered; its row id."""
        return self._commit((sql, params))

    def _commit(self, then: tuple[str, tuple[Any, ...]] | None = None) -> int:
        """Write what is buffered (and the statement ``then``) in one transaction."""
        super()._flush()
        if not self._pending and not self._pending_left and not self._settled and not then:
            return 0
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR REPLACE INTO records (pk, hash, match, properties, groups, optout, "
                "key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [to_row(r) for r in self._pending.values() if r is not None])
            self._db.executemany("DELETE FROM records WHERE pk = ?",
                                 [(pk,) for pk, r in self._pending.items() if r is None])
            self._db.executemany(
                "INSERT OR REPLACE INTO left_users (pk, hash, match, properties, groups, "
                "optout, key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [to_row(r) for r in self._pending_left.values() if r is not None])
            self._db.executemany("DELETE FROM left_users WHERE key = ?",
                                 [(k,) for k, r in self._pending_left.items() if r is None])
            self._write_settled()  # an intent is settled with the values it applied
            row_id = int(self._db.execute(*then).lastrowid or 0) if then else 0
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        if self._pending:
            # A window read while these waited holds their old hashes: the buffer answered
            # for them until now.
            self._ahead.clear()
        self._pending.clear()
        self._pending_left.clear()
        self._settled_written()
        return row_id

    def _buffer(self, pending: dict[str, AppliedRecord | None], key: str,
                record: AppliedRecord | None, settles: Intent | None = None) -> None:
        if not self._pending and not self._pending_left and not self._settled:
            self._pending_since = time.monotonic()
        pending[key] = record
        if settles is not None:
            self._settled.append((settles.target, settles.ident, settles.id))
        self._buffered()

    def _buffered(self) -> None:
        if (len(self._pending) + len(self._pending_left) + len(self._settled) >= BATCH
                or time.monotonic() - self._pending_since >= _FLUSH_AFTER):
            self._flush()

    # -- meta ---------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A stored setting (such as the mapping fingerprint), or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        with self._lock:
            self._write_now("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- applied records ------------------------------------------------------------------------

    def get(self, pk: str) -> AppliedRecord | None:
        """The row last applied under ``pk``, or None for a new row."""
        with self._lock:
            if pk in self._pending:
                return self._pending[pk]
            row = self._db.execute(
                "SELECT pk, hash, match, properties, groups, optout, key FROM records "
                "WHERE pk = ?", (pk,)
            ).fetchone()
        return None if row is None else from_row(row)

    def get_hash(self, pk: str) -> str | None:
        """Only the hash of the row last applied under ``pk`` (the cheap unchanged check).

        Models are mostly in key order: the hashes of the next keys are read ahead in one
        query (:class:`~.readahead.ReadAhead`), not one query a row.
        """
        with self._lock:
            if pk in self._pending:
                pending = self._pending[pk]
                return None if pending is None else pending.hash
            return self._ahead.get(pk)

    def put(self, record: AppliedRecord, *, settles: Intent | None = None) -> None:
        """Remember ``record`` as applied (written within 0.2 s, and by :meth:`flush`); the
        intent it ``settles`` is closed in the same transaction."""
        with self._lock:
            self._buffer(self._pending, record.pk, record, settles)

    def set_hash(self, pk: str, digest: str) -> None:
        """Replace only the stored hash of ``pk`` (the row was unchanged but read differently)."""
        record = self.get(pk)
        if record is not None:
            self.put(dataclasses.replace(record, hash=digest))

    def forget(self, pk: str, *, settles: Intent | None = None) -> None:
        """Drop ``pk`` (its user was deleted, cleared or left alone after the row went away);
        the intent it ``settles`` is closed in the same transaction."""
        with self._lock:
            self._buffer(self._pending, pk, None, settles)

    def leave(self, record: AppliedRecord) -> None:
        """Remember the user ``record`` was as left behind: row ``record.pk`` moved off it.

        Written in the same transaction as the row's new record, so a crash loses neither.
        """
        if record.key is None:
            raise ValueError("a left user needs its user key")
        with self._lock:
            self._buffer(self._pending_left, record.key, record)

    def left(self) -> list[AppliedRecord]:
        """The users left behind and not yet dealt with (``pk``: the row that left each)."""
        return self._users_of("left_users")

    def _users_of(self, table: str) -> list[AppliedRecord]:
        """Every record of a table keyed by user (``left_users``, ``removed_users``)."""
        with self._lock:
            self._flush()
            rows = self._db.execute(
                "SELECT pk, hash, match, properties, groups, optout, key FROM "  # noqa: S608
                f"{table} ORDER BY key").fetchall()
        return [from_row(row) for row in rows]

    def drop_left(self, key: str, *, settles: Intent | None = None) -> None:
        """Forget the left user ``key`` (deleted, cleared, or a row maps to it again); the
        intent it ``settles`` is closed in the same transaction."""
        with self._lock:
            self._buffer(self._pending_left, key, None, settles)

    def records(self, batch: int = 500) -> Iterator[AppliedRecord]:
        """Every applied record, read in batches (an audit's whole view of the state)."""
        for row in self._paged(
            "SELECT pk, hash, match, properties, groups, optout, key FROM records "
            "WHERE pk > ? ORDER BY pk LIMIT ?", batch,
        ):
            yield from_row(row)

    def remember_removed(self, record: AppliedRecord) -> None:
        """Remember that the sync deleted ``record``'s user (an audit checks it stays gone)."""
        if record.key is None:
            return
        with self._lock:
            self._flush()
            self._write_now(
                "INSERT OR REPLACE INTO removed_users (pk, hash, match, properties, groups, "
                "optout, key) VALUES (?, ?, ?, ?, ?, ?, ?)", to_row(record))

    def bury(self, pk: str) -> None:
        """Remember that row ``pk``, marked deleted this run, had its delete applied.

        Keeps the row's digest as read (:meth:`mark_deleted`): the next run that reads the
        same flagged row while the state holds no record of it counts it unchanged, with no
        call, instead of deleting its user again (who may since have come back through
        another source: only ``audit --repair`` deletes such a user). No-op for a row not
        marked deleted this run.
        """
        with self._lock:
            self._flush()
            self._write_now(
                "INSERT OR REPLACE INTO tombstones (pk, digest) "
                "SELECT pk, digest FROM temp.deleted WHERE pk = ? AND digest != ''", (pk,))

    def buried(self, pk: str) -> str | None:
        """The digest of the flagged row ``pk`` whose delete was applied, else None."""
        with self._lock:
            row = self._db.execute("SELECT digest FROM tombstones WHERE pk = ?",
                                   (pk,)).fetchone()
        return None if row is None else str(row[0])

    def unbury(self, pks: Iterable[str]) -> None:
        """Drop the tombstones of rows ``pks``: their flagged rows are deleted again next run
        (``audit --repair`` of a user who came back)."""
        with self._lock:
            self._flush()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM tombstones WHERE pk = ?", [(pk,) for pk in pks])
            self._db.execute("COMMIT")

    def removed(self) -> list[AppliedRecord]:
        """The users the sync deleted (``pk``: the row whose user it was), by user key."""
        return self._users_of("removed_users")

    def count(self) -> int:
        """How many rows the state holds."""
        with self._lock:
            self._flush()
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def invalidate_hashes(self, *, keep_lists: bool = False) -> None:
        """Make every row look changed (the mapping changed): old values are kept.

        The user keys are dropped too (the match key may have changed): see :meth:`unkeyed`.
        ``keep_lists``: the lists are named as before (only the nulls policy changed), so each
        row is resent whole with its old lists known (:data:`~.digest.RESEND`), and a list
        left in the same run is still left; otherwise the old lists are forgotten.
        """
        from .digest import RESEND

        with self._lock:
            self._flush()
            self._write_now("UPDATE records SET hash = ?, key = NULL",
                            (RESEND if keep_lists else "",))
            self._ahead.clear()

    def unkeyed(self, batch: int = 1000) -> Iterator[tuple[str, str | None]]:
        """``(pk, match)`` of the records whose user key is not known (older files)."""
        for pk, match in self._paged(
            "SELECT pk, match FROM records WHERE pk > ? AND key IS NULL ORDER BY pk LIMIT ?",
            batch,
        ):
            yield str(pk), match

    def set_keys(self, keys: list[tuple[str, str | None]]) -> None:
        """Store the user key of each ``(pk, key)``."""
        with self._lock:
            self._flush()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE records SET key = ? WHERE pk = ?",
                                 [(key, pk) for pk, key in keys])
            self._db.execute("COMMIT")
