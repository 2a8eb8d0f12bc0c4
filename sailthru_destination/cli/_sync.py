"""``sailthru-destination sync``: push a model (CSV, JSON lines or SQL) to Sailthru."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..sync.config import OBJECTS, file_settings, load_config, name_problem
from ..sync.config_schema import CONFIG_SCHEMA
from ..sync.run import DEFAULT_HOME, RunInterrupted, run_sync, state_path
from ..sync.runner import RunSummary
from ..sync.warehouse.columns import empty_as_null
from ..sync.warehouse.sources import Row
from ._common import EXIT_FAILED, EXIT_OK, UsageError, out, rate_limits
from ._credentials import add_credentials, app_options, require_authentication
from ._json import for_schedulers
from ._model._columns import check_columns, parse_map, parse_types
from ._model._defaults import with_column_defaults
from ._model._model_state import HOME_VARIABLE, check_model_state, default_home, store_identity
from ._model._open import open_model
from ._plan import show_plan
from ._signals import exit_code, sigterm_as_interrupt

__all__ = ["add_model_arguments", "add_parser", "format_summary", "run"]


def add_parser(sub: Any) -> None:
    """Add ``sync`` and its flags to the subcommands."""
    parser = sub.add_parser(
        "sync",
        help="push a model (CSV, JSON lines or SQL) to Sailthru: only what changed",
        description=(
            "Diff a model against the last run's state and push only what changed. With no "
            "mapping flags, columns id (primary key), email (match key), groups (JSON array or "
            "';'-separated list names) and every other column as a var just work."
        ),
    )
    parser.add_argument("--full-resync", action="store_true",
                        help="send every row whole, as if new (with its old values from the "
                        "state, so removed values are still cleared), and rebuild the state "
                        "from the replies: after the state and Sailthru drifted apart")
    add_model_arguments(parser)
    add_credentials(parser)
    parser.set_defaults(handler=run)


def add_model_arguments(parser: Any, *, sync: bool = True) -> None:
    """The model, mapping and run flags ``sync`` and ``audit`` share (``sync``: also
    ``--config-schema`` and ``--plan``)."""
    parser.add_argument("source", nargs="?", help="a .csv, .jsonl or .ndjson file")
    parser.add_argument("--sql", help="a SQL query giving the model (with --db)")
    parser.add_argument("--db", help="SQLite file (opened read-only) or SQLAlchemy URL for --sql")
    parser.add_argument("--config", help="a JSON or TOML file of mapping settings (see "
                        "--config-schema)")
    if sync:
        parser.add_argument("--config-schema", action="store_true",
                            help="print the JSON Schema of the --config file (every setting, "
                            "its type and default) and exit")
    parser.add_argument("--name", help="model name for the state and report (default: file "
                        "name); a plain name, not a path")
    parser.add_argument("--object", choices=OBJECTS, help="what rows are (default: users)")
    parser.add_argument("--primary-key", help="column that identifies a row (default: id; "
                        "for purchases order_id when the model has it)")
    parser.add_argument("--match-column", help="column Sailthru matches on (default: email)")
    parser.add_argument("--match-key", choices=("email", "sid", "extid"),
                        help="what the match column holds (default: email)")
    parser.add_argument("--groups-column", help="column of list memberships (default: groups)")
    parser.add_argument("--optout-column", help="column of optout_email levels per row")
    parser.add_argument("--columns", help="comma-separated var columns (default: all others)")
    parser.add_argument("--ignore", help="comma-separated columns to leave out")
    parser.add_argument("--map", action="append", metavar="OLD=NEW",
                        help="rename a column, e.g. last-name=last_name (repeatable)")
    parser.add_argument("--types", action="append", metavar="COLUMN=TYPE,...",
                        help="read text columns as int, float, bool, json, str, date or "
                        "datetime (ISO 8601), e.g. age=int,vip=bool (CSV gives only text)")
    parser.add_argument("--nulls", dest="null_values", choices=("keep", "clear"),
                        help="what a NULL does to its var: keep (never changes Sailthru) or "
                        "clear (empties the var) (default: keep)")
    parser.add_argument("--empty-as-null", action="store_true", default=None,
                        help="read the empty cells of a CSV model as NULLs (else an empty "
                        "string is a value)")
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
                        help="use the job API for many changed users or purchases (default: "
                        "auto: a job when changed / rate > job overhead (about 70 s) + "
                        "changed x 0.25 ms, from about 23,000 users at 300/s or 2,900 orders "
                        "at 40/s)")
    parser.add_argument("--bulk-threshold", type=int,
                        help="changed rows from which --bulk auto uses a job (replaces the "
                        "cost model)")
    parser.add_argument("--max-errors", type=int, metavar="N",
                        help="stop the run cleanly (state saved, exit 1) after N failed "
                        "records (always: when the first 100 records all fail the same way)")
    if sync:
        parser.add_argument("--plan", action="store_true",
                            help="a dry run: authenticate, then say what a sync would do "
                            "(counts, and plan.jsonl per row) without sending anything or "
                            "changing the state")
    parser.add_argument("--json", action="store_true",
                        help="print the run summary as one JSON document on stdout (the "
                        "readable lines go to stderr), for schedulers")
    parser.add_argument("--rate-limit", action="append", metavar="ENDPOINT=N",
                        help="starting requests/second, e.g. user=300 (repeatable)")
    parser.add_argument("--state", help=f"state file (default: {DEFAULT_HOME}/<name>.db)")
    parser.add_argument("--report-dir", help="folder for this run's report "
                        f"(default: {DEFAULT_HOME}/reports/<name>-<time>)")
    parser.add_argument("--home", default=default_home(),
                        help=f"folder for state and reports (default: ${HOME_VARIABLE}, else "
                        f"{DEFAULT_HOME} in the current folder)")
    parser.add_argument("--same-model", action="store_true",
                        help="use the state although it was made for another model (a moved "
                        "file, an edited query): the state then belongs to this model")
    parser.add_argument("--max-delete", metavar="SHARE%|COUNT",
                        help="stop (exit 2, before any call) a run that would delete or clear "
                        "more than this share of the remembered users or this count "
                        "(default: 20%%; runs removing at most 10 users always go ahead)")
    parser.add_argument("--delimiter", help="the CSV delimiter (default: sniffed from the "
                        "header line among , ; tab and |)")
    parser.add_argument("--allow-empty", action="store_true", default=None,
                        help="accept an empty model (every remembered row is then gone)")
    parser.add_argument("--progress", action="store_true", default=None,
                        help="show a progress bar even when stderr is not a terminal")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="never show a progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``sync`` (or ``audit``, which shares its model flags): exit 0 when every record is
    done, 1 when some failed, 130 when stopped by Ctrl-C and 143 by SIGTERM (the summary is
    written with ``status: interrupted``)."""
    # The whole command, from the start: a SIGTERM while the SQL query runs or during the
    # credentials check is an interrupt too, never a death by the signal.
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "config_schema", False):
        out(json.dumps(CONFIG_SCHEMA, indent=2))
        return EXIT_OK
    if (args.source is None) == (args.sql is None):
        raise UsageError("give exactly one source: a file (sync people.csv) or --sql with --db")
    if args.name is not None:
        problem = name_problem(args.name)
        if problem:
            raise UsageError(f"--name {problem}; got {args.name!r}")
    name = args.name or (Path(args.source).stem if args.source else "sql")
    config = load_config(
        args.config, name=name, object=args.object, primary_key=args.primary_key,
        match_column=args.match_column, match_key=args.match_key,
        groups_column=args.groups_column, optout_column=args.optout_column,
        columns=args.columns, ignore=args.ignore, delete_behavior=args.delete_behavior,
        sync_mode=args.sync_mode, default_list=args.default_list, list_prefix=args.list_prefix,
        optout=args.optout, concurrency=args.concurrency, bulk=args.bulk,
        bulk_threshold=args.bulk_threshold, state=args.state, report_dir=args.report_dir,
        allow_empty=args.allow_empty, rate_limits=rate_limits(args.rate_limit) or None,
        max_errors=args.max_errors, max_delete=args.max_delete, map=parse_map(args.map),
        types=parse_types(args.types), null_values=args.null_values,
        empty_as_null=args.empty_as_null,
    )
    app = app_options(args)
    rows: Iterable[Row] = open_model(args)
    if config.empty_as_null:
        if args.sql is not None or Path(args.source).suffix.lower() != ".csv":
            raise UsageError("--empty-as-null (empty_as_null) is for CSV models: JSON lines "
                             "and SQL have a real null")
        rows = empty_as_null(rows)
    settings = file_settings(args.config)
    given = args.primary_key is not None or "primary_key" in settings
    config, rows = with_column_defaults(config, rows, primary_key_given=given)
    rows = check_columns(config, rows)
    state_file = state_path(config, args.home)
    identity = check_model_state(args, config, state_file,
                                 named=args.name is not None or "name" in settings)
    checked = require_authentication(args, app)
    if getattr(args, "plan", False):
        return show_plan(args, app, config, rows)
    if args.command == "audit":
        from ._audit import run_audit

        return run_audit(args, app, config, rows)
    store_identity(state_file, identity)
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    # With --json, stdout holds the summary document alone: the readable lines go to stderr.
    text = sys.stderr if args.json else sys.stdout
    source = args.source or "SQL query"
    try:
        outcome = run_sync(app, config, rows, home=args.home, progress=progress,
                           resend=args.full_resync, preflight=checked)
    except RunInterrupted as stop:
        return _interrupted(stop, source, config.object, as_json=args.json)
    verb = "Stopped" if outcome.stopped else "Synced"
    out(f"{verb} {source} -> {app.api_url} (key {app.masked_key})", text)
    for line in format_summary(outcome.summary, config.object):
        out(line, text)
    out(f"Report: {outcome.report}", text)
    out(f"  open {outcome.report / 'report.html'} in a browser", text)
    code = EXIT_FAILED if outcome.summary.failed or outcome.stopped else EXIT_OK
    if args.json:
        summary = json.loads((outcome.report / "summary.json").read_text(encoding="utf-8"))
        out(json.dumps(for_schedulers(summary, outcome.report, code), indent=2))
    if outcome.stopped:
        out(outcome.stopped, sys.stderr)
    if outcome.summary.failed:
        out(f"{outcome.summary.failed} record(s) failed: see "
            f"{outcome.report / 'errors.jsonl'}", text)
    return code


def _interrupted(stop: RunInterrupted, source: str, object: str, *, as_json: bool) -> int:
    """Say how far an interrupted run got (on stderr; with ``--json`` its summary document on
    stdout too, ``status`` ``interrupted``) and return its exit code."""
    outcome = stop.outcome
    how = "SIGTERM" if stop.signum == signal.SIGTERM else "Ctrl-C"
    out(f"Interrupted ({how}) {source}: every write Sailthru confirmed is in the state; "
        "the next run resumes where this one stopped", sys.stderr)
    for line in format_summary(outcome.summary, object):
        out(line, sys.stderr)
    out(f"Report: {outcome.report} (summary.json status: interrupted)", sys.stderr)
    code = exit_code(stop)
    if as_json:
        # A scheduler reads stdout alone: an interrupted run's document says so and how far
        # it got, like a finished run's.
        summary = json.loads((outcome.report / "summary.json").read_text(encoding="utf-8"))
        out(json.dumps(for_schedulers(summary, outcome.report, code), indent=2))
    return code


def _count(number: float) -> str:
    return f"{number:,}" if isinstance(number, int) else f"{number:,.2f}"


# The outcomes always shown, per kind of model: users are created or updated, the others sent.
_ALWAYS = {"users": ("created", "updated", "unchanged", "deleted", "failed")}
_ALWAYS_ACTIVITY = ("sent", "unchanged", "failed")


def format_summary(summary: RunSummary, object: str = "users") -> list[str]:
    """The readable lines of a run summary (of a model of ``object``)."""
    counts = summary.counts
    always = _ALWAYS.get(object, _ALWAYS_ACTIVITY)
    lines = [f"  {'rows read':<16}{_count(summary.rows):>10}"]
    for name in ("created", "updated", "sent", "unchanged", "deleted", "cleared", "kept",
                 "skipped", "failed"):
        if counts[name] or name in always:
            lines.append(f"  {name:<16}{_count(counts[name]):>10}")
    if object == "users":
        lines.append(f"  {'lists created':<16}{_count(summary.lists_created):>10}")
    # Unchanged rows cost nothing: the calls are spent on the others, deletes included.
    changed = summary.changed
    per_record = summary.total_calls / changed if changed > 0 else 0.0
    path = summary.path + (f", {summary.jobs} job(s)" if summary.jobs else "")
    lines.append(f"  {'API calls':<16}{_count(summary.total_calls):>10}   "
                 f"({per_record:.2f} per changed row; {path})")
    lines.append(f"  {'time':<16}{summary.seconds:>9.2f}s")
    return lines
