"""Plain JSON-able dicts to the library's records and back, for task queues and message buses.

A task message carries records as dicts (never pickles). :func:`build` turns one into a
record dataclass, or into a :class:`~sailthru_destination.errors.RecordError` naming the record
and the field, so one bad dict never sinks its batch. :func:`result_dict` turns a result back
into a dict a JSON encoder takes as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..errors import RecordError
from ..features.commerce import CartChange, Purchase, PurchaseItem, Return
from ..features.events import Event
from ..features.profiles import ProfileChange
from ..results import ExportResult

__all__ = ["KINDS", "Kind", "build", "result_dict", "user_of"]

R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of record a task takes: its dataclass, its id and its user, read from a dict."""

    record: type[Any]
    id_fields: tuple[str, ...]
    user_fields: tuple[str, ...]
    items: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    "profiles": Kind(
        ProfileChange,
        ("record_id", "key"),
        ("key",),
        sets=("old_groups", "new_groups", "consents"),
    ),
    "events": Kind(Event, ("record_id",), ("key",)),
    "purchases": Kind(Purchase, ("order_id",), ("email", "extid"), items=("items",)),
    "returns": Kind(Return, ("record_id", "order_id"), ("email", "extid"), items=("items",)),
    "carts": Kind(CartChange, ("record_id", "user_id"), ("user_id", "email"), items=("product",)),
}


def _first(record: Mapping[str, Any], names: tuple[str, ...]) -> str:
    for name in names:
        value = record.get(name)
        if value is not None and str(value).strip():
            return str(value)
    return ""


def user_of(kind: str, record: object) -> str:
    """The user a record dict is about (its ordering key), or "" when it names none."""
    if not isinstance(record, Mapping):
        return ""
    return _first(record, KINDS[kind].user_fields)


def _item(value: object, field: str) -> PurchaseItem:
    if isinstance(value, PurchaseItem):
        return value
    if not isinstance(value, Mapping):
        raise _Bad(field, "a product is an object with id, title, qty and price")
    return _construct(PurchaseItem, value, field + ".")


class _Bad(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _construct(cls: Callable[..., R], values: Mapping[str, Any], where: str = "") -> R:
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in values:
        if name not in known:
            raise _Bad(f"{where}{name}", f"unknown field {name!r}")
    missing = [
        name
        for name, f in known.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _Bad(f"{where}{missing[0]}", f"the field {missing[0]!r} is required")
    return cls(**values)


def build(kind: str, position: int, record: object) -> Any:
    """The record dataclass for one dict of ``kind``, or a :class:`RecordError` saying why not.

    ``position`` (the record's place in its batch) names a record that has no id.
    """
    spec = KINDS[kind]
    if not isinstance(record, Mapping):
        return RecordError(f"#{position}", f"a record is an object, got {type(record).__name__}")
    rid = _first(record, spec.id_fields) or f"#{position}"
    values = dict(record)
    try:
        for name in spec.items:
            if name not in values:
                continue
            if name == "product":
                values[name] = _item(values[name], name)
            elif isinstance(values[name], list):
                values[name] = tuple(
                    _item(item, f"{name}[{i}]") for i, item in enumerate(values[name])
                )
            else:
                raise _Bad(name, f"{name} must be a list of products")
        for name in spec.sets:
            value = values.get(name)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _Bad(name, f"{name} must be a list of names")
            values[name] = frozenset(value)
        return _construct(spec.record, values)
    except _Bad as bad:
        return RecordError(rid, bad.reason, field=bad.field)
    except (TypeError, ValueError) as exc:
        return RecordError(rid, f"not a valid {kind[:-1]} record: {exc}")


def result_dict(result: ExportResult) -> dict[str, Any]:
    """One record's result as a dict of JSON types (``error`` is None when it succeeded)."""
    error = result.error
    return {
        "record_id": result.record_id,
        "status": str(result.status.value),
        "detail": result.detail,
        "error": None
        if error is None
        else {
            "reason": error.reason,
            "field": error.field,
            "retryable": error.retryable,
            "code": error.code,
        },
    }
