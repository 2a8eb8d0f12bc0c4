"""Where the rows of a model come from: a CSV file, a JSON-lines file or a SQL query.

Every source streams: rows are read one at a time, so memory stays flat however long
the model is. Each row carries where it came from (a line number or a row number) so a
per-record error can point at it.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import importlib.util
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...shaping._json import MAX_JSON_DEPTH, too_deep_at

__all__ = ["MAX_LINE_CHARS", "Row", "SourceError", "open_source", "plain",
           "sqlalchemy_available"]

MAX_LINE_CHARS = 16 * 1024 * 1024
"""Longest CSV cell or JSON line read: a longer one fails its row (values over 64 KiB fail too,
by the value rule, but only in the columns a run uses)."""

_SQLITE_PREFIX = "sqlite:///"
# Bytes that are not UTF-8, as the "surrogateescape" error handler keeps them.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class SourceError(Exception):
    """The model cannot be read at all (missing file, bad query, not JSON lines)."""


@dataclass(frozen=True)
class Row:
    """One row of the model and where it was found (``line 12``, ``row 40``).

    ``raw`` is the row's text as read, when the source has it for free (a JSON line; a CSV
    line's header and cells as one text): the cheap unchanged check hashes it instead
    of encoding ``data`` again. It is set only when ``data`` follows from it alone, so two
    rows with one ``raw`` have the same ``data``.
    """

    where: str
    data: dict[str, Any]
    raw: str | None = None

    def value(self, column: str) -> Any:
        """The value of ``column`` (None when the row lacks it).

        What the no-change path reads (the key columns): a row shaped lazily
        (:mod:`.columns`) answers it without shaping the whole row.
        """
        return self.data.get(column)

    def clean_when_unchanged(self) -> bool:
        """Whether the row holds no ``__problem__``, asked once its ``raw`` digest matched
        the digest of the row last applied (:mod:`.digest`)."""
        return "__problem__" not in self.data


def plain(value: Any) -> Any:
    """``value`` as JSON has it: host frameworks (dlt, singer-sdk) hand over dates and times
    as ``datetime`` (sent as ISO 8601) and decimals as ``Decimal`` (sent as numbers)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def sqlalchemy_available() -> bool:
    """Whether the optional SQLAlchemy package can be imported (the ``sql`` extra)."""
    return importlib.util.find_spec("sqlalchemy") is not None


def open_source(
    path: str | None = None, *, sql: str | None = None, db: str | None = None,
    delimiter: str | None = None,
) -> Iterator[Row]:
    """The rows of a file (by extension: .csv, .jsonl/.ndjson/.json) or of ``sql`` run on ``db``.

    ``db`` is a path to a SQLite file, a ``sqlite:///path`` URL (stdlib ``sqlite3``; the file
    is opened read-only and never created), or any SQLAlchemy URL when SQLAlchemy is installed.
    Reading a CSV raises the process-wide ``csv.field_size_limit`` to :data:`MAX_LINE_CHARS`
    (never lowers it); its ``delimiter`` is a comma unless given (the command line sniffs it:
    :mod:`.dialect`). A header naming a column twice raises :class:`SourceError` here; a row
    that cannot be read comes with a ``__problem__`` instead of raising.
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
        return _csv_rows(file, delimiter or ",")
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


def _csv_rows(file: Path, delimiter: str = ",") -> Iterator[Row]:
    # The header is read now, so a bad one stops the run before anything is sent.
    handle = file.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    try:
        _allow_long_fields()
        reader = csv.reader(handle, delimiter=delimiter)
        header = _csv_header(reader, file)
    except BaseException:
        handle.close()
        raise
    return _csv_records(handle, reader, header)


def _allow_long_fields() -> None:
    # The csv module stops at 131,072 characters a field, process-wide: one long cell then
    # aborted the whole run. Raise the limit (never lower it) so a long cell is read and its row
    # alone is refused by the 64 KiB value rule.
    if csv.field_size_limit() < MAX_LINE_CHARS:
        csv.field_size_limit(MAX_LINE_CHARS)


def _csv_header(reader: Any, file: Path) -> list[str]:
    try:
        header: list[str] = next(reader, [])
    except csv.Error as exc:
        raise SourceError(f"{file}: the header line cannot be read: {exc}") from None
    seen: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        if name in seen:
            # csv.DictReader would silently keep the last of the two columns.
            raise SourceError(
                f"{file}: the header has a duplicate column {_readable(name)!r} (columns "
                f"{seen[name]} and {number}): rename or remove one of them"
            )
        seen[name] = number
    return header


def _csv_records(handle: IO[str], reader: Any, header: list[str]) -> Iterator[Row]:
    with handle:
        if not header:
            return
        # The header goes into every row's ``raw``: the same cells under another header
        # are another row. Checked once, not per row, for bytes that were not UTF-8.
        prefix = repr(header) + "\n"
        header_ascii = "".join(header).isascii()
        index = {name: number for number, name in enumerate(header)}
        while True:
            start = reader.line_num + 1
            try:
                values: list[str] = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # The reader goes on at the next line: this row fails alone.
                yield Row(f"line {start}", {"__problem__": f"cannot be read as CSV: {exc}"})
                if reader.line_num < start:
                    return  # nothing was consumed: going on would fail forever
                continue
            if values:  # a blank line is no row (as csv.DictReader skips it)
                yield _csv_row(f"line {start}", header, index, values, prefix, header_ascii)


# Joins a row's cells into its ``raw`` when no cell holds it (one scan, in C; a list's repr
# costs a no-change re-run of a million rows about half a second more).
_CELLS = "\x1f"


def _csv_row(where: str, header: list[str], index: dict[str, int], values: list[str],
             prefix: str, header_ascii: bool) -> Row:
    extra = len(values) > len(header)
    cells = _CELLS.join(values)
    # Most rows are ASCII: then no byte can have been undecodable, and no cell is searched.
    if not extra and header_ascii and cells.isascii():
        # The cells as one text after the header's: joined when no cell holds the separator
        # (so it starts with one), else a list's repr (it starts with "["): unambiguous
        # either way, whatever the cells hold.
        if cells.count(_CELLS) == len(values) - 1:
            return _CsvRow(where, index, values, f"{prefix}{_CELLS}{cells}")
        return _CsvRow(where, index, values, prefix + repr(values))
    data = dict(zip(header, values, strict=False))  # a short row lacks its last columns
    problem = None if header_ascii and cells.isascii() else _not_utf8(
        iter([*data, *data.values(), *values[len(header):]]))
    if problem:
        # Kept (readable) so the row's key still counts as seen: never "gone".
        data = {_readable(k): _readable(v) for k, v in data.items()}
        data["__problem__"] = problem
    elif extra:
        data["__problem__"] = (f"{len(values) - len(header)} more value(s) than columns in "
                               "the header")
    else:
        return _CsvRow(where, index, values, prefix + repr(values))
    return Row(where, data)


class _CsvRow(Row):
    """A CSV row whose ``data`` is built when first read: a no-change re-run reads only a
    row's key columns (by their place in the header) and its ``raw``."""

    _index: dict[str, int]
    _values: list[str]

    def __init__(self, where: str, index: dict[str, int], values: list[str],
                 raw: str) -> None:
        # A frozen dataclass: its fields are set past its __setattr__, in one call.
        self.__dict__.update(where=where, raw=raw, _index=index, _values=values)

    @property
    def data(self) -> dict[str, Any]:  # the dataclass field, built when first read
        data: dict[str, Any] | None = self.__dict__.get("_data")
        if data is None:
            # A short row lacks its last columns.
            data = dict(zip(self._index, self._values, strict=False))
            object.__setattr__(self, "_data", data)
        return data

    def value(self, column: str) -> Any:
        number = self._index.get(column)
        values = self._values
        return values[number] if number is not None and number < len(values) else None

    def clean_when_unchanged(self) -> bool:
        number = self._index.get("__problem__")
        return number is None or number >= len(self._values)


def _jsonl_rows(file: Path) -> Iterator[Row]:
    with file.open(encoding="utf-8", errors="surrogateescape", newline=None) as handle:
        decoder = _Decoder()
        number = 0
        while True:
            line = handle.readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            number += 1
            where = f"line {number}"
            if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                _skip_rest_of_line(handle)
                yield Row(where, {"__problem__": f"the line is longer than {MAX_LINE_CHARS:,} "
                                                 "characters"})
                continue
            text = line.strip()
            if text:
                yield _json_row(where, text, decoder)


def _skip_rest_of_line(handle: IO[str]) -> None:
    while True:
        chunk = handle.readline(1 << 20)
        if not chunk or chunk.endswith("\n"):
            return


class _Decoder:
    """Decodes JSON lines, noting repeated keys (``json`` keeps the last one silently).

    One per file: building a decoder per line cost more than decoding a short line.
    """

    def __init__(self) -> None:
        self.repeated: list[str] = []
        self._decoder = json.JSONDecoder(object_pairs_hook=self._pairs)

    def _pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data = dict(pairs)
        if len(data) != len(pairs):
            self.repeated.extend(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        return data

    def decode(self, text: str) -> Any:
        self.repeated.clear()
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return self._decoder.decode(text)


def _json_row(where: str, text: str, decoder: _Decoder | None = None) -> Row:
    problem = None if text.isascii() else _not_utf8(iter([text]))
    decoder = decoder or _Decoder()
    if too_deep_at(text) is not None:  # bounded first, so json never recurses past 64 levels
        return Row(where, {"__problem__": "not valid JSON: nested too deeply (deeper than "
                                          f"{MAX_JSON_DEPTH} levels)"})
    try:
        # Without an undecodable byte the text is already readable: no re-encoding.
        data = decoder.decode(_readable(text) if problem else text)
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4,300 digits
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return Row(where, {"__problem__": f"not valid JSON: {reason}"})
    if not isinstance(data, dict):
        return Row(where, {"__problem__": "each line must be a JSON object"})
    if problem:
        data["__problem__"] = problem
    elif decoder.repeated:
        # json would silently keep the last value; the row is kept (its key still counts as
        # seen) but refused.
        data["__problem__"] = f"the key {decoder.repeated[0]!r} appears twice in one object"
    else:
        return Row(where, data, text)
    return Row(where, data)


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
    # As a URI so that mode=ro holds; quoted, so '#', '?' or '%' in the path stay part of it.
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise SourceError(f"cannot open the SQLite database {path}: {exc}") from None
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

    shown, secrets = _url_parts(sqlalchemy, url)
    try:
        engine = sqlalchemy.create_engine(url)
    except Exception as exc:  # a bad URL or a missing driver: SQLAlchemy's own words
        raise SourceError(f"cannot use the database {shown}: {_reason(exc, secrets)}") from None
    from .pg_dates import read_out_of_range_dates

    sqlalchemy.event.listen(engine, "connect", read_out_of_range_dates)
    try:
        connection = engine.connect()
    except Exception as exc:  # refused password, no such host or database, ...
        engine.dispose()
        raise SourceError(f"cannot connect to the database {shown}: "
                          f"{_reason(exc, secrets)}") from None
    try:
        # A server-side cursor, fetched 1,000 rows at a time: memory stays flat however long
        # the model is (dialects without one buffer the result as before).
        result = connection.execution_options(stream_results=True, yield_per=1000) \
            .exec_driver_sql(_as_written(sql, engine.dialect.paramstyle))
    except Exception as exc:
        connection.close()
        engine.dispose()
        raise SourceError(f"the query failed on {shown}: {_reason(exc, secrets)}") from None

    def rows() -> Iterator[Row]:
        number = 0
        try:
            for number, mapping in enumerate(result.mappings(), start=1):
                yield Row(f"row {number}", dict(mapping))
        except Exception as exc:  # the connection died, the server stopped, ...
            # Never a silent short model (the rest would look gone), nor a traceback.
            raise SourceError(f"reading the rows from {shown} failed after row {number}: "
                              f"{_reason(exc, secrets)}") from None
        finally:
            connection.close()
            engine.dispose()

    return rows()


def _as_written(sql: str, paramstyle: str) -> str:
    """``sql`` as the driver must be given it to run the query exactly as written.

    The query goes to the driver as is (``exec_driver_sql``), never through SQLAlchemy's
    ``text()``, which reads every ``:word`` (a JSON literal's ``":1"``, ``'10:30'``) as a bind
    parameter and refuses the query. Drivers of the ``format``/``pyformat`` styles (psycopg,
    MySQL) still apply ``%`` formatting to a query run with no parameters, so a ``%`` is
    doubled for them, as SQLAlchemy does for ``text()``.
    """
    return sql.replace("%", "%%") if paramstyle in ("format", "pyformat") else sql


def _url_parts(sqlalchemy: Any, url: str) -> tuple[str, tuple[str, ...]]:
    """The URL as it may be shown and the secrets it holds: its password, and the value of
    every secret-looking query parameter (``?password=``, ``sslpassword=``, ``token=``...),
    each shown as ``***``."""
    from ...coordination._url import scrub, url_secrets

    secrets = url_secrets(url)
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        return f"{url.split('://')[0]}://", secrets
    if parsed.password:
        secrets = tuple(sorted({*secrets, str(parsed.password)}, key=len, reverse=True))
    return scrub(str(parsed.render_as_string(hide_password=True)), secrets), secrets


def _reason(exc: Exception, secrets: tuple[str, ...]) -> str:
    """The driver's own first line (SQLAlchemy adds the statement and a help link), with
    the URL's secrets never shown."""
    from ...coordination._url import scrub

    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    reason = lines[0] if lines else type(orig).__name__
    return scrub(reason, secrets)
