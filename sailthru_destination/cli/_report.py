"""``sailthru-destination report``: write (again) a run's ``report.html`` from its folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..sync.reporting.report_html import write_report_html
from ._common import EXIT_OK, UsageError, out

__all__ = ["add_parser", "run"]

_FILES = ("summary.json", "errors.jsonl", "calls.jsonl")


def add_parser(sub: Any) -> None:
    """Add ``report`` and its flags to the subcommands."""
    parser = sub.add_parser(
        "report", help="write a run's report.html again from its report folder",
        description=("Build report.html (counts, failures grouped by reason with fixes, a "
                     "timeline of calls, the call log) from a sync run's report folder. The "
                     "page is self-contained: open it in any browser, offline."),
    )
    parser.add_argument("folder", help="a report folder (holding summary.json, errors.jsonl, "
                        "calls.jsonl)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write ``report.html`` into the folder and print its path."""
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: give a sync run's report folder")
    if not any((folder / name).is_file() for name in _FILES):
        raise UsageError(f"{folder} holds none of {', '.join(_FILES)}: it is not a report "
                         "folder")
    try:
        path = write_report_html(folder)
    except OSError as exc:
        raise UsageError(f"cannot write {folder / 'report.html'}: {exc.strerror or exc}"
                         ) from None
    out(f"Report page: {path}")
    return EXIT_OK
