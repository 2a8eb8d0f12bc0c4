"""The durable queue between the HTTP front and the worker: one SQLite file.

A message is committed here (WAL, ``synchronous=FULL``) before the sender gets its 200, so
an accepted message survives ``kill -9``. The worker takes messages in arrival order and
marks each ``done`` with its result; a message not marked done when the process dies is
taken again on restart, where the destination's sent-keys store keeps it from being sent
twice (see :mod:`sailthru_destination.sentkeys`). A message whose ``messageId`` is already
queued (a sender retrying after a lost 200, as Segment's SDKs do) is not queued again: a
stale identify replayed after a newer one would otherwise undo it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._private import private_file

__all__ = ["MessageQueue"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    status TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS pending ON messages (seq) WHERE status IS NULL;
"""


class MessageQueue:
    """Accepted Segment messages, in arrival order, until the worker has a result for each."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_file(self.path)  # accepted messages are customer data: the owner's only
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the 200 promises the message is on disk, not in the OS cache.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def __repr__(self) -> str:
        return f"MessageQueue({str(self.path)!r})"

    def close(self) -> None:
        """Close the file; the queue's content stays for the next start."""
        with self._lock:
            self._db.close()

    def append(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Store every message of one request durably, all or none; returns how many were new.

        Each message needs a string ``messageId``; one already queued is left out.
        """
        now = time.time()
        rows = [
            (now, str(m["messageId"]), json.dumps(m, ensure_ascii=False, separators=(",", ":")))
            for m in messages
        ]
        with self._arrived:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO messages (received, message_id, body) VALUES (?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._arrived.notify_all()
            return self._db.total_changes - before

    def take(self, limit: int, wait: float = 0.0) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` messages without a result, oldest first (waiting up to ``wait``)."""
        with self._arrived:
            rows = self._pending(limit)
            if not rows and wait > 0:
                self._arrived.wait(wait)
                rows = self._pending(limit)
        return [(seq, json.loads(body)) for seq, body in rows]

    def _pending(self, limit: int) -> list[tuple[int, str]]:
        query = "SELECT seq, body FROM messages WHERE status IS NULL ORDER BY seq LIMIT ?"
        return list(self._db.execute(query, (limit,)))

    def done(self, seq: int, status: str, detail: str) -> None:
        """Record a message's result: it will not be taken again."""
        with self._lock:
            self._db.execute(
                "UPDATE messages SET status = ?, detail = ? WHERE seq = ?", (status, detail, seq)
            )

    def depth(self) -> int:
        """How many messages wait for a result."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM messages WHERE status IS NULL").fetchone()
        return int(row[0])

    def results(self) -> list[tuple[int, str | None, str | None]]:
        """``(seq, status, detail)`` of every message, in arrival order (for tests and audits)."""
        with self._lock:
            return list(self._db.execute("SELECT seq, status, detail FROM messages ORDER BY seq"))
