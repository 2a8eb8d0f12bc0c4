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

Pass 1 is :class:`._diff.DiffPass`, pass 2 :class:`._export.ExportPass`; this class holds what
both share and runs them in order.

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

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from ..destination import SailthruDestination
from ..transport.calllog import CallRecord
from ._diff import DiffPass, RunAborted, read_spool
from ._export import ExportPass
from .config import SyncConfig
from .gone import remove_gone
from .memory.intents import Intent
from .memory.retry_memory import RetryMemory
from .memory.settle import settle_intents
from .memory.state import AppliedRecord, SyncState
from .model import user_key
from .reporting.summary import RecordFailure, RecordNotice, RunSummary
from .warehouse.sources import Row

__all__ = ["RecordFailure", "RecordNotice", "RunAborted", "RunSummary", "SyncRunner"]

log = logging.getLogger(__name__)


class SyncRunner(DiffPass, ExportPass):
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
        memory = self._retry = RetryMemory(self._state, self._config, self._dest.app.timezone)
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
                self._export(self._exported(read_spool(spool)), changed)
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

    # -- helpers -----------------------------------------------------------------------------------

    def _resends(self, pk: str) -> bool:
        """Whether row ``pk`` is sent whole this run (a full resync or a repair)."""
        resend = self._resend
        return resend if isinstance(resend, bool) else pk in resend

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
