"""Var-value coercion: one flattening pass that turns nested properties into typed vars.

Nested mappings and lists are flattened with ``_`` between path parts; each value is checked
and typed (64-bit integers, finite floats, strings up to :data:`MAX_STRING_BYTES`, nesting up
to :data:`MAX_DEPTH`, other types by :func:`~sailthru_destination.shaping.values.scalar_var`).
A bad var raises, is reported, or (for old properties) is remembered so a later clear hits it.
The public functions over it are in :mod:`.mapping`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import tzinfo
from typing import Any

from ._invalid import InvalidValue
from .values import scalar_var, zone
from .varnames import VarProblem, repaired_var_name, var_name_problem

__all__ = ["MAX_DEPTH", "MAX_STRING_BYTES", "flatten"]


MAX_DEPTH = 10
"""Deepest nesting accepted: a var name has at most this many path parts."""

MAX_STRING_BYTES = 64 * 1024
"""Longest string value accepted, in UTF-8 bytes (Sailthru advises ≤ 140 characters)."""

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


def flatten(
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
