"""``sailthru-destination serve`` and ``serve replay``: flags, start-up checks and the stop."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._private import private_dir
from ..options import AppOptions
from ..segment import SegmentSettings
from .app import check_write_key
from .limits import QueueLimits, ServerLimits
from .queue import MessageQueue

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(
    sub: Any,
    *,
    credentials: Callable[[argparse.ArgumentParser], None],
    app: Callable[[argparse.Namespace], AppOptions],
    out: Callable[[str], None],
    authenticate: Callable[[argparse.Namespace, AppOptions], object] | None = None,
) -> None:
    """Add the ``serve`` subcommand (and ``serve replay``) to the CLI's subparsers.

    ``authenticate(args, options)`` makes one cheap signed call before serving and raises a
    configuration error naming the setting when Sailthru refuses the credentials.
    """
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
    _data_dir(parser)
    parser.add_argument(
        "--settings", help="a JSON file of Segment settings (SegmentSettings names)"
    )
    parser.add_argument("--product-url-template", help="the product_url_template setting "
                        "(wins over --settings): https://shop.example/p/{product_id}")  # fmt: skip
    parser.add_argument("--tracking-url", help="Sailthru's page-view tracking service URL")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="Sailthru calls in flight at once (default: adaptive)")  # fmt: skip
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per line on stderr")  # fmt: skip
    limits = parser.add_argument_group("limits")
    defaults_q, defaults_s = QueueLimits(), ServerLimits()
    for flag, default, kind, what in (
        ("--max-queue-messages", defaults_q.max_messages, int, "messages waiting before 429"),
        ("--max-queue-bytes", defaults_q.max_bytes, int, "bytes waiting before 429"),
        ("--retry-after", defaults_q.retry_after, int, "seconds senders wait after a 429 or 503"),
        ("--threads", defaults_s.threads, int, "HTTP threads"),
        ("--header-timeout", defaults_s.header_timeout, float, "seconds to send the headers"),
        ("--body-timeout", defaults_s.body_timeout, float, "seconds to send a whole request"),
        ("--idle-timeout", defaults_s.idle_timeout, float, "seconds an idle connection stays"),
        ("--max-connections-per-client", defaults_s.per_client, int,
         "connections one address may hold"),
        ("--shutdown-grace", 20.0, float, "seconds to finish sends at SIGTERM"),
    ):  # fmt: skip
        limits.add_argument(flag, type=kind, default=default, help=f"{what} (default {default})")
    credentials(parser)
    parser.set_defaults(handler=lambda args: _run(args, app, out, authenticate))
    commands = parser.add_subparsers(dest="serve_command", metavar="[replay]")
    replay = commands.add_parser(
        "replay",
        help="queue again the messages that failed retryably",
        description="Queue again, once each, the messages whose send failed retryably (a "
        "Sailthru outage, a rate limit outlasting the retries). Stop serve first.",
    )
    _data_dir(replay)
    replay.add_argument("--reason", help="only failures whose reason contains this text")
    replay.set_defaults(handler=lambda args: _replay(args, out))


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default="sailthru-serve",
        help="queue, sent keys and report folder (default ./sailthru-serve)",
    )


def _config_error(message: str) -> Exception:
    from ..sync.config import ConfigError

    return ConfigError(message)


_FLAGS = {
    "max_messages": "--max-queue-messages",
    "max_bytes": "--max-queue-bytes",
    "per_client": "--max-connections-per-client",
}


def _limits(args: argparse.Namespace) -> tuple[QueueLimits, ServerLimits]:
    try:
        queue = QueueLimits(args.max_queue_messages, args.max_queue_bytes, args.retry_after)
        server = ServerLimits(
            threads=args.threads,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            idle_timeout=args.idle_timeout,
            per_client=args.max_connections_per_client,
        )
    except ValueError as exc:
        name = str(exc).split(" ", 1)[0]
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        raise _config_error(f"{flag}: {exc}") from None
    if not args.shutdown_grace > 0:
        raise _config_error("--shutdown-grace must be a positive number of seconds")
    return queue, server


def _settings(args: argparse.Namespace) -> SegmentSettings:
    values: dict[str, Any] = {}
    if args.settings:
        try:
            values = json.loads(Path(args.settings).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _config_error(f"--settings {args.settings}: {exc}") from None
        if not isinstance(values, dict):
            raise _config_error(f"--settings {args.settings}: not a JSON object")
    if args.product_url_template is not None:
        values = {**values, "product_url_template": args.product_url_template}
    try:
        return SegmentSettings.of(values)
    except (ValueError, TypeError) as exc:
        raise _config_error(f"--settings: {exc}") from None


def _run(
    args: argparse.Namespace,
    app: Callable[[argparse.Namespace], AppOptions],
    out: Callable[[str], None],
    authenticate: Callable[[argparse.Namespace, AppOptions], object] | None = None,
) -> int:
    """Check every setting (exit 2 naming it), then serve until SIGINT or SIGTERM."""
    key = args.write_key or os.environ.get("SEGMENT_WRITE_KEY") or ""
    if not key:
        raise _config_error("the write key is required: --write-key or SEGMENT_WRITE_KEY")
    try:
        check_write_key(key)
    except ValueError as exc:
        raise _config_error(f"--write-key: {exc}") from None
    limits = _limits(args)
    settings = _settings(args)
    if args.concurrency is not None and args.concurrency < 1:
        raise _config_error("--concurrency must be a positive whole number")
    options = app(args)
    if args.tracking_url:
        try:
            options = dataclasses.replace(options, tracking_url=args.tracking_url)
        except ValueError as exc:
            raise _config_error(f"--tracking-url: {exc}") from None
    if args.log_format == "json":
        from .logs import use_json_logs

        level = logging.DEBUG if args.verbose > 1 else logging.INFO
        use_json_logs(level, secrets=(key, options.api_secret))
    try:
        # The queue and reports are customer data: the folder is the owner's only.
        folder = private_dir(args.data_dir)
        if not folder.is_dir():
            raise NotADirectoryError(20, "Not a directory")
    except OSError as exc:  # a file of that name, no permission, a read-only disk
        raise _config_error(f"--data-dir {args.data_dir}: cannot use it as a folder: "
                            f"{exc.strerror or exc}") from None  # fmt: skip
    if authenticate is not None:
        # A wrong secret would otherwise answer 200 to senders and fail every message later.
        authenticate(args, options)
    # Two servers draining one queue would race for the same messages: one per folder.
    with _holding(folder, f"--data-dir: another serve is using {folder}"):
        from .running import serve_until_stopped

        return serve_until_stopped(
            args, options, out, key=key, settings=settings, folder=folder, limits=limits,
            stop_signals=_StopSignals(),
        )  # fmt: skip


@contextlib.contextmanager
def _holding(folder: Path, busy: str) -> Iterator[None]:
    """Hold ``folder``'s serve lock (exit 2 saying ``busy`` when another process holds it)."""
    from filelock import FileLock, Timeout

    guard = FileLock(str(folder / "serve.lock"), timeout=0)
    try:
        guard.acquire()
    except Timeout:
        raise _config_error(busy) from None
    try:
        yield
    finally:
        guard.release()


def _replay(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """``serve replay``: queue again the messages that failed retryably, once each."""
    folder = Path(args.data_dir)
    path = folder / "queue.sqlite"
    if not path.is_file():
        raise _config_error(f"--data-dir: no queue in {folder}")
    # The running server counts its queue in memory: replay while it is stopped.
    with _holding(folder, f"--data-dir: serve is running on {folder}; stop it first"):
        queue = MessageQueue(path)
        try:
            count = queue.replay(args.reason)
        finally:
            queue.close()
    which = f" whose reason contains {args.reason!r}" if args.reason else ""
    out(f"queued again {count} message(s) that failed retryably{which}; serve sends them")
    return 0


class _StopSignals:
    """SIGTERM and SIGINT set an event (the main thread waits on it) instead of raising."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        """Route SIGTERM and SIGINT to :attr:`event`."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)

    def _set(self, signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        self.event.set()

    def wait(self, running: Callable[[], bool]) -> None:
        """Block until a stop signal, or until ``running()`` turns false (short waits: the
        signal handler runs between them)."""
        while not self.event.wait(0.2) and running():
            pass

    def restore(self) -> None:
        """Ignore further SIGTERMs while stopping; SIGINT gets Python's default back."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
