"""The records of commerce (purchases, returns, cart changes) and the checks they pass.

Shared by :mod:`.purchases`, :mod:`.carts` and :mod:`.commerce`: what a record holds, how
its fields become Sailthru's (integer cents, item lines, ids), and the one lookup they share
(a buyer named by extid is sent under the email Sailthru holds for it). A bad field raises
:class:`~sailthru_destination.shaping.mapping.InvalidValue` naming it; :func:`guard` turns that,
or a Sailthru refusal, into the record's failed result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from ..errors import NotFound, RecordError, SailthruError
from ..once.sentkeys import SentKeys
from ..options import MatchKey
from ..results import ExportResult
from ..shaping.mapping import InvalidValue, cents, flatten_vars
from ..transport._concurrency import KeyedLocks
from ..transport.api import SailthruApi
from .profiles import valid_key

__all__ = [
    "NEEDS_EMAIL",
    "CartChange",
    "CurrencyUnit",
    "Purchase",
    "PurchaseItem",
    "Return",
    "Shop",
    "email_for_extid",
    "guard",
    "priced_lines",
    "qty_of",
    "text",
    "valid_buyer",
    "valid_id",
    "valid_item",
    "valid_items",
    "valid_quantity",
    "valid_unit",
    "valid_url",
]

CurrencyUnit = Literal["dollars", "cents"]
NEEDS_EMAIL = "identify the user with an email first"


@dataclass(frozen=True)
class PurchaseItem:
    """One product line: ``price`` is per unit, in the record's currency unit."""

    id: str
    title: str
    qty: int
    price: Any
    url: str | None = None
    tags: Sequence[str] | str = ()
    image_url: str | None = None
    image_url_thumb: str | None = None
    vars: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Purchase:
    """A completed order, identified by ``order_id`` (in Sailthru exactly once per store).

    The buyer is ``email``, or the user Sailthru knows by ``extid``. ``adjustments`` and
    ``tenders`` are ``{"title", "price"}`` mappings (discounts negative); ``date`` is a
    ``datetime``, a ``date``, Unix seconds or a date string. ``page_url`` is the url of
    items that have none.
    """

    order_id: str
    email: str | None = None
    extid: str | None = None
    items: Sequence[PurchaseItem] = ()
    adjustments: Sequence[Mapping[str, Any]] = ()
    tenders: Sequence[Mapping[str, Any]] = ()
    date: datetime | date | int | str | None = None
    message_id: str | None = None
    currency_unit: CurrencyUnit = "dollars"
    page_url: str | None = None


@dataclass(frozen=True)
class Return:
    """Items given back from an earlier order; ``record_id`` tells partial returns apart."""

    order_id: str
    email: str | None = None
    extid: str | None = None
    items: Sequence[PurchaseItem] = ()
    date: datetime | date | int | str | None = None
    currency_unit: CurrencyUnit = "dollars"
    page_url: str | None = None
    record_id: str | None = None


@dataclass(frozen=True)
class CartChange:
    """A product added to or removed from a user's cart.

    ``user_id`` names the user by ``user_key`` (``extid``, as Segment's userId, or
    ``email``); ``email`` may be given too, and then the cart is the one of that email.
    ``reminder_template``/``reminder_time`` override the sender's defaults. With a
    ``record_id`` the change is applied at most once per store (re-running an "add" would
    otherwise add again).
    """

    user_id: str
    product: PurchaseItem
    quantity: int = 1
    action: Literal["add", "remove"] = "add"
    reminder_template: str | None = None
    reminder_time: str | int | None = None
    user_key: Literal["extid", "email"] = "extid"
    email: str | None = None
    record_id: str | None = None
    currency_unit: CurrencyUnit = "dollars"
    page_url: str | None = None


# -- field checks ------------------------------------------------------------------------------


def text(value: object) -> str:
    return "" if value is None else str(value)


def valid_id(value: object, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidValue(field, f"the {field} must be a string")
    text = str(value).strip()
    if not text or len(text) > 255 or not text.isprintable():
        raise InvalidValue(field, f"the {field} must be 1 to 255 printable characters")
    return text


def valid_unit(value: object) -> CurrencyUnit:
    if value == "dollars":
        return "dollars"
    if value == "cents":
        return "cents"
    raise InvalidValue("currency_unit", "the currency unit must be 'dollars' or 'cents'")


def valid_buyer(email: object, extid: object) -> tuple[str | None, str | None]:
    """The (email, extid) that name a buyer: an email wins; one of them is required."""
    if email is not None and email != "":
        return valid_key(MatchKey.EMAIL, email, "email"), None
    if extid is not None and extid != "":
        return None, valid_key(MatchKey.EXTID, extid, "extid")
    raise InvalidValue("email", f"the record names no user: {NEEDS_EMAIL}")


def valid_quantity(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise InvalidValue(field, "a quantity is a whole number above 0")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value <= 0:
        raise InvalidValue(field, "a quantity is a whole number above 0")
    return value


def qty_of(line: Mapping[str, Any]) -> int:
    qty = line.get("qty")
    return qty if isinstance(qty, int) and not isinstance(qty, bool) else 0


def valid_url(value: object, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip() or not value.strip().isprintable():
        raise InvalidValue(field, "a url must be a non-empty string")
    return value.strip()


def valid_items(
    items: object, unit: CurrencyUnit, page_url: str | None, timezone: str, *, returning: bool
) -> list[dict[str, Any]]:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise InvalidValue("items", "items must be a list of PurchaseItem")
    if not items:
        raise InvalidValue("items", "at least one item is required")
    fallback = valid_url(page_url, "page_url")
    return [
        valid_item(item, f"items[{n}]", unit, fallback, timezone, returning)
        for n, item in enumerate(items)
    ]


def valid_item(
    item: object,
    where: str,
    unit: CurrencyUnit,
    fallback_url: str | None,
    timezone: str,
    returning: bool,
) -> dict[str, Any]:
    if not isinstance(item, PurchaseItem):
        raise InvalidValue(where, "each item must be a PurchaseItem")
    url = valid_url(item.url, f"{where}.url") or fallback_url
    if url is None:
        raise InvalidValue(f"{where}.url", "the item has no url and the record no page url")
    line: dict[str, Any] = {
        "id": valid_id(item.id, f"{where}.id"),
        "qty": valid_quantity(item.qty, f"{where}.qty"),
        "price": _price(item.price, unit, f"{where}.price"),
        "url": url,
    }
    if returning:
        # /return takes qty, price, url and id; a title is neither needed nor sent.
        return line
    if not isinstance(item.title, str) or not item.title.strip():
        raise InvalidValue(f"{where}.title", "an item needs a title")
    line["title"] = item.title.strip()
    tags = _tags(item.tags, f"{where}.tags")
    if tags:
        line["tags"] = tags
    images = {}
    full = valid_url(item.image_url, f"{where}.image_url")
    thumb = valid_url(item.image_url_thumb, f"{where}.image_url_thumb")
    if full:
        images["full"] = {"url": full}
    if thumb:
        images["thumb"] = {"url": thumb}
    if images:
        line["images"] = images
    if item.vars:
        try:
            line["vars"] = flatten_vars(item.vars, timezone=timezone)
        except InvalidValue as exc:
            raise InvalidValue(f"{where}.vars.{exc.field}", exc.reason) from None
    return line


def _price(amount: object, unit: CurrencyUnit, field: str) -> int:
    try:
        return cents(amount, unit)
    except InvalidValue as exc:
        raise InvalidValue(field, exc.reason) from None


def _tags(value: object, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise InvalidValue(field, "tags must be a list of strings")
    return [t.strip() for t in value if t.strip()]


def priced_lines(lines: object, field: str, unit: CurrencyUnit) -> list[dict[str, Any]]:
    if isinstance(lines, (str, bytes, Mapping)) or not isinstance(lines, Sequence):
        raise InvalidValue(field, f"{field} must be a list of {{title, price}} mappings")
    out = []
    for n, line in enumerate(lines):
        where = f"{field}[{n}]"
        if not isinstance(line, Mapping):
            raise InvalidValue(where, "expected a {title, price} mapping")
        title = line.get("title")
        if not isinstance(title, str) or not title.strip():
            raise InvalidValue(f"{where}.title", "a title is required")
        out.append({"title": title.strip(), "price": _price(line.get("price"), unit, where)})
    return out


@dataclass(frozen=True)
class Shop:
    """What purchases, returns and carts share: the API, the sent-keys store, the locks.

    ``key_locks`` keeps two threads off one key (order, return, cart change);
    ``user_locks`` serialises one user's changes; ``timezone`` is the account's.
    """

    api: SailthruApi
    sent: SentKeys
    key_locks: KeyedLocks
    user_locks: KeyedLocks
    timezone: str


# -- shared by every kind of record ------------------------------------------------------------


def guard(rid: str, work: Callable[[], ExportResult]) -> ExportResult:
    """``work()``, or the failed result of record ``rid`` when a field or Sailthru refuses."""
    try:
        return work()
    except InvalidValue as exc:
        return ExportResult.failed(RecordError(rid, exc.reason, field=exc.field))
    except SailthruError as exc:
        return ExportResult.failed(RecordError.from_error(rid, exc))


def email_for_extid(api: SailthruApi, extid: str | None) -> str:
    """The email Sailthru holds for the user ``extid``; :class:`InvalidValue` when none."""
    assert extid is not None
    try:
        reply = api.get("user", {"id": extid, "key": "extid", "fields": {"keys": 1}})
    except NotFound:
        raise InvalidValue("email", NEEDS_EMAIL) from None
    keys = reply.get("keys") or {}
    email = keys.get("email") if isinstance(keys, Mapping) else None
    if not isinstance(email, str) or not email:
        raise InvalidValue("email", NEEDS_EMAIL)
    return email
