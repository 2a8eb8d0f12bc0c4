"""Write-ahead intents: what a run is about to write to a Sailthru user, in the state file.

The state records what Sailthru holds *after* a confirmed reply; between sending a write
and recording its reply, a killed run would lose what it did. So before each user write
(an upsert, an email change, a clear or a delete) the run appends an :class:`Intent` to the
``intents`` table of the same SQLite file: which row (or left-behind user), what kind of
write, the values about to be written and the old values they replace, and when. It is
committed before the call leaves (together with the confirmed records buffered so far,
so the cost is one short transaction per write). When the reply is recorded, the intent
is settled in the same transaction as the applied values (:meth:`IntentTable.settle_with`).

An intent still open when a run starts belongs to a run that was killed, or whose write
ended in an unknown outcome (a 5xx after the write may have applied): the next run
settles it first, by reading the user back (:mod:`.settle`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ._db import StateDb
from .records import AppliedRecord, from_row, to_row

__all__ = ["KINDS", "Intent", "IntentTable"]

KINDS = ("upsert", "email", "clear", "delete")
"""What an intent is about to do: ``upsert`` a row's user, change its ``email`` (rename the
user of ``old_match``), ``clear`` a gone user's vars and lists, ``delete`` a gone user."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    ident TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS intents_ident ON intents (target, ident);
"""


@dataclass(frozen=True)
class Intent:
    """One write about to be sent, as the state keeps it until its reply is recorded.

    ``target`` is ``"row"`` (``ident`` is the row's primary key; its record in the state is
    what changes) or ``"left"`` (``ident`` is the user key of a user a row left behind).
    ``record`` holds the values about to be true: for an upsert or email change the row as
    it will be recorded; for a clear or delete the user's last applied values (being
    removed). ``old_properties`` and ``old_groups`` are the values the write replaces (its
    diff was computed against them); ``old_match`` the email an email change renames.
    ``at`` is the wall-clock time (seconds since the epoch) it was recorded; ``id`` is
    given by the state when it is recorded.
    """

    kind: str
    target: str
    ident: str
    record: AppliedRecord
    old_properties: dict[str, Any] = field(default_factory=dict)
    old_groups: frozenset[str] = frozenset()
    old_match: str | None = None
    at: float = 0.0
    id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"intent kind must be one of {KINDS}, not {self.kind!r}")
        if self.target not in ("row", "left"):
            raise ValueError(f"intent target must be 'row' or 'left', not {self.target!r}")

    def age(self, now: float | None = None) -> float:
        """Seconds since the intent was recorded."""
        return max((time.time() if now is None else now) - self.at, 0.0)

    def _body(self) -> str:
        return json.dumps({
            "record": list(to_row(self.record)), "old_properties": self.old_properties,
            "old_groups": sorted(self.old_groups), "old_match": self.old_match,
        }, sort_keys=True, default=str)


def _intent(row: tuple[Any, ...]) -> Intent:
    id_, target, ident, kind, body, at = row
    data = json.loads(body)
    return Intent(kind=str(kind), target=str(target), ident=str(ident),
                  record=from_row(tuple(data["record"])),
                  old_properties=data["old_properties"],
                  old_groups=frozenset(data["old_groups"]), old_match=data["old_match"],
                  at=float(at), id=int(id_))


class IntentTable(StateDb):
    """The part of :class:`~sailthru_destination.sync.memory.state.SyncState` about intents.

    :meth:`intend` commits at once; settling is buffered with the applied records and
    written in their transaction (the subclass calls :meth:`_write_settled` inside it).
    """

    def _prepare(self) -> None:
        super()._prepare()
        self._db.executescript(_SCHEMA)
        self._settled: list[tuple[str, str, int]] = []

    def intend(self, intent: Intent) -> Intent:
        """Record ``intent`` durably (before its call leaves) and return it with its id.

        Records confirmed so far are written in the same transaction.
        """
        at = intent.at or time.time()
        with self._lock:
            id_ = self._commit_with(
                "INSERT INTO intents (target, ident, kind, body, at) VALUES (?, ?, ?, ?, ?)",
                (intent.target, intent.ident, intent.kind, intent._body(), at))
        return dataclasses.replace(intent, at=at, id=id_)

    def settle_intent(self, intent: Intent) -> None:
        """Close ``intent`` and every older one of its row or user (buffered: written with
        the next applied records). Use :meth:`settle_with` when a record changes with it."""
        with self._lock:
            self._settled.append((intent.target, intent.ident, intent.id))
            self._buffered()

    def open_intents(self) -> list[Intent]:
        """Every intent not settled yet, oldest first."""
        with self._lock:
            self._flush()
            rows = self._db.execute(
                "SELECT id, target, ident, kind, body, at FROM intents ORDER BY id").fetchall()
        return [_intent(row) for row in rows]

    def _commit_with(self, sql: str, params: tuple[Any, ...]) -> int:
        """Commit ``sql`` with whatever else is buffered (the subclass joins its records in
        the same transaction); the row id it wrote."""
        self._flush()
        return int(self._write_now(sql, params).lastrowid or 0)

    def _write_settled(self) -> None:
        """Inside the caller's transaction: delete what was settled."""
        if self._settled:
            self._db.executemany(
                "DELETE FROM intents WHERE target = ? AND ident = ? AND id <= ?", self._settled)

    def _settled_written(self) -> None:
        self._settled.clear()

    def _buffered(self) -> None:
        """Something was buffered (the subclass flushes when its batch is full)."""
