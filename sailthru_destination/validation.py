"""The batch boundary: every record a destination accepts is checked for shape before it is sent.

The senders check values (is this an email, a price, a list name Sailthru takes); they may
assume each field has the type its record declares. A host that passes ``None`` for a
mapping or ``5`` for a set would otherwise get an ``AttributeError`` or ``TypeError`` out of
the middle of a batch, losing the results of the records already sent. :func:`record_problem`
checks a record's type and each field's type against a table kept beside the record types
(one entry per dataclass field: a test holds the tables to the fields) and names the field
at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from datetime import date
from decimal import Decimal
from typing import Any

from .errors import RecordError
from .features.commerce import CartChange, Purchase, PurchaseItem, Return
from .features.events import Event
from .features.profiles import ProfileChange
from .shaping.mapping import InvalidValue

__all__ = ["CHECKS", "RECORD_TYPES", "record_id_of", "record_problem"]

Check = Callable[[Any, str], None]
"""Raises :class:`InvalidValue` naming the field (the second argument) when a value is wrong."""


def _type_name(value: object) -> str:
    return type(value).__name__


def _typed(kind: type | tuple[type, ...], what: str, *, optional: bool = False) -> Check:
    def check(value: Any, field: str) -> None:
        if not (isinstance(value, kind) or (optional and value is None)):
            raise InvalidValue(field, f"{field} must be {what}, got {_type_name(value)}")

    return check


def _ident(*, optional: bool = False) -> Check:
    def check(value: Any, field: str) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidValue(field, f"{field} must be a string, got {_type_name(value)}")

    return check


def _flag(value: Any, field: str) -> None:
    # A string "no" is truthy: to_delete="no" must not delete anyone.
    if not isinstance(value, bool):
        raise InvalidValue(field, f"{field} must be True or False, got {_type_name(value)}")


def _names(*, optional: bool = False) -> Check:
    def check(value: Any, field: str) -> None:
        if optional and value is None:
            return
        if isinstance(value, (str, bytes)) or not isinstance(value, (Set, list, tuple)):
            raise InvalidValue(field, f"{field} must be a set of group names (strings)")
        if not all(isinstance(name, str) for name in value):
            raise InvalidValue(field, f"{field} must hold only strings")

    return check


def _moment(value: Any, field: str) -> None:
    if value is None or isinstance(value, (date, str)):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidValue(
            field, f"{field} must be a datetime, a date, Unix seconds or a date string"
        )


def _quantity(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidValue(field, "a quantity is a whole number above 0")


def _amount(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise InvalidValue(field, f"{field} must be a number or a numeric string")


def _tags(value: Any, field: str) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise InvalidValue(field, "tags must be a list of strings")


def _item(value: Any, field: str) -> None:
    if not isinstance(value, PurchaseItem):
        raise InvalidValue(field, "each item must be a PurchaseItem")
    _fields(value, PurchaseItem, field + ".")


def _items(value: Any, field: str) -> None:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise InvalidValue(field, f"{field} must be a list of PurchaseItem")
    for n, item in enumerate(value):
        _item(item, f"{field}[{n}]")


def _lines(value: Any, field: str) -> None:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise InvalidValue(field, f"{field} must be a list of {{title, price}} mappings")
    for n, line in enumerate(value):
        if not isinstance(line, Mapping):
            raise InvalidValue(f"{field}[{n}]", "expected a {title, price} mapping")


_TEXT, _OPTIONAL_TEXT = _typed(str, "a string"), _typed(str, "a string", optional=True)
_MAPPING = _typed(Mapping, "a mapping")
_ID, _OPTIONAL_ID = _ident(), _ident(optional=True)

CHECKS: Mapping[type, Mapping[str, Check]] = {
    ProfileChange: {
        "key": _OPTIONAL_TEXT,  # None: "missing", said by the match-key check
        "old_properties": _MAPPING,
        "new_properties": _MAPPING,
        "old_groups": _names(),
        "new_groups": _names(),
        "to_delete": _flag,
        "resend": _flag,
        "record_id": _OPTIONAL_ID,
        "old_key": _OPTIONAL_TEXT,
        "optout": _OPTIONAL_TEXT,
        "old_optout": _OPTIONAL_TEXT,
        "consents": _names(optional=True),
    },
    Event: {
        "key": _OPTIONAL_TEXT,
        "key_type": _TEXT,
        "name": _OPTIONAL_TEXT,
        "properties": _MAPPING,
        "record_id": _OPTIONAL_ID,
        "schedule_time": _moment,
    },
    PurchaseItem: {
        "id": _OPTIONAL_ID,
        "title": _OPTIONAL_TEXT,
        "qty": _quantity,
        "price": _amount,
        "url": _OPTIONAL_TEXT,
        "tags": _tags,
        "image_url": _OPTIONAL_TEXT,
        "image_url_thumb": _OPTIONAL_TEXT,
        "vars": _typed(Mapping, "a mapping", optional=True),
    },
    Purchase: {
        "order_id": _OPTIONAL_ID,
        "email": _OPTIONAL_TEXT,
        "extid": _OPTIONAL_TEXT,
        "items": _items,
        "adjustments": _lines,
        "tenders": _lines,
        "date": _moment,
        "message_id": _OPTIONAL_ID,
        "currency_unit": _TEXT,
        "page_url": _OPTIONAL_TEXT,
    },
    Return: {
        "order_id": _OPTIONAL_ID,
        "email": _OPTIONAL_TEXT,
        "extid": _OPTIONAL_TEXT,
        "items": _items,
        "date": _moment,
        "currency_unit": _TEXT,
        "page_url": _OPTIONAL_TEXT,
        "record_id": _OPTIONAL_ID,
    },
    CartChange: {
        "user_id": _OPTIONAL_ID,
        "product": _item,
        "quantity": _quantity,
        "action": _TEXT,
        "reminder_template": _OPTIONAL_TEXT,
        "reminder_time": _moment,
        "user_key": _TEXT,
        "email": _OPTIONAL_TEXT,
        "record_id": _OPTIONAL_ID,
        "currency_unit": _TEXT,
        "page_url": _OPTIONAL_TEXT,
    },
}
"""For each record type, the type check of each of its fields."""

RECORD_TYPES = (ProfileChange, Event, Purchase, Return, CartChange)
"""The records a :class:`~.destination.SailthruDestination` takes in its batches."""

# Which fields name a record in results, most specific first (as the senders name it).
_ID_FIELDS: Mapping[type, tuple[str, ...]] = {
    ProfileChange: ("record_id", "key"),
    Event: ("record_id",),
    Purchase: ("order_id",),
    Return: ("record_id", "order_id"),
    CartChange: ("record_id", "user_id"),
}


def _fields(record: object, kind: type, prefix: str = "") -> None:
    for name, check in CHECKS[kind].items():
        check(getattr(record, name), prefix + name)


def _shown(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"<{_type_name(value)}>"


def record_id_of(record: object) -> str:
    """How results name ``record``: its record id, order id or key, as the senders name it.

    Never raises: a value that is not text is shown by its type (``<dict>``).
    """
    kind = next((k for k in _ID_FIELDS if isinstance(record, k)), None)
    if kind is None:
        return f"<{_type_name(record)}>"
    for name in _ID_FIELDS[kind]:
        value = getattr(record, name, None)
        if value is not None:
            return _shown(value)
    return ""


def record_problem(record: object, kind: type) -> RecordError | None:
    """Why ``record`` cannot be sent as a ``kind``, naming it and the field, or None."""
    if not isinstance(record, kind):
        return RecordError(
            record_id_of(record),
            f"expected a {kind.__name__}, got {_type_name(record)}",
            field="record",
        )
    try:
        _fields(record, kind)
    except InvalidValue as exc:
        return RecordError(record_id_of(record), exc.reason, field=exc.field)
    return None
