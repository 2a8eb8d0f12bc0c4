"""``sailthru-destination demo``: sync sample profiles to an embedded fake Sailthru."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UsageError, out

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``demo`` and its flags to the subcommands."""
    parser = sub.add_parser(
        "demo", help="try it: sync sample profiles to an embedded fake Sailthru",
        description="Start an embedded fake Sailthru, sync ~1,000 sample profiles, change and "
        "remove some, sync again and show what happened. No account, no network.",
    )
    parser.add_argument("--rows", type=int, default=1000, help="sample profiles (default: 1000)")
    parser.add_argument("--folder", help="keep the sample model, state and reports here")
    parser.add_argument("--seed", type=int, default=7, help="seed of the sample data")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; its exit code."""
    from .._demo import run_demo

    if args.rows < 20:
        raise UsageError("--rows must be at least 20")
    return run_demo(rows=args.rows, folder=args.folder, seed=args.seed, out=out)
