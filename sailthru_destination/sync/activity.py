"""Events, purchases and returns from a model: each row sent at most once, per state file.

Unlike users, these rows are facts, not a desired state: there is no diff and nothing to
delete. Each row's key (the primary key for an event or a return, the order id for a
purchase: an order can have several partial returns, but is bought once) is
claimed in the state's sent-keys store before the call and settled after it, so a re-run,
or a run after a crash, never posts one twice (see :mod:`sailthru_destination.once.sentkeys`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..destination import SailthruDestination
from ..features.commerce import Purchase, PurchaseItem, Return
from ..features.events import Event
from ..results import ExportResult, Status
from ..shaping._json import loads_bounded
from .config import SyncConfig
from .model import RowProblem, row_key, storable
from .runner import RecordFailure, RunSummary
from .warehouse.sources import Row

__all__ = ["Sender", "send_activity"]

_CHUNK = 200
_ITEM_FIELDS = ("id", "title", "qty", "price", "url", "tags", "image_url", "image_url_thumb",
                "vars")


def _event(row: Row, config: SyncConfig, pk: str) -> Event:
    data = row.data
    name = data.get(config.event_column)
    if not name:
        raise RowProblem(config.event_column, "the event name is missing")
    key = data.get(config.match_column)
    skip = {config.primary_key, config.match_column, config.event_column,
            config.schedule_time_column, *config.ignore}
    properties = {k: v for k, v in data.items() if k not in skip and v not in (None, "")}
    schedule = data.get(config.schedule_time_column) if config.schedule_time_column else None
    return Event(key="" if key is None else str(key), key_type=config.match_key, name=str(name),
                 properties=properties, record_id=pk, schedule_time=schedule or None)


def _items(value: Any, column: str) -> list[PurchaseItem]:
    if isinstance(value, str):
        try:
            value = loads_bounded(value)
        except json.JSONDecodeError as exc:
            raise RowProblem(column, f"items must be a JSON array: {exc.msg}") from None
    if not isinstance(value, list) or not value:
        raise RowProblem(column, "items must be a non-empty JSON array of objects")
    items = []
    for item in value:
        if not isinstance(item, dict):
            raise RowProblem(column, "each item must be an object with id, title, qty, price")
        unknown = set(item) - set(_ITEM_FIELDS)
        if unknown:
            raise RowProblem(column, f"unknown item field(s): {', '.join(sorted(unknown))}")
        try:
            items.append(PurchaseItem(**item))
        except TypeError as exc:
            raise RowProblem(column, f"an item lacks a field: {exc}") from None
    return items


def _purchase(row: Row, config: SyncConfig, pk: str) -> Purchase:
    data = row.data
    order = data.get(config.order_column) or pk
    email = data.get(config.match_column) if config.match_key == "email" else data.get("email")
    extid = data.get(config.match_column) if config.match_key == "extid" else None
    date = data.get(config.date_column) if config.date_column else None
    return Purchase(order_id=str(order), email=email or None, extid=extid or None,
                    items=_items(data.get(config.items_column), config.items_column),
                    date=date or None, currency_unit=config.price_unit)  # type: ignore[arg-type]


def _return(row: Row, config: SyncConfig, pk: str) -> Return:
    data = row.data
    order = data.get(config.order_column)
    if not order:
        raise RowProblem(config.order_column, "a return needs the order id it returns from")
    email = data.get(config.match_column) if config.match_key == "email" else data.get("email")
    extid = data.get(config.match_column) if config.match_key == "extid" else None
    date = data.get(config.date_column) if config.date_column else None
    return Return(order_id=str(order), email=email or None, extid=extid or None,
                  items=_items(data.get(config.items_column), config.items_column),
                  date=date or None, currency_unit=config.price_unit,  # type: ignore[arg-type]
                  record_id=pk)


_KINDS: dict[str, tuple[Callable[[Row, SyncConfig, str], Any], str]] = {
    "events": (_event, "send_events"),
    "purchases": (_purchase, "send_purchases"),
    "returns": (_return, "send_returns"),
}


Sender = Callable[[list[Any], Callable[[Any, ExportResult], object]], object]
"""Sends a chunk of records, telling ``on_result(record, result)`` each result as it lands."""


def send_activity(
    destination: SailthruDestination,
    config: SyncConfig,
    rows: Iterable[Row],
    summary: RunSummary,
    fail: Callable[[RecordFailure], None],
    *,
    bulk: tuple[Sender, int] | None = None,
) -> None:
    """Send every row of an ``events``, ``purchases`` or ``returns`` model, each at most once.

    Each result is counted as it lands, so a run that is interrupted or stops itself
    (``max_errors``) still counts every send Sailthru confirmed. ``bulk`` is ``(send,
    chunk)``: another way to send chunks of that many records (the purchase_import job path
    of :mod:`.purchase_import`)."""
    build, method = _KINDS[config.object]
    per_record: Callable[..., Any] = getattr(destination, method)

    def per_record_send(records: list[Any],
                        on_result: Callable[[Any, ExportResult], object]) -> None:
        per_record(records, on_result=on_result)

    send: Sender = per_record_send
    chunk = _CHUNK
    if bulk is not None:
        send, chunk = bulk
    batch: list[tuple[str, str, Any]] = []
    for row in rows:
        summary.rows += 1
        pk = None
        try:
            pk = storable(row_key(row, config), config.primary_key)
            problem = row.data.get("__problem__")
            if problem:  # a row the source could not read whole is not sent half-read
                raise RowProblem("row", str(problem))
            batch.append((pk, row.where, build(row, config, pk)))
        except RowProblem as exc:
            # Named by its primary key when it has one; where it was is kept beside.
            fail(RecordFailure(pk or row.where, exc.reason, exc.field, row.where))
            continue
        if len(batch) >= chunk:
            _settle(batch, send, summary, fail)
            batch = []
    if batch:
        _settle(batch, send, summary, fail)


def _settle(
    batch: list[tuple[str, str, Any]],
    send: Sender,
    summary: RunSummary,
    fail: Callable[[RecordFailure], None],
) -> None:
    """Send ``batch``, counting each result in the thread that got it (under a lock: several
    land at once)."""
    rows = {id(record): (pk, where) for pk, where, record in batch}
    lock = threading.Lock()

    def record(sent: Any, result: ExportResult) -> None:
        pk, where = rows[id(sent)]
        with lock:
            if result.status is Status.FAILED:
                error = result.error
                fail(RecordFailure(pk, result.detail, error.field if error else None, where,
                                   error.retryable if error else False))
            elif result.status is Status.SKIPPED and result.detail.startswith("already sent"):
                summary.counts["unchanged"] += 1
            else:
                summary.counts[str(result.status)] += 1

    send([item for _, _, item in batch], record)
