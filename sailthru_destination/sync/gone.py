"""Pass 3 of a run: the rows gone from the model get the delete behaviour.

A gone row's Sailthru user is deleted or cleared only when no row of the model still maps
to it: a row re-created under a new primary key, or another row with the same email (in
any case), keeps the user, and the gone row is reported as left alone with the reason.
Deletes run after every export of the run, so they never undo one. A failed delete keeps
its record, so the next run tries it again (a delete is a privacy duty).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..destination import SailthruDestination
from ..profiles import ProfileChange
from ..results import Status
from .config import SyncConfig
from .state import AppliedRecord, SyncState
from .summary import RecordFailure, RecordNotice, RunSummary

__all__ = ["remove_gone"]

log = logging.getLogger(__name__)

_WHERE = "gone from the model"


def remove_gone(
    destination: SailthruDestination,
    config: SyncConfig,
    state: SyncState,
    summary: RunSummary,
    *,
    fail: Callable[[RecordFailure], None],
    notice: Callable[[RecordNotice], None],
    bar: Callable[[int, str], Any],
) -> None:
    """Apply the delete behaviour to every applied row this run did not see."""
    if not state.gone_count():
        return
    # Read the whole list first: forgetting rows while paging would skip some.
    records = list(state.gone())
    if config.delete_behavior != "nothing":
        records = [r for r in records if not _held(config, state, summary, notice, r)]
    # One user, one delete: further gone rows of the same user follow the first one's fate.
    first: dict[str | None, AppliedRecord] = {}
    twins: dict[str, list[str]] = {}
    for record in records:
        if record.key is not None and record.key in first:
            twins.setdefault(first[record.key].pk, []).append(record.pk)
        else:
            first[record.key] = record
    window: deque[AppliedRecord] = deque()

    def changes() -> Iterator[ProfileChange]:
        for record in first.values():
            window.append(record)
            yield ProfileChange(
                key=record.match, old_properties=record.properties,
                old_groups=record.groups, to_delete=True, record_id=record.pk)

    progress = bar(len(first), "removing")
    try:
        for result in destination.iter_export_profiles(changes()):
            record = window.popleft()
            progress.update(1)
            if result.status is Status.FAILED:
                error = result.error
                fail(RecordFailure(record.pk, result.detail, error.field if error else None,
                                   _WHERE, error.retryable if error else False))
                continue  # remembered: the next run tries again
            summary.counts["kept" if result.status is Status.SKIPPED else str(result.status)] += 1
            state.forget(record.pk)
            for twin in twins.get(record.pk, ()):
                notice(RecordNotice(twin, f"the same Sailthru user as gone row "
                                          f"{config.primary_key}={record.pk!r}: "
                                          f"{result.status} with it", _WHERE))
                state.forget(twin)
    finally:
        progress.close()


def _held(
    config: SyncConfig,
    state: SyncState,
    summary: RunSummary,
    notice: Callable[[RecordNotice], None],
    record: AppliedRecord,
) -> bool:
    """Whether a live row holds ``record``'s user: then it is kept, with a notice."""
    holder = state.claimant(record.key)
    if holder is None:
        return False
    done = "deleted" if config.delete_behavior == "delete" else "cleared"
    reason = (f"row {config.primary_key}={holder!r} of the model maps to the same Sailthru "
              f"user ({config.match_key} {record.key!r}): it was not {done}")
    log.info("gone row %s kept: %s", record.pk, reason)
    summary.counts["kept"] += 1
    notice(RecordNotice(record.pk, reason, _WHERE))
    held = state.get(holder)
    if held is not None and held.key == record.key:
        # The holder is applied to that user (its export took this row's values over).
        # Otherwise this record waits, so the holder takes its values when it is applied.
        state.forget(record.pk)
    return True
