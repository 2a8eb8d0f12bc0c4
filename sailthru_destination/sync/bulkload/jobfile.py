"""The job API's file format, in one place: one JSON object per line, UTF-8.

Both the bulk ``update`` file (each line a POST /user payload) and the ``purchase_import``
file (each line a POST /purchase payload) are written here, a line at a time, so a job of
any size costs the memory of one line. The fake reads the same format with :func:`read_line`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

__all__ = ["JobFile", "dumps_line", "read_line"]

# ASCII: a lone surrogate in a value is escaped rather than failing the whole file.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dumps_line(payload: Mapping[str, Any]) -> str:
    """``payload`` as one line of a job file (newline included)."""
    return _ENCODER.encode(payload) + "\n"


def read_line(line: str) -> dict[str, Any] | None:
    """One job-file line as the object it holds, or None when it is not a JSON object."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class JobFile:
    """A job file being written: ``add`` a payload per line, then ``close`` and post ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines = 0
        self._handle: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close)

    def add(self, payload: Mapping[str, Any]) -> None:
        """Append one payload as a line."""
        self._handle.write(dumps_line(payload))
        self.lines += 1

    def close(self) -> None:
        """Finish the file (flushed to disk, ready to upload)."""
        self._handle.close()
