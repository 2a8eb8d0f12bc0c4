"""Pass 3 of a run: the users no row maps to any more get the delete behaviour.

They are the users of rows gone from the model, and the users rows left behind when their
key changed to another existing user's (an email change onto an email Sailthru already
has, or a new extid). Such a user is deleted or cleared only when no row of the model
still maps to it: a row re-created under a new primary key, or another row with the same
email (in any case), keeps the user, and the gone row is reported as left alone with the
reason. Deletes run after every export of the run, so they never undo one. A failed
delete is remembered, so the next run tries it again (a delete is a privacy duty).

Each clear or delete is recorded as a write-ahead intent before it is sent, and its
verified result is recorded as soon as it is there (never in a batch at the end), so an
interrupted run keeps every delete it confirmed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from ..destination import SailthruDestination
from ..features.profiles import ProfileChange
from ..results import ExportResult, Status
from .config import SyncConfig
from .memory.intents import Intent
from .memory.state import AppliedRecord, SyncState
from .reporting.summary import RecordFailure, RecordNotice, RunSummary

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
    """Apply the delete behaviour to every user no row of this run maps to any more."""
    left = state.left()
    if not left and not state.gone_count():
        return
    # Read the whole list first: forgetting rows while paging would skip some.
    users = [_Gone(r, _WHERE, r.pk) for r in state.gone()]
    users += [_Gone(r, f"left behind by row {config.primary_key}={r.pk!r}", None) for r in left]
    if config.delete_behavior != "nothing":
        users = [u for u in users if not _held(config, state, summary, notice, u)]
    # One user, one delete: further entries of the same user follow the first one's fate.
    first: dict[str, _Gone] = {}
    queue: list[_Gone] = []
    twins: dict[str, list[_Gone]] = {}
    for user in users:
        key = user.record.key
        if key is not None and key in first:
            twins.setdefault(key, []).append(user)
            continue
        if key is not None:
            first[key] = user
        queue.append(user)
    behavior = config.delete_behavior
    items: dict[int, _Gone] = {}
    recording = threading.Lock()

    def changes() -> Iterator[ProfileChange]:
        for user in queue:
            record = user.record
            change = ProfileChange(
                key=record.match, old_properties=record.properties,
                old_groups=record.groups, to_delete=True, record_id=record.pk)
            if behavior != "nothing":  # write-ahead: durable before the write leaves
                user = user.intending(state, behavior)
            items[id(change)] = user
            yield change

    def record(change: ProfileChange, result: ExportResult) -> None:
        # In the thread that got the result, at once: an interrupt loses no confirmed delete.
        user = items.pop(id(change))
        with recording:
            _record(config, state, summary, fail, notice, user, result, twins.get(user.key, ()))

    progress = bar(len(queue), "removing")
    try:
        with closing(destination.iter_export_profiles(changes(), on_result=record)) as results:
            for _ in results:
                progress.update(1)
    finally:
        progress.close()


def _record(
    config: SyncConfig,
    state: SyncState,
    summary: RunSummary,
    fail: Callable[[RecordFailure], None],
    notice: Callable[[RecordNotice], None],
    user: _Gone,
    result: ExportResult,
    twins: Iterable[_Gone],
) -> None:
    """Record the delete behaviour's result for ``user`` and the entries of the same user."""
    if result.status is Status.FAILED:
        error = result.error
        field = error.field if error else None
        retryable = error.retryable if error else False
        fail(RecordFailure(user.record.pk, result.detail, field, user.where, retryable))
        # Its twins share the fate, and the report must say so: nothing unreported.
        for twin in twins:
            fail(RecordFailure(twin.record.pk, f"the same Sailthru user as "
                               f"{config.primary_key}={user.record.pk!r} "
                               f"({user.where}): {result.detail}", field, twin.where,
                               retryable))
        return  # remembered (its intent open): the next run tries again
    summary.counts["kept" if result.status is Status.SKIPPED else str(result.status)] += 1
    if result.status is Status.DELETED:
        state.remember_removed(user.record)  # an audit can tell a user that came back
    if result.status is not Status.SKIPPED and user.gone_pk is not None:
        # A flagged row's delete behaviour is applied: the same row next run is unchanged.
        state.bury(user.gone_pk)
    user.done(state)
    for twin in twins:
        notice(RecordNotice(twin.record.pk, f"the same Sailthru user as "
                            f"{config.primary_key}={user.record.pk!r} ({user.where}): "
                            f"{result.status} with it", twin.where))
        twin.done(state)


@dataclass(frozen=True)
class _Gone:
    """A user to apply the delete behaviour to: a gone row's, or one a row left behind."""

    record: AppliedRecord
    where: str
    gone_pk: str | None
    """The gone row's primary key; None for a user a live row left behind."""
    intent: Intent | None = None
    """The write-ahead intent of its clear or delete, once recorded."""

    @property
    def key(self) -> str:
        """The user's key, or a key of its own when unknown (it has no twins then)."""
        return self.record.key if self.record.key is not None else f"\0{id(self)}"

    def intending(self, state: SyncState, behavior: str) -> _Gone:
        """This user with the intent of its ``behavior`` (clear or delete) recorded."""
        if self.gone_pk is not None:
            target, ident = "row", self.gone_pk
        elif self.record.key is not None:
            target, ident = "left", self.record.key
        else:
            return self
        intent = state.intend(Intent(behavior, target, ident, self.record,
                                     old_properties=self.record.properties,
                                     old_groups=self.record.groups))
        return dataclasses.replace(self, intent=intent)

    def done(self, state: SyncState) -> None:
        """Forget the user: it got the delete behaviour, or a live row holds it."""
        if self.gone_pk is not None:
            state.forget(self.gone_pk, settles=self.intent)
        elif self.record.key is not None:
            state.drop_left(self.record.key, settles=self.intent)


def _held(
    config: SyncConfig,
    state: SyncState,
    summary: RunSummary,
    notice: Callable[[RecordNotice], None],
    user: _Gone,
) -> bool:
    """Whether a live row holds ``user``: then it is kept, with a notice."""
    record = user.record
    holder = state.claimant(record.key, besides="" if user.gone_pk else record.pk)
    if holder is None:
        return False
    done = "deleted" if config.delete_behavior == "delete" else "cleared"
    reason = (f"row {config.primary_key}={holder!r} of the model maps to the same Sailthru "
              f"user ({config.match_key} {record.key!r}): it was not {done}")
    log.info("%s (%s) kept: %s", record.pk, user.where, reason)
    summary.counts["kept"] += 1
    notice(RecordNotice(record.pk, reason, user.where))
    held = state.get(holder)
    if held is not None and held.key == record.key:
        # The holder is applied to that user (its export took this row's values over).
        # Otherwise this entry waits, so the holder takes its values when it is applied.
        user.done(state)
    return True
