"""The sync run: diff the model against the state, export what changed, act on what went away.

Three passes, each streaming so memory stays flat in the number of rows:

1. read the model; each row is checked, its primary key marked as seen, and its hash
   compared with the state: unchanged rows cost zero calls, changed and new rows are
   spooled to a temporary file;
2. export the spooled rows, with their old values from the state (so removed properties
   are cleared and left groups are removed), per user or through the bulk job API;
3. rows marked deleted (``deleted_column``), and rows that disappeared from the model,
   get the delete behaviour.

:meth:`SyncRunner.apply` is the same without the disappeared rows, for hosts that hand
over only new rows (see :mod:`sailthru_destination.sync.run`).

The state is written as each record is confirmed, so a killed run resumes on the next.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any

from ..calllog import CallRecord
from ..destination import SailthruDestination
from ..profiles import ProfileChange
from ..results import ExportResult, Status
from .bulk import BulkExporter
from .bulk_choice import use_bulk
from .config import SyncConfig
from .digest import content_part, row_digest, stored_hash, unchanged_row
from .model import RowProblem, UserRow, is_deleted, read_user_row, row_key
from .sources import Row
from .state import AppliedRecord, SyncState

__all__ = ["RecordFailure", "RunAborted", "RunSummary", "SyncRunner"]

log = logging.getLogger(__name__)

_UNCHANGED_DETAIL = "unchanged: no call made"
_DIFF_BLOCK = 500
# One encoder for every spooled row (json.dumps with options builds one per call).
_SPOOL_ENCODER = json.JSONEncoder(default=str)


class RunAborted(Exception):
    """The run stopped before touching Sailthru for a reason the user must look at."""


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

    @property
    def failed(self) -> int:
        """How many records failed."""
        return self.counts["failed"]

    @property
    def total_calls(self) -> int:
        """Every API call attempt made, retries included."""
        return sum(self.calls.values())

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready data."""
        return {
            "rows": self.rows, "counts": dict(self.counts), "failed": self.failed,
            "api_calls": self.total_calls, "calls_by_endpoint": dict(self.calls),
            "calls_per_record": round(self.total_calls / self.rows, 3) if self.rows else 0.0,
            "lists_created": self.lists_created, "path": self.path, "jobs": self.jobs,
            "seconds": round(self.seconds, 3), "refused_calls": self.refused_calls,
        }


@dataclass(frozen=True)
class _Pending:
    """A changed row waiting for its result, and what to remember once it is applied."""

    row: UserRow
    where: str
    known: bool = True  # False: the state had no record of it (no old values to read)


class SyncRunner:
    """Runs one model through one destination, remembering what was applied in ``state``.

    ``on_failure`` sees every failed record (the run report writes them out);
    ``progress`` shows a tqdm bar on stderr while exporting.
    """

    def __init__(
        self,
        destination: SailthruDestination,
        config: SyncConfig,
        state: SyncState,
        *,
        on_failure: Callable[[RecordFailure], object] | None = None,
        progress: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dest = destination
        self._config = config
        self._state = state
        self._on_failure = on_failure
        self._progress = progress
        self._clock = clock
        self.summary = RunSummary()

    # -- the run ------------------------------------------------------------------------------

    def run(self, rows: Iterable[Row]) -> RunSummary:
        """Sync ``rows`` (the whole model) and return what happened."""
        return self._sync(rows, whole_model=True)

    def apply(self, rows: Iterable[Row]) -> RunSummary:
        """Sync ``rows`` that are new or changed since the last load, and return what happened.

        For hosts that hand over only new rows (dlt, Singer taps) and may hand the same
        rows over again: unchanged rows still cost nothing, but rows not given are left
        alone; only rows marked deleted (``deleted_column``) get the delete behaviour.
        """
        return self._sync(rows, whole_model=False)

    def _sync(self, rows: Iterable[Row], *, whole_model: bool) -> RunSummary:
        started = self._clock()
        api = self._dest.api
        previous_sink = api.call_log.sink
        api.call_log.sink = self._count_call(previous_sink)
        try:
            if self._config.object in ("events", "purchases", "returns"):
                from .activity import send_activity
                from .purchase_import import bulk_purchases

                bulk = bulk_purchases(self._dest, self._config, self._state, self.summary)
                send_activity(self._dest, self._config, rows, self.summary, self._fail,
                              bulk=bulk)
                return self.summary
            self._check_fingerprint()
            self._state.start_run()
            with tempfile.TemporaryFile("w+", encoding="utf-8") as spool, \
                    tempfile.TemporaryFile("w+", encoding="utf-8") as deleted:
                changed = self._diff(rows, spool, deleted)
                if whole_model:
                    self._guard_empty_model()
                spool.seek(0)
                self._export(_read_spool(spool), changed)
                deleted.seek(0)
                self._remove(_read_deleted(deleted))
            if whole_model and self._state.gone_count():
                # Read the whole list first: forgetting rows while paging would skip some.
                gone = [(record, "gone from the model") for record in self._state.gone()]
                self._remove(iter(gone), len(gone))
        finally:
            api.call_log.sink = previous_sink
            self.summary.seconds += self._clock() - started
        return self.summary

    def _check_fingerprint(self) -> None:
        fingerprint = self._config.fingerprint()
        stored = self._state.get_meta("fingerprint")
        if stored is not None and stored != fingerprint:
            log.info("the mapping changed since the last run: every row will be exported again")
            self._state.invalidate_hashes()
        self._state.set_meta("fingerprint", fingerprint)

    def _count_call(
        self, chained: Callable[[CallRecord], object] | None
    ) -> Callable[[CallRecord], None]:
        def sink(record: CallRecord) -> None:
            self.summary.calls[f"{record.method} {record.endpoint}"] += 1
            if record.error == "AuthError":
                self.summary.refused_calls += 1
            if (record.method, record.endpoint) == ("POST", "list") and record.error is None:
                self.summary.lists_created += 1
            if chained is not None:
                chained(record)

        return sink

    # -- pass 1: diff -----------------------------------------------------------------------------

    def _diff(self, rows: Iterable[Row], spool: IO[str], deleted: IO[str]) -> int:
        # In blocks, so the state is read and written once per block, not per row.
        changed = 0
        for block in _blocks(rows, _DIFF_BLOCK):
            keyed: list[tuple[Row, str]] = []
            for row in block:
                self.summary.rows += 1
                try:
                    keyed.append((row, row_key(row, self._config)))
                except RowProblem as exc:
                    self._fail(RecordFailure(row.where, exc.reason, exc.field, row.where))
            firsts = self._state.see_many([pk for _, pk in keyed])
            fresh = [pk for (_, pk), first in zip(keyed, firsts, strict=True) if first]
            stored = self._state.get_hashes(fresh)
            for (row, pk), first in zip(keyed, firsts, strict=True):
                changed += self._diff_row(row, pk, first, stored.get(pk), spool, deleted)
        return changed

    def _diff_row(self, row: Row, pk: str, first: bool, stored: str | None, spool: IO[str],
                  deleted: IO[str]) -> int:
        """Sort one row: 1 when it changed (spooled for export), else 0."""
        if not first:
            self._fail(RecordFailure(
                pk, f"duplicate primary key {self._config.primary_key}={pk!r}: only the "
                "first row with this key was used", self._config.primary_key, row.where))
            return 0
        if is_deleted(row, self._config):
            self._spool_deleted(row, pk, deleted)
            return 0
        digest = row_digest(row)
        if unchanged_row(stored, digest) and "__problem__" not in row.data:
            self.summary.counts["unchanged"] += 1
            return 0
        try:
            user = read_user_row(row, self._config, pk)
        except RowProblem as exc:
            self._fail(RecordFailure(pk, exc.reason, exc.field, row.where))
            return 0
        if content_part(stored) == user.hash:
            # The same user read differently (or stored before row digests): remember the
            # new digest so the next run skips mapping it.
            self._state.set_hash(pk, stored_hash(user.hash, digest))
            self.summary.counts["unchanged"] += 1
            return 0
        spooled = _spooled(user, row.where, stored is not None)
        spooled["hash"] = stored_hash(user.hash, digest)
        spool.write(_SPOOL_ENCODER.encode(spooled) + "\n")
        return 1

    def _spool_deleted(self, row: Row, pk: str, deleted: IO[str]) -> None:
        """Queue a row marked deleted, with the values last applied (else the row's own)."""
        record = self._state.get(pk)
        if record is None:
            try:
                user = read_user_row(row, self._config, pk)
            except RowProblem as exc:
                # Already removed (a replayed batch) or never synced: nothing known to remove.
                log.info("record %s is marked deleted but not known to the state (%s): skipped",
                         pk, exc.reason)
                self.summary.counts["skipped"] += 1
                return
            record = AppliedRecord(pk, "", str(user.match), user.properties, user.groups)
        deleted.write(json.dumps({"pk": record.pk, "match": record.match,
                                  "properties": record.properties,
                                  "groups": sorted(record.groups), "where": row.where},
                                 default=str) + "\n")

    def _guard_empty_model(self) -> None:
        if self._config.allow_empty or self._state.seen_count() or not self._state.count():
            return
        raise RunAborted(
            f"the model has no rows but the state remembers {self._state.count()}: refusing "
            "to treat every user as gone (pass --allow-empty if the model is really empty)"
        )

    # -- pass 2: export ----------------------------------------------------------------------------

    def _export(self, pending: Iterator[_Pending], changed: int) -> None:
        bar = self._bar(changed, "exporting")
        try:
            if self._use_bulk(changed):
                self.summary.path = "bulk"
                exporter = BulkExporter(self._dest, self._config)
                results = exporter.export(pending, self._change_for)
                for item, result in results:
                    self._applied(item, result)
                    bar.update(1)
                self.summary.jobs = exporter.jobs
                return
            for item, result in self._per_user(pending):
                self._applied(item, result)
                bar.update(1)
        finally:
            bar.close()

    def _use_bulk(self, changed: int) -> bool:
        if self._config.sync_mode != "upsert":
            return False
        return use_bulk(self._config, changed, self._dest.api.limiter("POST", "user").rate)

    def _per_user(self, pending: Iterable[_Pending]) -> Iterator[tuple[_Pending, ExportResult]]:
        window: deque[_Pending] = deque()

        def changes() -> Iterator[ProfileChange]:
            for item in pending:
                window.append(item)
                yield self._change_for(item)

        for result in self._dest.iter_export_profiles(changes()):
            yield window.popleft(), result

    def _change_for(self, item: _Pending) -> ProfileChange:
        user = item.row
        # A row the diff found no record of has no old values: no read for it.
        old = self._state.get(user.pk) if item.known else None
        # After a mapping change (hash reset) the old groups may name lists under the old
        # prefix: join the new names and leave the old lists alone rather than guess.
        old_groups = old.groups if old and old.hash else frozenset()
        old_key = None
        if old is not None and self._config.match_key == "email" and old.match != user.match:
            old_key = old.match
        return ProfileChange(
            key=user.match,
            old_properties=old.properties if old else {},
            new_properties=user.properties,
            old_groups=old_groups,
            new_groups=user.groups,
            record_id=user.pk,
            old_key=old_key,
            optout=user.optout,
        )

    def _applied(self, item: _Pending, result: ExportResult) -> None:
        user = item.row
        if result.status is Status.FAILED:
            error = result.error
            self._fail(RecordFailure(
                user.pk, result.detail, error.field if error else None, item.where,
                error.retryable if error else False))
            return
        if result.status is Status.SKIPPED and result.detail != _UNCHANGED_DETAIL:
            self.summary.counts["skipped"] += 1
            return
        key = "unchanged" if result.status is Status.SKIPPED else str(result.status)
        self.summary.counts[key] += 1
        self._state.put(AppliedRecord(user.pk, user.hash, str(user.match), user.properties,
                                      user.groups, user.optout))

    # -- pass 3: rows marked deleted, and rows that went away -------------------------------------

    def _remove(self, records: Iterator[tuple[AppliedRecord, str]], total: int = 0) -> None:
        window: deque[tuple[AppliedRecord, str]] = deque()

        def changes() -> Iterator[ProfileChange]:
            for record, where in records:
                window.append((record, where))
                yield ProfileChange(
                    key=record.match, old_properties=record.properties,
                    old_groups=record.groups, to_delete=True, record_id=record.pk)

        bar = self._bar(total, "removing")
        try:
            for result in self._dest.iter_export_profiles(changes()):
                record, where = window.popleft()
                bar.update(1)
                if result.status is Status.FAILED:
                    error = result.error
                    self._fail(RecordFailure(record.pk, result.detail,
                                             error.field if error else None, where,
                                             error.retryable if error else False))
                    continue
                key = "kept" if result.status is Status.SKIPPED else str(result.status)
                self.summary.counts[key] += 1
                self._state.forget(record.pk)
        finally:
            bar.close()

    # -- helpers -----------------------------------------------------------------------------------

    def _fail(self, failure: RecordFailure) -> None:
        self.summary.counts["failed"] += 1
        log.info("record %s failed: %s", failure.record, failure.reason)
        if self._on_failure is not None:
            self._on_failure(failure)

    def _bar(self, total: int, label: str) -> Any:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        return tqdm(total=total, desc=label, unit="rec", disable=not self._progress or not total,
                    leave=False)


def _blocks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    it = iter(rows)
    while block := list(islice(it, size)):
        yield block


def _spooled(user: UserRow, where: str, known: bool = True) -> dict[str, Any]:
    return {"pk": user.pk, "match": user.match, "properties": user.properties,
            "groups": sorted(user.groups), "optout": user.optout, "hash": user.hash,
            "where": where, "known": known}


def _read_deleted(spool: IO[str]) -> Iterator[tuple[AppliedRecord, str]]:
    for line in spool:
        data = json.loads(line)
        yield (AppliedRecord(data["pk"], "", data["match"], data["properties"],
                             frozenset(data["groups"])), data["where"])


def _read_spool(spool: IO[str]) -> Iterator[_Pending]:
    for line in spool:
        data = json.loads(line)
        user = UserRow(data["pk"], data["match"], data["properties"], frozenset(data["groups"]),
                       data["optout"], data["hash"])
        yield _Pending(user, data["where"], data.get("known", True))
