"""``sync --plan``: print what a sync would do (see :mod:`..sync.plan`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable

from ..options import AppOptions
from ..sync.config import SyncConfig
from ..sync.guard import DEFAULT_MAX_DELETE, DeleteLimit, remembered_users
from ..sync.plan import plan_sync
from ..sync.run import state_path
from ..sync.warehouse.sources import Row
from ._common import EXIT_OK, EXIT_USAGE, UsageError, out
from ._json import for_schedulers

__all__ = ["show_plan"]

_ACTIONS = {"created": "create", "updated": "update", "unchanged": "leave unchanged",
            "deleted": "delete", "cleared": "clear", "kept": "keep (gone, user held)",
            "skipped": "skip", "failed": "fail (see errors.jsonl)"}


def show_plan(args: argparse.Namespace, app: AppOptions, config: SyncConfig,
              rows: Iterable[Row]) -> int:
    """Plan the sync, print the counts per action and where ``plan.jsonl`` is; exit 0, or 2
    when the sync would stop at the mass-delete guard (the plan is written all the same)."""
    state_file = state_path(config, args.home)
    remembered = remembered_users(state_file)
    try:
        # The whole plan, past the guard: the user sees what the sync would refuse to do.
        summary, folder = plan_sync(app, config.replace(max_delete="100%"), rows,
                                    state_file=state_file, home=args.home,
                                    resend=args.full_resync)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    removing = summary["counts"].get("deleted", 0) + summary["counts"].get("cleared", 0)
    limit = DeleteLimit.parse(config.max_delete if config.max_delete is not None
                              else DEFAULT_MAX_DELETE)
    refused = limit.problem(removing, remembered, config.delete_behavior)
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
    code = EXIT_OK
    if refused:
        code = EXIT_USAGE
        summary["refused"] = refused
        out(f"REFUSED: a sync would stop here: {refused}", sys.stderr)
    else:
        out("  sync without --plan applies it, as long as the model and the mapping stay the "
            "same", text)
    if args.json:
        out(json.dumps(for_schedulers(summary, folder, code), indent=2))
    return code


