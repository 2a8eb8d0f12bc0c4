"""The writes in doubt of a sync, in the state file: the :class:`~..doubt.DoubtLog` of a model.

Each write commits at once: a run killed right after it still leaves the order in doubt,
with the time it went there, for the next run to read back.
"""

from __future__ import annotations

from ...once.doubt import Doubt
from ._db import StateDb

__all__ = ["DoubtTable"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS doubts (
    kind TEXT NOT NULL, key TEXT NOT NULL, since REAL NOT NULL, misses INTEGER NOT NULL,
    owner TEXT NOT NULL, job TEXT, PRIMARY KEY (kind, key)
);
"""


class DoubtTable(StateDb):
    """The part of :class:`~sailthru_destination.sync.memory.state.SyncState` about writes in
    doubt."""

    def _prepare(self) -> None:
        super()._prepare()
        self._db.executescript(_SCHEMA)

    def doubt(self, kind: str, key: str) -> Doubt | None:
        """What is known of ``key`` of ``kind`` in doubt, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT since, misses, owner, job FROM doubts WHERE kind = ? AND key = ?",
                (kind, key)).fetchone()
        return None if row is None else Doubt(float(row[0]), int(row[1]), str(row[2]), row[3])

    def note_doubt(self, kind: str, key: str, doubt: Doubt) -> None:
        """Remember what is known of ``key`` in doubt (committed before returning)."""
        with self._lock:
            self._write_now("INSERT OR REPLACE INTO doubts VALUES (?, ?, ?, ?, ?, ?)",
                            (kind, key, doubt.since, doubt.misses, doubt.owner, doubt.job))

    def clear_doubt(self, kind: str, key: str) -> None:
        """Forget ``key``: it is settled."""
        with self._lock:
            self._write_now("DELETE FROM doubts WHERE kind = ? AND key = ?", (kind, key))
