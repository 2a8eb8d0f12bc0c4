"""Writes "in doubt": sent, with no clear answer, and not yet proven present or absent.

Sailthru's reads are eventually consistent with no documented bound, and a job imports
after its POST's reply (which may be lost), so one read that misses a purchase proves
nothing. This module holds the rule (:func:`may_post_again`) and the memory it needs
(:class:`DoubtLog`): when each order went into doubt, how many reads missed it since, which
sender put it there, and the ``purchase_import`` job that may still be importing it.

The rule: an order in doubt is posted again only when

- a read misses it now, and at least one read missed it before (reads spread over time),
- ``age`` seconds (minutes by default) have passed since it went into doubt, or since its
  job was last seen still running, and
- the sender asking is not the one that put it in doubt (a later run or task).

Until then it is reported by order id as in doubt, never as sent. The cost: an order whose
post had no clear answer and which really did not land reaches Sailthru one run (and at
least ``age``) later.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_DOUBT_AGE", "UNKNOWN_JOB", "Doubt", "DoubtLog", "InMemoryDoubtLog",
           "may_post_again"]

DEFAULT_DOUBT_AGE = 600.0
"""Ten minutes: longer than Sailthru's reads have been seen to lag, and than a job takes."""

UNKNOWN_JOB = "?"
"""The job of a ``purchase_import`` whose POST had no clear answer (no job id came back)."""


@dataclass(frozen=True)
class Doubt:
    """What is known of one write in doubt.

    ``since``: Unix seconds it went into doubt (or its job was last seen running);
    ``misses``: reads that did not find it since; ``owner``: the sender that put it in
    doubt; ``job``: the id of the job that may still import it, :data:`UNKNOWN_JOB`, or None.
    """

    since: float
    misses: int = 0
    owner: str = ""
    job: str | None = None

    def missed(self) -> Doubt:
        """The same doubt after one more read that did not find it."""
        return replace(self, misses=self.misses + 1)


def may_post_again(doubt: Doubt, now: float, age: float, session: str) -> bool:
    """Whether a write in doubt, just missed by a read (counted in ``doubt.misses``), is
    proven absent enough to be posted again by the sender ``session`` (see the module)."""
    if doubt.job is not None and doubt.job != UNKNOWN_JOB:
        return False  # its job was not seen finished
    return doubt.misses >= 2 and now - doubt.since >= age and doubt.owner != session


@runtime_checkable
class DoubtLog(Protocol):
    """Where writes in doubt are remembered (shared by every sender of one sent-keys store)."""

    def doubt(self, kind: str, key: str) -> Doubt | None:
        """What is known of ``key`` of ``kind`` in doubt, or None."""
        ...

    def note_doubt(self, kind: str, key: str, doubt: Doubt) -> None:
        """Remember (or replace) what is known of ``key`` in doubt (durably, at once)."""
        ...

    def clear_doubt(self, kind: str, key: str) -> None:
        """Forget ``key``: it is settled (found, or posted again)."""
        ...


class InMemoryDoubtLog:
    """A thread-safe :class:`DoubtLog` in memory, for stores that keep none themselves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._doubts: dict[tuple[str, str], Doubt] = {}

    def doubt(self, kind: str, key: str) -> Doubt | None:
        with self._lock:
            return self._doubts.get((kind, key))

    def note_doubt(self, kind: str, key: str, doubt: Doubt) -> None:
        with self._lock:
            self._doubts[(kind, key)] = doubt

    def clear_doubt(self, kind: str, key: str) -> None:
        with self._lock:
            self._doubts.pop((kind, key), None)

    def __repr__(self) -> str:
        return f"InMemoryDoubtLog({len(self._doubts)} keys)"
