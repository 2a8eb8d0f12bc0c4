"""``sailthru-destination import``: write the members of Sailthru lists to CSV or JSON lines.

The output file is replaced only when every list was read: a failed import leaves the previous
export as it was. ``--out -`` writes to stdout, also only once every list was read (the rows are
spooled first), so a pipe never sees half an export. CSV cells that a spreadsheet would run as
a formula are escaped unless ``--raw-csv`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ..errors import AuthError, NotFound, PermissionDenied, SailthruError
from ..features.imports import ImportedUser
from ._common import EXIT_FAILED, EXIT_OK, UsageError, out, reader_gone
from ._credentials import add_credentials, app_options, require_authentication
from ._files import replace_on_success

__all__ = ["add_parser", "escape_formula"]

_FIXED = ("sid", "email", "extid", "source_list", "lists")
# OWASP "CSV injection": a cell starting with one of these is run as a formula by spreadsheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def add_parser(sub: Any) -> None:
    """Add ``import`` and its flags to the subcommands."""
    parser = sub.add_parser(
        "import", help="write the members of Sailthru lists to CSV or JSON lines",
        description="Export list members through the job API and write one row per member. "
        "The output file is replaced only when the whole import succeeded.",
    )
    parser.add_argument("--list", action="append", required=True, dest="lists",
                        help="list name (repeatable)")
    parser.add_argument("--out", required=True,
                        help="output file (.csv, or .jsonl/.ndjson), or - for stdout")
    parser.add_argument("--format", choices=("csv", "jsonl"),
                        help="output format (default: from --out's suffix; jsonl for -)")
    parser.add_argument("--merge", action="store_true",
                        help="one row per member across all the lists, with every list the "
                        "member is on in lists (default: one row per member and list)")
    parser.add_argument("--raw-csv", action="store_true",
                        help="write CSV cells as Sailthru holds them; by default a cell starting "
                        "with = + - @ tab or carriage return (a spreadsheet formula) gets a "
                        "leading ' (plain numbers are left alone)")
    add_credentials(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``import``: exit 0 when written, 1 when the import failed, 2 for a bad setting."""
    from ..destination import SailthruDestination

    to_stdout = args.out == "-"
    out_path = Path(args.out)
    suffix = out_path.suffix.lower()
    if args.format:
        csv_out = args.format == "csv"
    elif to_stdout:
        csv_out = False
    elif suffix in (".csv", ".jsonl", ".ndjson"):
        csv_out = suffix == ".csv"
    else:
        raise UsageError(f"--out must end in .csv, .jsonl or .ndjson (or give --format), got "
                         f"{args.out!r}")
    kept = "nothing was written" if to_stdout else f"{args.out} was left as it was"
    if not to_stdout:
        _check_out(args.out, out_path)
    app = app_options(args)
    require_authentication(args, app)
    target = _spooled_stdout() if to_stdout else replace_on_success(out_path)
    try:
        with SailthruDestination(app) as destination, target as handle:
            members = destination.import_list_members(args.lists, merge=args.merge)
            if csv_out:
                written = write_members_csv(members, handle, raw=args.raw_csv)
            else:
                written = write_members_jsonl(members, handle)
    except (NotFound, AuthError, PermissionDenied) as exc:
        # An unknown list, wrong credentials or a key without the job API: a setting to fix.
        raise UsageError(f"{exc} ({kept})") from None
    except SailthruError as exc:
        out(f"sailthru-destination import: {exc} ({kept})", sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # the folder is read-only, --out is a folder, the disk is full
        raise UsageError(f"--out: cannot write {args.out}: {exc.strerror or exc} ({kept})"
                         ) from None
    merged = " (merged: one row per member)" if args.merge else ""
    where = "stdout" if to_stdout else str(out_path)
    # With --out -, stdout is the data: the report goes to stderr.
    out(f"Wrote {written:,} member(s) of {', '.join(args.lists)} to {where}{merged}",
        sys.stderr if to_stdout else sys.stdout)
    return EXIT_OK


def _check_out(name: str, path: Path) -> None:
    try:
        if not path.parent.is_dir():
            raise UsageError(f"--out: the folder {str(path.parent)!r} does not exist")
        if path.is_dir():
            raise UsageError(f"--out: {name!r} is a folder, not a file")
    except OSError as exc:  # e.g. a name too long for the file system
        raise UsageError(f"--out: cannot write {name}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _spooled_stdout() -> Iterator[TextIO]:
    """A text file whose content goes to stdout only if the block ends without an error."""
    with tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as spool:
        yield spool
        spool.seek(0)
        try:
            shutil.copyfileobj(spool, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # ``| head -2``: the reader has what it wanted
            reader_gone(sys.stdout)


def member_dict(member: ImportedUser) -> dict[str, Any]:
    """One imported member as plain JSON-ready data."""
    return {"sid": member.sid, "email": member.email, "extid": member.extid,
            "source_list": member.source_list, "lists": list(member.lists),
            "vars": dict(member.vars)}


def escape_formula(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would run it as a formula.

    A plain number (``-12.5``, ``+3``) is no formula and stays as it is.
    """
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _text(value: object) -> str:
    return "" if value is None else str(value)


def write_members_jsonl(members: Iterable[ImportedUser], handle: TextIO) -> int:
    """One JSON object a line, values as Sailthru holds them; returns how many."""
    written = 0
    for member in members:
        handle.write(json.dumps(member_dict(member), ensure_ascii=False) + "\n")
        written += 1
    return written


def write_members_csv(members: Iterable[ImportedUser], handle: TextIO, *, raw: bool) -> int:
    """One CSV row a member with a column per var; returns how many."""
    # Var columns differ per user: spool to learn them all, then write with one header.
    names: dict[str, None] = {}
    written = 0
    cell = (lambda value: value) if raw else escape_formula
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for member in members:
            row = member_dict(member)
            names.update(dict.fromkeys(row["vars"]))
            spool.write(json.dumps(row) + "\n")
        spool.seek(0)
        header = [*_FIXED, *(n for n in names if n not in _FIXED)]
        writer = csv.writer(handle)
        writer.writerow([cell(name) for name in header])
        for line in spool:
            row = json.loads(line)
            flat = {**row.pop("vars"), **row, "lists": ";".join(row["lists"])}
            writer.writerow([cell(_text(flat.get(name))) for name in header])
            written += 1
    return written
