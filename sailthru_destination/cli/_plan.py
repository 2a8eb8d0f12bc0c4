"""``sync --plan``: print what a sync would do (see :mod:`..sync.plan`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable

from ..options import AppOptions
from ..sync.config import SyncConfig
from ..sync.plan import plan_sync
from ..sync.run import state_path
from ..sync.sources import Row
from ._common import EXIT_OK, UsageError, out

__all__ = ["show_plan"]

_ACTIONS = {"created": "create", "updated": "update", "unchanged": "leave unchanged",
            "deleted": "delete", "cleared": "clear", "kept": "keep (gone, user held)",
            "skipped": "skip", "failed": "fail (see errors.jsonl)"}


def show_plan(args: argparse.Namespace, app: AppOptions, config: SyncConfig,
              rows: Iterable[Row]) -> int:
    """Plan the sync, print the counts per action and where ``plan.jsonl`` is; exit 0."""
    try:
        summary, folder = plan_sync(app, config, rows, state_file=state_path(config, args.home),
                                    home=args.home, resend=args.full_resync)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    text = sys.stderr if args.json else sys.stdout
    source = args.source or "SQL query"
    out(f"Plan for {source} -> {app.api_url} (key {app.masked_key}): nothing was sent and the "
        "state was not changed", text)
    out(f"  {'rows read':<24}{summary['rows']:>10,}", text)
    counts = Counter(summary["counts"])
    for name, action in _ACTIONS.items():
        if counts[name] or name in ("created", "updated", "unchanged", "failed"):
            out(f"  {action:<24}{counts[name]:>10,}", text)
    out(f"Plan: {folder / 'plan.jsonl'} (one line per row to act on)", text)
    out("  sync without --plan applies it, as long as the model and the mapping stay the "
        "same", text)
    if args.json:
        out(json.dumps(summary, indent=2))
    return EXIT_OK


