"""The model's rows as ``sync`` reads them: the file or query, and a CSV file's delimiter.

A CSV file separated by ``;`` (what a spreadsheet in many locales saves) was read as one
column, and the error then suggested a ``--map`` that could not help. The delimiter is now
``--delimiter``, or sniffed from the header line, and a sniffed one other than a comma is said
on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from ...sync.warehouse.dialect import sniff_delimiter
from ...sync.warehouse.sources import Row, open_source
from .._common import UsageError, out

__all__ = ["open_model"]


def open_model(args: argparse.Namespace) -> Iterator[Row]:
    """The rows of the model ``args`` name (see :func:`~..sync.sources.open_source`)."""
    delimiter = args.delimiter
    if delimiter is not None:
        if delimiter in ("\\t", "tab"):
            delimiter = "\t"
        if len(delimiter) != 1 or delimiter in "\"\r\n":
            raise UsageError(f"--delimiter wants one character (such as ';' or tab), got "
                             f"{args.delimiter!r}")
    is_csv = args.source is not None and Path(args.source).suffix.lower() == ".csv"
    if is_csv and delimiter is None and Path(args.source).is_file():
        delimiter = sniff_delimiter(Path(args.source))
        if delimiter != ",":
            out(f"note: reading {args.source} as {delimiter!r}-separated (sniffed from its "
                "header; --delimiter chooses)", sys.stderr)
    return open_source(args.source, sql=args.sql, db=args.db, delimiter=delimiter)
