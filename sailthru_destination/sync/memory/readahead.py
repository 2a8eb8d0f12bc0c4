"""The stored hashes of the next primary keys, read ahead in key order.

A no-change re-run asks the state for the hash of every row of the model: one query a row
was a fifth of its time at a million rows. Models mostly come in key order (a table's id,
an export sorted by it), so one query reads the hashes of the keys that follow in the
state (in the state's text order, which is also the order of keys of one length), and the
next rows find theirs in memory. A model in another order gains nothing from a window: when
a window serves too few of the rows asked for before the next one is read, the reader falls
back to one query a key for a while, so a shuffled model costs what it did.
"""

from __future__ import annotations

import sqlite3

__all__ = ["ReadAhead"]

_WINDOW = 256  # hashes read by one query
_USEFUL = _WINDOW // 4  # a window that served fewer rows was not worth reading
_SINGLE = 1024  # keys then asked one by one before a window is tried again


class ReadAhead:
    """The hashes of ``records`` by primary key, read a window at a time when that pays.

    A hash served is dropped from the window (a key asked twice, a duplicate row, is read
    again). The writer answers for the records it holds unwritten, and drops the whole
    window when it writes them (:meth:`clear`), so a window never answers with a hash older
    than the file's.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._window: dict[str, str] = {}
        self._served = 0  # rows the current window answered
        self._single = 0  # keys still to ask one by one

    def get(self, pk: str) -> str | None:
        """The stored hash of ``pk`` (None: no such record)."""
        window = self._window
        if pk in window:
            self._served += 1
            return window.pop(pk)
        if self._single:
            self._single -= 1
            return self._one(pk)
        if self._window_was_useless():
            self._single = _SINGLE
            self._window = {}
            return self._one(pk)
        rows = self._db.execute(
            "SELECT pk, hash FROM records WHERE pk >= ? ORDER BY pk LIMIT ?", (pk, _WINDOW),
        ).fetchall()
        self._window = {str(key): str(value) for key, value in rows}
        self._served = 0
        found = self._window.pop(pk, None)
        if found is not None:
            self._served += 1
        return found

    def _window_was_useless(self) -> bool:
        return bool(self._window) and self._served < _USEFUL

    def _one(self, pk: str) -> str | None:
        row = self._db.execute("SELECT hash FROM records WHERE pk = ?", (pk,)).fetchone()
        return None if row is None else str(row[0])

    def clear(self) -> None:
        """Drop the whole window (every record changed)."""
        self._window = {}
