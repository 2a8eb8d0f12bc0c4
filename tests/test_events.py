"""Custom events against the fake Sailthru: flattened vars, refused names, once per record id."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import pytest

from sailthru_destination.features.events import Event, EventSender, time_value
from sailthru_destination.once.sentkeys import InMemorySentKeys, KeyState
from sailthru_destination.results import Status
from sailthru_destination.shaping.mapping import InvalidValue
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi


def event(record_id: str = "e1", **overrides: Any) -> Event:
    values: dict[str, Any] = {
        "key": "ann@example.com",
        "key_type": "email",
        "name": "Signed Up",
        "properties": {"plan": "pro", "seats": 3},
        "record_id": record_id,
        **overrides,
    }
    return Event(**values)


def test_an_event_is_posted_with_its_user_name_and_flattened_vars(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = EventSender(api)
    props = {"plan": {"name": "pro", "tags": ["a", "b"]}, "at": datetime(2024, 1, 2)}
    result = sender.send(event(key=" Ann@Example.com ", properties=props))
    assert result.status is Status.SENT
    assert result.record_id == "e1"
    [sent] = fake.events
    assert sent["id"] == "ann@example.com"
    assert sent["key"] == "email"
    assert sent["event"] == "Signed Up"
    assert sent["vars"] == {
        "plan_name": "pro",
        "plan_tags_0": "a",
        "plan_tags_1": "b",
        "at": "2024-01-02T00:00:00+00:00",
    }
    assert sent["schedule_time"] is None


def test_events_can_name_the_user_by_extid_or_sid(fake: FakeSailthru, api: SailthruApi) -> None:
    sender = EventSender(api)
    assert sender.send(event("x", key="cust-7", key_type="extid")).ok
    sid = fake.find_user(extid="cust-7")["keys"]["sid"]  # type: ignore[index]
    assert sender.send(event("s", key=sid, key_type="sid")).ok
    assert [(e["key"], e["id"]) for e in fake.events] == [("extid", "cust-7"), ("sid", sid)]


@pytest.mark.parametrize("name", ["purchase", "Send", " click ", "daily", "open", "cancel"])
def test_reserved_event_names_fail_before_any_call(
    fake: FakeSailthru, api: SailthruApi, name: str
) -> None:
    result = EventSender(api).send(event(name=name))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "name"
    assert "reserved" in result.detail
    assert sum(fake.calls.values()) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
        ({"key": "not-an-email"}, "key"),
        ({"key": None}, "key"),
        ({"key": "abc", "key_type": "sid"}, "key"),
        ({"key_type": "cookie"}, "key_type"),
        ({"record_id": ""}, "record_id"),
        ({"properties": {"bad-name": 1}}, "bad-name"),
        ({"properties": {"n": float("nan")}}, "n"),
        ({"schedule_time": object()}, "schedule_time"),
        ({"schedule_time": -5}, "schedule_time"),
    ],
)
def test_bad_events_fail_per_record_naming_the_field_without_a_call(
    fake: FakeSailthru, api: SailthruApi, overrides: dict[str, Any], field: str
) -> None:
    result = EventSender(api).send(event(**overrides))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == field
    assert sum(fake.calls.values()) == 0


def test_a_schedule_time_is_sent_as_unix_seconds_or_as_given(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = EventSender(api, timezone="Europe/Oslo")
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    sender.send(event("a", schedule_time=moment))
    sender.send(event("b", schedule_time=datetime(2024, 5, 1, 14, 0)))  # naive: Oslo, UTC+2
    sender.send(event("c", schedule_time="+2 hours"))
    sender.send(event("d", schedule_time=1_700_000_000))
    expected = int(moment.timestamp())
    assert [e["schedule_time"] for e in fake.events] == [
        expected,
        expected,
        "+2 hours",
        1_700_000_000,
    ]


def test_a_date_schedule_time_means_midnight_in_the_account_zone() -> None:
    seconds = time_value(date(2024, 1, 1), "date", "America/New_York")
    assert seconds == int(datetime(2024, 1, 1, 5, tzinfo=timezone.utc).timestamp())
    with pytest.raises(InvalidValue):
        time_value("", "date", "UTC")


def test_a_rerun_of_the_same_events_sends_nothing(fake: FakeSailthru, api: SailthruApi) -> None:
    store = InMemorySentKeys()
    batch = [event(str(n), properties={"n": n}) for n in range(5)]
    first = list(EventSender(api, sent_keys=store).iter_send(batch, concurrency=4))
    assert [r.status for r in first] == [Status.SENT] * 5
    calls = sum(fake.calls.values())
    again = list(EventSender(api, sent_keys=store).iter_send(batch, concurrency=4))
    assert [r.status for r in again] == [Status.SKIPPED] * 5
    assert all("already sent" in r.detail for r in again)
    assert sum(fake.calls.values()) == calls
    assert len(fake.events) == 5


def test_the_same_record_twice_in_one_concurrent_batch_is_sent_once(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    results = list(EventSender(api).iter_send([event("same")] * 10, concurrency=10))
    assert sorted(str(r.status) for r in results) == ["sent"] + ["skipped"] * 9
    assert len(fake.events) == 1


def test_a_refused_event_is_not_marked_sent_and_can_be_sent_again(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    sender = EventSender(api, sent_keys=store)
    # A sid unknown to Sailthru: the fake answers "User not found".
    result = sender.send(event("r", key="0" * 24, key_type="sid"))
    assert result.status is Status.FAILED
    assert store.state("event", "r") is None
    assert sender.send(event("r")).status is Status.SENT


def test_results_keep_input_order_in_a_batch(fake: FakeSailthru, api: SailthruApi) -> None:
    batch = [event(str(n)) if n % 3 else event(str(n), name="open") for n in range(12)]
    results = list(EventSender(api).iter_send(batch, concurrency=4))
    assert [r.record_id for r in results] == [str(n) for n in range(12)]
    assert [r.ok for r in results] == [n % 3 != 0 for n in range(12)]
    assert len(fake.events) == 8


@pytest.mark.parametrize(
    "faults",
    [Faults(error_after_apply_rate=1.0), Faults(server_error_rate=1.0)],
    ids=["applied then 504", "500 error 9"],
)
def test_an_event_answered_with_a_5xx_is_posted_at_most_once_and_reported_unknown(
    fake: FakeSailthru, api: SailthruApi, faults: Faults
) -> None:
    # A 5xx proves the request reached Sailthru: it may have been applied, so it is
    # never re-sent blind (issue 12, defect 2).
    fake.faults = faults
    store = InMemorySentKeys()
    sender = EventSender(api, sent_keys=store)
    result = sender.send(event("e-504"))
    assert result.status is Status.FAILED
    assert "may or may not have been applied" in result.detail
    assert store.state("event", "e-504") is KeyState.UNKNOWN
    assert fake.calls[("POST", "event")] == 1
    assert len(fake.events) <= 1
    fake.faults = Faults()
    assert sender.send(event("e-504")).status is Status.FAILED  # a re-run does not resend
    assert fake.calls[("POST", "event")] == 1
