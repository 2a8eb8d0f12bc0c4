"""Pass 2 of a sync run: export the spooled rows, per user or through the bulk job API.

Each row goes with its old values from the state, so removed properties are cleared and left
groups are removed. Before each user write a write-ahead intent is recorded (:mod:`.intents`);
each result is recorded as soon as it arrives, in the thread that got it, so an interrupted
run keeps every write that was confirmed.
Part of :class:`~sailthru_destination.sync.runner.SyncRunner`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..destination import SailthruDestination
from ..features.decide import MOVED_WITH_THE_ROW, UNCHANGED_DETAIL
from ..features.profiles import ProfileChange
from ..results import ExportResult, Status
from ..shaping.nulls import settle_nulls
from ._diff import Pending
from .bulkload.bulk import BulkExporter
from .bulkload.bulk_choice import use_bulk
from .config import SyncConfig
from .decide import change_of, renames
from .memory.digest import RESEND
from .memory.intents import Intent
from .memory.state import AppliedRecord, SyncState
from .model import UserRow, user_key
from .reporting.summary import RecordFailure, RecordNotice, RunSummary

__all__ = ["ExportPass"]


class ExportPass:
    """Pass 2 of :class:`~sailthru_destination.sync.runner.SyncRunner`: what the runner
    holds that this pass reads, and the pass itself."""

    _dest: SailthruDestination
    _config: SyncConfig
    _state: SyncState
    summary: RunSummary
    _handovers: bool
    _moving: dict[str, AppliedRecord]
    _never_synced: set[str]
    _intents: dict[str, Intent]
    _recording: threading.Lock

    if TYPE_CHECKING:  # the runner's, shared by both passes
        def _fail(self, failure: RecordFailure) -> None: ...
        def _notice(self, notice: RecordNotice) -> None: ...
        def _bar(self, total: int, label: str) -> Any: ...
        def _resends(self, pk: str) -> bool: ...

    def _export(self, pending: Iterator[Pending], changed: int) -> None:
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
            for _ in self._per_user(pending):
                bar.update(1)
        finally:
            bar.close()

    def _use_bulk(self, changed: int) -> bool:
        if self._config.sync_mode != "upsert":
            return False
        return use_bulk(self._config, changed, self._dest.api.limiter("POST", "user").rate)

    def _per_user(self, pending: Iterable[Pending]) -> Iterator[ExportResult]:
        """Export each change; each result is recorded by the thread that got it, so an
        interrupt (which stops new calls) loses none that was confirmed."""
        items: dict[int, Pending] = {}

        def changes() -> Iterator[ProfileChange]:
            for item in pending:
                change = self._change_for(item)
                items[id(change)] = item
                yield change

        def record(change: ProfileChange, result: ExportResult) -> None:
            self._applied(items.pop(id(change)), result)

        with closing(self._dest.iter_export_profiles(changes(), on_result=record)) as results:
            yield from results

    def _change_for(self, item: Pending) -> ProfileChange:
        row = item.row
        change = change_of(row, self._old_record(row), self._config,
                           resend=self._resends(row.pk))
        # The state remembers what Sailthru holds: a kept NULL keeps its old value there too.
        settled = settle_nulls(change.old_properties, row.properties,
                               self._dest.options.null_values)
        if settled is not row.properties:
            change = replace(change, new_properties=settled)
        # Write-ahead: durable before the write leaves (with the records confirmed so far).
        self._intents[row.pk] = self._state.intend(Intent(
            "email" if change.old_key is not None else "upsert", "row", row.pk,
            AppliedRecord(row.pk, row.hash, str(row.match), dict(change.new_properties),
                          row.groups, row.optout, user_key(self._config, row.match)),
            old_properties=dict(change.old_properties), old_groups=frozenset(change.old_groups),
            old_match=change.old_key))
        return change

    def _old_record(self, user: UserRow) -> AppliedRecord | None:
        """What the row's user was as last applied: the row's own record, or another's."""
        own = self._state.get(user.pk)
        if own is not None and own.key not in (None, user_key(self._config, user.match)):
            self._moving[user.pk] = own  # the row maps to another user now
        # A row taking over a user another row held (see SyncState.prepare_handovers)
        # starts from that user's values, not from its own old user's.
        if self._handovers:
            taken = self._state.handover(user.pk)
            # A row marked deleted that this state never synced left no values with its user:
            # the row taking the user over starts from its own record (a new row: a creation).
            if taken is not None and taken.pk not in self._never_synced:
                return taken
        if user.pk not in self._moving:
            return own
        if not renames(own, user, self._config):
            return None  # another user (see renames): this row starts afresh
        if self._state.claimant(own.key if own else None, besides=user.pk) is not None:
            # Another row now holds the old email or extid: renaming that user would take
            # it from that row. This row's new key is a user of its own.
            return None
        # An email or extid change: the old user is renamed when the new key is free.
        return own

    def _applied(self, item: Pending, result: ExportResult) -> None:
        with self._recording:
            self._record(item, result)

    def _record(self, item: Pending, result: ExportResult) -> None:
        user = item.row
        own = self._moving.pop(user.pk, None)
        intent = self._intents.pop(user.pk)
        if result.status is Status.FAILED:
            # A write may have applied (a 5xx after the work, then a refused retry): its
            # intent stays open, and the next run reads the user back before diffing. A
            # value refused before any call (a field named, no Sailthru code) wrote nothing.
            error = result.error
            if error is not None and error.field and error.code is None and not error.retryable:
                self._state.settle_intent(intent)
            self._fail(RecordFailure(
                user.pk, result.detail, error.field if error else None, item.where,
                error.retryable if error else False))
            if self._resends(user.pk):
                # What Sailthru holds is in doubt (that is why it was resent): keep the old
                # values, but make the row look changed so the next plain run sends it.
                self._state.set_hash(user.pk, RESEND)
            return
        if result.status is Status.SKIPPED and result.detail != UNCHANGED_DETAIL:
            # Left alone on purpose (update mode and no such user, no consent): say why.
            self.summary.counts["skipped"] += 1
            self._notice(RecordNotice(user.pk, result.detail, item.where))
            self._state.settle_intent(intent)  # nothing was written
            return
        key = "unchanged" if result.status is Status.SKIPPED else str(result.status)
        self.summary.counts[key] += 1
        if (own is not None and own.key is not None
                and self._config.delete_behavior != "nothing"
                and result.detail not in MOVED_WITH_THE_ROW
                and self._state.claimant(own.key, besides=user.pk) is None):
            self._state.leave(own)  # no row maps to the old user now: pass 3 deals with it
        self._state.put(intent.record, settles=intent)
