"""Each refused event says which field and why, and every result names its record (issue 18)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers import app_for

from sailthru_destination.features.events import Event, EventSender, time_value
from sailthru_destination.results import Status
from sailthru_destination.shaping.mapping import InvalidValue
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi


def event(record_id: Any = "e1", **overrides: Any) -> Event:
    values: dict[str, Any] = {
        "key": "ann@example.com",
        "key_type": "email",
        "name": "Signed Up",
        "properties": {"plan": "pro"},
        "record_id": record_id,
        **overrides,
    }
    return Event(**values)


@pytest.mark.parametrize(
    ("bad", "field", "reason"),
    [
        ({"name": "  "}, "name", "an event needs a name"),
        (
            {"record_id": None},
            "record_id",
            "an event needs a unique record id so a re-run cannot send it twice",
        ),
        ({"schedule_time": -1}, "schedule_time", "a Unix time cannot be negative"),
        ({"schedule_time": "in\x00an hour"}, "schedule_time", "a time string must be printable"),
        (
            {"schedule_time": math.nan},
            "schedule_time",
            "expected a datetime, a date, Unix seconds or a date string Sailthru reads",
        ),
    ],
)
def test_a_refused_event_names_the_field_and_the_reason(
    fake: FakeSailthru, api: SailthruApi, bad: dict[str, Any], field: str, reason: str
) -> None:
    result = EventSender(api).send(event(**bad))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert (result.error.field, result.error.reason) == (field, reason)
    assert fake.events == []


def test_an_event_without_a_record_id_is_named_by_an_empty_id(api: SailthruApi) -> None:
    result = EventSender(api).send(event(record_id=None))
    assert result.record_id == ""


def test_a_repeated_event_is_skipped_under_its_record_id(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = EventSender(api)
    assert sender.send(event("e7")).status is Status.SENT
    again = sender.send(event("e7"))
    assert (again.status, again.record_id) == (Status.SKIPPED, "e7")
    assert len(fake.events) == 1


def test_a_sailthru_refusal_names_the_event_record(fake: FakeSailthru) -> None:
    with SailthruApi(app_for(fake, api_secret="wrong"), sleep=lambda _: None) as refused:
        result = EventSender(refused).send(event("e9"))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert (result.record_id, result.error.record_id) == ("e9", "e9")
    assert fake.events == []


def test_time_value_names_the_field_it_was_given() -> None:
    with pytest.raises(InvalidValue) as info:
        time_value("\x07", "when", "UTC")
    assert (info.value.field, info.value.reason) == ("when", "a time string must be printable")
