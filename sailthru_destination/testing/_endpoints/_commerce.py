"""/event, /purchase and /return: what a user did and bought (carts are incomplete purchases)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ...transport._protocol import RESERVED_EVENT_NAMES, ErrorCode
from .._errors import ApiError, invalid_parameter
from .._state import State, User, rfc2822_now
from ._users import resolve_lookup

__all__ = ["get_purchase", "post_event", "post_purchase", "post_return"]

Reply = tuple[int, dict[str, Any]]

_ITEM_FIELDS = ("qty", "title", "price", "id", "url")


def post_event(state: State, payload: Mapping[str, Any]) -> Reply:
    """POST /event: ``id`` and ``event`` required; Sailthru's own event names refused (400)."""
    key, ident = resolve_lookup(state, payload, required=True)
    name = payload.get("event")
    if not name or not isinstance(name, str):
        raise invalid_parameter("Missing required parameter: event")
    if name.lower() in RESERVED_EVENT_NAMES:
        # (inferred) error 2 with this text; the 400 itself is documented.
        raise invalid_parameter(f"Event name is reserved: {name}")
    event_vars = payload.get("vars") or {}
    if not isinstance(event_vars, Mapping):
        raise invalid_parameter("Invalid parameter: vars must be an object")
    with state.lock:
        if state.inferred.unknown_user_event == "refuse" and state.find_sid(key, ident) is None:
            # (inferred) by default an event for an unknown user creates it, as /user does.
            raise ApiError(400, ErrorCode.OTHER, f"User not found with {key}: {ident}")
        user = _user_for(state, key, ident)
        state.events.append(
            {
                "id": ident,
                "key": key,
                "sid": user["keys"]["sid"],
                "event": name,
                "vars": dict(event_vars),
                "schedule_time": payload.get("schedule_time"),
                "time": rfc2822_now(),
            }
        )
    return 200, {"ok": True}


def post_purchase(state: State, payload: Mapping[str, Any]) -> Reply:
    """POST /purchase: ``incomplete: 1`` replaces the cart; otherwise a purchase, cart cleared."""
    email = _email(payload)
    incomplete = _flag(payload.get("incomplete"))
    items = _items(payload.get("items"), allow_empty=incomplete, fields=_ITEM_FIELDS)
    adjustments = payload.get("adjustments") or []
    if not isinstance(adjustments, list) or not all(
        isinstance(a, Mapping) and isinstance(a.get("price"), int) for a in adjustments
    ):
        raise invalid_parameter("Invalid parameter: adjustments need an integer price in cents")
    with state.lock:
        user = _user_for(state, "email", email)
        record: dict[str, Any] = {
            "purchase_id": state.new_id(),
            "email": email,
            "sid": user["keys"]["sid"],
            "items": copy.deepcopy(items),
            "adjustments": copy.deepcopy(adjustments),
            "tenders": copy.deepcopy(payload.get("tenders") or []),
            "date": payload.get("date"),
            "message_id": payload.get("message_id"),
            "purchase_keys": dict(payload.get("purchase_keys") or {}),
            "reminder_template": payload.get("reminder_template"),
            "reminder_time": payload.get("reminder_time"),
            "total": sum(i["qty"] * i["price"] for i in items)
            + sum(a["price"] for a in adjustments),
            "time": rfc2822_now(),
        }
        if incomplete:
            user["purchase_incomplete"] = record if items else None
        else:
            user["purchase_incomplete"] = None
            user["purchases"].append(record)
            state.purchases.append(record)
            # Reads are eventually consistent: a GET right after may not find it yet.
            lookups = [("purchase:sid", record["purchase_id"])]
            extid = record["purchase_keys"].get("extid")
            if extid is not None:
                lookups.append(("purchase:extid", str(extid)))
            state.remember_before_post(lookups, None)
        return 200, {"ok": True, "purchase": copy.deepcopy(record)}


def get_purchase(state: State, payload: Mapping[str, Any]) -> Reply:
    """GET /purchase ``{purchase_id, purchase_key: sid|extid}``: one completed purchase.

    ``sid`` (the default) is the 24-hex id the purchase was given, ``extid`` the
    ``purchase_keys.extid`` it was posted with (an order id). Within the stale-read window
    after its POST a purchase is not found yet.
    """
    purchase_id = str(payload.get("purchase_id") or "")
    purchase_key = payload.get("purchase_key") or "sid"
    if not purchase_id:
        raise invalid_parameter("Missing required parameter: purchase_id")
    if purchase_key not in ("sid", "extid"):
        raise invalid_parameter(f"Invalid purchase_key: {purchase_key}")
    with state.lock:
        stale, _ = state.stale_view(f"purchase:{purchase_key}", purchase_id)
        for record in state.purchases if not stale else ():
            found = (
                record["purchase_id"] == purchase_id
                if purchase_key == "sid"
                else str(record["purchase_keys"].get("extid")) == purchase_id
            )
            if found:
                return 200, copy.deepcopy(record)
    # (inferred) Status and text: the error-99 "not found" shape of GET /user's reply.
    raise ApiError(400, ErrorCode.OTHER, f"Purchase not found: {purchase_id}")


def post_return(state: State, payload: Mapping[str, Any]) -> Reply:
    """POST /return: items with qty and integer price; recorded apart from purchases."""
    email = _email(payload)
    items = _items(payload.get("items"), allow_empty=False, fields=("qty", "price"))
    with state.lock:
        sid = state.find_sid("email", email)
        state.returns.append(
            {
                "email": email,
                "sid": sid,
                "items": copy.deepcopy(items),
                "order_id": payload.get("order_id"),
                "date": payload.get("date"),
                "time": rfc2822_now(),
            }
        )
    return 200, {"ok": True}


def _user_for(state: State, key: str, ident: str) -> User:
    """The user named by (key, id); an unknown email or extid creates one, as /user does."""
    sid = state.find_sid(key, ident)
    if sid is not None:
        return state.users[sid]
    if key not in ("email", "extid"):
        raise ApiError(400, ErrorCode.OTHER, f"User not found with {key}: {ident}")
    user = state.create_user()
    state.set_key(user, key, ident)
    return user


def _email(payload: Mapping[str, Any]) -> str:
    email = str(payload.get("email") or "").strip()
    if not email:
        raise invalid_parameter("Missing required parameter: email")
    if "@" not in email:
        raise ApiError(400, ErrorCode.INVALID_EMAIL, f"Invalid email: {email}")
    return email.lower()


def _items(raw: object, allow_empty: bool, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    if raw is None or raw == {}:
        raw = []
    if not isinstance(raw, list) or (not raw and not allow_empty):
        raise invalid_parameter("Missing required parameter: items")
    items = []
    for n, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise invalid_parameter(f"Invalid item {n}: must be an object")
        for name in fields:
            if item.get(name) in (None, ""):
                raise invalid_parameter(f"Invalid item {n}: missing {name}")
        if not isinstance(item["qty"], int) or not isinstance(item["price"], int):
            raise invalid_parameter(f"Invalid item {n}: qty and price (cents) must be integers")
        items.append(dict(item))
    return items


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip() not in ("", "0", "false")
    return bool(value)
