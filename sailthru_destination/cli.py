"""The ``sailthru-destination`` command line: parses arguments, calls the library, prints.

Exit codes: 0 everything done, 1 some records failed (or a check failed), 2 a usage,
configuration or source error (nothing was sent). Credentials come from flags or the
``SAILTHRU_API_KEY`` / ``SAILTHRU_API_SECRET`` / ``SAILTHRU_API_URL`` environment
variables; the secret is never printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from . import __version__
from .options import DEFAULT_API_URL, AppOptions
from .serve import register as register_serve
from .sync.config import OBJECTS, ConfigError, load_config
from .sync.run import DEFAULT_HOME, run_sync
from .sync.runner import RunAborted, RunSummary
from .sync.sources import SourceError, open_source
from .sync.state import StateError

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Something the user must fix on the command line or in the environment."""


# -- arguments ---------------------------------------------------------------------------------


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("credentials (flags win over the environment)")
    group.add_argument("--api-key", help="API key (default: $SAILTHRU_API_KEY)")
    group.add_argument("--api-secret", help="API secret (default: $SAILTHRU_API_SECRET)")
    group.add_argument(
        "--api-url", help=f"API base URL (default: $SAILTHRU_API_URL or {DEFAULT_API_URL})"
    )


def _add_sync(sub: Any) -> None:
    parser = sub.add_parser(
        "sync",
        help="push a model (CSV, JSON lines or SQL) to Sailthru: only what changed",
        description=(
            "Diff a model against the last run's state and push only what changed. With no "
            "mapping flags, columns id (primary key), email (match key), groups (JSON array or "
            "';'-separated list names) and every other column as a var just work."
        ),
    )
    parser.add_argument("source", nargs="?", help="a .csv, .jsonl or .ndjson file")
    parser.add_argument("--sql", help="a SQL query giving the model (with --db)")
    parser.add_argument("--db", help="SQLite file or SQLAlchemy URL for --sql")
    parser.add_argument("--config", help="a JSON or TOML file of mapping settings")
    parser.add_argument("--name", help="model name for the state and report (default: file name)")
    parser.add_argument("--object", choices=OBJECTS, help="what rows are (default: users)")
    parser.add_argument("--primary-key", help="column that identifies a row (default: id)")
    parser.add_argument("--match-column", help="column Sailthru matches on (default: email)")
    parser.add_argument("--match-key", choices=("email", "sid", "extid"),
                        help="what the match column holds (default: email)")
    parser.add_argument("--groups-column", help="column of list memberships (default: groups)")
    parser.add_argument("--optout-column", help="column of optout_email levels per row")
    parser.add_argument("--columns", help="comma-separated var columns (default: all others)")
    parser.add_argument("--ignore", help="comma-separated columns to leave out")
    parser.add_argument("--delete-behavior", choices=("nothing", "clear", "delete"),
                        help="for rows gone from the model (default: nothing)")
    parser.add_argument("--sync-mode", choices=("upsert", "update"), help="default: upsert")
    parser.add_argument("--default-list", help="a list every exported user joins")
    parser.add_argument("--list-prefix", help="put in front of every list name from a group")
    parser.add_argument("--optout", choices=("none", "all", "basic", "blast"),
                        help="optout_email level sent with every user")
    parser.add_argument("--concurrency", type=int,
                        help="records in flight (default: adapts to rate limit and latency)")
    parser.add_argument("--bulk", choices=("auto", "always", "never"),
                        help="use the job API for many changed users (default: auto)")
    parser.add_argument("--bulk-threshold", type=int,
                        help="changed users from which --bulk auto uses a job (default: 1000)")
    parser.add_argument("--rate-limit", action="append", metavar="ENDPOINT=N",
                        help="starting requests/second, e.g. user=300 (repeatable)")
    parser.add_argument("--state", help=f"state file (default: {DEFAULT_HOME}/<name>.db)")
    parser.add_argument("--report-dir", help="folder for this run's report "
                        f"(default: {DEFAULT_HOME}/reports/<name>-<time>)")
    parser.add_argument("--home", default=DEFAULT_HOME,
                        help=f"folder for state and reports (default: {DEFAULT_HOME})")
    parser.add_argument("--allow-empty", action="store_true", default=None,
                        help="accept an empty model (every remembered row is then gone)")
    parser.add_argument("--progress", action="store_true", default=None,
                        help="show a progress bar even when stderr is not a terminal")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="never show a progress bar")
    _add_credentials(parser)
    parser.set_defaults(handler=_cmd_sync)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sailthru-destination",
        description="Keep Sailthru in sync with your customer data.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug) on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="try it: sync sample profiles to an embedded fake Sailthru",
        description="Start an embedded fake Sailthru, sync ~1,000 sample profiles, change and "
        "remove some, sync again and show what happened. No account, no network.",
    )
    demo.add_argument("--rows", type=int, default=1000, help="sample profiles (default: 1000)")
    demo.add_argument("--folder", help="keep the sample model, state and reports here")
    demo.add_argument("--seed", type=int, default=7, help="seed of the sample data")
    demo.set_defaults(handler=_cmd_demo)

    check = sub.add_parser(
        "test-connection", help="check the credentials and endpoint permissions",
        description="Check that the key and secret authenticate and may use each endpoint.",
    )
    check.add_argument("--endpoint", action="append",
                       help="endpoint to check (repeatable; default: user, list, job)")
    _add_credentials(check)
    check.set_defaults(handler=_cmd_test_connection)

    _add_sync(sub)
    _add_import(sub)

    fake = sub.add_parser(
        "fake-server", help="run the fake Sailthru on a port (for hosts in other languages)",
        description="Serve a fake Sailthru API over HTTP on 127.0.0.1 until Ctrl-C.",
    )
    fake.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free)")
    fake.add_argument("--api-key", default="test-key", help="the API key it accepts")
    fake.add_argument("--api-secret", default="test-secret", help="the secret it verifies")
    fake.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    fake.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    fake.add_argument("--rate-limit", action="append", metavar="ENDPOINT=N",
                      help="requests/second, e.g. user=300 (repeatable; replaces the defaults)")
    for name in ("connection-error-rate", "server-error-rate", "false-ok-delete-rate",
                 "rate-limit-burst"):
        fake.add_argument(f"--{name}", type=float, default=0.0, help="fault rate, 0..1")
    fake.add_argument("--list-race-window", type=float, default=0.0,
                      help="seconds during which racing requests create duplicate lists")
    fake.set_defaults(handler=_cmd_fake_server)
    register_serve(sub, credentials=_add_credentials, app=_app, out=_out)
    return parser


def _add_import(sub: Any) -> None:
    parser = sub.add_parser(
        "import", help="write the members of Sailthru lists to CSV or JSON lines",
        description="Export list members through the job API and write one row per member.",
    )
    parser.add_argument("--list", action="append", required=True, dest="lists",
                        help="list name (repeatable)")
    parser.add_argument("--out", required=True, help="output file (.csv, or .jsonl/.ndjson)")
    _add_credentials(parser)
    parser.set_defaults(handler=_cmd_import)


# -- helpers -------------------------------------------------------------------------------------


def _app(args: argparse.Namespace) -> AppOptions:
    key = args.api_key or os.environ.get("SAILTHRU_API_KEY")
    secret = args.api_secret or os.environ.get("SAILTHRU_API_SECRET")
    url = args.api_url or os.environ.get("SAILTHRU_API_URL") or DEFAULT_API_URL
    missing = [name for name, value in (("API key", key), ("API secret", secret)) if not value]
    if missing:
        raise UsageError(
            f"missing {' and '.join(missing)}: pass --api-key/--api-secret or set "
            "SAILTHRU_API_KEY and SAILTHRU_API_SECRET"
        )
    try:
        return AppOptions(str(key), str(secret), url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _rate_limits(values: Sequence[str] | None) -> dict[str, float]:
    limits: dict[str, float] = {}
    for item in values or ():
        name, _, number = item.partition("=")
        try:
            limits[name.strip()] = float(number)
        except ValueError:
            raise UsageError(
                f"--rate-limit wants ENDPOINT=N (e.g. user=300), got {item!r}"
            ) from None
        if not name.strip() or limits[name.strip()] <= 0:
            raise UsageError(f"--rate-limit wants ENDPOINT=N with N > 0, got {item!r}")
    return limits


def _out(text: str = "", stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(text + "\n")


def _count(number: float) -> str:
    return f"{number:,}" if isinstance(number, int) else f"{number:,.2f}"


def format_summary(summary: RunSummary) -> list[str]:
    """The readable lines of a run summary."""
    counts = summary.counts
    lines = [f"  {'rows read':<16}{_count(summary.rows):>10}"]
    for name in ("created", "updated", "unchanged", "deleted", "cleared", "kept", "skipped",
                 "failed"):
        if counts[name] or name in ("created", "updated", "unchanged", "deleted", "failed"):
            lines.append(f"  {name:<16}{_count(counts[name]):>10}")
    lines.append(f"  {'lists created':<16}{_count(summary.lists_created):>10}")
    per_record = summary.total_calls / summary.rows if summary.rows else 0.0
    path = summary.path + (f", {summary.jobs} job(s)" if summary.jobs else "")
    lines.append(f"  {'API calls':<16}{_count(summary.total_calls):>10}   "
                 f"({per_record:.2f} per row; {path})")
    lines.append(f"  {'time':<16}{summary.seconds:>9.2f}s")
    return lines


# -- subcommands ---------------------------------------------------------------------------------


def _cmd_sync(args: argparse.Namespace) -> int:
    if (args.source is None) == (args.sql is None):
        raise UsageError("give exactly one source: a file (sync people.csv) or --sql with --db")
    name = args.name or (Path(args.source).stem if args.source else "sql")
    config = load_config(
        args.config, name=name, object=args.object, primary_key=args.primary_key,
        match_column=args.match_column, match_key=args.match_key,
        groups_column=args.groups_column, optout_column=args.optout_column,
        columns=args.columns, ignore=args.ignore, delete_behavior=args.delete_behavior,
        sync_mode=args.sync_mode, default_list=args.default_list, list_prefix=args.list_prefix,
        optout=args.optout, concurrency=args.concurrency, bulk=args.bulk,
        bulk_threshold=args.bulk_threshold, state=args.state, report_dir=args.report_dir,
        allow_empty=args.allow_empty, rate_limits=_rate_limits(args.rate_limit) or None,
    )
    app = _app(args)
    rows = open_source(args.source, sql=args.sql, db=args.db)
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    outcome = run_sync(app, config, rows, home=args.home, progress=progress)
    source = args.source or "SQL query"
    _out(f"Synced {source} -> {app.api_url} (key {app.masked_key})")
    for line in format_summary(outcome.summary):
        _out(line)
    _out(f"Report: {outcome.report}")
    if outcome.summary.failed:
        _out(f"{outcome.summary.failed} record(s) failed: see {outcome.report / 'errors.jsonl'}")
        return EXIT_FAILED
    return EXIT_OK


def _cmd_test_connection(args: argparse.Namespace) -> int:
    from .destination import SailthruDestination

    app = _app(args)
    endpoints = args.endpoint or ("user", "list", "job")
    with SailthruDestination(app) as destination:
        try:
            result = destination.test_connection(endpoints)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    _out(f"Testing {app.api_url} with key {app.masked_key}")
    for _name, ok, sentence in result.checks:
        _out(f"  [{'ok' if ok else 'FAILED'}] {sentence}")
    _out(result.message)
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_import(args: argparse.Namespace) -> int:
    from .destination import SailthruDestination

    app = _app(args)
    out = Path(args.out)
    as_csv = out.suffix.lower() == ".csv"
    if not as_csv and out.suffix.lower() not in (".jsonl", ".ndjson"):
        raise UsageError(f"--out must end in .csv, .jsonl or .ndjson, got {args.out!r}")
    written = 0
    with SailthruDestination(app) as destination, out.open("w", newline="",
                                                           encoding="utf-8") as handle:
        members = destination.import_list_members(args.lists)
        if as_csv:
            written = _write_members_csv(members, handle)
        else:
            for member in members:
                handle.write(json.dumps(_member_dict(member), ensure_ascii=False) + "\n")
                written += 1
    _out(f"Wrote {written:,} member(s) of {', '.join(args.lists)} to {out}")
    return EXIT_OK


def _member_dict(member: Any) -> dict[str, Any]:
    return {"sid": member.sid, "email": member.email, "extid": member.extid,
            "source_list": member.source_list, "lists": list(member.lists),
            "vars": dict(member.vars)}


def _write_members_csv(members: Any, handle: TextIO) -> int:
    # Var columns differ per user: spool to learn them all, then write with one header.
    import tempfile

    names: dict[str, None] = {}
    written = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for member in members:
            row = _member_dict(member)
            names.update(dict.fromkeys(row["vars"]))
            spool.write(json.dumps(row) + "\n")
        spool.seek(0)
        fixed = ["sid", "email", "extid", "source_list", "lists"]
        writer = csv.DictWriter(handle, fieldnames=fixed + [n for n in names if n not in fixed])
        writer.writeheader()
        for line in spool:
            row = json.loads(line)
            flat = {**row.pop("vars"), **row, "lists": ";".join(row["lists"])}
            writer.writerow(flat)
            written += 1
    return written


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    if args.rows < 20:
        raise UsageError("--rows must be at least 20")
    return run_demo(rows=args.rows, folder=args.folder, seed=args.seed, out=_out)


def _cmd_fake_server(args: argparse.Namespace) -> int:
    from .testing import FakeSailthru, Faults

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
        seed=args.seed, faults=faults, rate_limits=_rate_limits(args.rate_limit) or None,
    )
    try:
        fake.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc.strerror or exc}") from None
    try:
        _out(f"Fake Sailthru listening on {fake.url}")
        _out(f"  api key {args.api_key}; use: export SAILTHRU_API_URL={fake.url}")
        _out("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
    finally:
        fake.stop()
    _out("Fake Sailthru stopped.")
    return EXIT_OK


# -- entry point ---------------------------------------------------------------------------------

_EXPECTED: tuple[type[Exception], ...] = (
    UsageError, ConfigError, SourceError, StateError, RunAborted,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
        _out(f"sailthru-destination {args.command}: error: {exc}", sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _out("interrupted: the next run resumes where this one stopped", sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
