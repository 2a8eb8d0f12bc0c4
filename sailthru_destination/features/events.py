"""Custom events: one record becomes one POST /event, at most once per record id.

The event's properties become flattened vars by the profile vars rules
(:func:`~sailthru_destination.shaping.mapping.flatten_vars`). Sailthru's own event names
(``send``, ``purchase``, ...) and empty names are refused per record before any call.

``schedule_time`` (not documented by Sailthru, so optional): a ``datetime`` or ``date`` is
sent as Unix seconds (a naive one read in the account's time zone, a date meaning its
midnight), an ``int`` as Unix seconds, and a string as it is (e.g. ``"+2 hours"``, which
Sailthru's date parser reads); Unix seconds leave no doubt about the zone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import NotFound, RecordError, SailthruError
from ..once.sentkeys import InMemorySentKeys, SentKeys, send_once
from ..options import MatchKey
from ..results import ExportResult, Status
from ..shaping.mapping import InvalidValue, flatten_vars
from ..transport._concurrency import KeyedLocks, run_in_order
from ..transport._protocol import RESERVED_EVENT_NAMES
from ..transport.api import SailthruApi
from .profiles import valid_key

__all__ = ["Event", "EventSender", "time_value"]

log = logging.getLogger(__name__)

_MAX_EVENT_NAME = 255


@dataclass(frozen=True)
class Event:
    """One thing a user did, sent to Sailthru as a custom event.

    ``key`` identifies the user by ``key_type`` (``email``, ``sid`` or ``extid``). ``name``
    is the event name flows trigger on; ``properties`` become its vars. ``record_id`` is the
    record's unique primary key: a store of sent keys makes a re-run send nothing twice.
    ``schedule_time`` delays the event (see the module docs for the accepted values).
    """

    key: str
    key_type: str
    name: str
    properties: Mapping[str, Any]
    record_id: str
    schedule_time: datetime | date | int | str | None = None


class EventSender:
    """Sends :class:`Event` records through POST /event, each record id at most once.

    ``sent_keys`` is the store of record ids already sent (an in-memory one by default);
    ``timezone`` is the account's time zone for naive dates in vars and schedule times.
    """

    def __init__(
        self,
        api: SailthruApi,
        *,
        sent_keys: SentKeys | None = None,
        timezone: str = "UTC",
    ) -> None:
        self._api = api
        self._sent = sent_keys if sent_keys is not None else InMemorySentKeys()
        self._timezone = timezone
        self._key_locks = KeyedLocks()

    def send(self, event: Event) -> ExportResult:
        """Send one event; never raises for a bad record or a Sailthru refusal."""
        rid = _record_id(event.record_id)
        try:
            payload = self._payload(event)
            return send_once(
                self._sent, self._key_locks, "event", rid, rid, lambda: self._post(rid, payload)
            )
        except InvalidValue as exc:
            return ExportResult.failed(RecordError(rid, exc.reason, field=exc.field))
        except NotFound as exc:
            # The fake (inferred) creates an unknown user, as POST /user does; if Sailthru
            # refuses instead, the event is not lost: it works once the user exists.
            reason = f"{exc} (retry it once the user exists, e.g. after an identify)"
            return ExportResult.failed(RecordError(rid, reason, retryable=True, code=exc.code))
        except SailthruError as exc:
            return ExportResult.failed(RecordError.from_error(rid, exc))

    def iter_send(self, events: Iterable[Event], *, concurrency: int = 8) -> Iterator[ExportResult]:
        """Send events concurrently, yielding each result in input order."""
        return run_in_order(self.send, events, concurrency=concurrency)

    def _payload(self, event: Event) -> dict[str, Any]:
        if not event.record_id or not str(event.record_id).strip():
            raise InvalidValue(
                "record_id", "an event needs a unique record id so a re-run cannot send it twice"
            )
        key_type = _key_type(event.key_type)
        user = valid_key(key_type, event.key)
        name = _event_name(event.name)
        payload: dict[str, Any] = {
            "id": user,
            "key": str(key_type),
            "event": name,
            "vars": flatten_vars(event.properties, timezone=self._timezone),
        }
        if event.schedule_time is not None:
            payload["schedule_time"] = time_value(
                event.schedule_time, "schedule_time", self._timezone
            )
        return payload

    def _post(self, rid: str, payload: dict[str, Any]) -> ExportResult:
        self._api.post("event", payload)
        return ExportResult(Status.SENT, rid, f"event {payload['event']!r} sent")


def _record_id(value: object) -> str:
    return "" if value is None else str(value)


def _key_type(value: object) -> MatchKey:
    try:
        return MatchKey(value)
    except ValueError:
        raise InvalidValue("key_type", "the key type must be 'email', 'sid' or 'extid'") from None


def _event_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("name", "an event needs a name")
    name = value.strip()
    if name.lower() in RESERVED_EVENT_NAMES:
        reserved = ", ".join(sorted(RESERVED_EVENT_NAMES))
        raise InvalidValue("name", f"{name!r} is reserved by Sailthru ({reserved})")
    if len(name) > _MAX_EVENT_NAME or not name.isprintable():
        raise InvalidValue(
            "name", f"an event name is at most {_MAX_EVENT_NAME} printable characters"
        )
    return name


def time_value(value: object, field: str, timezone: str) -> int | str:
    """A point in time for Sailthru: Unix seconds for dates and ints, strings as they are.

    A naive ``datetime`` is read in ``timezone``; a ``date`` means its midnight there.
    Raises :class:`InvalidValue` naming ``field`` for anything else.
    """
    if isinstance(value, (datetime, date)):
        zone = ZoneInfo(timezone)
        if not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day, tzinfo=zone)
        elif value.utcoffset() is None:
            value = value.replace(tzinfo=zone)
        return math.floor(value.timestamp())
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidValue(field, "a Unix time cannot be negative")
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return math.floor(value)
    if isinstance(value, str) and value.strip():
        if not value.isprintable():
            raise InvalidValue(field, "a time string must be printable")
        return value.strip()
    raise InvalidValue(
        field, "expected a datetime, a date, Unix seconds or a date string Sailthru reads"
    )
