"""``sailthru-destination test-connection``: check the credentials and endpoint permissions."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_FAILED, EXIT_OK, UsageError, out
from ._credentials import add_credentials, app_options, require_authentication

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``test-connection`` and its flags to the subcommands."""
    parser = sub.add_parser(
        "test-connection", help="check the credentials and endpoint permissions",
        description="Check that the key and secret authenticate and may use each endpoint.",
    )
    parser.add_argument("--endpoint", action="append",
                        help="endpoint to check (repeatable; default: user, list, job)")
    add_credentials(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the connection test: exit 0 when every check passed, 1 when an endpoint check
    failed, 2 when Sailthru refused the credentials (a configuration error, as for every
    command)."""
    from ..destination import SailthruDestination

    app = app_options(args)
    require_authentication(args, app)
    endpoints = args.endpoint or ("user", "list", "job")
    with SailthruDestination(app) as destination:
        try:
            result = destination.test_connection(endpoints)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    out(f"Testing {app.api_url} with key {app.masked_key}")
    for _name, ok, sentence in result.checks:
        out(f"  [{'ok' if ok else 'FAILED'}] {sentence}")
    if result.ok:
        out(result.message)
    else:  # each failure was just listed: count them rather than say them twice
        failed = sum(1 for _, ok, _ in result.checks if not ok)
        out(f"{failed} check(s) failed")
    return EXIT_OK if result.ok else EXIT_FAILED
