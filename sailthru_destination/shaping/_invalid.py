"""The error every mapping check raises; public as ``mapping.InvalidValue``."""

from __future__ import annotations

__all__ = ["InvalidValue"]


class InvalidValue(ValueError):
    """A value or name that cannot be sent to Sailthru; ``field`` says which one."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        shown = field if len(field) <= 100 else field[:97] + "..."
        super().__init__(f"invalid value for {shown!r}: {reason}")
