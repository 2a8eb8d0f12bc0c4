"""Purchases, returns and abandoned carts: what a user bought, gave back or left in the cart.

* A purchase is one POST /purchase with ``incomplete: 0`` and the order id as its external
  key. Sailthru cannot edit a posted purchase, so each order id is in Sailthru exactly once
  per sent-keys store: an unclear answer is settled by reading the order back
  (:mod:`.purchases`).
* A return is one POST /return with the returned items, at most once per return record id
  (the order id unless the record names one: an order may see several partial returns).
* A cart change reads the user's cart, adds or removes the product, and posts the whole
  cart with ``incomplete: 1`` (:mod:`.carts`).

Prices become integer cents exactly (:func:`~sailthru_destination.shaping.mapping.cents`). A record
with an extid but no email is sent under the email Sailthru holds for that extid; a user
without one fails with "identify the user with an email first". The record types and their
checks live in :mod:`._commerce_records`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..once.doubt import DEFAULT_DOUBT_AGE
from ..once.sentkeys import InMemorySentKeys, SentKeys, send_once
from ..results import ExportResult, Status
from ..shaping.mapping import InvalidValue, reminder_time
from ..transport._concurrency import KeyedLocks, run_in_order
from ..transport.api import SailthruApi
from ._commerce_records import (
    CartChange,
    Purchase,
    PurchaseItem,
    Return,
    Shop,
    email_for_extid,
    guard,
    text,
    valid_buyer,
    valid_id,
    valid_items,
    valid_unit,
)
from .carts import CartKeeper
from .events import time_value
from .purchases import PurchaseSender

__all__ = ["CartChange", "CommerceSender", "Purchase", "PurchaseItem", "Return"]


class CommerceSender:
    """Sends purchases (each exactly once) and returns (at most once), and keeps carts.

    ``sent_keys`` is the store of order and return ids already sent (in memory by default).
    ``default_reminder_template``/``default_reminder_time`` apply to carts whose change
    names none. ``clear_cart_after_hours`` empties a cart older than that (by its time in
    Sailthru, against ``clock``, Unix seconds) before a change. ``user_locks`` serialises
    changes per user; pass the destination's to share it with profile exports. A purchase
    whose post had no clear answer and that one read does not find is in doubt: posted
    again only by a later sender, once reads over ``purchase_doubt_age`` seconds (by
    ``clock``) miss it (see :mod:`.doubt`).
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
        purchase_doubt_age: float = DEFAULT_DOUBT_AGE,
    ) -> None:
        if clear_cart_after_hours is not None and not clear_cart_after_hours > 0:
            raise ValueError("clear_cart_after_hours must be a positive number of hours")
        reminder: str | None = None
        if default_reminder_time is not None:
            try:
                reminder = reminder_time(default_reminder_time)
            except InvalidValue as exc:
                raise ValueError(f"default_reminder_time: {exc.reason}") from None
        self._shop = Shop(
            api=api,
            sent=sent_keys if sent_keys is not None else InMemorySentKeys(),
            key_locks=KeyedLocks(),
            user_locks=user_locks if user_locks is not None else KeyedLocks(),
            timezone=timezone,
        )
        self._purchases = PurchaseSender(self._shop, doubt_age=purchase_doubt_age, clock=clock)
        self._carts = CartKeeper(
            self._shop,
            default_reminder_template=default_reminder_template,
            default_reminder_time=reminder,
            clear_after_hours=clear_cart_after_hours,
            clock=clock,
        )

    def send_purchase(self, purchase: Purchase) -> ExportResult:
        """Post one completed order; never raises for a bad record or a Sailthru refusal."""
        return self._purchases.send(purchase)

    def update_cart(self, change: CartChange) -> ExportResult:
        """Apply one cart change; never raises for a bad record or a Sailthru refusal."""
        return self._carts.update(change)

    # -- returns -----------------------------------------------------------------------------

    def send_return(self, returned: Return) -> ExportResult:
        """Post one return; never raises for a bad record or a Sailthru refusal."""
        rid = text(returned.record_id if returned.record_id is not None else returned.order_id)
        return guard(rid, lambda: self._return(returned, rid))

    def _return(self, returned: Return, rid: str) -> ExportResult:
        shop = self._shop
        order_id = valid_id(returned.order_id, "order_id")
        key = order_id if returned.record_id is None else valid_id(rid, "record_id")
        unit = valid_unit(returned.currency_unit)
        email, extid = valid_buyer(returned.email, returned.extid)
        items = valid_items(returned.items, unit, returned.page_url, shop.timezone, returning=True)
        payload: dict[str, Any] = {"items": items, "order_id": order_id}
        if returned.date is not None:
            payload["date"] = time_value(returned.date, "date", shop.timezone)

        def send() -> ExportResult:
            payload["email"] = email or email_for_extid(shop.api, extid)
            shop.api.post("return", payload)
            return ExportResult(Status.SENT, rid, f"return of order {order_id!r} sent")

        return send_once(shop.sent, shop.key_locks, "return", key, rid, send)

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
