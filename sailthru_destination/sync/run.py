"""One complete sync run, wired up: API, destination, state file, run report, runner.

This is what ``sailthru-destination sync`` and the demo call; a host that wants the
standalone runner from Python calls it too. Hosts that hand over batches of new rows
(the dlt destination, the Singer target) call it with ``incremental=True`` once per batch.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..destination import SailthruDestination
from ..options import AppOptions
from ..transport.api import SailthruApi
from ..transport.calllog import CallLog, CallRecord
from .config import SyncConfig
from .errorbudget import ErrorBudget, RunStopped
from .memory.runlock import RunLock
from .memory.state import SyncState
from .model import RowProblem, row_key
from .reporting.report import RunReport, default_report_dir
from .reporting.summary import RecordFailure
from .runner import RunSummary, SyncRunner
from .warehouse.columns import model_rows
from .warehouse.sources import Row

__all__ = ["DEFAULT_HOME", "RunInterrupted", "SyncOutcome", "file_safe", "run_sync",
           "state_path"]

DEFAULT_HOME = ".sailthru-sync"
"""Where the CLI keeps state files and run reports unless told otherwise."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class SyncOutcome:
    """A finished run: its summary and where its report and state are."""

    summary: RunSummary
    report: Path
    state: Path
    status: str = "completed"
    stopped: str | None = None  # why the run stopped itself (status "stopped")

    def describe(self, what: str) -> str:
        """One line for a host's log: ``what``, its outcomes, the calls and the report."""
        summary = self.summary
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(summary.counts.items()))
        failed = f" ({summary.failed} failed: see errors.jsonl)" if summary.failed else ""
        return (f"{what}: {summary.rows} records ({counts or 'none'}), {summary.total_calls} "
                f"calls; report {self.report}{failed}")


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (or SIGTERM, see the CLI) after writing its summary.

    ``outcome`` is the run as far as it got (``status`` ``"interrupted"``); ``signum`` the
    signal that stopped it. Every write Sailthru confirmed is in the state.
    """

    def __init__(self, outcome: SyncOutcome, signum: int = signal.SIGINT) -> None:
        super().__init__(f"interrupted: report {outcome.report}")
        self.outcome = outcome
        self.signum = int(signum)


def file_safe(name: str) -> str:
    """``name`` (a host's table or stream name) made safe as one file name."""
    safe = _UNSAFE.sub("_", name)
    return "_" + safe if safe.startswith(".") or not safe else safe


def state_path(config: SyncConfig, home: str | Path = DEFAULT_HOME) -> Path:
    """The state file of a model: ``config.state``, else ``<home>/<name>.db``."""
    if config.state:
        return Path(config.state)
    return Path(home) / f"{config.name or 'model'}.db"


def run_sync(
    app: AppOptions,
    config: SyncConfig,
    rows: Iterable[Row],
    *,
    home: str | Path = DEFAULT_HOME,
    progress: bool = False,
    incremental: bool = False,
    resend: bool | Collection[str] = False,
    preflight: Sequence[CallRecord] = (),
) -> SyncOutcome:
    """Sync ``rows`` (the whole model) to the account of ``app`` as ``config`` says.

    With ``incremental``, ``rows`` are only the new or changed rows (see
    :meth:`SyncRunner.apply`), and the report folder, when it exists, is added to.
    ``resend`` sends rows whole even when unchanged: True for all (``--full-resync``), or
    the primary keys of some (an audit's repair); see :class:`SyncRunner`.
    Raises :class:`~sailthru_destination.sync.memory.state.StateError` (such as
    :class:`~sailthru_destination.sync.memory.runlock.RunLocked` when another run of the model is
    still going after ``config.lock_wait`` seconds) or
    :class:`~sailthru_destination.sync.runner.RunAborted` before touching Sailthru when the
    run cannot start; record failures are counted, reported and never raised. An interrupt
    (KeyboardInterrupt) is raised as :class:`RunInterrupted`, after the summary is written.
    ``preflight`` are calls made for this run before it (the CLI's credentials check): they go
    first in ``calls.jsonl`` and are counted with the run's, so its numbers hold every call.
    """
    state_file = state_path(config, home)
    rows = model_rows(rows, config)
    with RunLock(state_file, config.name or "model", wait=config.lock_wait):
        return _run_locked(app, config, rows, home, state_file, progress, incremental, resend,
                           preflight)


def _run_locked(
    app: AppOptions, config: SyncConfig, rows: Iterable[Row], home: str | Path,
    state_file: Path, progress: bool, incremental: bool, resend: bool | Collection[str] = False,
    preflight: Sequence[CallRecord] = (),
) -> SyncOutcome:
    folder = Path(config.report_dir) if config.report_dir else default_report_dir(
        home, config.name or "model"
    )
    with SyncState(state_file) as state:
        report = RunReport(folder, append=incremental)
        for record in preflight:
            report.calls(record)
        api = SailthruApi(
            app,
            concurrency=config.concurrency,
            rate_limits=dict(config.rate_limits) or None,
            call_log=CallLog(max_records=100, sink=report.calls),
        )
        options = config.destination_options()
        runner: SyncRunner | None = None
        before = RunSummary()  # the preflight calls, until there is a runner to count them
        for record in preflight:
            before.count_call(record)
        budget = ErrorBudget(config.max_errors,
                             lambda: runner.summary if runner else before)

        def on_failure(failure: RecordFailure) -> None:
            if failure.field == "key":  # the destination's name for it: say the model's
                failure = dataclasses.replace(failure, field=config.match_column)
            report.add_failure(failure)
            budget(failure)

        status, stopped = "completed", None
        try:
            with SailthruDestination(app, options, api=api, sent_keys=state) as destination:
                runner = SyncRunner(destination, config, state, on_failure=on_failure,
                                    on_notice=report.add_notice, progress=progress,
                                    resend=resend)
                runner.summary = before
                if incremental:
                    runner.apply(_latest_per_key(rows, config))
                else:
                    runner.run(rows)
        except RunStopped as exc:
            status, stopped = "stopped", str(exc)
        except KeyboardInterrupt as exc:
            # No new call was sent after the interrupt, and each confirmed result was
            # recorded as it came: the summary says how far the run got.
            summary = _finish(report, app, config, state_file, before, "interrupted", None,
                              incremental)
            raise RunInterrupted(SyncOutcome(summary, folder, state_file, "interrupted"),
                                 getattr(exc, "signum", signal.SIGINT)) from exc
        finally:
            report.close()
        summary = _finish(report, app, config, state_file, before, status, stopped, incremental)
    return SyncOutcome(summary, folder, state_file, status, stopped)


def _finish(
    report: RunReport, app: AppOptions, config: SyncConfig, state_file: Path,
    summary: RunSummary, status: str, stopped: str | None, incremental: bool,
) -> RunSummary:
    """Write the run's ``summary.json`` (with its ``status``) and page; the summary."""
    summary_dict = {"model": config.name, "object": config.object, "status": status,
                    "api_url": app.api_url, "api_key": app.masked_key,
                    "state": str(state_file), **summary.to_dict()}
    if stopped:
        summary_dict["stopped"] = stopped
    if incremental:
        summary_dict = _added(report.folder / "summary.json", summary_dict)
    report.finish(summary_dict)
    return summary


def _latest_per_key(rows: Iterable[Row], config: SyncConfig) -> list[Row]:
    """A host's batch with only the last row of each user's key: in a stream of changes the
    same row may change twice, and the later change wins (events and orders are kept whole:
    their keys are sent at most once anyway)."""
    batch = list(rows)
    if config.object != "users":
        return batch
    keys: list[str | None] = []
    for row in batch:
        try:
            keys.append(row_key(row, config))
        except RowProblem:
            keys.append(None)  # the runner reports it
    last = {key: index for index, key in enumerate(keys) if key is not None}
    return [row for index, (row, key) in enumerate(zip(batch, keys, strict=True))
            if key is None or last[key] == index]


_SUMMED = ("rows", "failed", "api_calls", "lists_created", "jobs", "seconds", "refused_calls")


def _added(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` added to the one already at ``path`` (an earlier batch of the same run)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return summary
    total = dict(summary)
    for key in _SUMMED:
        total[key] = round(earlier.get(key, 0) + summary[key], 3)
    for key in ("counts", "calls_by_endpoint", "intents"):
        total[key] = dict(Counter(earlier.get(key, {})) + Counter(summary[key]))
    total["calls_per_record"] = (
        round(total["api_calls"] / total["rows"], 3) if total["rows"] else 0.0)
    return total
