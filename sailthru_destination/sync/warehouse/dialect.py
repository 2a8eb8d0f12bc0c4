"""The delimiter of a CSV file, sniffed from its header line.

Only the header is looked at: it is the one line that holds no free text, so a ``;`` or a
comma inside a value cannot fool it. The delimiter that splits the header into the most
columns wins; a tie, or a header of one column, keeps the comma.
"""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["CANDIDATES", "sniff_delimiter"]

CANDIDATES = (",", ";", "\t", "|")
"""The delimiters a CSV header is sniffed for, the default first."""
_HEADER_CHARS = 64 * 1024


def sniff_delimiter(path: Path) -> str:
    """The delimiter of the CSV file at ``path`` (``,`` when nothing else is plain)."""
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline(_HEADER_CHARS)
    except OSError:
        return ","  # reading the file says why
    best, columns = ",", 1
    for delimiter in CANDIDATES:
        try:
            found = len(next(csv.reader([header], delimiter=delimiter), []))
        except csv.Error:
            continue
        if found > columns:
            best, columns = delimiter, found
    return best
