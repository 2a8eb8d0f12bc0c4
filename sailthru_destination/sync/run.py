"""One complete sync run, wired up: API, destination, state file, run report, runner.

This is what ``sailthru-destination sync`` and the demo call; a host that wants the
standalone runner from Python calls it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..api import SailthruApi
from ..calllog import CallLog
from ..destination import SailthruDestination
from ..options import AppOptions
from .config import SyncConfig
from .report import RunReport, default_report_dir
from .runlock import RunLock
from .runner import RunSummary, SyncRunner
from .sources import Row
from .state import SyncState

__all__ = ["DEFAULT_HOME", "SyncOutcome", "run_sync", "state_path"]

DEFAULT_HOME = ".sailthru-sync"


@dataclass(frozen=True)
class SyncOutcome:
    """A finished run: its summary and where its report and state are."""

    summary: RunSummary
    report: Path
    state: Path


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
) -> SyncOutcome:
    """Sync ``rows`` (the whole model) to the account of ``app`` as ``config`` says.

    Raises :class:`~sailthru_destination.sync.state.StateError` (such as
    :class:`~sailthru_destination.sync.runlock.RunLocked` when another run of the model is
    still going after ``config.lock_wait`` seconds) or
    :class:`~sailthru_destination.sync.runner.RunAborted` before touching Sailthru when the
    run cannot start; record failures are counted, reported and never raised.
    """
    state_file = state_path(config, home)
    with RunLock(state_file, config.name or "model", wait=config.lock_wait):
        return _run_locked(app, config, rows, home, state_file, progress)


def _run_locked(
    app: AppOptions, config: SyncConfig, rows: Iterable[Row], home: str | Path,
    state_file: Path, progress: bool,
) -> SyncOutcome:
    folder = Path(config.report_dir) if config.report_dir else default_report_dir(
        home, config.name or "model"
    )
    with SyncState(state_file) as state:
        report = RunReport(folder)
        api = SailthruApi(
            app,
            concurrency=config.concurrency,
            rate_limits=dict(config.rate_limits) or None,
            call_log=CallLog(max_records=100, sink=report.calls),
        )
        options = config.destination_options()
        try:
            with SailthruDestination(app, options, api=api, sent_keys=state) as destination:
                runner = SyncRunner(destination, config, state, on_failure=report.add_failure,
                                    on_notice=report.add_notice, progress=progress)
                summary = runner.run(rows)
        finally:
            report.close()
        summary_dict = {"model": config.name, "object": config.object,
                        "api_url": app.api_url, "api_key": app.masked_key,
                        "state": str(state_file), **summary.to_dict()}
        report.finish(summary_dict)
    return SyncOutcome(summary, folder, state_file)
