"""A running ``serve``: the HTTP server, the worker, and the graceful stop that ends them.

At SIGTERM (or SIGINT) the intake closes first (``/v1`` answers 503 with ``Retry-After``,
``/health`` answers 503 so a load balancer stops routing here), the worker finishes the sends
in flight and returns the rest of its chunk to the queue, then the HTTP server closes and the
process exits 0. The worker gets ``--shutdown-grace`` seconds; a send still running then is
left as a kill would leave it (the sent-keys store keeps it from being sent twice).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..destination import SailthruDestination
from ..options import AppOptions, DestinationOptions
from ..segment import SegmentSettings
from ..sync.memory.state import SyncState
from ..sync.reporting.report import RunReport, default_report_dir
from ..sync.reporting.summary import RecordNotice
from ..transport.api import SailthruApi
from ..transport.calllog import CallLog, CallRecord
from .app import SegmentIngest
from .limits import QueueLimits, ServerLimits
from .metrics import ServeMetrics, available
from .queue import MessageQueue
from .worker import OnceAdapter, Worker

__all__ = ["serve_until_stopped"]

log = logging.getLogger(__name__)


class StopSignals(Protocol):
    """How the process learns it must stop (see ``command._StopSignals``)."""

    def install(self) -> None: ...  # pragma: no cover - protocol

    def wait(self, running: Callable[[], bool]) -> None: ...  # pragma: no cover

    def restore(self) -> None: ...  # pragma: no cover


def serve_until_stopped(
    args: argparse.Namespace,
    app: AppOptions,
    out: Callable[[str], None],
    *,
    key: str,
    settings: SegmentSettings,
    folder: Path,
    limits: tuple[QueueLimits, ServerLimits],
    stop_signals: StopSignals,
) -> int:
    """Serve on ``args.host:args.port`` until a stop signal; returns the exit code (0)."""
    from ..sync.config import ConfigError

    try:
        from .server import make_server, stop_server
    except ImportError:
        raise ConfigError(
            "serve needs its HTTP server: pip install 'sailthru-destination[serve]'"
        ) from None

    # Requests waiting for a shared commit queue up in waitress by design (group commit):
    # its "Task queue depth" warning would fire all day.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    queue = MessageQueue(folder / "queue.sqlite")
    sent = SyncState(folder / "sent.sqlite")
    # One report folder per run, so a restart never overwrites the failures of the last.
    report = RunReport(default_report_dir(folder, "serve"))
    options = DestinationOptions(lock_dir=str(folder / "locks"), concurrency=args.concurrency)
    metrics = _metrics(queue)
    sinks: list[Callable[[CallRecord], None]] = [report.calls]
    if metrics is not None:
        sinks.append(metrics.call)
    api = SailthruApi(
        app, concurrency=options.concurrency, call_log=CallLog(max_records=100, sink=_tee(sinks))
    )
    if metrics is not None:
        metrics.use_pace(lambda method, path: api.limiter(method, path).pace(time.monotonic()))
    ingest = SegmentIngest(
        queue,
        key,
        limits=limits[0],
        metrics=metrics,
        on_duplicate=lambda *notice: report.add_notice(RecordNotice(*notice)),
    )
    try:
        server = make_server(ingest, args.host, args.port, limits[1])
    except (OSError, ValueError) as exc:
        queue.close()
        sent.close()
        raise ConfigError(f"--host/--port/--threads: cannot serve there: {exc}") from None
    destination = SailthruDestination(app, options, api=api, sent_keys=sent)
    adapter = OnceAdapter(destination, settings, sent_keys=sent)
    worker = Worker(
        queue,
        adapter,
        report,
        on_result=metrics.sent if metrics else None,
        on_refusal=ingest.sailthru_refuses,
    )
    stop_signals.install()
    worker.start()
    loop = threading.Thread(target=server.run, name="serve-http", daemon=True)
    loop.start()
    out(
        f"serving Segment's API on http://{args.host}:{server.port}/v1/ "
        f"(queue {queue.path}, {queue.depth()} waiting)"
    )
    try:
        stop_signals.wait(loop.is_alive)  # a dead HTTP loop stops the process too
    finally:
        stop_signals.restore()
        ingest.close_intake()  # new messages get 503 + Retry-After while the worker finishes
        finished = worker.stop(args.shutdown_grace)
        stop_server(server)
        loop.join(5.0)
        if finished:
            queue.close()
            sent.close()
        # No page at stop: a long-lived server's call log can be millions of lines, and the
        # stop must stay quick under a supervisor's grace period (`report <folder>` builds it).
        try:
            report.finish({"results": dict(worker.counts), "api_key": app.masked_key}, page=False)
        except OSError as exc:  # a full disk must not turn a clean stop into a traceback
            log.error("could not write the run's summary in %s (%s); the queue keeps every "
                      "message not sent", report.folder, exc.strerror or exc)  # fmt: skip
            with contextlib.suppress(OSError):
                report.close()  # what the files could hold is flushed
        if finished:
            destination.close()
    left = "" if finished else f"; sends still running after {args.shutdown_grace} s were cut"
    out(f"stopped; {sum(worker.counts.values())} message(s) handled: {worker.counts}{left}")
    return 0


def _metrics(queue: MessageQueue) -> ServeMetrics | None:
    # Optional: without prometheus-client, /metrics answers 404 saying how to get it.
    return ServeMetrics(queue) if available() else None


def _tee(sinks: list[Callable[[CallRecord], None]]) -> Callable[[CallRecord], None]:
    def both(record: CallRecord) -> None:
        for sink in sinks:
            sink(record)

    return both
