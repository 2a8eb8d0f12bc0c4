"""The sync run: diff the model against the state, export what changed, act on what went away.

Three passes, each streaming so memory stays flat in the number of rows:

1. read the model; each row is checked, its primary key marked as seen, and its hash
   compared with the state: unchanged rows cost zero calls, changed and new rows are
   spooled to a temporary file;
2. export the spooled rows, with their old values from the state (so removed properties
   are cleared and left groups are removed), per user or through the bulk job API;
3. the users no row maps to any more (those of rows gone from the model or marked deleted
   by ``deleted_column``, and those rows left behind by moving to another existing user) get
   the delete behaviour (:mod:`.gone`).

:meth:`SyncRunner.apply` is the same for hosts that hand over only new rows (dlt, Singer):
the rows it is not given are left alone, and only rows marked deleted are gone. A whole-model
run in which some row could not be identified (no readable primary key) does the same: that
row may be any user, so no user is treated as gone from the model in that run.

Rows are compared by the Sailthru user they map to (the match value as Sailthru compares
it: emails lower-cased and trimmed). When two rows map to one user, the row the state says
already is that user keeps it (else the first in the model); the other is a per-record
error naming both primary keys and is not exported, so one user is counted once. A row
taking over a user that a gone or moved-away row held (a row re-created under a new key)
starts from that row's values, so what it lacks is cleared; and no delete touches a user
a row still maps to.

Before each user write the runner records a write-ahead intent (:mod:`.intents`), and a
run first settles the intents an earlier run left open (:mod:`.settle`). Each result is
recorded as soon as it arrives, in the thread that got it, so an interrupted run keeps
every write that was confirmed; a killed run resumes on the next.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from typing import IO, Any

from ..destination import SailthruDestination
from ..features.decide import MOVED_WITH_THE_ROW, UNCHANGED_DETAIL
from ..features.profiles import ProfileChange
from ..results import ExportResult, Status
from ..shaping.nulls import settle_nulls
from ..transport.calllog import CallRecord
from .bulkload.bulk import BulkExporter
from .bulkload.bulk_choice import use_bulk
from .config import SyncConfig
from .decide import change_of, renames
from .gone import remove_gone
from .guard import mass_delete_problem
from .memory.digest import RESEND, content_part, row_digest, stored_hash, unchanged_row
from .memory.intents import Intent
from .memory.retry_memory import RetryMemory
from .memory.settle import settle_intents
from .memory.state import AppliedRecord, SyncState
from .model import (
    RowProblem,
    UserRow,
    is_deleted,
    kept_groups,
    read_user_row,
    row_key,
    storable,
    user_key,
)
from .reporting.summary import RecordFailure, RecordNotice, RunSummary
from .warehouse.sources import Row

__all__ = ["RecordFailure", "RecordNotice", "RunAborted", "RunSummary", "SyncRunner"]

log = logging.getLogger(__name__)

# One encoder for every spooled row (json.dumps with options builds one per call).
_SPOOL_ENCODER = json.JSONEncoder(default=str)


class RunAborted(Exception):
    """The run stopped before touching Sailthru for a reason the user must look at."""


@dataclass(frozen=True)
class _Pending:
    """A changed row waiting for its result, and what to remember once it is applied."""

    row: UserRow
    where: str


class SyncRunner:
    """Runs one model through one destination, remembering what was applied in ``state``.

    ``on_failure`` sees every failed record (the run report writes them out);
    ``on_notice`` every record left alone on purpose, with the reason;
    ``progress`` shows a tqdm bar on stderr while exporting.
    ``resend`` sends rows whole even when unchanged (see ``ProfileChange.resend``): True
    for every row (``sync --full-resync``), or the primary keys of the rows to resend (an
    audit's repair). A resent row that fails is marked so the next run sends it again.
    """

    def __init__(
        self,
        destination: SailthruDestination,
        config: SyncConfig,
        state: SyncState,
        *,
        on_failure: Callable[[RecordFailure], object] | None = None,
        on_notice: Callable[[RecordNotice], object] | None = None,
        progress: bool = False,
        clock: Callable[[], float] = time.monotonic,
        resend: bool | Collection[str] = False,
    ) -> None:
        self._dest = destination
        self._config = config
        self._state = state
        self._on_failure = on_failure
        self._on_notice = on_notice
        self._progress = progress
        self._clock = clock
        self._resend: bool | frozenset[str] = (
            resend if isinstance(resend, bool) else frozenset(resend))
        self._losers = self._handovers = False
        self._unidentified = 0  # rows of this run with no readable primary key
        self._marked = 0  # rows of this run marked deleted (``deleted_column``)
        # Rows whose own record is another user than the row maps to now, by primary key.
        self._moving: dict[str, AppliedRecord] = {}
        # Rows marked deleted this run that this state never synced: no user holds their values.
        self._never_synced: set[str] = set()
        self._retry: RetryMemory | None = None  # during apply(): the rows to try again
        # The open intent of each row being exported, by primary key.
        self._intents: dict[str, Intent] = {}
        # Results are recorded in the threads that get them: one at a time.
        self._recording = threading.Lock()
        self._stopped: Exception | None = None  # what ``on_failure`` raised to stop the run
        self.summary = RunSummary()

    # -- the run ------------------------------------------------------------------------------

    def run(self, rows: Iterable[Row]) -> RunSummary:
        """Sync ``rows`` (the whole model) and return what happened."""
        return self._sync(rows, whole_model=True)

    def apply(self, rows: Iterable[Row]) -> RunSummary:
        """Sync ``rows`` that are new or changed since the last load, and return what happened.

        For hosts that hand over only new rows (dlt, Singer taps) and may hand the same
        rows over again: unchanged rows still cost nothing, but rows not given are left
        alone; only rows marked deleted (``deleted_column``) get the delete behaviour. Rows
        whose last attempt failed retryably are tried again (:mod:`.retry_memory`).
        """
        memory = self._retry = RetryMemory(self._state, self._config)
        try:
            summary = self._sync(memory.rows(rows), whole_model=False)
        finally:
            self._retry = None
        memory.done()
        return summary

    def _sync(self, rows: Iterable[Row], *, whole_model: bool) -> RunSummary:
        started = self._clock()
        self._stopped = None
        self._unidentified = 0
        self._marked = 0
        self._losers = self._handovers = False
        self._moving.clear()
        self._never_synced.clear()
        api = self._dest.api
        previous_sink = api.call_log.sink
        api.call_log.sink = self._count_call(previous_sink)
        try:
            if self._config.object in ("events", "purchases", "returns"):
                from .activity import send_activity
                from .bulkload.purchase_import import bulk_purchases

                bulk = bulk_purchases(self._dest, self._config, self._state, self.summary)
                send_activity(self._dest, self._config, rows, self.summary, self._fail,
                              bulk=bulk)
                return self.summary
            self._check_fingerprint()
            self._settle_intents()
            self._state.start_run()
            with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
                self._diff(rows, spool)
                if not whole_model or self._unidentified:
                    self._hold_the_rest(whole_model)
                changed = self._settle_duplicates()
                if whole_model:
                    self._guard_empty_model()
                self._guard_mass_delete()
                self._handovers = self._state.prepare_handovers() > 0
                spool.seek(0)
                self._export(self._exported(_read_spool(spool)), changed)
            remove_gone(self._dest, self._config, self._state, self.summary, fail=self._fail,
                        notice=self._notice, bar=self._bar)
        finally:
            api.call_log.sink = previous_sink
            self.summary.seconds += self._clock() - started
        return self.summary

    def _check_fingerprint(self) -> None:
        fingerprint = self._config.fingerprint()
        stored = self._state.get_meta("fingerprint")
        if stored is not None and stored != fingerprint:
            log.info("the mapping changed since the last run: every row will be exported again")
            self._state.invalidate_hashes(keep_lists=self._config.only_nulls_differ(stored))
        self._state.set_meta("fingerprint", fingerprint)
        # Records from before user keys were kept (or from another match key) get them now.
        keys: list[tuple[str, str | None]] = []
        for pk, match in self._state.unkeyed():
            keys.append((pk, user_key(self._config, match)))
            if len(keys) >= 1000:
                self._state.set_keys(keys)
                keys = []
        if keys:
            self._state.set_keys(keys)

    def _settle_intents(self) -> None:
        """Settle what an earlier run left open, before diffing (see :mod:`.settle`)."""
        settled = settle_intents(self._dest.api, self._config, self._state, self._notice,
                                 lag=self._dest.options.delete_confirm_after)
        self.summary.intents_settled += settled.settled
        self.summary.intents_in_doubt += settled.in_doubt

    def _count_call(
        self, chained: Callable[[CallRecord], object] | None
    ) -> Callable[[CallRecord], None]:
        def sink(record: CallRecord) -> None:
            self.summary.count_call(record)
            if chained is not None:
                chained(record)

        return sink

    # -- pass 1: diff -----------------------------------------------------------------------------

    def _diff(self, rows: Iterable[Row], spool: IO[str]) -> None:
        for row in rows:
            self.summary.rows += 1
            try:
                pk = storable(row_key(row, self._config), self._config.primary_key)
            except RowProblem as exc:
                self._unidentified += 1
                self._fail(RecordFailure(row.where, exc.reason, exc.field, row.where))
                continue
            # Even a row that fails holds its user: the model still wants that user.
            key = user_key(self._config, row.data.get(self._config.match_column))
            try:
                deleted = is_deleted(row, self._config)
            except RowProblem as exc:
                # A flag that is neither yes nor no: the row fails, and its user (held by
                # this sighting) is neither deleted nor exported.
                if self._state.see(pk, _storable_or_none(key), row.where, valid=False):
                    self._fail(RecordFailure(pk, exc.reason, exc.field, row.where))
                else:
                    self._duplicate(pk, row)
                continue
            if deleted:
                self._marked += 1
                self._mark_deleted(row, pk)
                continue
            stored = self._state.get_hash(pk)
            digest = row_digest(row)
            resend = self._resends(pk)
            if not resend and unchanged_row(stored, digest) and "__problem__" not in row.data:
                # The very row last applied: no need to map it (the no-change re-run's cost).
                if not self._state.see(pk, key, row.where, valid=True, changed=False):
                    self._duplicate(pk, row)
                continue
            user: UserRow | RowProblem
            try:
                if key is not None:
                    storable(key, self._config.match_column)
                user = read_user_row(row, self._config, pk, timezone=self._dest.app.timezone)
                user = kept_groups(user, row, self._config, partial(self._old_groups, pk))
            except RowProblem as exc:
                user, key = exc, None
            valid = isinstance(user, UserRow)
            changed = isinstance(user, UserRow) and (resend or content_part(stored) != user.hash)
            if not self._state.see(pk, key, row.where, valid=valid, changed=changed):
                self._duplicate(pk, row)
                continue
            if isinstance(user, RowProblem):
                self._fail(RecordFailure(pk, user.reason, user.field, row.where))
            elif changed:
                spooled = _spooled(user, row.where)
                spooled["hash"] = stored_hash(user.hash, digest)
                spool.write(_SPOOL_ENCODER.encode(spooled) + "\n")
            elif stored != stored_hash(user.hash, digest):
                # The same user read differently (or stored before row digests): remember
                # the new digest so the next run skips mapping it.
                self._state.set_hash(pk, stored_hash(user.hash, digest))

    def _old_groups(self, pk: str) -> frozenset[str] | None:
        """The groups last applied for row ``pk`` (None: never synced)."""
        record = self._state.get(pk)
        return None if record is None else record.groups

    def _duplicate(self, pk: str, row: Row) -> None:
        self._fail(RecordFailure(
            pk, f"duplicate primary key {self._config.primary_key}={pk!r}: only the "
            "first row with this key was used", self._config.primary_key, row.where))

    def _mark_deleted(self, row: Row, pk: str) -> None:
        """A row the model marks deleted: gone this run, with the values last applied (else,
        never synced through this state, the row's own)."""
        if not self._state.mark_deleted(pk):
            self._duplicate(pk, row)
            return
        if self._state.get(pk) is not None:
            return
        try:
            user = read_user_row(row, self._config, pk)
        except RowProblem as exc:
            # Already removed (a replayed batch) or never synced: nothing known to remove.
            log.info("record %s is marked deleted but not known to the state (%s): skipped",
                     pk, exc.reason)
            self.summary.counts["skipped"] += 1
            self._notice(RecordNotice(pk, f"marked deleted but never synced through this "
                                      f"state ({exc.reason}): nothing to remove", row.where))
            return
        self._state.put(AppliedRecord(pk, "", str(user.match), user.properties, user.groups,
                                      user.optout, user_key(self._config, user.match)))
        self._never_synced.add(pk)

    def _hold_the_rest(self, whole_model: bool) -> None:
        """Keep every user this run was not given (or could not identify) from being gone."""
        held = self._state.see_the_rest()
        if whole_model and held:
            self._notice(RecordNotice(
                "(model)", f"{self._unidentified} row(s) could not be identified (no readable "
                f"primary key), so none of the {held} applied row(s) missing from this run is "
                "treated as gone: fix those rows and run again to apply the delete behaviour"))

    def _settle_duplicates(self) -> int:
        """Give each user to one row; report the others. Returns how many rows to export."""
        winner, user = "", None
        for row in self._state.contenders():
            if row.key != user:
                winner, user = row.pk, row.key
                continue
            self._losers = True
            self._state.lose(row.pk, winner)
            if row.owns:  # an older state gave this user to both rows: the winner has it now
                self._state.forget(row.pk)
            self._fail(RecordFailure(
                row.pk, f"duplicate {self._config.match_key}: row {self._config.primary_key}="
                f"{winner!r} maps to the same Sailthru user ({row.key!r}); only that row is "
                "synced to it", self._config.match_column, row.where))
        unchanged, changed = self._state.tally()
        if unchanged:
            self.summary.counts["unchanged"] += unchanged
        return changed

    def _exported(self, pending: Iterator[_Pending]) -> Iterator[_Pending]:
        if not self._losers:
            return pending
        return (item for item in pending if self._state.loser(item.row.pk) is None)

    def _guard_empty_model(self) -> None:
        # Rows all marked deleted are no empty model (a truncated file or query): they say
        # which users go, and the mass-delete guard weighs how many.
        if (self._config.allow_empty or self._marked or self._state.seen_count()
                or not self._state.count()):
            return
        raise RunAborted(
            f"the model has no rows but the state remembers {self._state.count()}: refusing "
            "to treat every user as gone (pass --allow-empty if the model is really empty)"
        )

    def _guard_mass_delete(self) -> None:
        """Stop before any call when the run would remove too many users (:mod:`.guard`)."""
        problem = mass_delete_problem(self._state, self._config.delete_behavior,
                                      self._config.max_delete)
        if problem:
            raise RunAborted(problem)

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
            for _ in self._per_user(pending):
                bar.update(1)
        finally:
            bar.close()

    def _use_bulk(self, changed: int) -> bool:
        if self._config.sync_mode != "upsert":
            return False
        return use_bulk(self._config, changed, self._dest.api.limiter("POST", "user").rate)

    def _per_user(self, pending: Iterable[_Pending]) -> Iterator[ExportResult]:
        """Export each change; each result is recorded by the thread that got it, so an
        interrupt (which stops new calls) loses none that was confirmed."""
        items: dict[int, _Pending] = {}

        def changes() -> Iterator[ProfileChange]:
            for item in pending:
                change = self._change_for(item)
                items[id(change)] = item
                yield change

        def record(change: ProfileChange, result: ExportResult) -> None:
            self._applied(items.pop(id(change)), result)

        with closing(self._dest.iter_export_profiles(changes(), on_result=record)) as results:
            yield from results

    def _change_for(self, item: _Pending) -> ProfileChange:
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

    def _resends(self, pk: str) -> bool:
        """Whether row ``pk`` is sent whole this run (a full resync or a repair)."""
        resend = self._resend
        return resend if isinstance(resend, bool) else pk in resend

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

    def _applied(self, item: _Pending, result: ExportResult) -> None:
        with self._recording:
            self._record(item, result)

    def _record(self, item: _Pending, result: ExportResult) -> None:
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

    # -- helpers -----------------------------------------------------------------------------------

    def _fail(self, failure: RecordFailure) -> None:
        if self._stopped is not None:
            # The run stopped itself (``on_failure`` raised) while other records were in
            # flight: this one is not applied, so the next run tries it again.
            raise self._stopped
        self.summary.counts["failed"] += 1
        log.info("record %s failed: %s", failure.record, failure.reason)
        if self._retry is not None:
            self._retry.failed(failure)
        if self._on_failure is not None:
            try:
                self._on_failure(failure)
            except Exception as exc:
                self._stopped = exc
                raise

    def _notice(self, notice: RecordNotice) -> None:
        if self._on_notice is not None:
            self._on_notice(notice)

    def _bar(self, total: int, label: str) -> Any:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        return tqdm(total=total, desc=label, unit="rec", disable=not self._progress or not total,
                    leave=False)


def _storable_or_none(key: str | None) -> str | None:
    """``key`` when the state can store it (valid Unicode), else None."""
    try:
        return None if key is None else storable(key, "")
    except RowProblem:
        return None


def _spooled(user: UserRow, where: str) -> dict[str, Any]:
    return {"pk": user.pk, "match": user.match, "properties": user.properties,
            "groups": sorted(user.groups), "optout": user.optout, "hash": user.hash,
            "where": where}


def _read_spool(spool: IO[str]) -> Iterator[_Pending]:
    for line in spool:
        data = json.loads(line)
        user = UserRow(data["pk"], data["match"], data["properties"], frozenset(data["groups"]),
                       data["optout"], data["hash"])
        yield _Pending(user, data["where"])
