"""The model's columns as the run should see them: renamed (``map``) and typed (``types``).

A CSV file gives every value as text; ``types`` turns the named columns into numbers,
booleans, JSON, dates or datetimes before they are compared and sent, so ``age`` is the var
``30``, not ``"30"``. A value that cannot be read as its type fails its row alone, naming the
column.
``map`` renames columns (``last-name`` to ``last_name``) for a model whose column names are
not what Sailthru accepts as var names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from typing import Any

from ..config import SyncConfig
from .sources import Row

__all__ = ["TYPES", "collision", "empty_as_null", "model_rows", "shaped"]

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _int(text: str) -> int:
    if "_" in text:  # Python reads "1_000", but no model means a number by it
        raise ValueError("not a whole number")
    return int(text.strip())


def _float(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _bool(text: str) -> bool:
    folded = text.strip().lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise ValueError("not a boolean")


def _json(text: str) -> Any:
    return json.loads(text)


def _date(text: str) -> date:
    return date.fromisoformat(text.strip())


def _datetime(text: str) -> datetime:
    from ...segment._vars import parse_iso  # the ISO-8601 reader Segment dates use

    moment = parse_iso(text)
    if not isinstance(moment, datetime):
        raise ValueError("not an ISO-8601 date and time")
    return moment


TYPES: Mapping[str, tuple[Any, str]] = {
    "int": (_int, "a whole number"),
    "float": (_float, "a finite number"),
    "bool": (_bool, "true/false, yes/no or 1/0"),
    "json": (_json, "valid JSON"),
    "str": (str, "text"),
    "date": (_date, "an ISO-8601 date (2024-01-31)"),
    "datetime": (_datetime, "an ISO-8601 date and time (2024-01-31T09:30:00Z)"),
}
"""The types ``types`` may name: each one's reader of a text value and what it expects. A
``date`` or ``datetime`` is then sent by the one typing rule
(:mod:`sailthru_destination.shaping.values`):
ISO 8601, Unix seconds in a ``*_time`` column, ``YYYY-MM-DD`` in a ``*_date`` column."""


def model_rows(rows: Iterable[Row], config: SyncConfig) -> Iterable[Row]:
    """The model's rows as every path reads them: renamed by ``config.map`` and typed by
    ``config.types``. ``sync``, ``sync --plan`` and ``audit`` all start here (through
    :func:`~.run.run_sync`, :func:`~.plan.plan_sync` and :func:`~.audit.audit_model`), so
    a plan or an audit never reads a column the sync renames or types otherwise."""
    return shaped(rows, config.map, config.types)


def shaped(rows: Iterable[Row], renames: Mapping[str, str],
           types: Mapping[str, str]) -> Iterable[Row]:
    """``rows`` with columns renamed and values typed (the rows themselves when neither is
    asked for)."""
    if not renames and not types:
        return rows
    return _shaped(rows, renames, types)


def _shaped(rows: Iterable[Row], renames: Mapping[str, str],
            types: Mapping[str, str]) -> Iterator[Row]:
    for row in rows:
        data = {renames.get(name, name): value for name, value in row.data.items()}
        problem = collision(row.data, renames)
        for column, type_name in types.items():
            value = data.get(column)
            # Only text is read: JSON lines and SQL give typed values already, and an empty
            # cell stays empty (a missing value, not a zero or a false). A cell of only
            # spaces is not empty (--empty-as-null would not make it a NULL): it must read
            # as its type, so it fails its row rather than reach Sailthru as the text " ".
            if not isinstance(value, str) or value == "":
                continue
            read, expected = TYPES[type_name]
            try:
                data[column] = read(value)
            except ValueError:
                problem = problem or (f"column {column!r}: {_shown(value)} is not "
                                      f"{expected} (--types {column}={type_name})")
        if problem and not data.get("__problem__"):
            data["__problem__"] = problem
        yield Row(row.where, data)


def empty_as_null(rows: Iterable[Row]) -> Iterator[Row]:
    """``rows`` with each empty cell read as a NULL (``None``), for a CSV model whose empty
    cells mean "no value" (``--empty-as-null``): the nulls policy then decides what they do.
    Without it an empty cell is the value ``""``."""
    for row in rows:
        yield Row(row.where, {name: None if value == "" else value
                              for name, value in row.data.items()})


def collision(columns: Iterable[str], renames: Mapping[str, str]) -> str | None:
    """Why renaming ``columns`` would lose one (a column renamed onto another), or None."""
    present = set(columns)
    for old, new in renames.items():
        if old in present and new in present and new not in renames:
            return (f"map renames column {old!r} to {new!r}, but the model has a column "
                    f"{new!r} too: one would hide the other")
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")
