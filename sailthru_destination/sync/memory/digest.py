"""The cheap "unchanged" check: a digest of the row as read, before it is mapped.

The state stores, per primary key, ``<content hash>:<row digest>``. The content hash is
what :func:`~.model.read_user_row` computes from the mapped user (the "did it change"
truth); the row digest is a hash of the raw row, computed without mapping it (nor
renaming and typing it: the text it hashes carries the ``map`` and ``types``, see
:mod:`.columns`). A row whose digest matches the stored one is unchanged without being
read as a user at all; a row whose digest differs is mapped, and is still unchanged when
its content hash matches (the same user written differently, such as with its columns
reordered). A mapping change clears every stored hash (see
:meth:`~.state.SyncState.invalidate_hashes`), so neither half can match then.
"""

from __future__ import annotations

import hashlib
import json

from ..warehouse.sources import Row

__all__ = ["RESEND", "content_part", "row_digest", "stored_hash", "unchanged_row"]

RESEND = ":"
"""A stored hash no row matches, yet not empty (an empty one also drops the old lists, see
:func:`~.decide.change_of`): the row is sent again next run, with its old values."""

# The C encoder: a few microseconds a row. ``str`` for datetimes and decimals, as the
# content hash does.
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))


def row_digest(row: Row) -> str:
    """A digest of the row exactly as read (column order included): of its text when the
    source kept it, else of its values encoded."""
    text = row.raw if row.raw is not None else _ENCODER.encode(row.data)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def stored_hash(content: str, digest: str) -> str:
    """What the state keeps for a row applied with this content hash and row digest."""
    return f"{content}:{digest}"


def unchanged_row(stored: str | None, digest: str) -> bool:
    """Whether the row, by its digest alone, is the one last applied."""
    return stored is not None and stored.partition(":")[2] == digest


def content_part(stored: str | None) -> str | None:
    """The content hash in a stored hash (state files from before the digest hold only it)."""
    return None if stored is None else stored.partition(":")[0]
