"""The ``sailthru-destination`` command line: parses arguments, calls the library, prints.

One module per subcommand (``_sync``, ``_audit``, ``_report``, ``_import``, ``_test_connection``,
``_demo``, ``_fake_server``, ``_serve``), each with ``add_parser`` and ``run``; this module
wires them in :data:`_COMMANDS` and maps expected errors to exit codes.

Exit codes: 0 everything done, 1 some records failed (or a check failed), 2 a usage,
configuration or source error (nothing was sent). Credentials come from flags or the
``SAILTHRU_API_KEY`` / ``SAILTHRU_API_SECRET`` / ``SAILTHRU_API_URL`` environment
variables; the secret is never printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .._version import __version__
from ..sync.config import ConfigError
from ..sync.memory.state import StateError
from ..sync.runner import RunAborted
from ..sync.warehouse.sources import SourceError
from . import _audit, _demo, _fake_server, _import, _report, _serve, _sync, _test_connection
from ._common import EXIT_USAGE, UsageError, out
from ._json import error_document
from ._signals import exit_code
from ._sync import format_summary

__all__ = ["build_parser", "format_summary", "main"]

# In the order ``--help`` lists them.
_COMMANDS = (_demo, _test_connection, _sync, _audit, _report, _import, _fake_server, _serve)

# What Ctrl-C leaves behind, per command.
_AFTER_INTERRUPT = {
    "sync": ": the next run resumes where this one stopped",
    "import": ": the output file was left as it was",
    "audit": ": an audit changes nothing (an interrupted repair resumes on the next sync)",
}

_EXPECTED: tuple[type[Exception], ...] = (
    UsageError, ConfigError, SourceError, StateError, RunAborted,
)


class BadArguments(Exception):
    """A command line argparse refused: its message, and the (sub)command it was refused by."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused command line raises :class:`BadArguments` instead of exiting.

    So that ``--json`` gets its error document on stdout for a bad flag too (argparse alone
    prints to stderr and exits 2, leaving a scheduler reading stdout with nothing).
    Subparsers inherit the class.
    """

    commands: tuple[str, ...] = ()
    """The subcommands' names (set on the top-level parser)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise BadArguments(self.prog, message)


def build_parser() -> _Parser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="sailthru-destination",
        description="Keep Sailthru in sync with your customer data.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug) on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(sub)
    parser.commands = tuple(sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(words)
    except BadArguments as exc:
        out(f"{exc.prog}: error: {exc.message}", sys.stderr)
        if "--json" in words:  # a scheduler reads stdout alone
            command = next((word for word in words if word in parser.commands),
                           "sailthru-destination")
            out(json.dumps(error_document(command, exc.message), indent=2))
        return EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.verbose:
        level = logging.DEBUG if args.verbose > 1 else logging.INFO
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except _EXPECTED as exc:
        out(f"sailthru-destination {args.command}: error: {exc}", sys.stderr)
        if getattr(args, "json", False):  # a scheduler reads stdout alone
            out(json.dumps(error_document(args.command, str(exc)), indent=2))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        after = _AFTER_INTERRUPT.get(args.command, "")
        out(f"interrupted{after}", sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
