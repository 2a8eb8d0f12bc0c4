"""Segment traits and properties to Sailthru vars: ISO dates read, bad names repaired.

Nobody controls the trait names a Segment source sends (``id``, ``first-name``, ``prénom``),
so one bad name must not lose the whole message: each var Sailthru would refuse or rewrite
is renamed by :func:`~sailthru_destination.shaping.varnames.repaired_var_name` or dropped, and the
result's detail names it.

JSON has no date type, so Segment dates are ISO-8601 strings. A field whose name ends in
``_time`` or ``_date`` and whose value is an ISO-8601 date or datetime is sent like a
datetime: Unix seconds for ``_time``, ``YYYY-MM-DD`` for ``_date`` (a datetime without an
offset is read in the account's time zone). Every other string is sent as it is.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import date, datetime
from typing import Any

from ..shaping.mapping import InvalidValue, VarValue, flatten_vars
from ..shaping.varnames import VarProblem

__all__ = ["iso_dates", "segment_vars"]

_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2})"
    r"(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.IGNORECASE,
)


def parse_iso(text: str) -> date | datetime | None:
    """An ISO-8601 date or datetime string read as one, or None when it is not one."""
    match = _ISO.fullmatch(text.strip())
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    try:
        if clock is None:
            return date.fromisoformat(day)
        # Python 3.10 reads neither "Z" nor "+0000" nor 3- or 9-digit fractions: normalise.
        if len(clock) == 5:
            clock += ":00"
        micro = f".{(fraction or '0')[:6]:0<6}"
        zone = ""
        if offset:
            zone = "+00:00" if offset.upper() == "Z" else offset
            if len(zone) == 3:
                zone += ":00"
            elif ":" not in zone:
                zone = f"{zone[:3]}:{zone[3:]}"
        return datetime.fromisoformat(f"{day}T{clock}{micro}{zone}")
    except ValueError:
        return None  # 2024-02-30 looks like a date but is none: sent as the string it is


def iso_dates(value: Any, name: str = "") -> Any:
    """``value`` with every ISO-8601 string under a ``*_time``/``*_date`` key parsed."""
    if isinstance(value, str) and name.endswith(("_time", "_date")):
        parsed = parse_iso(value)
        return value if parsed is None else parsed
    if isinstance(value, Mapping):
        return {k: iso_dates(v, k if isinstance(k, str) else "") for k, v in value.items()}
    if isinstance(value, list):
        return [iso_dates(v) for v in value]
    return value


def segment_vars(
    values: Mapping[str, Any], where: str, timezone: str, exclude: Collection[str] = ()
) -> tuple[dict[str, VarValue], list[VarProblem]]:
    """Flattened vars for a message's traits or properties, and each var not sent as named."""
    problems: list[VarProblem] = []
    try:
        variables = flatten_vars(
            iso_dates(values), timezone=timezone, exclude=exclude, dropped=problems
        )
    except InvalidValue as exc:  # the account's time zone, not the message
        raise InvalidValue(f"{where}.{exc.field}", exc.reason) from None
    named = [VarProblem(f"{where}.{p.name}", p.reason, p.renamed_to) for p in problems]
    return variables, named
