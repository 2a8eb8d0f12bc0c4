"""``sailthru-destination audit``: what Sailthru holds, against what the model and state say.

Every user the model or its state knows is decided twice with the sync's own decision
(:func:`~.decide.decide_row`), knowing whether Sailthru has the user:

- **resent whole** (``resend``): the payload then names every var and list the model
  manages for that user, with the value it must have (``""``: none) — the target;
- **as the next sync** would (the plan's decision): what a plain ``sync`` does.

The target is compared with what Sailthru holds (:mod:`.audit_read`). A user differs when
it is missing (the target creates or updates it), should be gone (the target deletes it),
or a var or list of the target is not as Sailthru holds it. Each such user is one line of
``drift.jsonl``, saying also what the next sync does with it and whether that alone fixes
it (``fixed_by_sync``: a row changed since the last run is not drift the state hides).
``--repair`` is then a sync that resends the differing rows whole
(:func:`~.run.run_sync` with ``resend``): the fixes go through the normal path and the
state is rebuilt from the replies.

The rows are held in memory (an audit reads all of them before it reads Sailthru). Opt-out
levels are not compared (an export does not show them).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ...features.decide import Action, Decision, Sailthru
from ...features.profile_payload import default_list_name, list_names_for, valid_key
from ...options import AppOptions
from ...shaping._invalid import InvalidValue
from ...transport.api import SailthruApi
from ...transport.calllog import CallLog
from ..config import SyncConfig
from ..decide import decide_row, renames
from ..memory.runlock import RunLock
from ..memory.state import AppliedRecord, SyncState
from ..model import (
    RowProblem,
    UserRow,
    is_deleted,
    kept_groups,
    read_user_row,
    row_key,
    user_key,
)
from ..plan import _copy_state
from ..run import SyncOutcome, run_sync
from ..warehouse.columns import model_rows
from ..warehouse.sources import Row
from .audit_read import Held, choose_read, read_by_export, read_per_user, same_value
from .report import RunReport, default_report_dir

__all__ = ["AuditResult", "audit_model", "repair_drift"]

_MISSING, _GONE = "missing", "should_be_gone"


@dataclass
class AuditResult:
    """An audit's summary (``summary``), its report folder and the rows to resend."""

    summary: dict[str, Any]
    folder: Path
    resend: set[str] = field(default_factory=set)
    """Primary keys of the live rows that differ: what ``--repair`` resends whole."""
    back: list[AppliedRecord] = field(default_factory=list)
    """Users the sync deleted that are in Sailthru again: ``--repair`` deletes them again.
    (The other users that should be gone or be cleared are the sync's gone rows already.)"""
    gone: set[str] = field(default_factory=set)
    """Primary keys of the rows with no live user that differ: ``--repair`` drops their
    tombstones, so a flagged row whose user came back is deleted again."""

    @property
    def drifted(self) -> int:
        """How many users differ."""
        return int(self.summary["users_drifted"])


@dataclass(frozen=True)
class _Subject:
    """One user to audit: a live row (``row``) and/or the record last applied for it;
    ``removed``: a user the sync deleted (no row maps to it now)."""

    pk: str
    row: UserRow | None
    record: AppliedRecord | None
    removed: bool = False


def audit_model(
    app: AppOptions, config: SyncConfig, rows: Iterable[Row], *, state_file: Path,
    home: str | Path, read: str = "auto",
) -> AuditResult:
    """Audit ``rows`` (a users model) and its state against Sailthru; write ``drift.jsonl``
    and ``summary.json`` in the report folder. Only reads: nothing is sent, the state is
    not changed. ``read``: ``auto`` (the cost rule of :mod:`.audit_read`), ``export`` or
    ``user``."""
    if config.object != "users":
        raise ValueError("audit compares users; events, purchases and returns are sent once "
                         "each and are not held as a state Sailthru could drift from")
    folder = Path(config.report_dir) if config.report_dir else default_report_dir(
        home, f"{config.name or 'model'}-audit")
    with tempfile.TemporaryDirectory(prefix="sailthru-audit-") as scratch:
        copy = Path(scratch) / "state.db"
        # A consistent copy, taken between runs; reading Sailthru (minutes, for exports)
        # then holds up no sync.
        with RunLock(state_file, config.name or "model", wait=config.lock_wait):
            _copy_state(state_file, copy)
        with SyncState(copy) as state:
            subjects, unread = _subjects(config, model_rows(rows, config), state)
            lists = {name for s in subjects for name in _lists_of(s, config)}
        report = RunReport(folder)
        api = SailthruApi(app, concurrency=config.concurrency,
                          rate_limits=dict(config.rate_limits) or None,
                          call_log=CallLog(max_records=100, sink=report.calls))
        try:
            with api:
                auditor = _Auditor(api, config, app.timezone)
                how = auditor.read(subjects, lists, read)
                found = [(s, line) for s in subjects if (line := auditor.line(s)) is not None]
                lines = [line for _, line in found]
        finally:
            report.close()
    with (folder / "drift.jsonl").open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    summary = _summary(config, app, state_file, folder, how, len(subjects), unread, lines)
    report.finish(summary, page=False)  # the run page describes sync runs, not audits
    resend = {line["record"] for line in lines if line["live"]}
    back = [s.record for s, _ in found if s.removed and s.record is not None]
    gone = {line["record"] for line in lines if not line["live"]}
    return AuditResult(summary, folder, resend, back, gone)


def repair_drift(
    app: AppOptions, config: SyncConfig, rows: Iterable[Row], audit: AuditResult, *,
    state_file: Path, home: str | Path, progress: bool = False,
) -> SyncOutcome:
    """Fix what ``audit`` found through the normal sync path: the differing rows are resent
    whole, the deleted users that came back are left to the delete behaviour (as a user a
    row left behind), gone rows get it as in any run; the state is rebuilt from the replies.
    The report goes in the audit's folder, under ``repair``."""
    if audit.back or audit.gone:
        with RunLock(state_file, config.name or "model", wait=config.lock_wait), \
                SyncState(state_file) as state:
            for record in audit.back:
                state.leave(record)
            # A flagged row's tombstone would keep the sync from deleting its user again.
            state.unbury(audit.gone)
    return run_sync(app, config.replace(report_dir=str(audit.folder / "repair")), rows,
                    home=home, progress=progress, resend=audit.resend)


def _subjects(
    config: SyncConfig, rows: Iterable[Row], state: SyncState
) -> tuple[list[_Subject], int]:
    """Every user to audit (live rows, then gone ones) and how many rows could not be read.

    Settled as the sync settles them: of two rows mapping to one user, the one the state
    says already is that user keeps it (else the first); a row now matched to another sid or
    extid starts afresh, and its old user is gone.
    """
    live: dict[str | None, _Subject] = {}  # by user key
    deleted: dict[str, UserRow | None] = {}
    unread = 0
    for row in rows:
        try:
            pk = row_key(row, config)
            if is_deleted(row, config):
                deleted.setdefault(pk, _readable(row, config, pk))
                continue
            user = read_user_row(row, config, pk)
        except RowProblem:
            unread += 1  # the sync reports it; it is no user to compare
            continue
        record = state.get(pk)
        # As the sync reads it: under keep, a NULL groups value keeps the lists last applied.
        user = kept_groups(user, row, config, partial(_groups_of, record))
        key = user_key(config, user.match)
        first = live.get(key)
        if first is None or (_owns(record, key) and not _owns(first.record, key)):
            live[key] = _Subject(pk, user, record)
    held: set[str | None] = set(live)
    gone: list[AppliedRecord] = []
    subjects: list[_Subject] = []
    for key, subject in live.items():
        record = subject.record
        if (record is not None and record.key not in (None, key) and subject.row is not None
                and not renames(record, subject.row, config)):
            # A new sid or extid is another user: the row starts afresh, its old user is
            # gone (unless it renames that user, as the sync does: see renames).
            gone.append(record)
            subject = _Subject(subject.pk, subject.row, None)
        subjects.append(subject)
    for pk, marked in deleted.items():
        record = state.get(pk) or _as_record(marked, config)
        if record is not None:
            gone.append(record)
    known = {s.pk for s in subjects} | set(deleted)
    gone += [r for r in state.records() if r.pk not in known]
    gone += state.left()  # users rows moved off (their ``pk`` is the live row's)
    for record in gone:
        if record.key not in held:
            subjects.append(_Subject(record.pk, None, record))
            held.add(record.key)
    subjects += [_Subject(record.pk, None, record, removed=True) for record in state.removed()
                 if record.key not in held]
    return subjects, unread


def _groups_of(record: AppliedRecord | None) -> frozenset[str] | None:
    """The groups last applied for ``record`` (None: none is known)."""
    return None if record is None else record.groups


def _owns(record: AppliedRecord | None, key: str | None) -> bool:
    """Whether the state says ``record``'s row already is the user ``key``."""
    return record is not None and key is not None and record.key == key


def _readable(row: Row, config: SyncConfig, pk: str) -> UserRow | None:
    try:
        return read_user_row(row, config, pk)
    except RowProblem:
        return None


def _as_record(user: UserRow | None, config: SyncConfig) -> AppliedRecord | None:
    """A row marked deleted that the state no longer holds: its own values (as the sync
    takes them)."""
    if user is None:
        return None
    return AppliedRecord(user.pk, "", str(user.match), user.properties, user.groups,
                         user.optout, user_key(config, user.match))


def _lists_of(subject: _Subject, config: SyncConfig) -> set[str]:
    """The lists the model manages for ``subject`` (the ones an export reads)."""
    options = config.destination_options()
    groups = set(subject.row.groups if subject.row else ())
    groups |= set(subject.record.groups if subject.record else ())
    names = list_names_for(groups, options)
    if options.default_list:
        names.add(default_list_name(options))
    return names


class _Auditor:
    """Reads Sailthru for the subjects, then compares each with the decision's target."""

    def __init__(self, api: SailthruApi, config: SyncConfig, timezone: str) -> None:
        self._api = api
        self._config = config
        self._timezone = timezone
        self._match = str(config.destination_options().match_key)
        self._held: dict[str, Held | None] = {}

    def read(self, subjects: list[_Subject], lists: set[str], mode: str) -> str:
        """Read every subject's user; returns how (``export`` or ``user``)."""
        keys = {key for s in subjects if (key := self._key(s)) is not None}
        pace = self._api.limiter("GET", "user").rate
        how = choose_read(mode, len(keys), pace)
        if how == "export":
            self._held.update(read_by_export(self._api, self._match, keys, lists))
        else:
            self._held.update(read_per_user(self._api, self._match, keys,
                                            workers=self._config.concurrency or 8))
        return how

    def _key(self, subject: _Subject) -> str | None:
        match = subject.row.match if subject.row else (
            subject.record.match if subject.record else None)
        try:
            return valid_key(self._match, match)
        except InvalidValue:
            return None

    def _found(self, key: str) -> Held | None:
        if key not in self._held:  # a lookup the decision asks for beyond the subjects
            self._held.update(read_per_user(self._api, self._match, [key], workers=1))
        return self._held[key]

    def _decide(self, subject: _Subject, *, resend: bool) -> Decision:
        known = Sailthru()
        while True:
            decision = decide_row(subject.row, subject.record, known, self._config,
                                  resend=resend, timezone=self._timezone)
            if decision.needs is None:
                return decision
            assert decision.lookup is not None
            known = known.knowing(decision.needs, self._found(decision.lookup[1]) is not None)

    def line(self, subject: _Subject) -> dict[str, Any] | None:
        """The ``drift.jsonl`` line of ``subject``, or None when Sailthru is as it should be."""
        try:
            target = self._decide(subject, resend=True)
            plain = self._decide(subject, resend=False)
        except InvalidValue:
            return None  # the sync fails this row, naming the field: nothing to compare
        drift: dict[str, Any] = {}
        action = target.action
        if action is Action.DELETE:
            assert target.target is not None
            if self._found(target.target[1]) is not None:
                drift[_GONE] = True
        elif action in (Action.CREATE, Action.UPDATE, Action.CLEAR):
            assert target.payload is not None
            held = self._found(str(target.payload["id"]))
            if held is None:
                if action is not Action.CLEAR:
                    drift[_MISSING] = True
            else:
                drift.update(_differences(target, held))
        if not drift:
            return None
        user = subject.row.match if subject.row else (
            subject.record.match if subject.record else None)
        # A user the sync deleted that came back is no row's and no gone row's any more:
        # the next sync (and its plan) leaves it alone; only --repair deletes it again.
        next_sync = str(Action.UNCHANGED if subject.removed else plain.action)
        return {"record": subject.pk, "user": user, "live": subject.row is not None,
                "drift": sorted(drift), **{k: v for k, v in drift.items() if v is not True},
                "repair": str(action), "next_sync": next_sync,
                "fixed_by_sync": not subject.removed and _fixes(plain, target, drift)}


def _differences(target: Decision, held: Held) -> dict[str, Any]:
    """The vars and lists of the target that Sailthru does not hold as the target says."""
    assert target.payload is not None and target.lists is not None
    variables = {
        name: {"model": value, "sailthru": held.vars.get(name)}
        for name, value in target.payload.get("vars", {}).items()
        if not same_value(value, held.vars.get(name), as_text=held.as_text)
    }
    lists = {name: "join" if flag else "leave" for name, flag in target.lists.items()
             if bool(flag) != (name in held.lists)}
    drift: dict[str, Any] = {}
    if variables:
        drift["vars"] = variables
    if lists:
        drift["lists"] = lists
    return drift


def _fixes(plain: Decision, target: Decision, drift: dict[str, Any]) -> bool:
    """Whether the next plain sync alone brings Sailthru to the target."""
    if _GONE in drift:
        return plain.action is Action.DELETE
    if _MISSING in drift:
        return plain.action is Action.CREATE
    if plain.payload is None or plain.lists is None or target.payload is None:
        return False
    sent = plain.payload.get("vars", {})
    wanted = target.payload.get("vars", {})
    return (all(name in sent and sent[name] == wanted[name] for name in drift.get("vars", {}))
            and all(name in plain.lists for name in drift.get("lists", {})))


def _summary(
    config: SyncConfig, app: AppOptions, state_file: Path, folder: Path, how: str,
    users: int, unread: int, lines: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "model": config.name, "object": config.object, "status": "audited",
        "api_url": app.api_url, "api_key": app.masked_key, "state": str(state_file),
        "drift": str(folder / "drift.jsonl"), "read": how,
        "users_audited": users, "rows_unreadable": unread,
        "users_drifted": len(lines),
        "users_missing": sum(_MISSING in line["drift"] for line in lines),
        "users_should_be_gone": sum(_GONE in line["drift"] for line in lines),
        "vars_differ": sum(len(line.get("vars", {})) for line in lines),
        "lists_differ": sum(len(line.get("lists", {})) for line in lines),
        "fixed_by_sync": sum(bool(line["fixed_by_sync"]) for line in lines),
    }
