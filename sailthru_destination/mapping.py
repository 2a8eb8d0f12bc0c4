"""Host properties to Sailthru vars, list names, prices and reminder times.

Pure functions, no I/O: every feature module maps its records through here so
that one set of rules decides what Sailthru receives.

Rules (spec section 3, written down where the spec is silent):

* Nested mappings and lists/tuples are flattened with ``_`` between path parts
  and list indexes: ``{"a": {"b": 1}, "c": [5, 6]}`` gives ``a_b``, ``c_0``, ``c_1``.
  Keys keep their spaces and case. An empty mapping or list yields no var: a
  removed nested object is cleared by diffing old against new (``vars_for_change``).
* ``str``, ``int``, ``float`` and ``bool`` stay as they are; ``None`` stays ``None``
  (Sailthru clears the var). ``Decimal``: integral → ``int``, else the nearest ``float``.
  Integers must fit in 64 bits (Sailthru stores numbers as 64-bit values).
* ``datetime``/``date``: a var whose flattened name ends in ``_time`` gets Unix seconds
  (int, floored); one ending in ``_date`` gets ``YYYY-MM-DD`` (the calendar date in
  ``timezone``); any other gets ISO-8601. Naive datetimes are read in ``timezone``; a
  ``date`` sent as ``_time`` means midnight in ``timezone``. Strings are never parsed.
* Refused with :class:`InvalidValue` naming the field: NaN and infinities, ``bytes``,
  sets, non-string or empty keys, nesting deeper than :data:`MAX_DEPTH`, strings longer
  than :data:`MAX_STRING_BYTES` UTF-8 bytes, any other type, and var names Sailthru
  refuses or rewrites (see :func:`var_name_problem`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from datetime import date, datetime, tzinfo
from datetime import timezone as _dt_timezone
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MAX_DEPTH",
    "MAX_LIST_NAME_LENGTH",
    "MAX_STRING_BYTES",
    "MAX_VAR_NAME_LENGTH",
    "RESERVED_VAR_NAMES",
    "InvalidValue",
    "VarValue",
    "audience_list_name",
    "cents",
    "changed_vars",
    "clear_vars",
    "flatten_vars",
    "list_name",
    "reminder_time",
    "var_name_problem",
    "vars_for_change",
]

VarValue = str | int | float | bool | None
"""What a Sailthru var holds once mapped."""

MAX_DEPTH = 10
"""Deepest nesting accepted: a var name has at most this many path parts."""

MAX_STRING_BYTES = 64 * 1024
"""Longest string value accepted, in UTF-8 bytes (Sailthru advises ≤ 140 characters)."""

MAX_VAR_NAME_LENGTH = 255
"""Longest flattened var name accepted (our conservative limit; Sailthru documents none)."""

MAX_LIST_NAME_LENGTH = 255
"""Longest list name accepted (our conservative limit)."""

# Sailthru's docs: var names may not start with a number, may not contain special
# characters such as % - . $ ("scrubbed ... upon import") and may not be standard
# variable names or reserved words. A name Sailthru silently rewrites would land under
# another var, and our later clear ("") would miss it, so we refuse instead. We keep
# spaces (the spec says keys keep their spaces) and accept only ASCII letters.
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]*")

RESERVED_VAR_NAMES: frozenset[str] = frozenset(
    {
        # keys and fields of a user profile (POST /user, the Zephyr profile object)
        "id", "key", "keys", "sid", "extid", "email", "cookie", "sms", "vars", "lists",
        "lists_signup", "optout_email", "keysconflict", "fields", "purchases",
        "purchase_incomplete", "profile",
        # standard Zephyr template variables, stored by Sailthru itself
        "beacon", "beacon_src", "beacon_ssl", "beacon_src_ssl", "beacon_url", "emailnum",
    }
)  # fmt: skip
"""Names refused as vars: they are user keys or Sailthru's own template variables."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UNKNOWN: Any = object()  # an old value we could not map: never equal to a new one


class InvalidValue(ValueError):
    """A value or name that cannot be sent to Sailthru; ``field`` says which one."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        shown = field if len(field) <= 100 else field[:97] + "..."
        super().__init__(f"invalid value for {shown!r}: {reason}")


@lru_cache(maxsize=8192)
def var_name_problem(name: str) -> str | None:
    """Why Sailthru would refuse ``name`` as a var name, or ``None`` when it is fine.

    Accepted: 1 to :data:`MAX_VAR_NAME_LENGTH` characters of ASCII letters, digits,
    ``_`` and inner spaces, not starting with a digit, not in :data:`RESERVED_VAR_NAMES`.
    """
    if not name:
        return "var names cannot be empty"
    if len(name) > MAX_VAR_NAME_LENGTH:
        return f"var names are limited to {MAX_VAR_NAME_LENGTH} characters"
    if name in RESERVED_VAR_NAMES:
        return "this name is reserved by Sailthru (a user key or a standard template variable)"
    if name[0].isdigit():
        return "Sailthru refuses var names that start with a digit"
    if name[0] == " " or name[-1] == " ":
        return "var names cannot start or end with a space"
    if _VAR_NAME_RE.fullmatch(name) is None:
        return (
            "var names may hold only ASCII letters, digits, '_' and spaces "
            "(Sailthru scrubs other characters such as % - . $)"
        )
    return None


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return _dt_timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidValue("timezone", f"unknown time zone {name!r}") from exc


class _Flattener:
    """One flattening pass; ``strict=False`` maps old properties without raising."""

    __slots__ = ("out", "strict", "tz")

    def __init__(self, tz: tzinfo, strict: bool) -> None:
        self.tz = tz
        self.strict = strict
        self.out: dict[str, Any] = {}

    def fail(self, field: str, reason: str, name: str | None = None) -> None:
        if self.strict:
            raise InvalidValue(field, reason)
        # An old value we cannot map still occupied its var: remember the name so a
        # later removal clears it, but never treat it as equal to a new value.
        if name is not None and var_name_problem(name) is None:
            self.out.setdefault(name, _UNKNOWN)

    def add(self, name: str, value: Any) -> None:
        problem = var_name_problem(name)
        if problem is not None:
            self.fail(name, problem)
            return
        if name in self.out:
            self.fail(name, "two properties flatten to this same var name")
            return
        self.out[name] = value

    def put(self, name: str, value: Any, depth: int) -> None:
        kind = type(value)
        if kind is str:
            if len(value) > MAX_STRING_BYTES // 4 and _utf8_len(value) > MAX_STRING_BYTES:
                self.fail(name, f"strings are limited to {MAX_STRING_BYTES} UTF-8 bytes", name)
            else:
                self.add(name, value)
        elif kind is bool or value is None:
            self.add(name, value)
        elif kind is int:
            if _INT64_MIN <= value <= _INT64_MAX:
                self.add(name, value)
            else:
                self.fail(name, "integers must fit in 64 bits", name)
        elif kind is float:
            if math.isfinite(value):
                self.add(name, value)
            else:
                self.fail(name, "NaN and infinities are not numbers Sailthru can store", name)
        elif kind is dict:
            self.put_mapping(name, value, depth)
        elif kind is list or kind is tuple:
            self.put_sequence(name, value, depth)
        else:
            self.put_other(name, value, depth)

    def put_sequence(self, name: str, value: list[Any] | tuple[Any, ...], depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.fail(name, f"nesting is limited to {MAX_DEPTH} levels")
            return
        for index, item in enumerate(value):
            self.put(f"{name}_{index}", item, depth + 1)

    def put_mapping(self, name: str, value: Mapping[Any, Any], depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.fail(name, f"nesting is limited to {MAX_DEPTH} levels")
            return
        for key, item in value.items():
            if type(key) is not str:
                self.fail(name, f"property names must be strings, got {type(key).__name__}")
            elif not key:
                self.fail(name, "property names cannot be empty")
            else:
                self.put(f"{name}_{key}", item, depth + 1)

    def put_other(self, name: str, value: Any, depth: int) -> None:
        # Subclasses of the plain types (str and int enums, list subclasses) map as their base.
        if isinstance(value, str):
            self.put(name, str.__str__(value), depth)
        elif isinstance(value, int):
            self.put(name, int(value), depth)
        elif isinstance(value, float):
            self.put(name, float(value), depth)
        elif isinstance(value, list | tuple):
            self.put_sequence(name, value, depth)
        elif isinstance(value, Mapping):
            self.put_mapping(name, value, depth)
        elif isinstance(value, datetime):
            self.add(name, _datetime_var(name, value, self.tz))
        elif isinstance(value, date):
            self.add(name, _date_var(name, value, self.tz))
        elif isinstance(value, Decimal):
            if not value.is_finite():
                self.fail(name, "NaN and infinities are not numbers Sailthru can store", name)
            elif value.adjusted() > 18:
                self.fail(name, "integers must fit in 64 bits", name)
            elif value == value.to_integral_value():
                self.put(name, int(value), depth)
            else:
                self.add(name, float(value))
        elif isinstance(value, bytes | bytearray | memoryview):
            self.fail(name, "bytes are not text: decode them to str first", name)
        elif isinstance(value, set | frozenset):
            self.fail(name, "sets have no order; send a list", name)
        else:
            self.fail(name, f"values of type {type(value).__name__} cannot be sent", name)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


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


def _flatten(
    properties: Mapping[str, Any],
    *,
    var_names: Mapping[str, str] | None,
    timezone: str,
    exclude: Collection[str],
    strict: bool,
) -> dict[str, Any]:
    if not isinstance(properties, Mapping):
        raise InvalidValue("properties", f"expected a mapping, got {type(properties).__name__}")
    flat = _Flattener(_zone(timezone), strict)
    for key, value in properties.items():
        if type(key) is not str:
            flat.fail("properties", f"property names must be strings, got {type(key).__name__}")
            continue
        if key in exclude:
            continue
        name = var_names.get(key, key) if var_names else key
        if not name:
            flat.fail(name, "var names cannot be empty")
            continue
        flat.put(name, value, 1)
    return flat.out


def flatten_vars(
    properties: Mapping[str, Any],
    *,
    timezone: str = "UTC",
    var_names: Mapping[str, str] | None = None,
    exclude: Collection[str] = (),
) -> dict[str, VarValue]:
    """Sailthru vars for ``properties``, flattened and typed by the module's rules.

    ``var_names`` renames top-level properties before flattening; ``exclude`` drops
    top-level properties (e.g. ``email`` when it travels as the user key). Raises
    :class:`InvalidValue` naming the first bad field.
    """
    return _flatten(
        properties, var_names=var_names, timezone=timezone, exclude=exclude, strict=True
    )


def _same(old: Any, new: Any) -> bool:
    # True == 1 and 1 == 1.0 in Python, but Sailthru stores them differently.
    return type(old) is type(new) and old == new


def vars_for_change(
    old_properties: Mapping[str, Any] | None,
    new_properties: Mapping[str, Any],
    *,
    var_names: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    exclude: Collection[str] = (),
    only_changed: bool = False,
) -> dict[str, VarValue]:
    """The vars to POST for a profile that went from old to new properties.

    Every mapped new var (or, with ``only_changed``, only those whose value or type
    changed), plus ``""`` for every var the old properties produced and the new ones
    do not, so a removed property is cleared instead of left stale. ``0``, ``False``
    and ``""`` are values, not absences. New properties are validated strictly; old
    ones leniently (a bad old value cannot block the record that fixes it).
    """
    new = _flatten(
        new_properties, var_names=var_names, timezone=timezone, exclude=exclude, strict=True
    )
    old = (
        _flatten(
            old_properties, var_names=var_names, timezone=timezone, exclude=exclude, strict=False
        )
        if old_properties
        else {}
    )
    if only_changed:
        result = {k: v for k, v in new.items() if k not in old or not _same(old[k], v)}
    else:
        result = dict(new)
    for name in old:
        if name not in new:
            result[name] = ""
    return result


def changed_vars(
    old_properties: Mapping[str, Any] | None,
    new_properties: Mapping[str, Any],
    *,
    var_names: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    exclude: Collection[str] = (),
) -> dict[str, VarValue]:
    """Only the vars that changed, plus clears; empty when nothing changed (zero calls)."""
    return vars_for_change(
        old_properties,
        new_properties,
        var_names=var_names,
        timezone=timezone,
        exclude=exclude,
        only_changed=True,
    )


def clear_vars(
    old_properties: Mapping[str, Any] | None,
    *,
    var_names: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    exclude: Collection[str] = (),
) -> dict[str, VarValue]:
    """``""`` for every var the properties produced: the "clear" delete behaviour."""
    if not old_properties:
        return {}
    old = _flatten(
        old_properties, var_names=var_names, timezone=timezone, exclude=exclude, strict=False
    )
    return dict.fromkeys(old, "")


def list_name(group: str, prefix: str = "") -> str:
    """The Sailthru list name for a host group: ``prefix`` + the group name, stripped.

    Refused (``InvalidValue(field="lists")``): non-strings, names empty after strip,
    longer than :data:`MAX_LIST_NAME_LENGTH`, or holding a character Python's
    ``str.isprintable()`` rejects: control characters (tab, newline, NUL ...), format
    characters (bidi overrides, zero-width), separators other than the plain space,
    surrogates, private-use and unassigned code points. Quotes, semicolons and other
    printable characters are just part of a name: "a'; DROP TABLE" is a valid name.
    """
    if not isinstance(group, str) or not isinstance(prefix, str):
        raise InvalidValue("lists", "list names must be strings")
    stripped = group.strip()
    if not stripped:
        raise InvalidValue("lists", "list names cannot be empty")
    name = f"{prefix}{stripped}"
    if len(name) > MAX_LIST_NAME_LENGTH:
        raise InvalidValue("lists", f"list names are limited to {MAX_LIST_NAME_LENGTH} characters")
    if not name.isprintable():
        raise InvalidValue(
            "lists",
            "list names cannot hold control, format, surrogate or non-space separator characters",
        )
    return name


def audience_list_name(audience_key: str, prefix: str = "") -> str:
    """The list for a Segment audience trait: the snake_case key kept as it is.

    ``high_ltv_users`` maps to the list ``high_ltv_users`` (spec section 5: "the list of
    that name"); only ``prefix`` is added. Validated like :func:`list_name`.
    """
    return list_name(audience_key, prefix)


_HUNDRED = Decimal(100)
_ONE = Decimal(1)


def cents(amount: Any, unit: Literal["dollars", "cents"]) -> int:
    """A price as integer cents, computed exactly with ``Decimal``.

    Accepts ``int``, ``float`` (read through ``repr``, so ``19.99`` is 19.99, not its
    binary expansion), ``Decimal`` and numeric strings. Fractions of a cent round half
    up (away from zero: ``0.005`` dollars → 1, ``-0.005`` → -1). Negative amounts are
    allowed (discounts). ``None``, booleans, NaN, infinities, non-numeric strings and
    results outside 64 bits raise ``InvalidValue(field="price")``.
    """
    if unit not in ("dollars", "cents"):
        raise InvalidValue("price_unit", "the price unit must be 'dollars' or 'cents'")
    if amount is None or isinstance(amount, bool):
        raise InvalidValue("price", f"a price must be a number, got {type(amount).__name__}")
    try:
        if isinstance(amount, Decimal):
            value = amount
        elif isinstance(amount, int):
            value = Decimal(amount)
        elif isinstance(amount, float):
            value = Decimal(repr(amount))
        elif isinstance(amount, str):
            value = Decimal(amount.strip())
        else:
            raise InvalidValue("price", f"a price must be a number, got {type(amount).__name__}")
        if not value.is_finite():
            raise InvalidValue("price", "a price must be a finite number")
        if unit == "dollars":
            value = value * _HUNDRED
        result = int(value.quantize(_ONE, rounding=ROUND_HALF_UP))
    except (ArithmeticError, ValueError) as exc:
        if isinstance(exc, InvalidValue):
            raise
        raise InvalidValue("price", "a price must be a number like 19.99") from exc
    if not _INT64_MIN <= result <= _INT64_MAX:
        raise InvalidValue("price", "the price is too large")
    return result


_REMINDER_UNITS = ("minute", "hour", "day", "week")
_REMINDER_RE = re.compile(r"\s*\+?\s*(\d{1,6})\s*(minute|hour|day|week)s?\s*", re.IGNORECASE)


def reminder_time(value: str | int) -> str:
    """A cart reminder delay as Sailthru wants it: ``+<n> <unit>``.

    ``"20 minutes"`` → ``"+20 minutes"``; ``"+1 Hour"`` → ``"+1 hour"``; an ``int`` is a
    number of minutes. ``n`` is 1 to 999999; units minutes/hours/days/weeks, singular or
    plural (the result is singular for 1, plural otherwise). Anything else raises
    ``InvalidValue(field="reminder_time")`` listing the valid units.
    """
    units = ", ".join(f"{u}s" for u in _REMINDER_UNITS)
    if isinstance(value, int) and not isinstance(value, bool):
        count, unit = value, "minute"
    elif isinstance(value, str):
        match = _REMINDER_RE.fullmatch(value)
        if match is None:
            raise InvalidValue(
                "reminder_time",
                f"expected '+<number> <unit>' like '+20 minutes'; units: {units}",
            )
        count, unit = int(match.group(1)), match.group(2).lower()
    else:
        raise InvalidValue(
            "reminder_time",
            f"expected a string like '+20 minutes' or minutes as an int; units: {units}",
        )
    if not 1 <= count <= 999_999:
        raise InvalidValue("reminder_time", "the delay must be between 1 and 999999")
    return f"+{count} {unit}" if count == 1 else f"+{count} {unit}s"
