"""Rows to try again on the incremental paths (dlt, Singer), whatever the host hands over.

dlt and Singer taps hand a row over once: a row that failed retryably (a 5xx, a timeout,
an order in doubt, a delete Sailthru did not confirm) would never be tried again, and a
user who asked to be deleted would stay in Sailthru. So the state remembers every row
whose last attempt failed retryably, deletes included (its data, as handed over), and each
:meth:`~.runner.SyncRunner.apply` feeds those rows in again after the rows it is given,
unless it is given a newer row with the same primary key. A row leaves the memory when it
succeeds, fails for good (a bad value, a refusal) or is superseded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ...shaping._invalid import InvalidValue
from ...shaping.values import sailthru_value
from ..config import SyncConfig
from ..model import RowProblem, row_key
from ..reporting.summary import RecordFailure
from ..warehouse.sources import Row
from ._db import StateDb

__all__ = ["RetryMemory", "RetryRowsTable"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retry_rows (
    pk TEXT PRIMARY KEY, place TEXT NOT NULL, data TEXT NOT NULL
);
"""


class RetryRowsTable(StateDb):
    """The part of :class:`~sailthru_destination.sync.memory.state.SyncState` about rows to
    retry."""

    def _prepare(self) -> None:
        super()._prepare()
        self._db.executescript(_SCHEMA)

    def retry_rows(self) -> list[Row]:
        """The rows whose last attempt failed retryably, in primary-key order."""
        with self._lock:
            found = self._db.execute("SELECT place, data FROM retry_rows ORDER BY pk").fetchall()
        return [Row(str(place), json.loads(data)) for place, data in found]

    def keep_retry(self, pk: str, row: Row) -> None:
        """Remember ``row`` (primary key ``pk``) to be tried again (committed at once)."""
        data = json.dumps(row.data, default=str, sort_keys=True)
        with self._lock:
            self._write_now("INSERT OR REPLACE INTO retry_rows VALUES (?, ?, ?)",
                            (pk, row.where, data))

    def drop_retry(self, pk: str) -> None:
        """Forget the row ``pk``: it succeeded, failed for good, or a newer row replaced it."""
        with self._lock:
            self._write_now("DELETE FROM retry_rows WHERE pk = ?", (pk,))


class RetryMemory:
    """One :meth:`~.runner.SyncRunner.apply`: the rows it is given plus those to retry, and
    which of them failed retryably (told through :meth:`failed`); :meth:`done` records it."""

    def __init__(self, state: RetryRowsTable, config: SyncConfig, timezone: str) -> None:
        # No default time zone: rows are typed as the account reads them, and a default once
        # hid that a retried row's dates were typed in the wrong zone.
        self._state = state
        self._config = config
        self._timezone = timezone  # the account's: a remembered row is typed as it was read
        self._rows: dict[str, Row] = {}  # primary key -> row of this apply
        self._where: dict[str, str] = {}  # where a row was -> its primary key
        self._retryable: set[str] = set()
        self._remembered: set[str] = set()

    def rows(self, given: Iterable[Row]) -> Iterator[Row]:
        """``given``, then every remembered row no given row replaces."""
        for row in given:
            self._note(row)
            yield row
        for row in self._state.retry_rows():
            pk = self._key(row)
            if pk is None:
                continue
            self._remembered.add(pk)
            if pk not in self._rows:
                self._note(row)
                yield row

    def failed(self, failure: RecordFailure) -> None:
        """A record of this apply failed: remember its row when it may succeed later."""
        pk = failure.record if failure.record in self._rows else self._where.get(
            failure.where or "")
        if pk is None:
            return
        if failure.retryable:
            self._retryable.add(pk)
        else:
            self._retryable.discard(pk)

    def done(self) -> None:
        """Record the outcome of an apply that ran to its end."""
        for pk in self._retryable:
            self._state.keep_retry(pk, self._typed(self._rows[pk]))
        for pk in self._remembered - self._retryable:
            self._state.drop_retry(pk)

    def _typed(self, row: Row) -> Row:
        """``row`` with each value as Sailthru got it (the typing rule), so that the retry
        sends what the first attempt sent: a timestamp kept as ``str()`` text would come back
        as other text, and no longer as Unix seconds in a ``_time`` var."""
        data: dict[str, Any] = {}
        for name, value in row.data.items():
            try:
                data[name] = sailthru_value(value, name, timezone=self._timezone)
            except InvalidValue:  # never kept: such a row fails for good, not retryably
                data[name] = value
        return Row(row.where, data)

    def _note(self, row: Row) -> None:
        pk = self._key(row)
        if pk is not None:
            self._rows[pk] = row
            self._where[row.where] = pk

    def _key(self, row: Row) -> str | None:
        try:
            return row_key(row, self._config)
        except RowProblem:
            return None
