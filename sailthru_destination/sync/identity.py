"""A model's identity, stored in its state, so that one state never silently serves two models.

Every ``--sql`` model without ``--name`` is named ``sql``: a ``SELECT * FROM leads`` run in
the folder of a ``SELECT ... FROM customers`` model diffed the leads against the customers'
state, renamed customers to leads' emails and deleted the rest. So the state remembers what
model it is the state of: a file's resolved path, or the database (its URL with no password)
and the query text. A run whose identity differs from its state's is refused unless the user
says it is the same model (:func:`identity_problem`).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .memory.state import SyncState

__all__ = ["IDENTITY_KEY", "model_identity", "read_identity", "store_identity"]

IDENTITY_KEY = "model_identity"
"""The state's meta key that holds the identity of the model it belongs to."""
_SECRET_PARAMETER = re.compile(r"pass|secret|token|key|auth", re.IGNORECASE)


def _database(db: str) -> str:
    """``db`` with its password (and secret-looking query parameters) removed; a SQLite
    path resolved."""
    if db.startswith("sqlite:///") or "://" not in db:
        return "sqlite:///" + str(Path(db.removeprefix("sqlite:///")).resolve())
    parts = urlsplit(db)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not _SECRET_PARAMETER.search(k)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def model_identity(path: str | None, *, sql: str | None = None, db: str | None = None) -> str:
    """What a model is: ``file <resolved path>``, or ``sql <database> <query>`` (the query's
    whitespace runs folded, so re-indenting it is the same model)."""
    if sql is not None:
        return f"sql {_database(db or '')}\n{' '.join(sql.split())}"
    return f"file {Path(path or '').resolve()}"


def read_identity(state_file: Path) -> str | None:
    """The identity stored in the state at ``state_file`` (None: no state, or none stored),
    read without creating or changing the file."""
    if not state_file.is_file():
        return None
    try:
        connection = sqlite3.connect(state_file.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT value FROM meta WHERE key = ?",
                                     (IDENTITY_KEY,)).fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return None  # a state from before meta, or not a state: opening it says more
    return None if row is None else str(row[0])


def store_identity(state_file: Path, identity: str) -> None:
    """Remember ``identity`` as the model of the state at ``state_file`` (created if new)."""
    with SyncState(state_file) as state:
        state.set_meta(IDENTITY_KEY, identity)


def shown(identity: str) -> str:
    """``identity`` on one line, for a message."""
    text = " ".join(identity.split())
    return text if len(text) <= 160 else text[:157] + "..."
