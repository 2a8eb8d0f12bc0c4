"""The one typing rule: what a source's value becomes in Sailthru.

Every source (SQL through any SQLAlchemy dialect, CSV read with ``--types``, JSON lines,
dlt, Singer) and the export API type their values here, so a column type means the same
Sailthru type wherever it comes from, and no Python ``repr`` (``Decimal('1.25')``,
``datetime.datetime(...)``) can reach Sailthru:

* ``str``, ``int``, ``float``, ``bool`` and ``None`` stay as they are (subclasses, such as
  str and int enums, become their base type).
* ``Decimal`` (SQL ``numeric``): integral → ``int``, else the nearest ``float``.
* ``datetime`` (``timestamp``, ``timestamptz``): a var whose name ends in ``_time`` gets Unix
  seconds (int, floored); one ending in ``_date`` gets ``YYYY-MM-DD`` (the calendar date in the
  account's time zone); any other the ISO-8601 text, ``2024-01-01T01:17:00+00:00``. A naive
  datetime is read in the account's time zone (and keeps no offset in its text).
* ``date``: ``_time`` → Unix seconds of midnight in the account's time zone; else ``YYYY-MM-DD``.
* ``UUID``: its canonical text.
* Lists and tuples (SQL arrays) → lists; mappings (``json``/``jsonb``) → objects. Each item is
  typed by the same rule under its flattened var name (``prefs_signup_time``), so the mapping
  flattens them into vars (``prefs_signup_time``, ``tags_0``).
* Refused with :class:`~sailthru_destination.shaping.mapping.InvalidValue` naming the field: NaN and
  infinities, bytes, sets, and any other type (a ``time`` of day, a ``timedelta``, a network
  address ...): cast
  such a column to text or a number in the query.

Strings are never parsed: a date held as text stays that text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from datetime import timezone as _dt_timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._invalid import InvalidValue

__all__ = ["OutOfRange", "VarValue", "sailthru_value", "scalar_var", "zone"]

VarValue = str | int | float | bool | None
"""What a Sailthru var holds once mapped."""

_NOT_A_NUMBER = "NaN and infinities are not numbers Sailthru can store"


@dataclass(frozen=True)
class OutOfRange:
    """A source's date or timestamp that Python cannot hold (PostgreSQL's ``'infinity'``, a
    year past 9999): :func:`scalar_var` refuses it, naming the column, so only its row fails."""

    reason: str
    """The driver's words (``timestamp too large (after year 10K): 'infinity'``)."""


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """The time zone called ``name`` (an IANA name); :class:`InvalidValue` for an unknown one."""
    if name == "UTC":
        return _dt_timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidValue("timezone", f"unknown time zone {name!r}") from exc


def _datetime_var(name: str, value: datetime, tz: tzinfo) -> VarValue:
    moment = value if value.utcoffset() is not None else value.replace(tzinfo=tz)
    if name.endswith("_time"):
        return math.floor(moment.timestamp())
    if name.endswith("_date"):
        return moment.astimezone(tz).date().isoformat()
    return moment.isoformat()


def _date_var(name: str, value: date, tz: tzinfo) -> VarValue:
    if name.endswith("_time"):
        return math.floor(datetime(value.year, value.month, value.day, tzinfo=tz).timestamp())
    return value.isoformat()


def _decimal(name: str, value: Decimal) -> int | float:
    if not value.is_finite():
        raise InvalidValue(name, _NOT_A_NUMBER)
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def scalar_var(name: str, value: Any, tz: tzinfo) -> VarValue:
    """The Sailthru value of a value that is no plain JSON scalar, list or mapping.

    ``name`` is the var's flattened name (its ``_time``/``_date`` ending picks the date
    form). Raises :class:`InvalidValue` naming ``name`` for a type Sailthru cannot hold.
    """
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime):
        return _datetime_var(name, value, tz)
    if isinstance(value, date):
        return _date_var(name, value, tz)
    if isinstance(value, Decimal):
        return _decimal(name, value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, OutOfRange):
        raise InvalidValue(name, f"{value.reason}: Python's dates run from year 1 to 9999; "
                           "cast the column to text or filter such rows out in the query")
    if isinstance(value, bytes | bytearray | memoryview):
        raise InvalidValue(name, "bytes are not text: decode them to str first")
    if isinstance(value, set | frozenset):
        raise InvalidValue(name, "sets have no order; send a list")
    raise InvalidValue(name, f"values of type {type(value).__name__} cannot be sent: cast "
                       "them to text or a number in the query")


def _typed(value: Any, name: str, tz: tzinfo) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise InvalidValue(name, _NOT_A_NUMBER)
        return value
    if isinstance(value, Mapping):
        return {key: _typed(item, f"{name}_{key}", tz) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_typed(item, f"{name}_{index}", tz) for index, item in enumerate(value)]
    typed = scalar_var(name, value, tz)
    if isinstance(typed, float) and not math.isfinite(typed):
        raise InvalidValue(name, _NOT_A_NUMBER)
    return typed


def sailthru_value(value: Any, name: str = "", *, timezone: str = "UTC") -> Any:
    """``value`` as Sailthru gets it, by the module's rule: plain JSON (text, numbers,
    booleans, null, lists, objects), whatever Python type the source gave.

    ``name`` is the var (column) name, whose ``_time``/``_date`` ending picks the form of a
    date; ``timezone`` is the account's, for naive datetimes and dates. Raises
    :class:`~sailthru_destination.shaping.mapping.InvalidValue` naming the field for a value that
    has no Sailthru type. Plain JSON values come back unchanged, so typing twice is harmless.
    """
    return _typed(value, name, zone(timezone))
