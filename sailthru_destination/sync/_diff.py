"""Pass 1 of a sync run: read the model and diff each row against the state.

Each row is checked, its primary key marked as seen, and its hash compared with the state:
unchanged rows cost zero calls, changed and new rows are spooled to a temporary file for
pass 2 (:mod:`._export`). Two rows mapping to one user are settled here, and the run stops
before any call when the model is empty or would remove too many users (:mod:`.guard`).
Part of :class:`~sailthru_destination.sync.runner.SyncRunner`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import IO, TYPE_CHECKING, Any

from ..destination import SailthruDestination
from .config import SyncConfig
from .guard import mass_delete_problem
from .memory.digest import content_part, row_digest, stored_hash, unchanged_row
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

__all__ = ["DiffPass", "Pending", "RunAborted", "read_spool"]

log = logging.getLogger(__name__)

# One encoder for every spooled row (json.dumps with options builds one per call).
_SPOOL_ENCODER = json.JSONEncoder(default=str)


class RunAborted(Exception):
    """The run stopped before touching Sailthru for a reason the user must look at."""


@dataclass(frozen=True)
class Pending:
    """A changed row waiting for its result, and what to remember once it is applied."""

    row: UserRow
    where: str


class DiffPass:
    """Pass 1 of :class:`~sailthru_destination.sync.runner.SyncRunner`: what the runner
    holds that this pass reads, and the pass itself."""

    _dest: SailthruDestination
    _config: SyncConfig
    _state: SyncState
    summary: RunSummary
    _unidentified: int
    _marked: int
    _losers: bool
    _never_synced: set[str]

    if TYPE_CHECKING:  # the runner's, shared by both passes
        def _fail(self, failure: RecordFailure) -> None: ...
        def _notice(self, notice: RecordNotice) -> None: ...
        def _resends(self, pk: str) -> bool: ...

    def _diff(self, rows: Iterable[Row], spool: IO[str]) -> None:
        # What every row asks for, looked up once: this loop runs a million times in a
        # no-change re-run of a million rows, where each attribute lookup shows.
        config, state, summary = self._config, self._state, self.summary
        primary_key, match_column = config.primary_key, config.match_column
        get_hash, see, resends = state.get_hash, state.see, self._resends
        for row in rows:
            summary.rows += 1
            try:
                pk = storable(row_key(row, config), primary_key)
            except RowProblem as exc:
                self._unidentified += 1
                self._fail(RecordFailure(row.where, exc.reason, exc.field, row.where))
                continue
            # Even a row that fails holds its user: the model still wants that user.
            key = user_key(config, row.value(match_column))
            try:
                deleted = is_deleted(row, config)
            except RowProblem as exc:
                # A flag that is neither yes nor no: the row fails, and its user (held by
                # this sighting) is neither deleted nor exported.
                if see(pk, _storable_or_none(key), row.where, valid=False):
                    self._fail(RecordFailure(pk, exc.reason, exc.field, row.where))
                else:
                    self._duplicate(pk, row)
                continue
            if deleted:
                self._marked += 1
                self._mark_deleted(row, pk)
                continue
            stored = get_hash(pk)
            digest = row_digest(row)
            resend = resends(pk)
            if not resend and unchanged_row(stored, digest) and row.clean_when_unchanged():
                # The very row last applied: no need to map it (the no-change re-run's cost).
                if not see(pk, key, row.where, valid=True, changed=False):
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
        never synced through this state, the row's own), unless its delete was already
        applied (the very same flagged row: unchanged, no call)."""
        digest = row_digest(row)
        if not self._state.mark_deleted(pk, digest):
            self._duplicate(pk, row)
            return
        if self._state.get(pk) is not None:
            return
        if self._state.buried(pk) == digest:
            # Deleting it again would delete a user who came back through another source.
            self.summary.counts["unchanged"] += 1
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

    def _exported(self, pending: Iterator[Pending]) -> Iterator[Pending]:
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


def read_spool(spool: IO[str]) -> Iterator[Pending]:
    for line in spool:
        data = json.loads(line)
        user = UserRow(data["pk"], data["match"], data["properties"], frozenset(data["groups"]),
                       data["optout"], data["hash"])
        yield Pending(user, data["where"])
