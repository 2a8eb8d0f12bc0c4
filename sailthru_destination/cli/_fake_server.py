"""``sailthru-destination fake-server``: the fake Sailthru on a port, for hosts in other
languages, with a flag for every fault the Python :class:`~sailthru_destination.testing.Faults`
and the fake's job options have."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from types import FrameType
from typing import Any

from ._common import EXIT_OK, UsageError, out, rate_limits

__all__ = ["add_parser"]

DEFAULT_KEY = "test-key"
DEFAULT_SECRET = "test-secret"  # noqa: S105 (the fake's well-known test credential)

# Faults flag -> (Faults field, help). Rates are per request, windows in seconds.
_RATES = {
    "connection-error-rate": "drop the connection without a reply",
    "server-error-rate": "HTTP 500 with error 9, nothing applied",
    "error-after-apply-rate": "apply a POST, then answer HTTP 504 (the write happened)",
    "drop-after-apply-rate": "apply a POST, then drop the connection (a job created still runs)",
    "error-with-200-rate": "HTTP 200 carrying an error body (error 9, nothing applied)",
    "false-ok-delete-rate": "DELETE answers ok and does nothing",
    "rate-limit-burst": "an extra 429 on a request within the limit",
}
_WINDOWS = {
    "list-race-window": "seconds during which racing requests create duplicate lists",
    "stale-read-window": "seconds after a POST during which GET /user and GET /purchase "
                         "still see the old data (eventual consistency)",
    "stale-read-jitter": "up to this many seconds more of read lag, drawn per write (seeded)",
}


def add_parser(sub: Any) -> None:
    """Add ``fake-server`` and its flags to the subcommands."""
    parser = sub.add_parser(
        "fake-server", help="run the fake Sailthru on a port (for hosts in other languages)",
        description=(f"Serve a fake Sailthru API over HTTP until Ctrl-C. It accepts API key "
                     f"{DEFAULT_KEY!r} and secret {DEFAULT_SECRET!r} unless --api-key and "
                     "--api-secret say otherwise. Fault flags make it misbehave as the real "
                     "service does, reproducibly under --seed."),
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every "
                        "interface, e.g. in a container)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port (default 8080; 0: any free)")
    parser.add_argument("--api-key", default=DEFAULT_KEY,
                        help=f"the API key it accepts (default {DEFAULT_KEY})")
    parser.add_argument("--api-secret", default=DEFAULT_SECRET,
                        help=f"the secret it verifies (default {DEFAULT_SECRET})")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--rate-limit", action="append", metavar="ENDPOINT=N",
                        help="requests/second, e.g. user=300 (repeatable; replaces the defaults)")
    parser.add_argument("--rate-window", type=float, default=1.0, metavar="SECONDS",
                        help="how the limits are counted: 1 (default) a sliding one-second "
                        "window, stricter than Sailthru and quick to refuse and recover, for "
                        "tests; 60 per wall-clock minute as Sailthru counts, the reset at the "
                        "next whole minute, for measuring long runs")
    faults = parser.add_argument_group("faults (all off by default)")
    for name, text in _RATES.items():
        faults.add_argument(f"--{name}", type=float, default=0.0, metavar="RATE",
                            help=f"{text}: probability per request, 0..1")
    for name, text in _WINDOWS.items():
        faults.add_argument(f"--{name}", type=float, default=0.0, metavar="SECONDS", help=text)
    jobs = parser.add_argument_group("jobs (bulk import and list export)")
    jobs.add_argument("--job-polls", type=int, default=1, metavar="N",
                      help="a job completes on its N-th GET /job (default 1; 0: at once; "
                      "-1: never, to test timeouts)")
    jobs.add_argument("--job-seconds", type=float, default=0.25, metavar="SECONDS",
                      help="a job does its work this long after its POST, even when the "
                      "reply was lost (default 0.25; asynchronous, as Sailthru's jobs are)")
    jobs.add_argument("--job-fails", action="store_true",
                      help="jobs end in status 'error' instead of 'completed'")
    jobs.add_argument("--expire-exports", action="store_true",
                      help="exports expire as they complete: GET /job says expired and the "
                      "file answers 404")
    parser.set_defaults(handler=run)


def _faults(args: argparse.Namespace) -> Any:
    from ..testing import Faults

    values = {name.replace("-", "_"): getattr(args, name.replace("-", "_"))
              for name in (*_RATES, *_WINDOWS)}
    try:
        return Faults(**values)
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    from ..testing import FakeSailthru

    faults = _faults(args)
    if args.job_seconds < 0:
        raise UsageError(f"--job-seconds must not be negative, got {args.job_seconds}")
    if args.job_polls < -1:
        raise UsageError(f"--job-polls must be -1 (never), 0 or more, got {args.job_polls}")
    if not (math.isfinite(args.rate_window) and args.rate_window > 0):
        raise UsageError(f"--rate-window must be a positive number of seconds, "
                         f"got {args.rate_window}")
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Ctrl-C and SIGTERM both ask for a clean stop, wherever the main thread is.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    limits = rate_limits(args.rate_limit) or None
    try:
        fake = FakeSailthru(
            api_key=args.api_key, api_secret=args.api_secret, host=args.host, port=args.port,
            latency=args.latency, seed=args.seed, faults=faults, rate_limits=limits,
            job_polls=None if args.job_polls == -1 else args.job_polls,
            job_fails=args.job_fails, job_seconds=args.job_seconds, rate_window=args.rate_window,
        )
    except ValueError as exc:  # e.g. a --rate-window too short for a --rate-limit
        raise UsageError(f"--rate-window/--rate-limit: {exc}") from None
    fake.exports_expire = args.expire_exports
    try:
        fake.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host} port {args.port}: "
                         f"{exc.strerror or exc}") from None
    try:
        out(f"Fake Sailthru listening on {fake.url}")
        # The fake's credentials are test values, not secrets: print both so a host in
        # another language can sign its calls without reading our source.
        out(f"  api key {args.api_key}, api secret {args.api_secret}")
        out(f"  use: export SAILTHRU_API_URL={fake.url} SAILTHRU_API_KEY={args.api_key} "
            f"SAILTHRU_API_SECRET={args.api_secret}")
        on = [f"{name}={getattr(args, name.replace('-', '_'))}"
              for name in (*_RATES, *_WINDOWS) if getattr(args, name.replace("-", "_"))]
        on += [flag for flag, value in (("job-fails", args.job_fails),
                                        ("expire-exports", args.expire_exports)) if value]
        if args.job_polls != 1:
            on.append(f"job-polls={args.job_polls}")
        if args.job_seconds != 0.25:
            on.append(f"job-seconds={args.job_seconds:g}")
        out(f"  faults: {', '.join(on) if on else 'none'}")
        out(f"  rate limits counted per {args.rate_window:g} s "
            f"({'sliding' if args.rate_window == 1 else 'wall-clock windows'})")
        out("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
    finally:
        fake.stop()
    out("Fake Sailthru stopped.")
    return EXIT_OK
