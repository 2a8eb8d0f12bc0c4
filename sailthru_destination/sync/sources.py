"""Where the rows of a model come from: a CSV file, a JSON-lines file or a SQL query.

Every source streams: rows are read one at a time, so memory stays flat however long
the model is. Each row carries where it came from (a line number or a row number) so a
per-record error can point at it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._json import loads_bounded

__all__ = ["Row", "SourceError", "open_source", "sqlalchemy_available"]

_SQLITE_PREFIX = "sqlite:///"
# Bytes that are not UTF-8, as the "surrogateescape" error handler keeps them.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class SourceError(Exception):
    """The model cannot be read at all (missing file, bad query, not JSON lines)."""


@dataclass(frozen=True)
class Row:
    """One row of the model and where it was found (``line 12``, ``row 40``)."""

    where: str
    data: dict[str, Any]


def sqlalchemy_available() -> bool:
    """Whether the optional SQLAlchemy package can be imported (the ``sql`` extra)."""
    return importlib.util.find_spec("sqlalchemy") is not None


def open_source(
    path: str | None = None, *, sql: str | None = None, db: str | None = None
) -> Iterator[Row]:
    """The rows of a file (by extension: .csv, .jsonl/.ndjson/.json) or of ``sql`` run on ``db``.

    ``db`` is a path to a SQLite file, a ``sqlite:///path`` URL (stdlib ``sqlite3``), or
    any SQLAlchemy URL when SQLAlchemy is installed.
    """
    if sql is not None:
        if not db:
            raise SourceError("--sql needs --db: a SQLite file or a SQLAlchemy database URL")
        return _sql_rows(sql, db)
    if path is None:
        raise SourceError("no source: give a CSV or JSON-lines file, or --sql with --db")
    file = Path(path)
    if not file.is_file():
        raise SourceError(f"source file not found: {path}")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(file)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl_rows(file)
    raise SourceError(
        f"cannot tell the format of {path}: use a .csv, .jsonl or .ndjson file, or --sql"
    )


def _not_utf8(texts: Iterator[str]) -> str | None:
    """The problem of a line holding bytes that are not UTF-8, or None."""
    for text in texts:
        found = _UNDECODABLE.search(text)
        if found:
            byte = ord(found.group()) - 0xDC00
            return f"not valid UTF-8 (byte 0x{byte:02x}): save the file as UTF-8"
    return None


def _readable(text: str) -> str:
    """``text`` with each byte that was not UTF-8 shown as U+FFFD (safe to store and print)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _csv_rows(file: Path) -> Iterator[Row]:
    # A byte that is not UTF-8 fails its own row, not the whole run.
    with file.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            return
        for data in reader:
            extra = data.pop(None, None)
            where = f"line {reader.line_num}"
            values = [v for v in data.values() if isinstance(v, str)]
            problem = _not_utf8(iter([*data, *values, *(extra or [])]))
            if problem:
                # Kept (readable) so the row's key still counts as seen: never "gone".
                data = {_readable(k): _readable(v) for k, v in data.items() if v is not None}
                data["__problem__"] = problem
            elif extra:
                data["__problem__"] = f"{len(extra)} more value(s) than columns in the header"
            yield Row(where, {k: v for k, v in data.items() if v is not None})


def _jsonl_rows(file: Path) -> Iterator[Row]:
    with file.open(encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            where = f"line {number}"
            problem = _not_utf8(iter([text]))
            text = _readable(text)
            try:
                data = loads_bounded(text)
            except json.JSONDecodeError as exc:
                yield Row(where, {"__problem__": f"not valid JSON: {exc.msg}"})
                continue
            if not isinstance(data, dict):
                yield Row(where, {"__problem__": "each line must be a JSON object"})
                continue
            if problem:
                data["__problem__"] = problem
            yield Row(where, data)


def _sql_rows(sql: str, db: str) -> Iterator[Row]:
    if db.startswith(_SQLITE_PREFIX) or "://" not in db:
        return _sqlite_rows(sql, db.removeprefix(_SQLITE_PREFIX))
    if not sqlalchemy_available():
        raise SourceError(
            f"{db.split('://')[0]} databases need SQLAlchemy: "
            "pip install 'sailthru-destination[sql]' (SQLite works without it)"
        )
    return _sqlalchemy_rows(sql, db)


def _sqlite_rows(sql: str, path: str) -> Iterator[Row]:
    if not Path(path).is_file():
        raise SourceError(f"SQLite database not found: {path}")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = connection.execute(sql)
    except sqlite3.Error as exc:
        connection.close()
        raise SourceError(f"the query failed: {exc}") from exc
    return _cursor_rows(connection, cursor)


def _cursor_rows(connection: sqlite3.Connection, cursor: sqlite3.Cursor) -> Iterator[Row]:
    try:
        names = [column[0] for column in cursor.description or ()]
        for number, values in enumerate(cursor, start=1):
            yield Row(f"row {number}", dict(zip(names, values, strict=True)))
    finally:
        connection.close()


def _sqlalchemy_rows(sql: str, url: str) -> Iterator[Row]:
    import sqlalchemy  # type: ignore[import-not-found,unused-ignore]

    try:
        engine = sqlalchemy.create_engine(url)
    except Exception as exc:  # a bad URL or a missing driver: SQLAlchemy's own words
        raise SourceError(f"cannot use the database {url.split('://')[0]}://: {exc}") from None
    connection = engine.connect()
    try:
        result = connection.execution_options(stream_results=True).execute(sqlalchemy.text(sql))
    except Exception as exc:
        connection.close()
        engine.dispose()
        raise SourceError(f"the query failed: {exc}") from None

    def rows() -> Iterator[Row]:
        try:
            for number, mapping in enumerate(result.mappings(), start=1):
                yield Row(f"row {number}", dict(mapping))
        finally:
            connection.close()
            engine.dispose()

    return rows()
