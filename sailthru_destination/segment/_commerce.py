"""The e-commerce spec events: orders, refunds and carts (Segment's V2 e-commerce spec)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..features.commerce import CartChange, Purchase, Return
from ..results import ExportResult
from ..shaping.mapping import InvalidValue
from ._message import _adjustments, _first, _Message, _product, _products

if TYPE_CHECKING:
    from ._adapter import SegmentAdapter

__all__ = ["order_completed", "order_refunded", "product_added", "product_removed"]


def order_completed(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """A purchase keyed by order_id (else checkout_id, else the messageId): sent once."""
    props = msg.mapping("properties")
    order_id = _first(props, "order_id", "checkout_id") or msg.id
    if not order_id:
        raise InvalidValue("properties.order_id", "the order has no order_id or messageId")
    purchase = Purchase(
        order_id=order_id,
        email=msg.email,
        extid=msg.user_id or msg.anonymous_id,
        items=_products(props, adapter.settings.product_url_template, msg.page_url),
        adjustments=_adjustments(props),
        date=msg.timestamp,
        page_url=msg.page_url,
    )
    return _retry_without_email(msg, adapter.destination.send_purchases([purchase]).results[0])


def order_refunded(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """A return of the order's products through Sailthru's /return."""
    props = msg.mapping("properties")
    order_id = _first(props, "order_id")
    if order_id is None:
        raise InvalidValue("properties.order_id", "a refund names the order_id it refunds")
    returned = Return(
        order_id=order_id,
        email=msg.email,
        extid=msg.user_id or msg.anonymous_id,
        items=_products(props, adapter.settings.product_url_template, msg.page_url),
        date=msg.timestamp,
        page_url=msg.page_url,
        record_id=msg.id,
    )
    return _retry_without_email(msg, adapter.destination.send_returns([returned]).results[0])


def product_added(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """One more of the product in the user's incomplete purchase."""
    return _cart(adapter, msg, "add")


def product_removed(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """One less of the product in the user's incomplete purchase."""
    return _cart(adapter, msg, "remove")


def _cart(adapter: SegmentAdapter, msg: _Message, action: str) -> ExportResult:
    props = msg.mapping("properties")
    key_type, user = msg.user_ref()
    quantity = props.get("quantity", 1)
    settings = adapter.settings
    product = _product(
        props,
        "properties",
        removing=action == "remove",
        url_template=settings.product_url_template,
        page_url=msg.page_url,
    )
    change = CartChange(
        user_id=user,
        user_key="email" if key_type == "email" else "extid",
        product=product,
        quantity=1 if quantity is None else quantity,
        action="add" if action == "add" else "remove",
        reminder_template=msg.option("reminder_template", settings.default_reminder_template),
        reminder_time=msg.option("reminder_time", settings.default_reminder_time),
        email=msg.email if key_type != "email" else None,
        record_id=msg.id,
        page_url=msg.page_url,
    )
    return _retry_without_email(msg, adapter.destination.update_carts([change]).results[0])


def _retry_without_email(msg: _Message, result: ExportResult) -> ExportResult:
    """A buyer without email yet (an anonymous visitor) is a wait, not a dead end.

    Sailthru keys purchases and carts by email; an identify with the email, which usually
    follows, makes the same message work, so it is failed as retryable, saying so. (The
    message names a user but no email, so the ``email`` failure cannot be a malformed one.)
    """
    error = result.error
    if error is None or error.retryable or error.field != "email":
        return result
    if msg.email is not None or not (msg.user_id or msg.anonymous_id):
        return result
    reason = f"{error.reason} (retry it after an identify that gives this user an email)"
    return ExportResult.failed(replace(error, reason=reason, retryable=True))
