"""``sync --plan``: what a run would do, row by row, with no call to Sailthru and the state
left as it was.

The plan runs the very runner of a sync (the same diff, the same settling of duplicate users
and hand-overs, the same choice of gone rows) on a copy of the state, through a destination
that describes each change instead of sending it (:class:`PlanningDestination`). So the plan
is what the next ``sync`` does, as long as neither the model, the state nor the mapping
changes in between: the sync diffs the same rows against the same state. ``plan.jsonl`` in
the report folder holds one line per row to act on: the vars set or cleared, the lists joined
or left, and for a user no row maps to any more the delete behaviour.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._invalid import InvalidValue
from ..api import SailthruApi
from ..calllog import CallLog
from ..destination import SailthruDestination
from ..errors import RecordError
from ..mapping import changed_vars, list_name
from ..options import AppOptions
from ..profiles import ProfileChange, valid_key
from ..results import ExportResult, Status
from .config import SyncConfig
from .report import RunReport, default_report_dir
from .runlock import RunLock
from .runner import SyncRunner
from .sources import Row
from .state import SyncState

__all__ = ["PlanningDestination", "plan_sync"]

_UNCHANGED = "unchanged: no call made"  # what the runner counts as unchanged
_KEYS = ("email",)  # sent as the user's key, never as a var


class PlanningDestination(SailthruDestination):
    """A destination that checks and describes each profile change instead of sending it.

    Each described change is a line of :attr:`entries`; the result is what the runner needs
    to go on as after a real export (created, updated, deleted, cleared, kept or failed).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entries: list[dict[str, Any]] = []
        self._entries_lock = threading.Lock()

    def _export_profile(self, change: ProfileChange) -> ExportResult:
        rid = change.id
        opts = self.options
        try:
            user = valid_key(opts.match_key, change.key)
            entry: dict[str, Any] = {"record": rid, "user": user}
            if change.to_delete:
                status = {"delete": Status.DELETED, "clear": Status.CLEARED}.get(
                    str(opts.delete_behavior.value), Status.SKIPPED)
                entry["action"] = {Status.DELETED: "delete", Status.CLEARED: "clear"}.get(
                    status, "keep")
                entry["reason"] = "no row of the model maps to this user any more"
                self._add(entry)
                return ExportResult(status, rid, "planned")
            variables = changed_vars(change.old_properties, change.new_properties,
                                     var_names=opts.var_names, timezone=self.app.timezone,
                                     exclude=_KEYS)
            old = {list_name(g, opts.list_prefix) for g in change.old_groups}
            new = {list_name(g, opts.list_prefix) for g in change.new_groups}
            if opts.default_list:
                new.add(opts.default_list)
            renamed = None
            if change.old_key is not None:
                renamed = valid_key(opts.match_key, change.old_key, "old_key")
        except InvalidValue as exc:
            return ExportResult.failed(RecordError(rid, exc.reason, field=exc.field))
        if not variables and old == new and renamed is None and change.optout is None:
            return ExportResult(Status.SKIPPED, rid, _UNCHANGED)
        fresh = not change.old_properties and not change.old_groups
        entry["action"] = "create" if fresh else "update"
        entry["set"] = {k: v for k, v in variables.items() if v != ""}
        entry["clear"] = sorted(k for k, v in variables.items() if v == "")
        entry["join"], entry["leave"] = sorted(new - old), sorted(old - new)
        if change.optout is not None:
            entry["optout_email"] = change.optout
        if renamed is not None and renamed != user:
            entry["renamed_from"] = renamed
        self._add(entry)
        status = Status.CREATED if fresh else Status.UPDATED
        # An email change renames the user in place: nothing is left behind (see the runner).
        return ExportResult(status, rid, "email changed" if renamed else "planned")

    def _add(self, entry: dict[str, Any]) -> None:
        with self._entries_lock:
            self.entries.append(entry)


def _copy_state(state_file: Path, copy: Path) -> None:
    """A consistent copy of the state (SQLite's backup) for the plan to change freely."""
    if not state_file.exists():
        return
    source = sqlite3.connect(state_file)
    try:
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def plan_sync(
    app: AppOptions, config: SyncConfig, rows: Iterable[Row], *, state_file: Path,
    home: str | Path,
) -> tuple[dict[str, Any], Path]:
    """Plan a sync of ``rows`` (a users model): its summary and its report folder, which
    holds ``plan.jsonl``. No call is made and ``state_file`` is not changed."""
    if config.object != "users":
        raise ValueError("--plan describes a users model; events, purchases and returns are "
                         "sent once each, so a plan of them is the list of new rows")
    folder = Path(config.report_dir) if config.report_dir else default_report_dir(
        home, f"{config.name or 'model'}-plan")
    # Sequential and per user: the plan's lines come in the model's order.
    config = config.replace(concurrency=1, bulk="never")
    with RunLock(state_file, config.name or "model", wait=config.lock_wait), \
            tempfile.TemporaryDirectory(prefix="sailthru-plan-") as scratch:
        copy = Path(scratch) / "state.db"
        _copy_state(state_file, copy)
        report = RunReport(folder)
        api = SailthruApi(app, concurrency=1, call_log=CallLog(max_records=10,
                                                                 sink=report.calls))
        try:
            with SyncState(copy) as state:
                destination = PlanningDestination(app, config.destination_options(), api=api,
                                                  sent_keys=state)
                with destination:
                    runner = SyncRunner(destination, config, state,
                                        on_failure=report.add_failure,
                                        on_notice=report.add_notice)
                    summary = runner.run(rows)
                entries = destination.entries
        finally:
            report.close()
        with (folder / "plan.jsonl").open("w", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        summary_dict = {"model": config.name, "object": config.object, "status": "planned",
                        "api_url": app.api_url, "api_key": app.masked_key,
                        "state": str(state_file), "plan": str(folder / "plan.jsonl"),
                        **summary.to_dict()}
        report.finish(summary_dict)
    return summary_dict, folder
