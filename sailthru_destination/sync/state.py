"""What the last runs applied, in an embedded SQLite file (WAL mode).

Per primary key: a hash of the row as last applied, its match value, properties and
groups (the "old values" the next change is exported with). Also the keys of events
and orders already sent, so a re-run never posts one twice. Each record is written as
soon as Sailthru confirmed it, so a run killed at any point resumes where it stopped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sentkeys import KeyState

__all__ = ["AppliedRecord", "StateError", "SyncState"]

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
CREATE TABLE IF NOT EXISTS sent (
    kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (kind, key)
);
"""


# Keys per IN (...) query: under SQLite's default limit of bound parameters.
_BLOCK = 500


class StateError(Exception):
    """The state file cannot be used (unreadable, or made for another kind of model)."""


@dataclass(frozen=True)
class AppliedRecord:
    """One row as last applied to Sailthru."""

    pk: str
    hash: str
    match: str | None
    properties: dict[str, Any]
    groups: frozenset[str]
    optout: str | None = None


class SyncState:
    """The state of one model's sync, in a SQLite file; usable from any thread.

    Also a :class:`~sailthru_destination.sentkeys.SentKeys` store: the events and orders
    claimed, sent or of unknown outcome, so a re-run never posts one twice.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a killed process (not a power cut) and commits fast.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (pk TEXT PRIMARY KEY)")
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open the state file {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._batch_started: float | None = None
        self._batch_size = 0

    def __repr__(self) -> str:
        return f"SyncState({str(self.path)!r})"

    def __enter__(self) -> SyncState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Commit and close the file."""
        with self._lock:
            self._commit()
            self._db.close()

    def flush(self) -> None:
        """Commit what is written so far."""
        with self._lock:
            self._commit()

    # Records are committed in small batches (at most every 0.2 s or 500 writes): losing the
    # last batch to a crash only re-sends idempotent user updates. Sent keys commit at once.

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        if self._batch_started is None:
            self._db.execute("BEGIN")
            self._batch_started = time.monotonic()
        cursor = self._db.execute(sql, params)
        self._batch_size += 1
        if self._batch_size >= 500 or time.monotonic() - self._batch_started >= 0.2:
            self._commit()
        return cursor

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self._batch_started is None:
            self._db.execute("BEGIN")
            self._batch_started = time.monotonic()
        self._db.executemany(sql, rows)
        self._batch_size += len(rows)
        if self._batch_size >= 500 or time.monotonic() - self._batch_started >= 0.2:
            self._commit()

    def _commit(self) -> None:
        if self._batch_started is not None:
            self._db.execute("COMMIT")
            self._batch_started = None
            self._batch_size = 0

    def _write_now(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        cursor = self._write(sql, params)
        self._commit()
        return cursor

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
            row = self._db.execute(
                "SELECT pk, hash, match, properties, groups, optout FROM records WHERE pk = ?",
                (pk,),
            ).fetchone()
        return None if row is None else _record(row)

    def get_hash(self, pk: str) -> str | None:
        """Only the hash of the row last applied under ``pk`` (the cheap unchanged check)."""
        with self._lock:
            row = self._db.execute("SELECT hash FROM records WHERE pk = ?", (pk,)).fetchone()
        return None if row is None else str(row[0])

    def get_hashes(self, pks: list[str]) -> dict[str, str]:
        """:meth:`get_hash` for a block of keys in one query (keys not applied are left out)."""
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(pks), _BLOCK):
                part = pks[start:start + _BLOCK]
                marks = ",".join("?" * len(part))
                found.update((str(pk), str(digest)) for pk, digest in self._db.execute(
                    f"SELECT pk, hash FROM records WHERE pk IN ({marks})", part))  # noqa: S608
        return found

    def set_hash(self, pk: str, digest: str) -> None:
        """Replace only the stored hash of ``pk`` (the row was unchanged but read differently)."""
        with self._lock:
            self._write("UPDATE records SET hash = ? WHERE pk = ?", (digest, pk))

    def put(self, record: AppliedRecord) -> None:
        """Remember ``record`` as applied (committed at once)."""
        values = (
            record.pk, record.hash, record.match,
            json.dumps(record.properties, sort_keys=True, default=str),
            json.dumps(sorted(record.groups)), record.optout,
        )
        with self._lock:
            self._write("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)", values)

    def forget(self, pk: str) -> None:
        """Drop ``pk`` (its user was deleted, cleared or left alone after the row went away)."""
        with self._lock:
            self._write("DELETE FROM records WHERE pk = ?", (pk,))

    def count(self) -> int:
        """How many rows the state holds."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def invalidate_hashes(self) -> None:
        """Make every row look changed (the mapping changed): old values are kept."""
        with self._lock:
            self._write_now("UPDATE records SET hash = ''", ())

    # -- this run's primary keys ----------------------------------------------------------------

    def start_run(self) -> None:
        """Forget the keys seen by an earlier run in this process."""
        with self._lock:
            self._write_now("DELETE FROM seen", ())

    def see(self, pk: str) -> bool:
        """Note ``pk`` as present in the model; False when it was already seen (a duplicate)."""
        with self._lock:
            try:
                self._write("INSERT INTO seen VALUES (?)", (pk,))
            except sqlite3.IntegrityError:
                return False
        return True

    def see_many(self, pks: list[str]) -> list[bool]:
        """:meth:`see` for a block of keys at once, in order (a repeat in the block is False)."""
        firsts: list[bool] = []
        fresh: dict[str, None] = {}
        with self._lock:
            known = _in_table(self._db, "seen", pks)
            for pk in pks:
                first = pk not in known and pk not in fresh
                if first:
                    fresh[pk] = None
                firsts.append(first)
            if fresh:
                self._write_many("INSERT INTO seen VALUES (?)", [(pk,) for pk in fresh])
        return firsts

    def seen_count(self) -> int:
        """How many distinct primary keys this run has seen."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM seen").fetchone()[0])

    def gone(self, batch: int = 500) -> Iterator[AppliedRecord]:
        """The applied rows whose key this run did not see, read in batches."""
        last = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT pk, hash, match, properties, groups, optout FROM records "
                    "WHERE pk > ? AND pk NOT IN (SELECT pk FROM seen) ORDER BY pk LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _record(row)
            last = str(rows[-1][0])

    def gone_count(self) -> int:
        """How many applied rows this run did not see."""
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM records WHERE pk NOT IN (SELECT pk FROM seen)"
            ).fetchone()[0])

    # -- sent events and orders -----------------------------------------------------------------

    def claim(self, kind: str, key: str) -> bool:
        """Record ``key`` as pending (committed before returning); False if already recorded."""
        with self._lock:
            cursor = self._write_now(
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?)", (kind, key, str(KeyState.PENDING))
            )
            return cursor.rowcount == 1

    def state(self, kind: str, key: str) -> KeyState | None:
        """The recorded state of ``key`` of ``kind``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM sent WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
        return None if row is None else KeyState(row[0])

    def settle(self, kind: str, key: str, state: KeyState) -> None:
        """Record the outcome of a claimed send (``SENT`` or ``UNKNOWN``)."""
        if state is KeyState.PENDING:
            raise ValueError("settle records an outcome: SENT or UNKNOWN")
        with self._lock:
            self._write_now(
                "INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", (kind, key, str(state))
            )

    def release(self, kind: str, key: str) -> None:
        """Forget ``key``: its send surely did not apply, so it may be sent again."""
        with self._lock:
            self._write_now("DELETE FROM sent WHERE kind = ? AND key = ?", (kind, key))

    def reclaim(self, kind: str, key: str, state: KeyState) -> bool:
        """Move ``key`` from ``state`` back to pending (committed); False if not in ``state``."""
        with self._lock:
            cursor = self._write_now(
                "UPDATE sent SET state = ? WHERE kind = ? AND key = ? AND state = ?",
                (str(KeyState.PENDING), kind, key, str(state)),
            )
            return cursor.rowcount == 1

    def sent_count(self, kind: str, state: KeyState = KeyState.SENT) -> int:
        """How many keys of ``kind`` are in ``state``."""
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM sent WHERE kind = ? AND state = ?", (kind, str(state))
            ).fetchone()[0])


def _in_table(db: sqlite3.Connection, table: str, pks: list[str]) -> set[str]:
    """Which of ``pks`` the one-column ``table`` holds (queried in blocks)."""
    found: set[str] = set()
    for start in range(0, len(pks), _BLOCK):
        part = pks[start:start + _BLOCK]
        marks = ",".join("?" * len(part))
        found.update(str(row[0]) for row in db.execute(
            f"SELECT pk FROM {table} WHERE pk IN ({marks})", part))  # noqa: S608
    return found


def _record(row: tuple[Any, ...]) -> AppliedRecord:
    pk, digest, match, properties, groups, optout = row
    return AppliedRecord(
        pk=str(pk), hash=str(digest), match=match, properties=json.loads(properties),
        groups=frozenset(json.loads(groups)), optout=optout,
    )
