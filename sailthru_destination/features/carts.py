"""Abandoned carts: a product added to or removed from the cart Sailthru keeps for a user.

A change reads the user's cart (GET /user ``purchase_incomplete``), adds or removes the
product (dropping a line at zero), and posts the whole cart with ``incomplete: 1``, which
replaces it, with the reminder template and time when configured. Changes for one user are
serialised by a per-user lock, so none is lost when they race; a change with a
``record_id`` is applied at most once per sent-keys store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import NotFound
from ..once.sentkeys import send_once
from ..options import MatchKey
from ..results import ExportResult, Status
from ..shaping.mapping import InvalidValue, reminder_time
from ._commerce_records import (
    NEEDS_EMAIL,
    CartChange,
    PurchaseItem,
    Shop,
    guard,
    qty_of,
    text,
    valid_id,
    valid_item,
    valid_quantity,
    valid_unit,
    valid_url,
)
from .profiles import valid_key

__all__ = ["CartKeeper"]

log = logging.getLogger(__name__)

_NOTHING_TO_REMOVE = "Nothing to remove from the incomplete cart for this user"
# What a cart item read back from Sailthru may carry into the next incomplete purchase.
_CART_ITEM_FIELDS = ("id", "title", "qty", "price", "url", "tags", "vars", "images")


class CartKeeper:
    """Keeps users' carts in Sailthru (see the module docs); used by ``CommerceSender``.

    ``default_reminder_template``/``default_reminder_time`` apply to changes that name
    none; ``clear_after_hours`` empties a cart older than that (by its time in Sailthru,
    against ``clock``, Unix seconds) before a change.
    """

    def __init__(
        self,
        shop: Shop,
        *,
        default_reminder_template: str | None,
        default_reminder_time: str | None,
        clear_after_hours: float | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._shop = shop
        self._reminder_template = default_reminder_template
        self._reminder_time = default_reminder_time
        self._clear_after = clear_after_hours
        self._clock = clock

    def update(self, change: CartChange) -> ExportResult:
        """Apply one cart change; never raises for a bad record or a Sailthru refusal."""
        rid = text(change.record_id if change.record_id is not None else change.user_id)
        return guard(rid, lambda: self._cart(change, rid))

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
        quantity = valid_quantity(change.quantity, "quantity")
        unit = valid_unit(change.currency_unit)
        if change.action == "add":
            fallback = valid_url(change.page_url, "page_url")
            line = valid_item(change.product, "product", unit, fallback, self._shop.timezone, False)
        else:
            # Removing needs only the product's id: the cart already holds the rest.
            if not isinstance(change.product, PurchaseItem):
                raise InvalidValue("product", "the product must be a PurchaseItem")
            line = {"id": valid_id(change.product.id, "product.id")}
        reminder = self._reminder(change)

        def apply() -> ExportResult:
            return self._apply_cart(
                rid, change.action, user_key, user, email, line, quantity, reminder
            )

        with self._shop.user_locks.for_key((str(user_key), user)):
            if change.record_id is None:
                return apply()
            key = valid_id(change.record_id, "record_id")
            return send_once(self._shop.sent, self._shop.key_locks, "cart", key, rid, apply)

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
                raise InvalidValue("email", NEEDS_EMAIL)
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
        self._shop.api.post("purchase", payload)
        units = sum(qty_of(line) for line in cart)
        return ExportResult(Status.SENT, rid, f"cart now holds {units} unit(s)")

    def _read_cart(self, key: str, value: str) -> tuple[str | None, Any] | None:
        """The user's (email, purchase_incomplete), or None when Sailthru has no such user."""
        fields = {"keys": 1, "purchase_incomplete": 1}
        try:
            reply = self._shop.api.get("user", {"id": value, "key": key, "fields": fields})
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


def _changed_cart(
    cart: list[dict[str, Any]], action: str, item: dict[str, Any], quantity: int
) -> list[dict[str, Any]] | None:
    """The cart after adding or removing ``quantity`` of ``item``; None: not in the cart."""
    index = next((n for n, line in enumerate(cart) if str(line.get("id")) == item["id"]), None)
    if action == "add":
        if index is None:
            cart.append({**item, "qty": quantity})
        else:
            cart[index] = {**cart[index], **item, "qty": qty_of(cart[index]) + quantity}
        return cart
    if not cart:
        raise InvalidValue("product", _NOTHING_TO_REMOVE)
    if index is None:
        return None
    left = qty_of(cart[index]) - quantity
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
