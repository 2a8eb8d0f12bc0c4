"""The events and orders a sync sent, in the state file: the SentKeys store of a model.

See :mod:`sailthru_destination.once.sentkeys` for the protocol (claim, send, settle). Each write
commits at once, before the call it guards.
"""

from __future__ import annotations

from ...once.sentkeys import KeyState
from ._db import StateDb

__all__ = ["SentKeysTable"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (kind, key)
);
"""


class SentKeysTable(StateDb):
    """The part of :class:`~sailthru_destination.sync.memory.state.SyncState` about sent keys."""

    def _prepare(self) -> None:
        super()._prepare()
        self._db.executescript(_SCHEMA)

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
