"""``sailthru-destination audit``: find (and with ``--repair`` fix) drift between Sailthru and
the model's state (see :mod:`..sync.audit`).

It takes ``sync``'s model flags and goes through ``sync``'s own checks (so a model is
named, mapped and checked the same way), then reads Sailthru instead of writing to it.
Exit 0: Sailthru holds what the model says; 1: drift found (or, with ``--repair``, some
record of the repair failed); 2: a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from ..options import AppOptions
from ..sync.config import SyncConfig
from ..sync.reporting.audit import AuditResult, audit_model, repair_drift
from ..sync.reporting.audit_read import READ_MODES
from ..sync.run import state_path
from ..sync.warehouse.sources import Row
from ._common import EXIT_FAILED, EXIT_OK, UsageError, out
from ._credentials import add_credentials
from ._signals import sigterm_as_interrupt
from ._sync import add_model_arguments, format_summary, run

__all__ = ["add_parser", "run_audit"]


def add_parser(sub: Any) -> None:
    """Add ``audit`` and its flags (``sync``'s model flags, ``--repair``, ``--read``)."""
    parser = sub.add_parser(
        "audit",
        help="compare what Sailthru holds with the model and its state: drift.jsonl, and "
        "--repair to fix it",
        description=(
            "Read what Sailthru holds for the model's users (per user, or through export "
            "jobs of the model's lists when that is faster) and compare it with what the "
            "model and the state say, with the sync's own decision. Writes drift.jsonl (one "
            "line per user that differs) and a summary. Exit 0: no drift; 1: drift found; "
            "2: a usage or configuration error."
        ),
    )
    parser.add_argument("--repair", action="store_true",
                        help="then fix the drift through the normal sync path: the rows that "
                        "differ are sent whole, gone users get the delete behaviour, and the "
                        "state is rebuilt from the replies")
    parser.add_argument("--read", choices=READ_MODES, default="auto",
                        help="how to read Sailthru: user (a GET per user), export (one "
                        "export_list_data job per list) or auto (default: whichever is "
                        "faster: export from about 23,000 users at 300 reads/s)")
    add_model_arguments(parser, sync=False)
    add_credentials(parser)
    parser.set_defaults(handler=run, plan=False, config_schema=False, full_resync=False)


def run_audit(args: argparse.Namespace, app: AppOptions, config: SyncConfig,
              rows: Iterable[Row]) -> int:
    """Audit (and with ``--repair`` repair) the model; print the summary; the exit code."""
    rows = list(rows)  # read again by the repair
    state_file = state_path(config, args.home)
    text = sys.stderr if args.json else sys.stdout
    if not state_file.exists():
        out(f"no state at {state_file}: every row counts as new (is --home or --state "
            "right?)", sys.stderr)
    try:
        result = audit_model(app, config, rows, state_file=state_file, home=args.home,
                             read=args.read)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = result.summary
    source = args.source or "SQL query"
    out(f"Audit of {source} against {app.api_url} (key {app.masked_key}), read by "
        f"{summary['read']}", text)
    for name in ("users_audited", "users_drifted", "users_missing", "users_should_be_gone",
                 "vars_differ", "lists_differ", "fixed_by_sync"):
        out(f"  {name.replace('_', ' '):<22}{summary[name]:>10,}", text)
    out(f"Drift: {result.folder / 'drift.jsonl'} (one line per user that differs)", text)
    code = EXIT_FAILED if result.drifted else EXIT_OK
    if args.repair and result.drifted:
        code = _repair(args, app, config, rows, result, text)
    if args.json:
        out(json.dumps(summary, indent=2))
    return code


def _repair(args: argparse.Namespace, app: AppOptions, config: SyncConfig, rows: list[Row],
            result: AuditResult, text: Any) -> int:
    """Run the sync that fixes the drift; its outcome goes into the audit's summary."""
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    with sigterm_as_interrupt():
        outcome = repair_drift(app, config, rows, result, state_file=state_path(config, args.home),
                               home=args.home, progress=progress)
    out(f"Repaired: {len(result.resend)} row(s) resent whole, {len(result.back)} deleted "
        "user(s) back in Sailthru deleted again", text)
    for line in format_summary(outcome.summary, config.object):
        out(line, text)
    out(f"Repair report: {outcome.report}", text)
    failed = outcome.summary.failed
    result.summary["repair"] = {"report": str(outcome.report), "status": outcome.status,
                                "resent": len(result.resend), "deleted_again": len(result.back),
                                "failed": failed,
                                "counts": dict(outcome.summary.counts)}
    (result.folder / "summary.json").write_text(
        json.dumps(result.summary, indent=2, default=str) + "\n", encoding="utf-8")
    if outcome.stopped:
        out(outcome.stopped, sys.stderr)
    return EXIT_FAILED if failed or outcome.stopped else EXIT_OK
