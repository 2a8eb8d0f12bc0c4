"""This run's rows, beside the state: which keys the model holds and which user each maps to.

Kept in temporary tables of the state's connection (gone when it closes, never shared with
another process). They answer the run's questions: which applied rows are gone, which
rows map to one user (only one may have it), which new row takes over the values of a row
that held its user before, and which row holds a user a gone row would delete.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from ._db import StateDb
from .records import AppliedRecord, from_row

__all__ = ["Contender", "RunRows"]

# ``seen`` is keyed by ``pk`` alone (WITHOUT ROWID: one B-tree to write a row, not two);
# its index by ``key`` is built once the run's rows are all seen (see RunRows._by_key).
# ``key`` is the Sailthru user a row maps to; ``valid`` says the row could be read whole
# (only those compete for a user); ``loser`` names the row that won the user when this one
# lost a duplicate.
_TEMP_SCHEMA = """
CREATE TEMP TABLE IF NOT EXISTS seen (
    pk TEXT PRIMARY KEY, key TEXT, pos INTEGER, row_where TEXT, valid INTEGER,
    changed INTEGER, loser TEXT
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS deleted (pk TEXT PRIMARY KEY, digest TEXT);
CREATE TEMP TABLE IF NOT EXISTS handover (
    pk TEXT PRIMARY KEY, from_pk TEXT, hash TEXT, match TEXT, properties TEXT, groups TEXT,
    optout TEXT, user_key TEXT
);
"""


@dataclass(frozen=True)
class Contender:
    """A row of this run that maps to the same user as another row."""

    pk: str
    key: str
    where: str
    owns: bool
    """The state says this row's user already is ``key``."""


class RunRows(StateDb):
    """The part of :class:`~sailthru_destination.sync.memory.state.SyncState` about this run's
    rows."""

    _seen = 0
    _indexed = False  # whether ``seen`` has its index by key (see _by_key)
    _any_changed = False  # whether a row seen this run was changed (else no handovers)

    def _prepare(self) -> None:
        super()._prepare()
        self._db.executescript(_TEMP_SCHEMA)

    def start_run(self) -> None:
        """Forget the rows seen by an earlier run in this process."""
        with self._lock:
            self._flush()
            self._db.execute("DELETE FROM seen")
            self._db.execute("DELETE FROM deleted")
            self._db.execute("DELETE FROM handover")
            # Rows are seen faster without the index (a no-change re-run of a million
            # rows: a second less); it is built in one pass when first asked for.
            self._db.execute("DROP INDEX IF EXISTS temp.seen_key")
            self._seen = 0
            self._indexed = self._any_changed = False

    def _by_key(self) -> None:
        """Index the rows seen by user key (once the diff asks by key: a sort, not a
        million inserts). Every query by key calls it first; without it they are only slower."""
        if not self._indexed:
            self._db.execute("CREATE INDEX IF NOT EXISTS temp.seen_key ON seen (key)")
            self._indexed = True

    def see(
        self, pk: str, key: str | None = None, where: str = "", *, valid: bool = True,
        changed: bool = False,
    ) -> bool:
        """Note ``pk`` as present in the model; False when it was already seen (a duplicate).

        ``key`` is the user the row maps to, if it can be read at all: even a row that
        fails keeps its user from being deleted. ``valid``: the row was read whole (only
        such rows compete for a user); ``changed``: it differs from what was last applied.
        """
        with self._lock:
            try:
                self._write_temp(
                    "INSERT INTO seen (pk, key, pos, row_where, valid, changed) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (pk, key, self._seen, where, int(valid), int(changed)))
            except sqlite3.IntegrityError:
                return False
            self._seen += 1
            self._any_changed = self._any_changed or changed
        return True

    def see_the_rest(self) -> int:
        """Note every applied row this run did not see as present, holding its user.

        For a run that was not handed the whole model (:meth:`SyncRunner.apply`, or a model
        with rows that could not be identified): only the rows it was told are deleted are
        then gone. The rows noted here do not compete for their user (``valid`` 0) and count
        as neither changed nor unchanged. Returns how many were noted.
        """
        with self._lock:
            self._flush()
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO seen (pk, key, pos, row_where, valid, changed) "
                "SELECT pk, key, ?, 'not in this run', 0, 0 FROM records "
                "WHERE pk NOT IN (SELECT pk FROM seen) AND pk NOT IN (SELECT pk FROM deleted)",
                (self._seen,),
            )
            return int(cursor.rowcount)

    def mark_deleted(self, pk: str, digest: str = "") -> bool:
        """Note row ``pk`` as marked deleted by the model, read with row ``digest`` (see
        :meth:`~.state.SyncState.bury`); False when already noted."""
        with self._lock:
            try:
                self._write_temp("INSERT INTO deleted (pk, digest) VALUES (?, ?)", (pk, digest))
            except sqlite3.IntegrityError:
                return False
        return True

    def seen_count(self) -> int:
        """How many distinct primary keys this run has seen."""
        with self._lock:
            return self._seen

    def contenders(self) -> Iterator[Contender]:
        """The rows read whole that share their user with another such row.

        By user, then the row the state says already is that user first, then model order.
        """
        with self._lock:
            self._flush()
            self._by_key()
            rows = self._db.execute(
                "SELECT s.pk, s.key, s.row_where, "
                "  EXISTS (SELECT 1 FROM records r WHERE r.pk = s.pk AND r.key = s.key) AS owns "
                "FROM seen s WHERE s.valid = 1 AND s.key IN "
                "  (SELECT key FROM seen WHERE valid = 1 AND key IS NOT NULL "
                "   GROUP BY key HAVING COUNT(*) > 1) "
                "ORDER BY s.key, owns DESC, s.pos"
            ).fetchall()
        for pk, key, where, owns in rows:
            yield Contender(str(pk), str(key), str(where), bool(owns))

    def lose(self, pk: str, winner: str) -> None:
        """Note that row ``pk`` lost its user to row ``winner``: it is not exported."""
        with self._lock:
            self._write_temp("UPDATE seen SET loser = ? WHERE pk = ?", (winner, pk))

    def loser(self, pk: str) -> str | None:
        """The row that won ``pk``'s user, when ``pk`` lost it to a duplicate."""
        with self._lock:
            row = self._db.execute("SELECT loser FROM seen WHERE pk = ?", (pk,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def tally(self) -> tuple[int, int]:
        """``(unchanged, changed)``: the rows read whole that did not lose their user."""
        with self._lock:
            self._flush()
            unchanged, changed = self._db.execute(
                "SELECT COUNT(*) - COALESCE(SUM(changed), 0), COALESCE(SUM(changed), 0) "
                "FROM seen WHERE valid = 1 AND loser IS NULL"
            ).fetchone()
        return int(unchanged), int(changed)

    def prepare_handovers(self) -> int:
        """For each row taking a user over, the record of the row that last held that user.

        A row takes a user over when its own record is not that user (a new row, or one
        whose email changed) and the user's record belongs to a row gone from the model or
        now mapping to another user. That record's values are the row's old values, so
        what the row lacks is cleared. Taken as a snapshot before any export changes a
        record. Returns how many rows take one.
        """
        with self._lock:
            self._flush()
            self._db.execute("DELETE FROM handover")
            if not self._any_changed:
                return 0  # only changed rows take a user over: no need to join every row
            self._by_key()
            # Ordered so that, of several candidates (an older file), the lowest pk is kept.
            self._db.execute(
                "INSERT OR REPLACE INTO handover SELECT s.pk, r.pk, r.hash, r.match, "
                "  r.properties, "
                "  r.groups, r.optout, r.key "
                "FROM seen s JOIN records r ON r.key = s.key "
                "WHERE s.valid = 1 AND s.changed = 1 AND s.loser IS NULL "
                "  AND NOT EXISTS (SELECT 1 FROM records o WHERE o.pk = s.pk AND o.key = s.key) "
                "  AND NOT EXISTS (SELECT 1 FROM seen h WHERE h.pk = r.pk AND h.key = r.key) "
                "ORDER BY r.pk DESC"
            )
            return int(self._db.execute("SELECT COUNT(*) FROM handover").fetchone()[0])

    def handover(self, pk: str) -> AppliedRecord | None:
        """The record new row ``pk`` takes its old values from (see :meth:`prepare_handovers`)."""
        with self._lock:
            row = self._db.execute(
                "SELECT from_pk, hash, match, properties, groups, optout, user_key "
                "FROM handover WHERE pk = ?", (pk,)
            ).fetchone()
        return None if row is None else from_row(row)

    def claimant(self, key: str | None, *, besides: str = "") -> str | None:
        """The row of this run (other than ``besides``) that maps to user ``key``, else the
        row of this run whose applied record still is that user (its move is not done).

        A row that lost a duplicate comes after the one that won it.
        """
        if key is None:
            return None
        with self._lock:
            self._flush()
            self._by_key()
            row = self._db.execute(
                "SELECT pk FROM seen WHERE key = ? AND pk != ? "
                "ORDER BY loser IS NOT NULL, pos LIMIT 1", (key, besides),
            ).fetchone() or self._db.execute(
                "SELECT r.pk FROM records r JOIN seen s ON s.pk = r.pk "
                "WHERE r.key = ? AND r.pk != ? ORDER BY s.pos LIMIT 1", (key, besides),
            ).fetchone()
        return None if row is None else str(row[0])

    def gone(self, batch: int = 500) -> Iterator[AppliedRecord]:
        """The applied rows whose key this run did not see, read in batches."""
        for row in self._paged(
            "SELECT pk, hash, match, properties, groups, optout, key FROM records "
            "WHERE pk > ? AND pk NOT IN (SELECT pk FROM seen) ORDER BY pk LIMIT ?", batch,
        ):
            yield from_row(row)

    def gone_count(self) -> int:
        """How many applied rows this run did not see."""
        with self._lock:
            self._flush()
            return int(self._db.execute(
                "SELECT COUNT(*) FROM records WHERE pk NOT IN (SELECT pk FROM seen)"
            ).fetchone()[0])

