"""Host properties to Sailthru vars, list names, prices and reminder times.

Pure functions, no I/O: every feature module maps its records through here so
that one set of rules decides what Sailthru receives.

Rules (spec section 3, written down where the spec is silent):

* Nested mappings and lists/tuples are flattened with ``_`` between path parts
  and list indexes: ``{"a": {"b": 1}, "c": [5, 6]}`` gives ``a_b``, ``c_0``, ``c_1``.
  Keys keep their spaces and case. An empty mapping or list yields no var: a
  removed nested object is cleared by diffing old against new (``vars_for_change``).
* Values are typed by the one rule of :mod:`sailthru_destination.shaping.values` (``Decimal`` to a
  number, dates to ISO-8601 text, Unix seconds for ``_time`` and ``YYYY-MM-DD`` for ``_date``
  names, UUIDs to text); ``None`` stays ``None`` (Sailthru clears the var). Integers must fit
  in 64 bits (Sailthru stores numbers as 64-bit values). Strings are never parsed.
* Refused with :class:`InvalidValue` naming the field: NaN and infinities, ``bytes``,
  sets, non-string or empty keys, nesting deeper than :data:`MAX_DEPTH`, strings longer
  than :data:`MAX_STRING_BYTES` UTF-8 bytes, any other type, and var names Sailthru
  refuses or rewrites (see :func:`var_name_problem`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import tzinfo
from typing import Any

from ._invalid import InvalidValue
from .amounts import cents, reminder_time
from .values import VarValue, scalar_var, zone
from .varnames import (
    MAX_VAR_NAME_LENGTH,
    RESERVED_VAR_NAMES,
    VarProblem,
    repaired_var_name,
    var_name_problem,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_LIST_NAME_LENGTH",
    "MAX_STRING_BYTES",
    "MAX_VAR_NAME_LENGTH",
    "RESERVED_VAR_NAMES",
    "InvalidValue",
    "VarProblem",
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

MAX_DEPTH = 10
"""Deepest nesting accepted: a var name has at most this many path parts."""

MAX_STRING_BYTES = 64 * 1024
"""Longest string value accepted, in UTF-8 bytes (Sailthru advises ≤ 140 characters)."""

MAX_LIST_NAME_LENGTH = 255
"""Longest list name accepted (our conservative limit)."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UNKNOWN: Any = object()  # an old value we could not map: never equal to a new one


class _Flattener:
    """One flattening pass; ``strict=False`` maps old properties without raising.

    With ``dropped``, a bad var is reported there instead of raising: a refused name is
    renamed by :func:`~sailthru_destination.shaping.varnames.repaired_var_name` when it can be,
    anything else is left out. ``repair`` renames without reporting (old properties, so a
    later clear hits the var the rename created).
    """

    __slots__ = ("dropped", "out", "repair", "strict", "tz")

    def __init__(
        self,
        tz: tzinfo,
        strict: bool,
        dropped: list[VarProblem] | None = None,
        repair: bool = False,
    ) -> None:
        self.tz = tz
        self.strict = strict
        self.dropped = dropped
        self.repair = repair or dropped is not None
        self.out: dict[str, Any] = {}

    def fail(self, field: str, reason: str, name: str | None = None) -> None:
        if self.dropped is not None:
            self.dropped.append(VarProblem(field, reason))
            return
        if self.strict:
            raise InvalidValue(field, reason)
        # An old value we cannot map still occupied its var: remember the name so a
        # later removal clears it, but never treat it as equal to a new value.
        if name is not None and self.repair and var_name_problem(name) is not None:
            name = repaired_var_name(name)
        if name is not None and var_name_problem(name) is None:
            self.out.setdefault(name, _UNKNOWN)

    def add(self, name: str, value: Any) -> None:
        problem = var_name_problem(name)
        if problem is not None and self.repair:
            repaired = repaired_var_name(name)
            if repaired is not None and repaired not in self.out:
                if self.dropped is not None:
                    self.dropped.append(VarProblem(name, problem, repaired))
                name, problem = repaired, None
        if problem is not None:
            self.fail(name, problem)
            return
        if name in self.out and not self._yield_repaired(name):
            self.fail(name, "two properties flatten to this same var name")
            return
        self.out[name] = value

    def _yield_repaired(self, name: str) -> bool:
        """A repaired name gives way to a property really called so (order never matters)."""
        if self.dropped is None or var_name_problem(name) is not None:
            return False
        for index, problem in enumerate(self.dropped):
            if problem.renamed_to == name:
                reason = f"its repaired name {name!r} belongs to another property"
                self.dropped[index] = VarProblem(problem.name, reason)
                return True
        return False

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
        else:
            # Dates, decimals, UUIDs and the rest: typed by the one rule (values.py).
            try:
                typed = scalar_var(name, value, self.tz)
            except InvalidValue as exc:
                self.fail(name, exc.reason, name)
                return
            self.put(name, typed, depth)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _flatten(
    properties: Mapping[str, Any],
    *,
    var_names: Mapping[str, str] | None,
    timezone: str,
    exclude: Collection[str],
    strict: bool,
    dropped: list[VarProblem] | None = None,
    repair: bool = False,
) -> dict[str, Any]:
    if not isinstance(properties, Mapping):
        raise InvalidValue("properties", f"expected a mapping, got {type(properties).__name__}")
    flat = _Flattener(zone(timezone), strict, dropped, repair)
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
    dropped: list[VarProblem] | None = None,
) -> dict[str, VarValue]:
    """Sailthru vars for ``properties``, flattened and typed by the module's rules.

    ``var_names`` renames top-level properties before flattening; ``exclude`` drops
    top-level properties (e.g. ``email`` when it travels as the user key). Raises
    :class:`InvalidValue` naming the first bad field, unless ``dropped`` is given: then
    each bad var is renamed (by :func:`~sailthru_destination.shaping.varnames.repaired_var_name`)
    or left out, and listed there.
    """
    return _flatten(
        properties,
        var_names=var_names,
        timezone=timezone,
        exclude=exclude,
        strict=True,
        dropped=dropped,
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
    dropped: list[VarProblem] | None = None,
) -> dict[str, VarValue]:
    """The vars to POST for a profile that went from old to new properties.

    Every mapped new var (or, with ``only_changed``, only those whose value or type
    changed), plus ``""`` for every var the old properties produced and the new ones
    do not, so a removed property is cleared instead of left stale. ``0``, ``False``
    and ``""`` are values, not absences. New properties are validated strictly; old
    ones leniently (a bad old value cannot block the record that fixes it). With
    ``dropped``, bad new vars are renamed or left out and listed there (see
    :func:`flatten_vars`); old names are renamed by the same rule so clears reach them.
    """
    new = _flatten(
        new_properties,
        var_names=var_names,
        timezone=timezone,
        exclude=exclude,
        strict=True,
        dropped=dropped,
    )
    old = (
        _flatten(
            old_properties,
            var_names=var_names,
            timezone=timezone,
            exclude=exclude,
            strict=False,
            repair=dropped is not None,
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
    dropped: list[VarProblem] | None = None,
) -> dict[str, VarValue]:
    """Only the vars that changed, plus clears; empty when nothing changed (zero calls)."""
    return vars_for_change(
        old_properties,
        new_properties,
        var_names=var_names,
        timezone=timezone,
        exclude=exclude,
        only_changed=True,
        dropped=dropped,
    )


def clear_vars(
    old_properties: Mapping[str, Any] | None,
    *,
    var_names: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    exclude: Collection[str] = (),
    repair: bool = False,
) -> dict[str, VarValue]:
    """``""`` for every var the properties produced: the "clear" delete behaviour.

    ``repair`` names the vars as ``invalid_vars="drop"`` sent them (renamed bad names).
    """
    if not old_properties:
        return {}
    old = _flatten(
        old_properties,
        var_names=var_names,
        timezone=timezone,
        exclude=exclude,
        strict=False,
        repair=repair,
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
