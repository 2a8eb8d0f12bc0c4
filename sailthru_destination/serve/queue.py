"""The durable queue between the HTTP front and the worker: one SQLite file.

A message is committed here (WAL, ``synchronous=FULL``) before the sender gets its 200, so
an accepted message survives ``kill -9``. The worker takes messages in arrival order and
marks each ``done`` with its result; a message not marked done when the process dies is
taken again on restart, where the destination's sent-keys store keeps it from being sent
twice (see :mod:`sailthru_destination.once.sentkeys`). A message whose ``messageId`` is already
queued (a sender retrying after a lost 200, as Segment's SDKs do) is not queued again: a
stale identify replayed after a newer one would otherwise undo it. :meth:`MessageQueue.store`
says which messages were left out so, and which of them differ from the one stored (the
intake refuses those by name: they were not a resend).

The queue keeps its depth and pending bytes in memory (counted once at open, then kept up
to date under the lock) so the intake can check its limits without a query per request.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .._private import private_file

__all__ = ["DiskFull", "Encoded", "MessageQueue", "Stored", "utf8_size"]

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
_INSERT = "INSERT OR IGNORE INTO messages (received, message_id, body) VALUES (?, ?, ?)"


class Encoded(NamedTuple):
    """One message ready to store: its ``messageId`` and its JSON text."""

    message_id: str
    body: str


class Stored(NamedTuple):
    """What became of one request's messages: how many were new, and which of those left
    out as duplicates differ from the message already stored under their id."""

    added: int
    left_out: list[int]
    """Positions (in the request's messages) of each message left out: its id was taken."""
    conflicts: list[int]
    """Positions (in the request's messages) of each message left out whose content differs
    from the one already accepted with its ``messageId`` (an identical resend is not here)."""


class _Ticket:
    """One request's rows waiting for a group commit, and what became of them."""

    __slots__ = ("added", "conflicts", "error", "left_out", "rows")

    def __init__(self, rows: list[tuple[float, str, str]]) -> None:
        self.rows = rows
        self.added: int | None = None
        self.left_out: list[int] = []
        self.conflicts: list[int] = []
        self.error: BaseException | None = None


class DiskFull(Exception):
    """The disk (or the file's page limit) is full: nothing of the request was stored."""


class MessageQueue:
    """Accepted Segment messages, in arrival order, until the worker has a result for each."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_file(self.path)  # accepted messages are customer data: the owner's only
        self._db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the 200 promises the message is on disk, not in the OS cache.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        # Results go through a second connection that does not sync each one: a result lost
        # with the machine's power only means the message is taken again, and the sent-keys
        # store keeps that from sending it twice. Synced one by one, results cost a disk sync
        # each (about 5 ms here), which capped the drain near 200 messages/s, below Sailthru's
        # 300/s, and held the lock the intake needs. The next intake commit syncs them anyway.
        self._marks = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._marks.execute("PRAGMA synchronous=NORMAL")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "retryable" not in columns:  # a queue written before `serve replay` existed
            self._db.execute("ALTER TABLE messages ADD COLUMN retryable INTEGER")
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._door = threading.Condition(threading.Lock())
        self._waiting: list[_Ticket] = []
        self._committing = False
        depth, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) "
            "FROM messages WHERE status IS NULL"
        ).fetchone()
        self._depth = int(depth)
        self._bytes = int(size)

    def __repr__(self) -> str:
        return f"MessageQueue({str(self.path)!r})"

    def close(self) -> None:
        """Close the file; the queue's content stays for the next start."""
        with self._lock:
            self._marks.close()
            self._db.close()

    def append(self, messages: Sequence[Encoded]) -> int:
        """Store every message of one request durably, all or none; returns how many were new
        (see :meth:`store`)."""
        return self.store(messages).added

    def store(self, messages: Sequence[Encoded]) -> Stored:
        """Store every message of one request durably, all or none; says what became of them.

        A message whose id is already queued is left out. Raises :class:`DiskFull` when
        SQLite reports a full disk; the request's rows are rolled back either way.

        Group commit: requests that arrive while another commit is being synced wait for it,
        then one of them commits them all in one transaction (one sync for many requests); a
        request that fails leaves the others stored (see :meth:`_insert_all`).
        """
        now = time.time()
        ticket = _Ticket([(now, m.message_id, m.body) for m in messages])
        with self._door:
            self._waiting.append(ticket)
            while ticket.added is None and ticket.error is None:
                if self._committing:
                    self._door.wait()
                    continue
                self._committing = True
                group, self._waiting = self._waiting, []
                self._door.release()
                try:
                    self._commit(group)
                finally:
                    self._door.acquire()
                    self._committing = False
                    self._door.notify_all()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.added is not None
        return Stored(ticket.added, ticket.left_out, ticket.conflicts)

    def _commit(self, group: list[_Ticket]) -> None:
        """Store the rows of every ticket of ``group`` in one transaction; set each outcome."""
        with self._arrived:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if not self._insert_all(group):
                    # One request's rows could not be stored (all rolled back): store each
                    # request again inside its own savepoint, so only that one fails.
                    self._db.execute("BEGIN IMMEDIATE")
                    for ticket in group:
                        self._insert(ticket)
                for ticket in group:
                    if ticket.added is not None and ticket.added < len(ticket.rows):
                        ticket.left_out, ticket.conflicts = self._left_out(ticket.rows)
                if self._db.in_transaction:  # (a lone request that failed rolled it back)
                    self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:  # SQLITE_FULL has already rolled it back
                    with contextlib.suppress(sqlite3.Error):  # an I/O error may fail it too
                        self._db.execute("ROLLBACK")
                error: BaseException = exc
                if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
                    error = DiskFull(str(exc))
                for ticket in group:
                    ticket.added, ticket.error = None, error
                if not isinstance(exc, Exception):
                    raise
                return
            stored = [t for t in group if t.error is None]
            added = sum(t.added or 0 for t in stored)
            if added == sum(len(t.rows) for t in stored):
                self._bytes += sum(_utf8_total([row[2] for row in t.rows]) for t in stored)
            else:  # some were duplicates: count what was really stored
                self._bytes = self._pending_bytes()
            self._depth += added
            self._arrived.notify_all()

    def _insert_all(self, group: list[_Ticket]) -> bool:
        """Every request's rows in the open transaction, without savepoints: False (and the
        transaction rolled back) when one request's rows cannot be stored and others wait.

        Savepoints would make SQLite copy each page a request touches into a sub-journal
        first (about 0.2 ms of CPU per 100 messages here), for the rare request whose rows
        cannot be bound; they are used only to store again a group holding one.
        """
        for ticket in group:
            before = self._db.total_changes
            try:
                self._db.executemany(_INSERT, ticket.rows)
            except sqlite3.OperationalError as exc:
                if _is_full(exc):
                    raise  # rolled back by _commit, reported as DiskFull
                error: Exception = exc
            except (sqlite3.Error, ValueError, TypeError) as exc:
                error = exc
            else:
                ticket.added = self._db.total_changes - before
                continue
            self._db.execute("ROLLBACK")
            for stored in group:
                stored.added = None
            if len(group) > 1:
                return False
            ticket.error = error  # alone: the rollback was its all or none
        return True

    def _left_out(self, rows: list[tuple[float, str, str]]) -> tuple[list[int], list[int]]:
        """Positions of ``rows`` left out as duplicates, and of those whose message differs
        from the one stored under its id.

        Only asked when some rows were left out (rare: a sender's resend), so the common
        request pays nothing. A row was stored by this request when it is the first with its
        id and the stored row has its arrival time and text. Texts that differ are compared
        as JSON without ``sentAt`` (a resend may be stamped anew, or spaced differently), so
        an SDK's resend of the same message stays a silent duplicate.
        """
        stored: dict[str, tuple[float, str]] = {}
        ids = list({row[1] for row in rows})
        for start in range(0, len(ids), 500):  # under SQLite's limit on bound parameters
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT message_id, received, body FROM messages WHERE message_id IN ({marks})"  # noqa: S608  # only placeholders
            rows_found = self._db.execute(query, chunk)
            stored.update((key, (when, body)) for key, when, body in rows_found)
        left_out: list[int] = []
        conflicts: list[int] = []
        seen: set[str] = set()
        for position, (received, message_id, body) in enumerate(rows):
            first = message_id not in seen
            seen.add(message_id)
            when, text = stored.get(message_id, (None, body))
            if first and when == received and text == body:
                continue  # stored now
            left_out.append(position)
            if not _same_message(text, body):
                conflicts.append(position)
        return left_out, conflicts

    def _insert(self, ticket: _Ticket) -> None:
        """One request's rows inside the open transaction, all or none (a savepoint)."""
        before = self._db.total_changes
        self._db.execute("SAVEPOINT request")
        try:
            self._db.executemany(_INSERT, ticket.rows)
        except sqlite3.OperationalError as exc:
            if _is_full(exc):
                raise  # the whole transaction is gone: every request of the group fails
            self._db.execute("ROLLBACK TO request")
            ticket.error = exc
        except (sqlite3.Error, ValueError, TypeError) as exc:  # this request's rows only
            self._db.execute("ROLLBACK TO request")
            ticket.error = exc
        else:
            ticket.added = self._db.total_changes - before
        self._db.execute("RELEASE request")

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

    def _pending_bytes(self) -> int:
        query = "SELECT SUM(LENGTH(CAST(body AS BLOB))) FROM messages WHERE status IS NULL"
        return int(self._db.execute(query).fetchone()[0] or 0)

    def done(self, seq: int, status: str, detail: str, *, retryable: bool = False) -> None:
        """Record a message's result: it will not be taken again (unless replayed)."""
        with self._lock:
            # fetchall: the statement (and its write) ends here, not at the next one.
            rows = self._marks.execute(
                "UPDATE messages SET status = ?, detail = ?, retryable = ? "
                "WHERE seq = ? AND status IS NULL RETURNING LENGTH(CAST(body AS BLOB))",
                (status, detail, int(retryable), seq),
            ).fetchall()
            for (size,) in rows:
                self._depth -= 1
                self._bytes -= int(size)

    def replay(self, reason: str | None = None) -> int:
        """Queue again every message that failed retryably (whose detail holds ``reason``).

        One transaction: each such message is queued once, in its old place, and a second
        replay finds it no longer failed. Returns how many were queued again.
        """
        query = (
            "UPDATE messages SET status = NULL, detail = NULL, retryable = NULL "
            "WHERE status = 'failed' AND retryable = 1"
        )
        args: tuple[str, ...] = ()
        if reason:
            query += " AND instr(lower(detail), lower(?)) > 0"
            args = (reason,)
        with self._arrived:
            changed = self._db.execute(query, args).rowcount
            self._depth += changed
            self._bytes = self._pending_bytes()
            self._arrived.notify_all()
        return changed

    def depth(self) -> int:
        """How many messages wait for a result."""
        return self._depth

    def size(self) -> int:
        """How many bytes of message text wait for a result."""
        return self._bytes

    def oldest_age(self) -> float:
        """Seconds since the oldest waiting message arrived (0 when none waits)."""
        with self._lock:
            row = self._db.execute(
                "SELECT received FROM messages WHERE status IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
        return 0.0 if row is None else max(0.0, time.time() - float(row[0]))

    def results(self) -> list[tuple[int, str | None, str | None]]:
        """``(seq, status, detail)`` of every message, in arrival order (for tests and audits)."""
        with self._lock:
            return list(self._db.execute("SELECT seq, status, detail FROM messages ORDER BY seq"))


def utf8_size(text: str) -> int:
    """The bytes ``text`` takes as UTF-8 (most messages are ASCII: no copy made for them)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _same_message(stored: str, body: str) -> bool:
    """Whether ``body`` is the message ``stored`` holds, but for its ``sentAt``."""
    if stored == body:
        return True
    try:
        old, new = json.loads(stored), json.loads(body)
    except (ValueError, RecursionError):
        return False
    if isinstance(old, dict) and isinstance(new, dict):
        old.pop("sentAt", None)
        new.pop("sentAt", None)
    return bool(old == new)


def _utf8_total(texts: list[str]) -> int:
    """The bytes ``texts`` take as UTF-8, without a Python call per text when all are ASCII."""
    if all(map(str.isascii, texts)):
        return sum(map(len, texts))
    return sum(map(utf8_size, texts))


# SQLite's primary result codes (sqlite3 names them only from Python 3.11): a full disk, and
# an I/O error (a file-size limit, EFBIG, a failing disk): neither is the request's fault.
_SQLITE_FULL, _SQLITE_IOERR = 13, 10


def _is_full(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` means the queue cannot be written now (answer 503, retry later)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR):
        return True
    return "is full" in str(exc) or "disk I/O error" in str(exc)
