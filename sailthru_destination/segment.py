"""Segment-spec messages to Sailthru: identify, track, page and alias, routed like presets.

Which message goes to which action is one table, :data:`PRESETS` (``(type, event)`` →
handler, ``event`` ``None`` meaning "any other"), as in Segment's ``action-destinations``.

* identify: the profile with extid = ``userId`` (else ``anonymousId``); traits become
  flattened vars, the ``email`` trait the email key; the default list is joined and the
  opt-out level set. With both ids and an existing anonymous profile, that profile is posted
  with ``keys: {extid: userId}`` and ``keysconflict: merge``: Sailthru folds the user-id
  profile into it and the result answers to ``userId`` (the only one-call merge, since a
  profile has one extid; this message's traits win over both).
* track: a custom event (flattened properties, personal fields left out), except the
  e-commerce events: ``Order Completed`` → purchase, ``Product Added``/``Product Removed``
  → cart, ``Order Refunded`` → return, ``Subscribed`` → list join with opt-out ``none``.
* page: a page view on Sailthru's tracking service for ``customer_id``.
* alias: ``previousId``'s profile is merged into ``userId`` (``keysconflict: merge``).

Every message gets one result naming it (``record_id`` = ``messageId``): sent, skipped or
failed, with the reason. A batch keeps each user's messages in input order (an identify
must land before the cart it enables) while different users run concurrently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ._concurrency import run_in_order
from ._protocol import RESERVED_EVENT_NAMES
from ._segment_message import (
    _adjustments,
    _email,
    _failed,
    _first,
    _kind,
    _Message,
    _named,
    _optout,
    _product,
    _products,
    _tags,
    _text,
)
from .commerce import CartChange, Purchase, Return
from .destination import SailthruDestination
from .errors import NotFound, RecordError, SailthruError
from .events import Event
from .locks import LockTimeout
from .mapping import InvalidValue, audience_list_name, flatten_vars, list_name, reminder_time
from .results import BatchResult, ExportResult, Status

__all__ = ["PRESETS", "SegmentAdapter", "SegmentSettings"]

log = logging.getLogger(__name__)

# Segment spec traits that identify a person: kept out of event vars (the user is the key).
_PERSONAL_FIELDS = frozenset(
    {"email", "phone", "address", "birthday", "firstname", "lastname", "username"}
)


@dataclass(frozen=True)
class SegmentSettings:
    """The destination settings a marketer sets in Segment, validated when built."""

    default_list_name: str | None = None
    """List every identified user joins (a message may name another: ``defaultListName``)."""
    optout_value: str | None = None
    """Opt-out level sent on identify: none, all, basic or blast (message: ``optoutValue``)."""
    default_reminder_template: str | None = None
    """Abandoned-cart reminder template for cart updates (message: ``reminder_template``)."""
    default_reminder_time: str | int | None = None
    """Delay of the cart reminder, like ``"20 minutes"`` (message: ``reminder_time``)."""
    customer_id: str | None = None
    """Sailthru customer id for page views; without it page calls are skipped."""
    audiences_to_lists: bool = False
    """Engage audience traits (``<audience_key>: true/false``) add/remove the list of that name."""
    clear_cart_after_hours: float | None = None
    """Empty a cart older than this before a change; must match the destination's option."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.default_list_name is not None:
            set_(self, "default_list_name", _setting(list_name, self.default_list_name))
        if self.optout_value is not None:
            set_(self, "optout_value", _setting(_optout, self.optout_value))
        template = self.default_reminder_template
        if template is not None and (not isinstance(template, str) or not template.strip()):
            raise ValueError("default_reminder_template must be a template name")
        if self.default_reminder_time is not None:
            normalised = _setting(reminder_time, self.default_reminder_time)
            set_(self, "default_reminder_time", normalised)
        if self.customer_id is not None and (
            not isinstance(self.customer_id, str) or not self.customer_id.strip()
        ):
            raise ValueError("customer_id must be the Sailthru customer id (a string)")
        if not isinstance(self.audiences_to_lists, bool):
            raise ValueError("audiences_to_lists must be true or false")
        hours = self.clear_cart_after_hours
        if hours is not None and (
            isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours > 0
        ):
            raise ValueError(f"clear_cart_after_hours must be a positive number, got {hours!r}")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'customer_id' and self.customer_id else repr(v)}"
            for f in fields(self)
            if (v := getattr(self, f.name)) is not None
        )
        return f"SegmentSettings({shown})"

    @classmethod
    def of(cls, settings: SegmentSettings | Mapping[str, Any] | None) -> SegmentSettings:
        """Settings from a :class:`SegmentSettings`, a mapping with the same names, or None."""
        if settings is None:
            return cls()
        if isinstance(settings, SegmentSettings):
            return settings
        if not isinstance(settings, Mapping):
            raise ValueError("settings must be SegmentSettings or a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(name) for name in settings if name not in known)
        if unknown:
            raise ValueError(
                f"unknown Segment settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(settings))


def _setting(check: Callable[[Any], str], value: Any) -> str:
    try:
        return check(value)
    except InvalidValue as exc:
        raise ValueError(f"{exc.field}: {exc.reason}") from None


class SegmentAdapter:
    """Sends Segment-spec messages (dicts as Segment delivers them) through a destination.

    ``process`` never raises for a bad message: each gets an :class:`ExportResult`.
    Close it (or use ``with``) to release the page-view connection.
    """

    def __init__(
        self,
        destination: SailthruDestination,
        settings: SegmentSettings | Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = SegmentSettings.of(settings)
        hours = self.settings.clear_cart_after_hours
        if hours is not None and hours != destination.options.clear_cart_after_hours:
            # Carts go through the destination's cart sender, which owns this option.
            raise ValueError(
                "clear_cart_after_hours is applied by the destination: build it with "
                f"DestinationOptions(clear_cart_after_hours={hours!r})"
            )
        self._destination = destination
        self._timezone = destination.app.timezone

    def __enter__(self) -> SegmentAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: the destination, which holds the connections, is the caller's."""

    # -- entry points --------------------------------------------------------------------------

    def process(self, message: Mapping[str, Any]) -> ExportResult:
        """Send one message; never raises for a bad message or a Sailthru refusal."""
        if not isinstance(message, Mapping):
            return _failed("", "message", f"a Segment message is an object, not {_kind(message)}")
        msg = _Message(message)
        try:
            handler = _route(msg)
            if isinstance(handler, str):
                return ExportResult(Status.SKIPPED, msg.id, f"{msg.label}: {handler}")
            return _named(msg, handler(self, msg))
        except InvalidValue as exc:
            return _failed(msg.id, exc.field, f"{msg.label}: {exc.reason}")
        except SailthruError as exc:
            return _named(msg, ExportResult.failed(RecordError.from_error(msg.id, exc)))
        except LockTimeout as exc:
            error = RecordError(msg.id, f"{msg.label}: {exc}", field="lists", retryable=True)
            return ExportResult.failed(error)
        except Exception as exc:  # a bug must not cost the batch its other results
            log.exception("unexpected error on Segment message %r", msg.id)
            return _failed(msg.id, None, f"{msg.label}: unexpected {type(exc).__name__}")

    def iter_process(self, messages: Iterable[Mapping[str, Any]]) -> Iterator[ExportResult]:
        """Process messages concurrently, one user's in order, yielding results in input order."""
        sequencer = _Sequencer()

        def run(ticket: _Ticket) -> ExportResult:
            for earlier in ticket.after:
                earlier.wait()
            try:
                return self.process(ticket.message)
            finally:
                sequencer.finish(ticket)

        tickets = (sequencer.ticket(m, _order_keys(m)) for m in messages)
        return run_in_order(run, tickets, concurrency=self._destination.concurrency_for("segment"))

    def process_batch(self, messages: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Process a batch: one result per message, in input order."""
        return BatchResult.of(self.iter_process(messages))

    # -- identify and alias --------------------------------------------------------------------

    def _identify(self, msg: _Message) -> ExportResult:
        extid = msg.user_id or msg.anonymous_id
        if extid is None:
            raise InvalidValue("userId", "an identify needs a userId or an anonymousId")
        traits = msg.mapping("traits")
        email = _email(traits.get("email"), "traits.email")
        try:
            variables = flatten_vars(traits, timezone=self._timezone, exclude=("email",))
        except InvalidValue as exc:
            raise InvalidValue(f"traits.{exc.field}", exc.reason) from None
        lists: dict[str, int] = {}
        default = msg.option("defaultListName", self.settings.default_list_name)
        if default is not None:
            lists[list_name(_text(default, "integrations.Sailthru.defaultListName"))] = 1
        lists.update(self._audience_lists(msg, traits))
        payload: dict[str, Any] = {"id": extid, "key": "extid"}
        keys: dict[str, str] = {"email": email} if email else {}
        detail = f"profile {extid!r} updated"
        anonymous = msg.anonymous_id
        if msg.user_id and anonymous and anonymous != msg.user_id and self._has_extid(anonymous):
            payload.update(id=anonymous, keysconflict="merge")
            keys["extid"] = msg.user_id
            detail += f", anonymous profile {anonymous!r} merged in"
        if keys:
            payload["keys"] = keys
        if variables:
            payload["vars"] = variables
        optout = msg.option("optoutValue", self.settings.optout_value)
        if optout is not None:
            payload["optout_email"] = _optout(optout, "integrations.Sailthru.optoutValue")
        self._post_user(payload, lists)
        return ExportResult(Status.SENT, msg.id, detail)

    def _audience_lists(self, msg: _Message, traits: Mapping[str, Any]) -> dict[str, int]:
        personas = msg.context.get("personas")
        if not self.settings.audiences_to_lists or not isinstance(personas, Mapping):
            return {}
        key = personas.get("computation_key")
        audience = personas.get("computation_class", "audience") == "audience"
        if not audience or not isinstance(key, str) or key not in traits:
            return {}
        member = traits[key]
        if not isinstance(member, bool):
            raise InvalidValue(f"traits.{key}", "an audience trait is true or false")
        return {audience_list_name(key): int(member)}

    def _alias(self, msg: _Message) -> ExportResult:
        previous = msg.id_field("previousId")
        if previous is None or msg.user_id is None:
            raise InvalidValue("previousId", "an alias needs a previousId and a userId")
        if previous == msg.user_id:
            return ExportResult(Status.SKIPPED, msg.id, "alias: previousId is the userId")
        if not self._has_extid(previous):
            detail = f"alias: no Sailthru profile has extid {previous!r}: nothing to merge"
            return ExportResult(Status.SKIPPED, msg.id, detail)
        payload = {
            "id": previous,
            "key": "extid",
            "keys": {"extid": msg.user_id},
            "keysconflict": "merge",
        }
        self._destination.api.post("user", payload)
        detail = f"profile {previous!r} merged into {msg.user_id!r}"
        return ExportResult(Status.SENT, msg.id, detail)

    # -- track ---------------------------------------------------------------------------------

    def _custom_event(self, msg: _Message) -> ExportResult:
        name = msg.event
        if name.lower() in RESERVED_EVENT_NAMES:
            detail = f"Sailthru reserves the event name {name!r} for itself: not sent"
            return ExportResult(Status.SKIPPED, msg.id, detail)
        key_type, key = msg.user_ref()
        properties = {
            k: v
            for k, v in msg.mapping("properties").items()
            if not (isinstance(k, str) and k.replace("_", "").lower() in _PERSONAL_FIELDS)
        }
        event = Event(key, key_type, name, properties, record_id=msg.id)
        return self._destination.send_events([event]).results[0]

    def _order_completed(self, msg: _Message) -> ExportResult:
        props = msg.mapping("properties")
        order_id = _first(props, "order_id", "checkout_id") or msg.id
        if not order_id:
            raise InvalidValue("properties.order_id", "the order has no order_id or messageId")
        extid = msg.user_id or msg.anonymous_id
        purchase = Purchase(
            order_id=order_id,
            email=msg.email,
            extid=extid,
            items=_products(props),
            adjustments=_adjustments(props),
            date=msg.timestamp,
            page_url=msg.page_url,
        )
        return self._destination.send_purchases([purchase]).results[0]

    def _order_refunded(self, msg: _Message) -> ExportResult:
        props = msg.mapping("properties")
        order_id = _first(props, "order_id")
        if order_id is None:
            raise InvalidValue("properties.order_id", "a refund names the order_id it refunds")
        returned = Return(
            order_id=order_id,
            email=msg.email,
            extid=msg.user_id or msg.anonymous_id,
            items=_products(props),
            date=msg.timestamp,
            page_url=msg.page_url,
            record_id=msg.id,
        )
        return self._destination.send_returns([returned]).results[0]

    def _product_added(self, msg: _Message) -> ExportResult:
        return self._cart(msg, "add")

    def _product_removed(self, msg: _Message) -> ExportResult:
        return self._cart(msg, "remove")

    def _cart(self, msg: _Message, action: str) -> ExportResult:
        props = msg.mapping("properties")
        key_type, user = msg.user_ref()
        quantity = props.get("quantity", 1)
        template = msg.option("reminder_template", self.settings.default_reminder_template)
        when = msg.option("reminder_time", self.settings.default_reminder_time)
        change = CartChange(
            user_id=user,
            user_key="email" if key_type == "email" else "extid",
            product=_product(props, "properties", removing=action == "remove"),
            quantity=1 if quantity is None else quantity,
            action="add" if action == "add" else "remove",
            reminder_template=template,
            reminder_time=when,
            email=msg.email if key_type != "email" else None,
            record_id=msg.id,
            page_url=msg.page_url,
        )
        return self._destination.update_carts([change]).results[0]

    def _subscribed(self, msg: _Message) -> ExportResult:
        wanted = msg.mapping("properties").get("list")
        if wanted is None or wanted == "":
            raise InvalidValue("properties.list", "Subscribed names the list to join")
        name = list_name(_text(wanted, "properties.list"))
        key_type, user = msg.user_ref()
        payload: dict[str, Any] = {"id": user, "key": key_type, "optout_email": "none"}
        if key_type != "email" and msg.email:
            payload["keys"] = {"email": msg.email}
        self._post_user(payload, {name: 1})
        return ExportResult(Status.SENT, msg.id, f"joined list {name!r}, opt-out none")

    # -- page ----------------------------------------------------------------------------------

    def _page(self, msg: _Message) -> ExportResult:
        customer_id = self.settings.customer_id
        if customer_id is None:
            detail = "page views need the Sailthru customer id: set customer_id in the settings"
            return ExportResult(Status.SKIPPED, msg.id, detail)
        props = msg.mapping("properties")
        url = props.get("url") or msg.page_url
        if not isinstance(url, str) or not url.strip():
            raise InvalidValue("properties.url", "a page view needs the page url")
        key_type, user = msg.user_ref()
        payload = {
            "userIdKey": key_type,
            "userIdValue": user,
            "url": url.strip(),
            "tags": _tags(props.get("keywords"), "properties.keywords"),
        }
        self._destination.api.track_pageview(customer_id, payload)
        return ExportResult(Status.SENT, msg.id, f"page view of {url.strip()!r} sent")

    # -- helpers -------------------------------------------------------------------------------

    def _post_user(self, payload: dict[str, Any], lists: Mapping[str, int]) -> None:
        registry = self._destination.lists
        for name, flag in lists.items():
            if flag:
                # Never let a user update create a list: racing first uses duplicate it.
                registry.ensure(name)
        # Leaving a list that never existed is a no-op; naming it could create it.
        sent = {n: f for n, f in lists.items() if f or registry.exists(n)}
        if sent:
            payload = {**payload, "lists": sent}
        self._destination.api.post("user", payload)

    def _has_extid(self, extid: str) -> bool:
        try:
            self._destination.api.get("user", {"id": extid, "key": "extid", "fields": {"keys": 1}})
        except NotFound:
            return False
        return True


_Handler = Callable[[SegmentAdapter, "_Message"], ExportResult]

PRESETS: Mapping[tuple[str, str | None], _Handler] = {
    ("identify", None): SegmentAdapter._identify,
    ("track", "Order Completed"): SegmentAdapter._order_completed,
    ("track", "Product Added"): SegmentAdapter._product_added,
    ("track", "Product Removed"): SegmentAdapter._product_removed,
    ("track", "Order Refunded"): SegmentAdapter._order_refunded,
    ("track", "Subscribed"): SegmentAdapter._subscribed,
    ("track", None): SegmentAdapter._custom_event,
    ("page", None): SegmentAdapter._page,
    ("alias", None): SegmentAdapter._alias,
}
"""Which messages go to which action: ``(type, event)``; event ``None`` is any other event."""

_SUPPORTED_TYPES = sorted({kind for kind, _ in PRESETS})


def _route(msg: _Message) -> _Handler | str:
    """The handler for a message, or why it is skipped."""
    if msg.sailthru_disabled:
        return "integrations turn Sailthru off for this message"
    kind = msg.type
    if kind not in _SUPPORTED_TYPES:
        return f"Sailthru takes no {kind!r} messages (it takes {', '.join(_SUPPORTED_TYPES)})"
    if kind == "track":
        return PRESETS.get((kind, msg.event)) or PRESETS[(kind, None)]
    return PRESETS[(kind, None)]


# -- per-user ordering -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ticket:
    message: Any
    keys: tuple[str, ...]
    after: tuple[threading.Event, ...]
    done: threading.Event


class _Sequencer:
    """Makes each message wait for the earlier messages of the same user ids.

    Safe with a FIFO thread pool: a message starts only after every earlier one has
    started, so what it waits for is running and cannot be waiting for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, threading.Event] = {}

    def ticket(self, message: Any, keys: tuple[str, ...]) -> _Ticket:
        done = threading.Event()
        with self._lock:
            after = tuple({id(e): e for k in keys if (e := self._last.get(k))}.values())
            for key in keys:
                self._last[key] = done
        return _Ticket(message, keys, after, done)

    def finish(self, ticket: _Ticket) -> None:
        ticket.done.set()
        with self._lock:
            for key in ticket.keys:
                if self._last.get(key) is ticket.done:
                    del self._last[key]


def _order_keys(message: object) -> tuple[str, ...]:
    if not isinstance(message, Mapping):
        return ()
    keys = []
    for name in ("userId", "anonymousId", "previousId"):
        value = message.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            keys.append(str(value).strip())
    return tuple(keys)


# -- page views --------------------------------------------------------------------------------
