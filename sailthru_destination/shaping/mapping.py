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

from collections.abc import Collection, Mapping
from typing import Any

from ._coercion import MAX_DEPTH, MAX_STRING_BYTES, flatten
from ._invalid import InvalidValue
from .amounts import cents, reminder_time
from .values import VarValue
from .varnames import (
    MAX_VAR_NAME_LENGTH,
    RESERVED_VAR_NAMES,
    VarProblem,
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

MAX_LIST_NAME_LENGTH = 255
"""Longest list name accepted (our conservative limit)."""


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
    return flatten(
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
    new = flatten(
        new_properties,
        var_names=var_names,
        timezone=timezone,
        exclude=exclude,
        strict=True,
        dropped=dropped,
    )
    old = (
        flatten(
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
    old = flatten(
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
