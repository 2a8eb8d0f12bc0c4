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
    asked for). Each row is shaped when its data is first read (:class:`_ShapedRow`)."""
    if not renames and not types:
        return rows
    shape = _Shape(renames, types)
    return (_ShapedRow(row, shape) for row in rows)


class _Shape:
    """How a run renames and types each row (``map`` and ``types``), read once."""

    def __init__(self, renames: Mapping[str, str], types: Mapping[str, str]) -> None:
        self.renames = dict(renames)
        self.readers = [(column, *TYPES[name], name) for column, name in types.items()]
        # The columns whose value shaping may change: every other one reads as in the source.
        self.touched = frozenset({*renames, *renames.values(), *types, "__problem__"})
        # Another map or types gives the same text another digest (see Row.raw).
        self.salt = json.dumps([sorted(renames.items()), sorted(types.items())]) + "\n"

    def __call__(self, source: dict[str, Any]) -> dict[str, Any]:
        renames = self.renames
        if renames:
            data = {renames.get(name, name): value for name, value in source.items()}
            problem = collision(source, renames)
        else:
            data, problem = dict(source), None
        for column, read, expected, type_name in self.readers:
            value = data.get(column)
            # Only text is read: JSON lines and SQL give typed values already, and an empty
            # cell stays empty (a missing value, not a zero or a false). A cell of only
            # spaces is not empty (--empty-as-null would not make it a NULL): it must read
            # as its type, so it fails its row rather than reach Sailthru as the text " ".
            if not isinstance(value, str) or value == "":
                continue
            try:
                data[column] = read(value)
            except ValueError:
                problem = problem or (f"column {column!r}: {_shown(value)} is not "
                                      f"{expected} (--types {column}={type_name})")
        if problem and not data.get("__problem__"):
            data["__problem__"] = problem
        return data


class _ShapedRow(Row):
    """A model row renamed and typed when its data is first read.

    A no-change re-run reads only a row's key columns and its digest: those are answered
    from the source row when shaping leaves them as they are, so an unchanged row is never
    shaped (at a million rows, shaping was the largest cost of the re-run).
    """

    _source: Row
    _shape: _Shape

    def __init__(self, source: Row, shape: _Shape) -> None:
        # A frozen dataclass: its fields are set past its __setattr__ (in one call: this
        # runs for every row of the model).
        self.__dict__.update(
            where=source.where, raw=None if source.raw is None else shape.salt + source.raw,
            _source=source, _shape=shape)

    @property
    def data(self) -> dict[str, Any]:  # the dataclass field, shaped when first read
        shaped: dict[str, Any] | None = self.__dict__.get("_data")
        if shaped is None:
            shaped = self._shape(self._source.data)
            object.__setattr__(self, "_data", shaped)
        return shaped

    def value(self, column: str) -> Any:
        if column in self._shape.touched:
            return self.data.get(column)
        return self._source.value(column)

    def clean_when_unchanged(self) -> bool:
        # Shaping follows from ``raw`` alone, and a row whose shaping (or source) gave a
        # problem never had its digest stored (it was never read as a user): a row whose
        # digest matched shapes without one, as it did when it was applied.
        if "_data" in self.__dict__:
            return "__problem__" not in self.data
        return self._source.clean_when_unchanged()


_NULLS_SALT = "empty-as-null\n"


def empty_as_null(rows: Iterable[Row]) -> Iterator[Row]:
    """``rows`` with each empty cell read as a NULL (``None``), for a CSV model whose empty
    cells mean "no value" (``--empty-as-null``): the nulls policy then decides what they do.
    Without it an empty cell is the value ``""``."""
    for row in rows:
        yield Row(row.where, {name: None if value == "" else value
                              for name, value in row.data.items()},
                  None if row.raw is None else _NULLS_SALT + row.raw)


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
