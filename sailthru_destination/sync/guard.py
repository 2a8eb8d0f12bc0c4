"""The mass-delete guard: a run that would delete or clear too many users stops first.

A truncated model (an export cut short, a query with the wrong ``WHERE``) looks exactly like
users gone from the model: with ``delete_behavior`` ``delete`` or ``clear`` a 10-row file
synced against a 50,000-row state deleted 49,990 users. So before any call of a run, the users
it would remove are counted, and a run removing more than ``max_delete`` of them stops
(:class:`~sailthru_destination.sync.runner.RunAborted`, exit 2) with the numbers and the
setting that allows it.

``max_delete`` is a share of the users the state remembers (``"20%"``, the default) or a
count (``60000``); ``"100%"`` turns the guard off. Whatever the share, a run removing at most
:data:`ALWAYS_ALLOWED` users is never stopped: a share of a very small state is a handful of
users, and the guard is for accidents at scale. Hosts that hand over batches (dlt, Singer)
get the same rule per batch, counting the rows the batch marks deleted.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .memory.state import SyncState

__all__ = ["ALWAYS_ALLOWED", "DEFAULT_MAX_DELETE", "DeleteLimit", "mass_delete_problem",
           "remembered_users"]

DEFAULT_MAX_DELETE = "20%"
"""The share of the remembered users a run may delete or clear unless told otherwise."""
ALWAYS_ALLOWED = 10
"""A run removing at most this many users is never stopped (a share of a tiny state)."""
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_COUNT = re.compile(r"^\s*(\d+)\s*$")


@dataclass(frozen=True)
class DeleteLimit:
    """How many users one run may delete or clear: a ``share`` (0-1) of those remembered, or
    a ``count``."""

    share: float | None = None
    count: int | None = None

    @classmethod
    def parse(cls, value: object) -> DeleteLimit:
        """``"20%"``, ``"60000"`` or ``60000``; a :class:`ValueError` saying what is wanted."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return cls(count=value)
        if isinstance(value, str):
            share, count = _SHARE.match(value), _COUNT.match(value)
            if share and float(share.group(1)) <= 100:
                return cls(share=float(share.group(1)) / 100)
            if count:
                return cls(count=int(count.group(1)))
        raise ValueError(f"max_delete must be a share of the remembered users such as '20%' "
                         f"(at most 100%) or a count such as 60000; got {value!r}")

    @property
    def off(self) -> bool:
        """Whether the limit never stops a run (``100%``)."""
        return self.share is not None and self.share >= 1

    def allowed(self, remembered: int) -> int:
        """How many users a run may remove when the state remembers ``remembered``."""
        if self.count is not None:
            return self.count
        return max(int((self.share or 0) * remembered), ALWAYS_ALLOWED)

    def describe(self) -> str:
        """The limit as the setting spells it."""
        if self.count is not None:
            return str(self.count)
        return f"{(self.share or 0) * 100:g}%"

    def problem(self, removing: int, remembered: int, behavior: str) -> str | None:
        """Why removing ``removing`` of ``remembered`` users must not go ahead, or None."""
        if self.off or removing <= self.allowed(remembered):
            return None
        verb = "delete" if behavior == "delete" else "clear"
        share = f" ({removing / remembered:.0%})" if remembered else ""
        needed = min(100, -(-removing * 100 // remembered)) if remembered else 100
        return (f"this run would {verb} {removing:,} of the {remembered:,} users the state "
                f"remembers{share}, more than max_delete {self.describe()} allows "
                f"({self.allowed(remembered):,}): nothing was deleted. Is the model complete? "
                f"If these users are really gone, allow it with --max-delete {needed}% or "
                f"--max-delete {removing} (max_delete in a config file)")


def remembered_users(state_file: Path) -> int:
    """How many rows the state file at ``state_file`` remembers (0 when there is none),
    read without creating or changing it."""
    if not state_file.is_file():
        return 0
    uri = state_file.resolve().as_uri() + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            return int(connection.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        finally:
            connection.close()
    except sqlite3.Error:
        return 0


def _removing(state: SyncState) -> int:
    """How many users this run would delete or clear: gone rows and left-behind users that no
    row of the model still holds (a held one is kept, not removed), each user once."""
    users: set[str] = set()
    unkeyed = 0
    for record in state.gone():
        if record.key is None:
            unkeyed += 1
        elif state.claimant(record.key) is None:
            users.add(record.key)
    for record in state.left():
        if record.key is not None and state.claimant(record.key, besides=record.pk) is None:
            users.add(record.key)
    return len(users) + unkeyed


def mass_delete_problem(state: SyncState, behavior: str, max_delete: object) -> str | None:
    """Why this run (its rows seen, its duplicates settled) must stop before removing users,
    or None. Counted cheaply first; precisely only when the cheap count is over the limit."""
    if behavior not in ("delete", "clear"):
        return None
    limit = DeleteLimit.parse(DEFAULT_MAX_DELETE if max_delete is None else max_delete)
    if limit.off:
        return None
    remembered = state.count()
    if limit.problem(state.gone_count() + len(state.left()), remembered, behavior) is None:
        return None
    return limit.problem(_removing(state), remembered, behavior)
