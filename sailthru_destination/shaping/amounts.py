"""Commerce values as Sailthru wants them: prices in integer cents, cart reminder delays."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from ._invalid import InvalidValue

__all__ = ["cents", "reminder_time"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

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
