"""Completed purchases, each in Sailthru exactly once: posted, and read back when in doubt.

A purchase is one POST /purchase with ``incomplete: 0`` and the order id as its external
key (``purchase_keys: {"extid": order_id}``). Sailthru cannot edit or undo a purchase, so
the order id is claimed in the sent-keys store (:mod:`.sentkeys`) before it is posted.

When a post's outcome is unknown (a 5xx or error 9 reply, a read timeout, a connection
dropped after sending: :class:`~.errors.OutcomeUnknown`), the order is read back
(GET /purchase by ``extid``). Reads are eventually consistent, so it counts as absent only
when a second read, ``confirm_after`` seconds later (waited through the API layer), misses
it too; only then is it posted again, up to ``attempts`` posts. An order found is recorded
sent. An order that cannot be read back stays ``unknown`` in the store and is read back
before anything else the next time it comes (so is one left ``pending`` by a run that died).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ._commerce_records import (
    Purchase,
    Shop,
    email_for_extid,
    guard,
    priced_lines,
    text,
    valid_buyer,
    valid_id,
    valid_items,
    valid_unit,
)
from .errors import NotFound, OutcomeUnknown, RecordError, SailthruError
from .events import time_value
from .mapping import InvalidValue
from .results import ExportResult, Status
from .sentkeys import KeyState, Leased

__all__ = ["PurchaseSender"]

log = logging.getLogger(__name__)

_KIND = "purchase"


@dataclass
class _Order:
    """One purchase ready to post: its record id, order id, buyer and payload."""

    rid: str
    order_id: str
    email: str | None
    extid: str | None
    payload: dict[str, Any]

    def sent(self, how: str) -> ExportResult:
        items = len(self.payload["items"])
        return ExportResult(Status.SENT, self.rid, f"order {self.order_id!r}: {items} item(s){how}")

    def failed(self, reason: str, *, retryable: bool, code: int | None = None) -> ExportResult:
        return ExportResult.failed(RecordError(self.rid, reason, retryable=retryable, code=code))


class PurchaseSender:
    """Posts completed orders, each exactly once per sent-keys store (see the module docs)."""

    def __init__(self, shop: Shop, *, confirm_after: float = 1.0, attempts: int = 3) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts!r}")
        if confirm_after < 0:
            raise ValueError(f"confirm_after must be >= 0, got {confirm_after!r}")
        self._shop = shop
        self._confirm_after = confirm_after
        self._attempts = attempts

    def send(self, purchase: Purchase) -> ExportResult:
        """Post one completed order; never raises for a bad record or a Sailthru refusal."""
        rid = text(purchase.order_id)
        return guard(rid, lambda: self._send(self._order(purchase, rid)))

    def import_payload(self, purchase: Purchase) -> tuple[str, dict[str, Any]]:
        """The order id and the complete POST /purchase payload of ``purchase``, as a line of
        a ``purchase_import`` job holds it (the buyer's email looked up when only an extid is
        given). Claims nothing; raises :class:`~.mapping.InvalidValue` for a bad field and
        :class:`~.errors.SailthruError` when the lookup fails."""
        order = self._order(purchase, text(purchase.order_id))
        order.payload["email"] = order.email or email_for_extid(self._shop.api, order.extid)
        return order.order_id, order.payload

    def _order(self, purchase: Purchase, rid: str) -> _Order:
        order_id = valid_id(purchase.order_id, "order_id")
        unit = valid_unit(purchase.currency_unit)
        email, extid = valid_buyer(purchase.email, purchase.extid)
        payload: dict[str, Any] = {
            "items": valid_items(
                purchase.items, unit, purchase.page_url, self._shop.timezone, returning=False
            ),
            "incomplete": 0,
            "purchase_keys": {"extid": order_id},
        }
        if purchase.adjustments:
            payload["adjustments"] = priced_lines(purchase.adjustments, "adjustments", unit)
        if purchase.tenders:
            payload["tenders"] = priced_lines(purchase.tenders, "tenders", unit)
        if purchase.date is not None:
            payload["date"] = time_value(purchase.date, "date", self._shop.timezone)
        if purchase.message_id is not None:
            payload["message_id"] = valid_id(purchase.message_id, "message_id")
        return _Order(rid, order_id, email, extid, payload)

    def _send(self, order: _Order) -> ExportResult:
        shop = self._shop
        buyer = ("email", order.email) if order.email else ("extid", order.extid)
        with shop.user_locks.for_key(buyer), shop.key_locks.for_key((_KIND, order.order_id)):
            if shop.sent.claim(_KIND, order.order_id):
                return self._post(order, in_doubt=False)
            return self._resume(order, shop.sent.state(_KIND, order.order_id))

    # -- posting, while this worker holds the order's claim ------------------------------------

    def _post(self, order: _Order, *, in_doubt: bool) -> ExportResult:
        """Post until Sailthru has the order once, or say why not; settles the claim.

        ``in_doubt``: an earlier send may have landed (the claim was reclaimed from
        ``unknown``), so the claim is never simply released.
        """
        unknown: OutcomeUnknown | None = None
        try:
            if "email" not in order.payload:
                order.payload["email"] = order.email or email_for_extid(self._shop.api, order.extid)
            for attempt in range(1, self._attempts + 1):
                try:
                    self._shop.api.post(_KIND, order.payload)
                except OutcomeUnknown as exc:
                    unknown = exc
                else:
                    self._settle(order, KeyState.SENT)
                    return order.sent("")
                try:
                    present = self._present(order.order_id)
                except SailthruError as exc:
                    self._settle(order, KeyState.UNKNOWN)
                    return order.failed(
                        f"{unknown} The order could not be read back ({exc}); it is marked "
                        "'unknown' and is read back before it is ever sent again",
                        retryable=True,
                        code=unknown.code,
                    )
                if present:
                    self._settle(order, KeyState.SENT)
                    return order.sent(" (read back after a post without a clear answer)")
                log.warning(
                    "purchase %r: not in Sailthru after post %d of %d had no clear answer",
                    order.order_id, attempt, self._attempts,
                )
        except (SailthruError, InvalidValue):
            # Refused for certain (or the buyer is unknown): released when nothing sent for
            # this order may have landed, else kept 'unknown' to be read back first.
            if unknown is None and not in_doubt:
                self._shop.sent.release(_KIND, order.order_id)
            else:
                self._settle(order, KeyState.UNKNOWN)
            raise
        self._settle(order, KeyState.UNKNOWN)
        return order.failed(
            f"{unknown} The order was not in Sailthru after {self._attempts} post(s); it is "
            "marked 'unknown' and is read back before it is sent again",
            retryable=True,
            code=unknown.code if unknown else None,
        )

    def _settle(self, order: _Order, state: KeyState) -> None:
        self._shop.sent.settle(_KIND, order.order_id, state)

    # -- an order someone claimed before -----------------------------------------------------------

    def _resume(self, order: _Order, state: KeyState | None) -> ExportResult:
        if state is KeyState.SENT:
            return ExportResult(
                Status.SKIPPED, order.rid, f"already sent ({_KIND} {order.order_id!r})"
            )
        if state is None:
            # Released by another worker between our claim and this read: a re-run decides.
            return order.failed(
                f"the {_KIND} {order.order_id!r} was being sent by another worker; send it "
                "again",
                retryable=True,
            )
        sent = self._shop.sent
        if state is KeyState.PENDING and isinstance(sent, Leased) and sent.in_flight(
            _KIND, order.order_id
        ):
            return order.failed(
                f"the {_KIND} {order.order_id!r} is being sent by another worker; send it again",
                retryable=True,
            )
        # Pending (a run died, or another worker is posting it now) or unknown: read it back.
        try:
            present = self._present(order.order_id)
        except SailthruError as exc:
            return order.failed(
                f"the {_KIND} {order.order_id!r} is marked {state.value!r} (an earlier send "
                f"may have reached Sailthru) and could not be read back ({exc}); it "
                "is not sent until it is",
                retryable=True,
            )
        if present:
            self._settle(order, KeyState.SENT)
            return order.sent(f" (found in Sailthru: an earlier send was marked {state.value!r})")
        if state is KeyState.UNKNOWN and self._shop.sent.reclaim(_KIND, order.order_id, state):
            return self._post(order, in_doubt=True)
        if state is KeyState.PENDING and isinstance(sent, Leased):
            # Its owner's lease ran out (a worker died): whoever reclaims it posts it.
            if sent.reclaim(_KIND, order.order_id, state):
                return self._post(order, in_doubt=True)
            return order.failed(
                f"the {_KIND} {order.order_id!r} was taken over by another worker; send it again",
                retryable=True,
            )
        # Pending and absent: another worker may be posting it right now, so leave it be.
        return order.failed(
            f"the {_KIND} {order.order_id!r} is marked 'pending' and is not in Sailthru: "
            "another run may be sending it, or a run died before sending it. It is not sent "
            "again: when no other run is sending it, release the key to send it",
            retryable=False,
        )

    # -- reading back ------------------------------------------------------------------------------

    def _present(self, order_id: str) -> bool:
        """Whether Sailthru has the order: absent only when two reads, a pause apart, agree."""
        if self._found(order_id):
            return True
        self._shop.api.wait(self._confirm_after)
        return self._found(order_id)

    def _found(self, order_id: str) -> bool:
        try:
            self._shop.api.get(_KIND, {"purchase_id": order_id, "purchase_key": "extid"})
        except NotFound:
            return False
        return True
