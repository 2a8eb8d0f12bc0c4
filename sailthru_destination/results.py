"""What the destination tells the host about each record and each batch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from .errors import RecordError

__all__ = ["BatchResult", "ConnectionCheck", "ExportResult", "Status"]


class Status(str, Enum):
    """The outcome of one record."""

    CREATED = "created"
    UPDATED = "updated"
    CLEARED = "cleared"
    DELETED = "deleted"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class ExportResult:
    """The outcome of one record: its status, a sentence saying why, and the error if it failed."""

    status: Status
    record_id: str
    detail: str = ""
    error: RecordError | None = None

    @property
    def ok(self) -> bool:
        """Whether the record is done (applied, or skipped on purpose)."""
        return self.status is not Status.FAILED

    @classmethod
    def failed(cls, error: RecordError) -> ExportResult:
        """The result of a record that failed with ``error``."""
        return cls(Status.FAILED, error.record_id, error.reason, error)


@dataclass(frozen=True)
class BatchResult:
    """The results of a batch, one per record in input order; a bad record never raises."""

    results: tuple[ExportResult, ...] = ()

    @classmethod
    def of(cls, results: Iterable[ExportResult]) -> BatchResult:
        """A batch result from per-record results."""
        return cls(tuple(results))

    @property
    def errors(self) -> list[RecordError]:
        """The errors of the records that failed."""
        return [r.error for r in self.results if r.error is not None]

    @property
    def counts(self) -> Counter[str]:
        """How many records ended in each status."""
        return Counter(str(r.status) for r in self.results)

    @property
    def ok(self) -> bool:
        """Whether no record failed."""
        return all(r.ok for r in self.results)

    def __len__(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class ConnectionCheck:
    """The outcome of a connection test: ok, a summary sentence, and one sentence per check."""

    ok: bool
    message: str
    checks: tuple[tuple[str, bool, str], ...] = field(default_factory=tuple)
