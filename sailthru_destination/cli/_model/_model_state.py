"""Which state a ``sync`` uses, said out loud: found or not, and whose model it holds.

Run from another folder, a sync finds no state and treats every row as new (a cron job
would resend everything): that is said on stderr with where it looked and how to point at
the right state. A state made for another model (two ``--sql`` models named ``sql``) is
refused (exit 2) unless ``--same-model`` or an explicit ``--name`` says it is the same
model (:mod:`..sync.identity`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ...sync.config import SyncConfig
from ...sync.guard import remembered_users
from ...sync.identity import model_identity, read_identity, shown, store_identity
from ...sync.run import DEFAULT_HOME
from .._common import UsageError, out

__all__ = ["HOME_VARIABLE", "check_model_state", "default_home", "store_identity"]

HOME_VARIABLE = "SAILTHRU_SYNC_HOME"


def default_home() -> str:
    """The folder of states and reports: ``$SAILTHRU_SYNC_HOME``, else ``.sailthru-sync``."""
    return os.environ.get(HOME_VARIABLE) or DEFAULT_HOME


def check_model_state(args: argparse.Namespace, config: SyncConfig, state_file: Path,
                      *, named: bool) -> str:
    """Check the state ``state_file`` against the model of ``args`` and say what is worth
    knowing on stderr; the model's identity. ``named``: the model's name was given (``--name``
    or the config file's ``name``), which says the model is the one of that state."""
    identity = model_identity(args.source, sql=args.sql, db=args.db)
    if not state_file.is_file():
        _no_state(config, state_file)
        return identity
    stored = read_identity(state_file)
    if stored is None:
        if remembered_users(state_file):
            out(f"note: the state {state_file} does not say which model it is (made by an "
                f"older version): it is now the state of {shown(identity)}", sys.stderr)
        return identity
    if stored == identity:
        return identity
    if args.same_model or named:
        why = "--same-model" if args.same_model else "the model's --name"
        out(f"note: the state {state_file} was the state of {shown(stored)}; {why} says "
            f"{shown(identity)} is the same model, and it is now the state's model",
            sys.stderr)
        return identity
    raise UsageError(
        f"the state {state_file} belongs to another model ({shown(stored)}), not "
        f"{shown(identity)}: syncing against it would rename, clear or delete that model's "
        "users. Give this model its own state with --name NAME, or pass --same-model if it "
        "is the same model (a moved file, an edited query)")


def _no_state(config: SyncConfig, state_file: Path) -> None:
    where = Path(state_file).resolve().parent
    out(f"note: no state found for model {config.name!r} at {state_file} (in {where}): every "
        "row is treated as new. If this model was synced before from another folder, run "
        f"there, or point at its state with --home DIR (or {HOME_VARIABLE}=DIR) or --state "
        "FILE", sys.stderr)
    if config.delete_behavior != "nothing" and config.object == "users":
        out(f"WARNING: --delete-behavior {config.delete_behavior} on a first run: this run "
            "remembers the model as it is now, and from the next run on every user missing "
            f"from the model is {config.delete_behavior}d (up to max_delete "
            f"{config.max_delete or '20%'} of them per run)", sys.stderr)
