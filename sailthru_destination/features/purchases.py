"""Completed purchases, each in Sailthru exactly once: posted, and read back when in doubt.

A purchase is one POST /purchase with ``incomplete: 0`` and the order id as its external
key (``purchase_keys: {"extid": order_id}``). Sailthru cannot edit or undo a purchase, so
the order id is claimed in the sent-keys store (:mod:`.sentkeys`) before it is posted.

When a post's outcome is unknown (a 5xx or error 9 reply, a read timeout, a connection
dropped after sending: :class:`~.errors.OutcomeUnknown`), the order is read back once
(GET /purchase by ``extid``): found, it is sent. Not found proves nothing (reads lag
writes, with no bound), so the order is **in doubt** (:mod:`.doubt`): marked ``unknown``,
remembered with the time, and reported by order id as in doubt, never as sent. A later
run or task reads it back again, and posts it again only under :func:`~.doubt.may_post_again`:
reads that missed it spread over ``doubt_age`` seconds. So is an order left ``pending`` by
a run that died, and one of a ``purchase_import`` job whose outcome was unclear, which is
not read back while GET /job says that job still runs. Orders are late, never doubled.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import NotFound, OutcomeUnknown, RecordError, SailthruError
from ..once.doubt import (
    DEFAULT_DOUBT_AGE,
    UNKNOWN_JOB,
    Doubt,
    DoubtLog,
    InMemoryDoubtLog,
    may_post_again,
)
from ..once.sentkeys import KeyState, Leased, SentKeys
from ..results import ExportResult, Status
from ..shaping.mapping import InvalidValue
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
from .events import time_value

__all__ = ["PurchaseSender"]

log = logging.getLogger(__name__)

_KIND = "purchase"
_RUNNING = ("pending", "running", "queued")
# Doubts of stores that keep none themselves, for as long as the store lives.
_MEMORY: weakref.WeakKeyDictionary[SentKeys, InMemoryDoubtLog] = weakref.WeakKeyDictionary()


def doubt_log_of(sent: SentKeys) -> DoubtLog:
    """The doubt log of a sent-keys store: the store itself when it keeps one (the sync
    state), the one it gives (Redis), else one in memory shared by every sender of that
    store."""
    if isinstance(sent, DoubtLog):
        return sent
    shared = getattr(sent, "doubt_log", None)  # a store shared by hosts keeps its own
    if callable(shared):
        log_: DoubtLog = shared()
        return log_
    try:
        return _MEMORY.setdefault(sent, InMemoryDoubtLog())
    except TypeError:  # a store that cannot be weakly referenced: this sender's own
        return InMemoryDoubtLog()


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

    def __init__(
        self,
        shop: Shop,
        *,
        doubt_age: float = DEFAULT_DOUBT_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not doubt_age >= 0:
            raise ValueError(f"doubt_age must be >= 0 seconds, got {doubt_age!r}")
        self._shop = shop
        self._age = doubt_age
        self._clock = clock
        self._doubts = doubt_log_of(shop.sent)
        # This sender never posts again an order it put in doubt: only a later run may.
        self.session = uuid.uuid4().hex

    def send(self, purchase: Purchase) -> ExportResult:
        """Post one completed order; never raises for a bad record or a Sailthru refusal."""
        return guard(text(purchase.order_id), lambda: self._send(self._order(purchase)))

    def import_payload(self, purchase: Purchase) -> tuple[str, dict[str, Any]]:
        """The order id and the complete POST /purchase payload of ``purchase``, as a line of
        a ``purchase_import`` job holds it (the buyer's email looked up when only an extid is
        given). Claims nothing; raises :class:`~.mapping.InvalidValue` for a bad field and
        :class:`~.errors.SailthruError` when the lookup fails."""
        order = self._order(purchase)
        order.payload["email"] = order.email or email_for_extid(self._shop.api, order.extid)
        return order.order_id, order.payload

    def _order(self, purchase: Purchase) -> _Order:
        rid = text(purchase.order_id)
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
        """Post once; settle the claim: sent, in doubt, or released when refused for certain.

        ``in_doubt``: an earlier send may have landed (the claim was reclaimed), so the
        claim is never simply released.
        """
        try:
            order.payload["email"] = order.email or email_for_extid(self._shop.api, order.extid)
            try:
                self._shop.api.post(_KIND, order.payload)
            except OutcomeUnknown as unknown:
                return self._unclear(order, unknown)
        except (SailthruError, InvalidValue):
            # Refused for certain (or the buyer is unknown): released when nothing sent for
            # this order may have landed, else kept 'unknown' to be read back first.
            if not in_doubt:
                self._shop.sent.release(_KIND, order.order_id)
            else:
                self._settle(order, KeyState.UNKNOWN)
            raise
        self._settle(order, KeyState.SENT)
        return order.sent("")

    def _unclear(self, order: _Order, unknown: OutcomeUnknown) -> ExportResult:
        """A post without a clear answer: sent if one read finds it, else in doubt."""
        self._settle(order, KeyState.UNKNOWN)
        doubt = Doubt(self._clock(), owner=self.session)
        self._doubts.note_doubt(_KIND, order.order_id, doubt)
        try:
            present = self._found(order.order_id)
        except SailthruError as exc:
            return self._in_doubt(order, f"{unknown} It could not be read back ({exc})",
                                  unknown.code)
        if present:
            self._settle(order, KeyState.SENT)
            return order.sent(" (read back after a post without a clear answer)")
        self._doubts.note_doubt(_KIND, order.order_id, doubt.missed())
        log.warning("purchase %r: not found right after a post without a clear answer: in "
                    "doubt", order.order_id)
        return self._in_doubt(order, f"{unknown} A read did not find it yet", unknown.code)

    def _in_doubt(self, order: _Order, why: str, code: int | None = None) -> ExportResult:
        return order.failed(
            f"in doubt: order {order.order_id!r} may or may not be in Sailthru. {why}; it is "
            f"read back on a later run and posted again only when reads over "
            f"{self._age:g} s find it absent",
            retryable=True,
            code=code,
        )

    def _settle(self, order: _Order, state: KeyState) -> None:
        self._shop.sent.settle(_KIND, order.order_id, state)
        if state is KeyState.SENT:
            self._doubts.clear_doubt(_KIND, order.order_id)

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
        # Pending (its run died) or unknown: in doubt, read back under the doubt rule.
        now = self._clock()
        doubt = self._doubts.doubt(_KIND, order.order_id) or Doubt(now, owner=self.session)
        if doubt.job not in (None, UNKNOWN_JOB):
            running = self._job_running(doubt.job)
            if running is not None:
                # Reads count from the job's end: start again from now.
                self._doubts.note_doubt(_KIND, order.order_id, replace(doubt, since=now, misses=0))
                return self._in_doubt(order, running)
            # The job is over: its purchases may still be on their way to the reads.
            doubt = replace(doubt, since=now, misses=0, job=None)
        try:
            present = self._found(order.order_id)
        except SailthruError as exc:
            self._doubts.note_doubt(_KIND, order.order_id, doubt)
            return self._in_doubt(
                order, f"It is marked {state.value!r} (an earlier send may have reached "
                f"Sailthru) and could not be read back ({exc})")
        if present:
            self._settle(order, KeyState.SENT)
            return order.sent(f" (found in Sailthru: an earlier send was marked {state.value!r})")
        doubt = doubt.missed()
        self._doubts.note_doubt(_KIND, order.order_id, doubt)
        if may_post_again(doubt, now, self._age, self.session):
            if self._shop.sent.reclaim(_KIND, order.order_id, state):
                return self._post(order, in_doubt=True)
            return order.failed(
                f"the {_KIND} {order.order_id!r} was taken over by another worker; send it again",
                retryable=True,
            )
        return self._in_doubt(
            order, f"It is marked {state.value!r} and {doubt.misses} read(s) did not find it "
            f"since {_when(doubt.since)}")

    def _job_running(self, job_id: str) -> str | None:
        """Why the order waits for its ``purchase_import`` job, or None when it is over."""
        try:
            status = self._shop.api.get("job", {"job_id": job_id})
        except SailthruError as exc:
            return f"Its purchase_import job {job_id} could not be looked up ({exc})"
        state = str(status.get("status", "")).lower()
        if state in _RUNNING:
            return f"Its purchase_import job {job_id} is still {state!r}"
        return None

    # -- reading back ------------------------------------------------------------------------------

    def _found(self, order_id: str) -> bool:
        try:
            self._shop.api.get(_KIND, {"purchase_id": order_id, "purchase_key": "extid"})
        except NotFound:
            return False
        return True


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
