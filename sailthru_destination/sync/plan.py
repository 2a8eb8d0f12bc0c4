"""``sync --plan``: what a run would do, row by row, with no call to Sailthru and the state
left as it was.

The plan runs the very runner of a sync (the same diff, the same settling of duplicate users
and hand-overs, the same choice of gone rows) on a copy of the state, through a destination
that decides each change with the export's own decision function
(:func:`~sailthru_destination.features.decide.decide`) and describes it instead of sending it
(:class:`PlanningDestination`). Where the decision depends on what Sailthru holds (an email
change onto an address Sailthru may have, update mode, a clear), the plan reads the user, as
the export does first; it never writes. So the plan is what the next ``sync`` does, as long
as neither the model, the state, the mapping nor Sailthru changes in between. ``plan.jsonl`` in
the report folder holds one line per row to act on: the vars set or cleared, the lists joined
or left, and for a user no row maps to any more the delete behaviour.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from ..destination import SailthruDestination
from ..errors import RecordError, SailthruError
from ..features.decide import Action, Decision, Sailthru, decide
from ..features.profiles import ProfileChange, user_exists, valid_key
from ..options import AppOptions
from ..results import ExportResult
from ..shaping._invalid import InvalidValue
from ..transport.api import SailthruApi
from ..transport.calllog import CallLog
from .config import SyncConfig
from .memory.runlock import RunLock
from .memory.state import SyncState
from .reporting.report import RunReport, default_report_dir
from .runner import SyncRunner
from .warehouse.columns import model_rows
from .warehouse.sources import Row

__all__ = ["PlanningDestination", "plan_sync"]

class PlanningDestination(SailthruDestination):
    """A destination that decides each profile change as the export does, and describes it.

    The decision is :func:`~sailthru_destination.features.decide.decide`, the very function the
    export carries out; where it depends on what Sailthru holds (an email change, update
    mode, a clear), the plan reads the user (a GET, never a write) as the export would.
    Each described change is a line of :attr:`entries`; the result is what the export would
    return, so the runner goes on exactly as after a real run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entries: list[dict[str, Any]] = []
        self._entries_lock = threading.Lock()

    def _export_profile(self, change: ProfileChange) -> ExportResult:
        rid = change.id
        opts = self.options
        try:
            known = Sailthru()
            decision = decide(change, opts, known, timezone=self.app.timezone)
            while decision.needs is not None:
                assert decision.lookup is not None
                found = user_exists(self.api, *decision.lookup)
                known = known.knowing(decision.needs, found)
                decision = decide(change, opts, known, timezone=self.app.timezone)
            entry = self._describe(change, decision)
        except InvalidValue as exc:
            return ExportResult.failed(RecordError(rid, exc.reason, field=exc.field))
        except SailthruError as exc:
            return ExportResult.failed(RecordError.from_error(rid, exc))
        if entry is not None:
            self._add(entry)
        return decision.result(rid)

    def _describe(self, change: ProfileChange, decision: Decision) -> dict[str, Any] | None:
        """The plan's line for ``decision``, or None when nothing is done."""
        action = decision.action
        if action is Action.UNCHANGED:
            return None
        opts = self.options
        entry: dict[str, Any] = {"record": change.id, "user": valid_key(opts.match_key, change.key),
                                 "action": str(action), "reason": decision.why}
        if change.to_delete or action is Action.SKIP:
            return entry
        assert decision.payload is not None and decision.lists is not None
        variables = decision.payload.get("vars", {})
        entry["set"] = {k: v for k, v in variables.items() if v != ""}
        entry["clear"] = sorted(k for k, v in variables.items() if v == "")
        entry["join"] = sorted(name for name, flag in decision.lists.items() if flag)
        entry["leave"] = sorted(name for name, flag in decision.lists.items() if not flag)
        if "optout_email" in decision.payload:
            entry["optout_email"] = decision.payload["optout_email"]
        if change.old_key is not None and decision.payload.get("id") != entry["user"]:
            entry["renamed_from"] = decision.payload["id"]
        return entry

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
    home: str | Path, resend: bool | Collection[str] = False,
) -> tuple[dict[str, Any], Path]:
    """Plan a sync of ``rows`` (a users model): its summary and its report folder, which
    holds ``plan.jsonl``. No call is made and ``state_file`` is not changed. ``resend`` plans
    a full resync (True) or the resending of some rows (their primary keys)."""
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
                                        on_notice=report.add_notice, resend=resend)
                    summary = runner.run(model_rows(rows, config))
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
