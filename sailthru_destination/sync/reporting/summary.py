"""What a run tells its user: the summary counts, each failed record, each record left alone.

A failure is something to fix (``errors.jsonl`` of the run report); a notice is a record
the run left alone on purpose, with the reason (``skipped.jsonl``), such as a row gone from
the model whose Sailthru user another row still holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...transport.calllog import CallRecord

__all__ = ["RecordFailure", "RecordNotice", "RunSummary"]


@dataclass(frozen=True)
class RecordFailure:
    """One record that failed: its primary key (or where it was), the column and the reason."""

    record: str
    reason: str
    field: str | None = None
    where: str | None = None
    retryable: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The failure as plain JSON-ready data."""
        return {"record": self.record, "where": self.where, "field": self.field,
                "reason": self.reason, "retryable": self.retryable}


@dataclass(frozen=True)
class RecordNotice:
    """One record the run left alone on purpose: its primary key, where it was, and why."""

    record: str
    reason: str
    where: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The notice as plain JSON-ready data."""
        return {"record": self.record, "where": self.where, "reason": self.reason}


@dataclass
class RunSummary:
    """What a run did: counts per outcome, calls made, lists created, time taken."""

    rows: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    lists_created: int = 0
    path: str = "per-user"
    jobs: int = 0
    seconds: float = 0.0
    refused_calls: int = 0
    intents_settled: int = 0
    """Write-ahead intents an earlier run left open, settled by reading the user back."""
    intents_in_doubt: int = 0
    """Open intents a read could not settle (reported as notices; read again next run)."""

    @property
    def failed(self) -> int:
        """How many records failed."""
        return self.counts["failed"]

    @property
    def total_calls(self) -> int:
        """Every API call attempt made, retries included."""
        return sum(self.calls.values())

    def count_call(self, record: CallRecord) -> None:
        """Count one API call attempt of the run (refused and list-creating calls too)."""
        self.calls[f"{record.method} {record.endpoint}"] += 1
        if record.error == "AuthError":
            self.refused_calls += 1
        if (record.method, record.endpoint) == ("POST", "list") and record.error is None:
            self.lists_created += 1

    @property
    def changed(self) -> int:
        """How many records the run acted on: every outcome but ``unchanged`` (which costs no
        call), rows gone from the model that were deleted, cleared or kept included."""
        return sum(n for outcome, n in self.counts.items() if outcome != "unchanged")

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready data."""
        changed = self.changed
        return {
            "rows": self.rows, "counts": dict(self.counts), "failed": self.failed,
            "api_calls": self.total_calls, "calls_by_endpoint": dict(self.calls),
            "calls_per_record": round(self.total_calls / self.rows, 3) if self.rows else 0.0,
            "calls_per_changed_row": round(self.total_calls / changed, 3) if changed > 0 else 0.0,
            "lists_created": self.lists_created, "path": self.path, "jobs": self.jobs,
            "seconds": round(self.seconds, 3), "refused_calls": self.refused_calls,
            "intents": {"settled": self.intents_settled, "in_doubt": self.intents_in_doubt},
        }
