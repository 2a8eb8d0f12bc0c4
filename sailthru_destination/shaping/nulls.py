"""The nulls policy: what a NULL (``None``) property does to the Sailthru var it maps to.

``keep`` (the default): a NULL never changes Sailthru. A var whose property goes from a value
to NULL is left as it was (and a sync's state goes on remembering that value, since Sailthru
still holds it); a NULL with no earlier value sends nothing. A warehouse NULL usually means
"not known here", and the var may have been set by another tool (a form, a preference page,
an ESP import): wiping it is the mistake users report most about reverse ETL.

``clear``: a NULL clears the var (sends ``""``, Sailthru's way of emptying a var).

Only NULL is a NULL: ``""``, ``0`` and ``False`` are values. (A CSV file has no NULL; its
empty cells become NULLs only with ``empty_as_null``.) The policy applies to top-level
properties (columns); a ``null`` nested inside a JSON value is part of that value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["NULL_VALUES", "NullValues", "settle_nulls"]

NullValues = Literal["keep", "clear"]
"""The type of a nulls policy: ``"keep"`` or ``"clear"``."""
NULL_VALUES: tuple[str, ...] = ("keep", "clear")
"""The policies, the default first."""


def settle_nulls(
    old_properties: Mapping[str, Any] | None,
    new_properties: Mapping[str, Any],
    policy: str,
) -> Mapping[str, Any]:
    """``new_properties`` with each NULL settled by ``policy``: under ``keep`` replaced by the
    old value (or left out when there was none), under ``clear`` replaced by ``""``.

    The result holds no ``None`` at its top level; ``new_properties`` itself is returned when
    it holds none.
    """
    if not any(value is None for value in new_properties.values()):
        return new_properties
    settled: dict[str, Any] = {}
    for name, value in new_properties.items():
        if value is not None:
            settled[name] = value
        elif policy == "clear":
            settled[name] = ""
        elif old_properties and old_properties.get(name) is not None:
            settled[name] = old_properties[name]
    return settled
