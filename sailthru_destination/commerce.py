"""Purchases, returns and abandoned carts: what a user bought, gave back or left in the cart.

* A purchase is one POST /purchase with ``incomplete: 0`` and the order id as its external
  key (``purchase_keys: {"extid": order_id}``). Sailthru cannot edit a posted purchase, so an
  order id goes out at most once per sent-keys store (:mod:`.sentkeys`).
* A return is one POST /return with the returned items, at most once per return record id
  (the order id unless the record names one: an order may see several partial returns).
* A cart change reads the user's cart (GET /user ``purchase_incomplete``), adds or removes the
  product, and posts the whole cart with ``incomplete: 1`` (which replaces it). Changes for
  one user are serialised by a per-user lock, so none is lost when they race.

Prices become integer cents exactly (:func:`~sailthru_destination.mapping.cents`). A record
with an extid but no email is sent under the email Sailthru holds for that extid; a user
without one fails with "identify the user with an email first".
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from ._concurrency import KeyedLocks, run_in_order
from .api import SailthruApi
from .errors import NotFound, RecordError, SailthruError
from .events import time_value
from .mapping import InvalidValue, cents, flatten_vars, reminder_time
from .options import MatchKey
from .profiles import valid_key
from .results import ExportResult, Status
from .sentkeys import InMemorySentKeys, SentKeys, send_once

__all__ = ["CartChange", "CommerceSender", "Purchase", "PurchaseItem", "Return"]

log = logging.getLogger(__name__)

CurrencyUnit = Literal["dollars", "cents"]
_NEEDS_EMAIL = "identify the user with an email first"
_NOTHING_TO_REMOVE = "Nothing to remove from the incomplete cart for this user"
# What a cart item read back from Sailthru may carry into the next incomplete purchase.
_CART_ITEM_FIELDS = ("id", "title", "qty", "price", "url", "tags", "vars", "images")


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
    """A completed order, identified by ``order_id`` (sent once per store).

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


class CommerceSender:
    """Sends purchases and returns (each at most once per store) and keeps carts in Sailthru.

    ``sent_keys`` is the store of order and return ids already sent (in memory by default).
    ``default_reminder_template``/``default_reminder_time`` apply to carts whose change
    names none. ``clear_cart_after_hours`` empties a cart older than that (by its time in
    Sailthru, against ``clock``, Unix seconds) before a change. ``user_locks`` serialises
    changes per user; pass the destination's to share it with profile exports.
    """

    def __init__(
        self,
        api: SailthruApi,
        *,
        sent_keys: SentKeys | None = None,
        timezone: str = "UTC",
        default_reminder_template: str | None = None,
        default_reminder_time: str | int | None = None,
        clear_cart_after_hours: float | None = None,
        clock: Callable[[], float] = time.time,
        user_locks: KeyedLocks | None = None,
    ) -> None:
        if clear_cart_after_hours is not None and not clear_cart_after_hours > 0:
            raise ValueError("clear_cart_after_hours must be a positive number of hours")
        if default_reminder_time is not None:
            try:
                default_reminder_time = reminder_time(default_reminder_time)
            except InvalidValue as exc:
                raise ValueError(f"default_reminder_time: {exc.reason}") from None
        self._api = api
        self._sent = sent_keys if sent_keys is not None else InMemorySentKeys()
        self._timezone = timezone
        self._reminder_template = default_reminder_template
        self._reminder_time = default_reminder_time
        self._clear_after = clear_cart_after_hours
        self._clock = clock
        self._user_locks = user_locks if user_locks is not None else KeyedLocks()
        self._key_locks = KeyedLocks()

    # -- purchases ---------------------------------------------------------------------------

    def send_purchase(self, purchase: Purchase) -> ExportResult:
        """Post one completed order; never raises for a bad record or a Sailthru refusal."""
        rid = _text(purchase.order_id)
        return self._guard(rid, lambda: self._purchase(purchase, rid))

    def _purchase(self, purchase: Purchase, rid: str) -> ExportResult:
        order_id = _required_id(purchase.order_id, "order_id")
        unit = _unit(purchase.currency_unit)
        email, extid = _buyer(purchase.email, purchase.extid)
        items = _items(purchase.items, unit, purchase.page_url, self._timezone, returning=False)
        payload: dict[str, Any] = {
            "items": items,
            "incomplete": 0,
            "purchase_keys": {"extid": order_id},
        }
        if purchase.adjustments:
            payload["adjustments"] = _priced_lines(purchase.adjustments, "adjustments", unit)
        if purchase.tenders:
            payload["tenders"] = _priced_lines(purchase.tenders, "tenders", unit)
        if purchase.date is not None:
            payload["date"] = time_value(purchase.date, "date", self._timezone)
        if purchase.message_id is not None:
            payload["message_id"] = _required_id(purchase.message_id, "message_id")

        def send() -> ExportResult:
            payload["email"] = email or self._email_for_extid(extid)
            self._api.post("purchase", payload)
            return ExportResult(Status.SENT, rid, f"order {order_id!r}: {len(items)} item(s)")

        with self._user_locks.for_key(("email", email) if email else ("extid", extid)):
            return send_once(
                self._sent,
                self._key_locks,
                "purchase",
                order_id,
                rid,
                send,
                reconcile=lambda: self._purchase_recorded(order_id),
            )

    def _purchase_recorded(self, order_id: str) -> bool:
        # Sailthru reads a purchase back by the order id it was posted with (purchase_keys).
        try:
            self._api.get("purchase", {"purchase_id": order_id, "purchase_key": "extid"})
        except NotFound:
            return False
        return True

    # -- returns -----------------------------------------------------------------------------

    def send_return(self, returned: Return) -> ExportResult:
        """Post one return; never raises for a bad record or a Sailthru refusal."""
        rid = _text(returned.record_id if returned.record_id is not None else returned.order_id)
        return self._guard(rid, lambda: self._return(returned, rid))

    def _return(self, returned: Return, rid: str) -> ExportResult:
        order_id = _required_id(returned.order_id, "order_id")
        key = order_id if returned.record_id is None else _required_id(rid, "record_id")
        unit = _unit(returned.currency_unit)
        email, extid = _buyer(returned.email, returned.extid)
        items = _items(returned.items, unit, returned.page_url, self._timezone, returning=True)
        payload: dict[str, Any] = {"items": items, "order_id": order_id}
        if returned.date is not None:
            payload["date"] = time_value(returned.date, "date", self._timezone)

        def send() -> ExportResult:
            payload["email"] = email or self._email_for_extid(extid)
            self._api.post("return", payload)
            return ExportResult(Status.SENT, rid, f"return of order {order_id!r} sent")

        return send_once(self._sent, self._key_locks, "return", key, rid, send)

    # -- carts -------------------------------------------------------------------------------

    def update_cart(self, change: CartChange) -> ExportResult:
        """Apply one cart change; never raises for a bad record or a Sailthru refusal."""
        rid = _text(change.record_id if change.record_id is not None else change.user_id)
        return self._guard(rid, lambda: self._cart(change, rid))

    def _cart(self, change: CartChange, rid: str) -> ExportResult:
        if change.user_id is None or not str(change.user_id).strip():
            raise InvalidValue("user_id", "a cart change needs the user's id")
        if change.user_key not in ("extid", "email"):
            raise InvalidValue("user_key", "the user key must be 'extid' or 'email'")
        user_key = MatchKey(change.user_key)
        user = valid_key(user_key, change.user_id, "user_id")
        email = user if user_key is MatchKey.EMAIL else None
        if change.email is not None and email is None:
            email = valid_key(MatchKey.EMAIL, change.email, "email")
        if change.action not in ("add", "remove"):
            raise InvalidValue("action", "a cart action is 'add' or 'remove'")
        quantity = _quantity(change.quantity, "quantity")
        unit = _unit(change.currency_unit)
        if change.action == "add":
            fallback = _optional_url(change.page_url, "page_url")
            item = _item(change.product, "product", unit, fallback, self._timezone, False)
        else:
            # Removing needs only the product's id: the cart already holds the rest.
            if not isinstance(change.product, PurchaseItem):
                raise InvalidValue("product", "the product must be a PurchaseItem")
            item = {"id": _required_id(change.product.id, "product.id")}
        reminder = self._reminder(change)

        def apply() -> ExportResult:
            return self._apply_cart(
                rid, change.action, user_key, user, email, item, quantity, reminder
            )

        with self._user_locks.for_key((str(user_key), user)):
            if change.record_id is None:
                return apply()
            key = _required_id(change.record_id, "record_id")
            return send_once(self._sent, self._key_locks, "cart", key, rid, apply)

    def _apply_cart(
        self,
        rid: str,
        action: str,
        user_key: MatchKey,
        user: str,
        email: str | None,
        item: dict[str, Any],
        quantity: int,
        reminder: dict[str, Any],
    ) -> ExportResult:
        if email is not None:
            current = self._read_cart("email", email)
        else:
            current = self._read_cart(str(user_key), user)
            if current is None or not current[0]:
                raise InvalidValue("email", _NEEDS_EMAIL)
            email = current[0]
        cart = _changed_cart(
            self._cart_items(current[1] if current else None), action, item, quantity
        )
        if cart is None:
            return ExportResult(
                Status.SKIPPED, rid, f"product {item['id']!r} is not in the cart: no call made"
            )
        payload: dict[str, Any] = {"email": email, "items": cart, "incomplete": 1}
        if cart:
            payload.update(reminder)
        self._api.post("purchase", payload)
        units = sum(_qty_of(line) for line in cart)
        return ExportResult(Status.SENT, rid, f"cart now holds {units} unit(s)")

    def _read_cart(self, key: str, value: str) -> tuple[str | None, Any] | None:
        """The user's (email, purchase_incomplete), or None when Sailthru has no such user."""
        fields = {"keys": 1, "purchase_incomplete": 1}
        try:
            reply = self._api.get("user", {"id": value, "key": key, "fields": fields})
        except NotFound:
            return None
        keys = reply.get("keys") or {}
        email = keys.get("email") if isinstance(keys, Mapping) else None
        return (email if isinstance(email, str) and email else None), reply.get(
            "purchase_incomplete"
        )

    def _cart_items(self, incomplete: Any) -> list[dict[str, Any]]:
        if not isinstance(incomplete, Mapping):
            return []
        if self._clear_after is not None:
            started = _cart_time(incomplete)
            if started is not None and self._clock() - started > self._clear_after * 3600:
                log.info("cart older than %s hours: emptied before the change", self._clear_after)
                return []
        items = incomplete.get("items") or []
        if not isinstance(items, list):
            return []
        return [
            {k: line[k] for k in _CART_ITEM_FIELDS if k in line}
            for line in items
            if isinstance(line, Mapping)
        ]

    def _reminder(self, change: CartChange) -> dict[str, Any]:
        template = change.reminder_template or self._reminder_template
        when: str | int | None = (
            change.reminder_time if change.reminder_time is not None else self._reminder_time
        )
        reminder: dict[str, Any] = {}
        if template is not None:
            if not isinstance(template, str) or not template.strip():
                raise InvalidValue("reminder_template", "a reminder template is a template name")
            reminder["reminder_template"] = template.strip()
        if when is not None:
            reminder["reminder_time"] = reminder_time(when)
        return reminder

    # -- batches -----------------------------------------------------------------------------

    def iter_send_purchases(
        self, purchases: Iterable[Purchase], *, concurrency: int = 8
    ) -> Iterator[ExportResult]:
        """Send purchases concurrently, yielding each result in input order."""
        return run_in_order(self.send_purchase, purchases, concurrency=concurrency)

    def iter_send_returns(
        self, returns: Iterable[Return], *, concurrency: int = 8
    ) -> Iterator[ExportResult]:
        """Send returns concurrently, yielding each result in input order."""
        return run_in_order(self.send_return, returns, concurrency=concurrency)

    def iter_update_carts(
        self, changes: Iterable[CartChange], *, concurrency: int = 8
    ) -> Iterator[ExportResult]:
        """Apply cart changes concurrently (serialised per user), results in input order."""
        return run_in_order(self.update_cart, changes, concurrency=concurrency)

    # -- shared ------------------------------------------------------------------------------

    def _guard(self, rid: str, work: Callable[[], ExportResult]) -> ExportResult:
        try:
            return work()
        except InvalidValue as exc:
            return ExportResult.failed(RecordError(rid, exc.reason, field=exc.field))
        except SailthruError as exc:
            return ExportResult.failed(RecordError.from_error(rid, exc))

    def _email_for_extid(self, extid: str | None) -> str:
        assert extid is not None
        found = self._read_email(extid)
        if found is None:
            raise InvalidValue("email", _NEEDS_EMAIL)
        return found

    def _read_email(self, extid: str) -> str | None:
        try:
            reply = self._api.get("user", {"id": extid, "key": "extid", "fields": {"keys": 1}})
        except NotFound:
            return None
        keys = reply.get("keys") or {}
        email = keys.get("email") if isinstance(keys, Mapping) else None
        return email if isinstance(email, str) and email else None


# -- record checks ---------------------------------------------------------------------------


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _required_id(value: object, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidValue(field, f"the {field} must be a string")
    text = str(value).strip()
    if not text or len(text) > 255 or not text.isprintable():
        raise InvalidValue(field, f"the {field} must be 1 to 255 printable characters")
    return text


def _unit(value: object) -> CurrencyUnit:
    if value == "dollars":
        return "dollars"
    if value == "cents":
        return "cents"
    raise InvalidValue("currency_unit", "the currency unit must be 'dollars' or 'cents'")


def _buyer(email: object, extid: object) -> tuple[str | None, str | None]:
    """The (email, extid) that name a buyer: an email wins; one of them is required."""
    if email is not None and email != "":
        return valid_key(MatchKey.EMAIL, email, "email"), None
    if extid is not None and extid != "":
        return None, valid_key(MatchKey.EXTID, extid, "extid")
    raise InvalidValue("email", f"the record names no user: {_NEEDS_EMAIL}")


def _quantity(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise InvalidValue(field, "a quantity is a whole number above 0")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value <= 0:
        raise InvalidValue(field, "a quantity is a whole number above 0")
    return value


def _qty_of(line: Mapping[str, Any]) -> int:
    qty = line.get("qty")
    return qty if isinstance(qty, int) and not isinstance(qty, bool) else 0


def _optional_url(value: object, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip() or not value.strip().isprintable():
        raise InvalidValue(field, "a url must be a non-empty string")
    return value.strip()


def _items(
    items: object, unit: CurrencyUnit, page_url: str | None, timezone: str, *, returning: bool
) -> list[dict[str, Any]]:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise InvalidValue("items", "items must be a list of PurchaseItem")
    if not items:
        raise InvalidValue("items", "at least one item is required")
    fallback = _optional_url(page_url, "page_url")
    return [
        _item(item, f"items[{n}]", unit, fallback, timezone, returning)
        for n, item in enumerate(items)
    ]


def _item(
    item: object,
    where: str,
    unit: CurrencyUnit,
    fallback_url: str | None,
    timezone: str,
    returning: bool,
) -> dict[str, Any]:
    if not isinstance(item, PurchaseItem):
        raise InvalidValue(where, "each item must be a PurchaseItem")
    url = _optional_url(item.url, f"{where}.url") or fallback_url
    if url is None:
        raise InvalidValue(f"{where}.url", "the item has no url and the record no page url")
    line: dict[str, Any] = {
        "id": _required_id(item.id, f"{where}.id"),
        "qty": _quantity(item.qty, f"{where}.qty"),
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
    full = _optional_url(item.image_url, f"{where}.image_url")
    thumb = _optional_url(item.image_url_thumb, f"{where}.image_url_thumb")
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


def _priced_lines(lines: object, field: str, unit: CurrencyUnit) -> list[dict[str, Any]]:
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


def _changed_cart(
    cart: list[dict[str, Any]], action: str, item: dict[str, Any], quantity: int
) -> list[dict[str, Any]] | None:
    """The cart after adding or removing ``quantity`` of ``item``; None: not in the cart."""
    index = next((n for n, line in enumerate(cart) if str(line.get("id")) == item["id"]), None)
    if action == "add":
        if index is None:
            cart.append({**item, "qty": quantity})
        else:
            cart[index] = {**cart[index], **item, "qty": _qty_of(cart[index]) + quantity}
        return cart
    if not cart:
        raise InvalidValue("product", _NOTHING_TO_REMOVE)
    if index is None:
        return None
    left = _qty_of(cart[index]) - quantity
    if left > 0:
        cart[index] = {**cart[index], "qty": left}
    else:
        del cart[index]
    return cart


def _cart_time(incomplete: Mapping[str, Any]) -> float | None:
    """When Sailthru last set the cart, as Unix seconds, or None when it cannot tell."""
    raw = incomplete.get("time", incomplete.get("date"))
    if isinstance(raw, Mapping):  # Mongo-style {"$date": ms} or {"sec": s}
        raw = raw.get("sec", raw.get("$date"))
        if isinstance(raw, (int, float)) and raw > 1e11:
            raw = raw / 1000
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw / 1000 if raw > 1e11 else raw)
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        try:
            return parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError):
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            log.warning("cart time %r not understood: cart kept", text[:40])
            return None
        if moment.utcoffset() is None:
            return None
        return moment.timestamp()
    return None
