"""``sailthru-destination fake-server``: the fake Sailthru on a port, for hosts in other
languages."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from ._common import EXIT_OK, UsageError, out, rate_limits

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``fake-server`` and its flags to the subcommands."""
    parser = sub.add_parser(
        "fake-server", help="run the fake Sailthru on a port (for hosts in other languages)",
        description="Serve a fake Sailthru API over HTTP on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=8080,
                        help="port (default 8080; 0: any free)")
    parser.add_argument("--api-key", default="test-key", help="the API key it accepts")
    parser.add_argument("--api-secret", default="test-secret", help="the secret it verifies")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--rate-limit", action="append", metavar="ENDPOINT=N",
                        help="requests/second, e.g. user=300 (repeatable; replaces the defaults)")
    for name in ("connection-error-rate", "server-error-rate", "false-ok-delete-rate",
                 "rate-limit-burst"):
        parser.add_argument(f"--{name}", type=float, default=0.0, help="fault rate, 0..1")
    parser.add_argument("--list-race-window", type=float, default=0.0,
                        help="seconds during which racing requests create duplicate lists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    from ..testing import FakeSailthru, Faults

    try:
        faults = Faults(
            connection_error_rate=args.connection_error_rate,
            server_error_rate=args.server_error_rate,
            false_ok_delete_rate=args.false_ok_delete_rate,
            rate_limit_burst=args.rate_limit_burst,
            list_race_window=args.list_race_window,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Ctrl-C and SIGTERM both ask for a clean stop, wherever the main thread is.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    fake = FakeSailthru(
        api_key=args.api_key, api_secret=args.api_secret, port=args.port, latency=args.latency,
        seed=args.seed, faults=faults, rate_limits=rate_limits(args.rate_limit) or None,
    )
    try:
        fake.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc.strerror or exc}") from None
    try:
        out(f"Fake Sailthru listening on {fake.url}")
        out(f"  api key {args.api_key}; use: export SAILTHRU_API_URL={fake.url}")
        out("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
    finally:
        fake.stop()
    out("Fake Sailthru stopped.")
    return EXIT_OK
