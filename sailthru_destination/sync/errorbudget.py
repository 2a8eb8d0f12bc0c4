"""When a run should stop itself: too many failed records, or a failure that is systematic.

A run whose every record fails the same way (a var name Sailthru refuses, a list it will not
create) would otherwise make one doomed call per row and write one identical error line per
row. :class:`ErrorBudget` sees each failure and raises :class:`RunStopped` when the run has
had ``max_errors`` of them, or when its first :data:`SYSTEMATIC` failures came before any
record succeeded and all share one reason. The state is written as records are confirmed, so
a stopped run resumes on the next like a killed one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .reporting.summary import RecordFailure, RunSummary

__all__ = ["SYSTEMATIC", "ErrorBudget", "RunStopped"]

SYSTEMATIC = 100
"""How many failures for one reason, before any success, stop a run as systematic."""
_SUCCESSES = ("created", "updated", "deleted", "cleared", "sent")
# The parts of a reason that name the record (quoted values, numbers) are not the reason.
_PARTICULAR = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


class RunStopped(Exception):
    """The run stopped itself; the message says why and how to go on."""


def _kind(failure: RecordFailure) -> str:
    return f"{failure.field}|{_PARTICULAR.sub('_', failure.reason)}"


class ErrorBudget:
    """Counts a run's failures and stops the run when there are too many (see module doc)."""

    def __init__(self, max_errors: int | None, summary: Callable[[], RunSummary]) -> None:
        self._max = max_errors
        self._summary = summary
        self._failures = 0
        self._kinds: set[str] = set()

    def __call__(self, failure: RecordFailure) -> None:
        """Count ``failure``; raises :class:`RunStopped` when the run should stop."""
        self._failures += 1
        if self._max is not None and self._failures >= self._max:
            raise RunStopped(
                f"stopped after {self._failures} failed record(s) (--max-errors "
                f"{self._max}): the state is saved, fix the cause and run again")
        if self._failures <= SYSTEMATIC:
            self._kinds.add(_kind(failure))
        if self._failures == SYSTEMATIC and len(self._kinds) == 1 and not any(
            self._summary().counts[name] for name in _SUCCESSES
        ):
            raise RunStopped(
                f"stopped: the first {SYSTEMATIC} records all failed for the same reason "
                f"({failure.reason}), so the rest would too: the state is saved, fix the cause "
                "(see errors.jsonl) and run again (--max-errors N sets a limit of your own)")
