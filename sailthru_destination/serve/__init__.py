"""``sailthru-destination serve``: a Segment-compatible ingest endpoint in front of Sailthru.

Anything that speaks Segment's HTTP tracking API (analytics SDKs pointed at a custom host,
Segment's webhook destination, RudderStack, a gateway) posts to ``/v1/batch``,
``/v1/identify``, ``/v1/track``, ``/v1/page`` or ``/v1/alias``. Each accepted message is
committed to a SQLite queue before the 200 (:mod:`.queue`); a worker drains it through the
:class:`~sailthru_destination.segment.SegmentAdapter` (:mod:`.worker`); failures go to the
run report's ``errors.jsonl``. ``GET /health`` answers the queue depth.

The HTTP server is ``waitress`` (the ``serve`` extra): a pure-Python production WSGI server
with no C build, maintained by the Pylons project, that buffers request bodies and needs no
event loop; our app is small, synchronous and bound by the queue's fsync, which is what
waitress's thread pool is made for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._private import private_dir
from ..api import SailthruApi
from ..calllog import CallLog
from ..destination import SailthruDestination
from ..options import AppOptions, DestinationOptions
from ..segment import SegmentSettings
from ..sync.report import RunReport, default_report_dir
from ..sync.state import SyncState
from .app import SegmentIngest
from .queue import MessageQueue
from .worker import OnceAdapter, Worker

__all__ = ["MessageQueue", "SegmentIngest", "Worker", "register", "run"]

log = logging.getLogger(__name__)


def register(
    sub: Any,
    *,
    credentials: Callable[[argparse.ArgumentParser], None],
    app: Callable[[argparse.Namespace], AppOptions],
    out: Callable[[str], None],
) -> None:
    """Add the ``serve`` subcommand to the CLI's subparsers."""
    parser = sub.add_parser(
        "serve",
        help="accept Segment's HTTP tracking API and forward it to Sailthru",
        description="Serve /v1/batch, /v1/identify, /v1/track, /v1/page and /v1/alias like "
        "Segment's API; each message is queued durably, then sent by the Segment adapter.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8088, help="port (default 8088)")
    parser.add_argument(
        "--write-key", help="the write key senders use (default: $SEGMENT_WRITE_KEY)"
    )
    parser.add_argument(
        "--data-dir",
        default="sailthru-serve",
        help="queue, sent keys and report folder (default ./sailthru-serve)",
    )
    parser.add_argument(
        "--settings", help="a JSON file of Segment settings (SegmentSettings names)"
    )
    parser.add_argument("--threads", type=int, default=4, help="HTTP threads (default 4)")
    credentials(parser)
    parser.set_defaults(handler=lambda args: run(args, app(args), out))


def run(args: argparse.Namespace, app: AppOptions, out: Callable[[str], None]) -> int:
    """Run the server and its worker until SIGINT or SIGTERM; returns the exit code."""
    import json

    from filelock import FileLock, Timeout

    from ..sync.config import ConfigError

    key = args.write_key or os.environ.get("SEGMENT_WRITE_KEY") or ""
    if not key:
        raise ConfigError("the write key is required: --write-key or SEGMENT_WRITE_KEY")
    settings = SegmentSettings()
    if args.settings:
        try:
            settings = SegmentSettings.of(
                json.loads(Path(args.settings).read_text(encoding="utf-8"))
            )
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"--settings {args.settings}: {exc}") from None
    folder = private_dir(args.data_dir)  # the queue and reports are customer data
    # Two servers draining one queue would race for the same messages: one per folder.
    guard = FileLock(str(folder / "serve.lock"), timeout=0)
    try:
        guard.acquire()
    except Timeout:
        raise ConfigError(f"--data-dir: another serve is using {folder}") from None
    try:
        return _serve(args, app, out, key, settings, folder)
    finally:
        guard.release()


def _serve(
    args: argparse.Namespace,
    app: AppOptions,
    out: Callable[[str], None],
    key: str,
    settings: SegmentSettings,
    folder: Path,
) -> int:
    from ..sync.config import ConfigError

    try:
        from waitress.server import create_server
    except ImportError:
        raise ConfigError(
            "serve needs its HTTP server: pip install 'sailthru-destination[serve]'"
        ) from None

    queue = MessageQueue(folder / "queue.sqlite")
    try:
        server = create_server(
            SegmentIngest(queue, key), host=args.host, port=args.port, threads=args.threads
        )
    except (OSError, ValueError) as exc:
        queue.close()
        raise ConfigError(f"--host/--port/--threads: cannot serve there: {exc}") from None
    sent = SyncState(folder / "sent.sqlite")
    # One report folder per run, so a restart never overwrites the failures of the last.
    report = RunReport(default_report_dir(folder, "serve"))
    options = DestinationOptions(lock_dir=str(folder / "locks"))
    api = SailthruApi(
        app,
        concurrency=options.concurrency,
        call_log=CallLog(max_records=100, sink=report.calls),
    )
    destination = SailthruDestination(app, options, api=api, sent_keys=sent)
    adapter = OnceAdapter(destination, settings, sent_keys=sent)
    worker = Worker(queue, adapter, report)

    def stop(*_: object) -> None:
        # waitress's loop closes its sockets and returns on SystemExit.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.start()
    out(
        f"serving Segment's API on http://{args.host}:{args.port}/v1/ "
        f"(queue {queue.path}, {queue.depth()} waiting)"
    )
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker.stop()
        queue.close()
        sent.close()
        # No page at stop: a long-lived server's call log can be millions of lines, and the
        # stop must stay quick under a supervisor's grace period (`report <folder>` builds it).
        report.finish({"results": dict(worker.counts), "api_key": app.masked_key}, page=False)
        destination.close()
    out(f"stopped; {sum(worker.counts.values())} message(s) handled: {worker.counts}")
    return 0
