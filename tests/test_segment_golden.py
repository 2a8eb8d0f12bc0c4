"""Golden test: a realistic Segment stream replayed into the fake, final state checked by field.

The stream (tests/data/segment_stream.jsonl) is one shopper's week: a profile from an old
system, an anonymous search, sign-in (identify with both ids), three products added, one
removed, the order, a refund, a page view, the alias of the old id, and a group call the
destination does not take. It runs as one concurrent batch: the adapter must keep the
shopper's messages in order on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, make_fake, posted_payloads

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.results import BatchResult
from sailthru_destination.segment import SegmentAdapter
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

STREAM = Path(__file__).parent / "data" / "segment_stream.jsonl"
SETTINGS = {
    "default_list_name": "Newsletter",
    "optout_value": "basic",
    "default_reminder_template": "Abandoned Cart",
    "default_reminder_time": "1 hour",
    "customer_id": "cust-123",
}
SHOE_URL = "https://shop.example.com/running/trail-runner"


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeSailthru, Any]]:
    messages = [json.loads(line) for line in STREAM.read_text().splitlines() if line.strip()]
    with make_fake(seed=11, rate_limits={"default": 100_000}, latency=0.001) as fake:
        app = AppOptions(KEY, SECRET, fake.url, read_timeout=5.0, tracking_url=fake.url)
        opts = DestinationOptions(lock_dir=str(tmp_path_factory.mktemp("locks")), concurrency=8)
        api = SailthruApi(app, sleep=lambda _: None, concurrency=opts.concurrency)
        with (
            SailthruDestination(app, opts, api=api) as dest,
            SegmentAdapter(dest, SETTINGS) as adapter,
        ):
            batch = adapter.process_batch(messages)
            yield fake, (batch, posted_payloads(dest, "purchase"))


def batch_of(replay: tuple[FakeSailthru, Any]) -> BatchResult:
    batch: BatchResult = replay[1][0]
    return batch


def test_every_message_has_its_outcome_named_by_its_message_id(
    replay: tuple[FakeSailthru, Any],
) -> None:
    outcomes = {r.record_id: (str(r.status), r.detail) for r in batch_of(replay).results}
    assert list(outcomes) == [f"msg-{n:02d}" for n in range(1, 13)]
    assert {k: v[0] for k, v in outcomes.items()} == {
        **{f"msg-{n:02d}": "sent" for n in range(1, 12)},
        "msg-12": "skipped",
    }
    assert "anonymous profile 'anon-7f3c' merged in" in outcomes["msg-03"][1]
    assert "'group'" in outcomes["msg-12"][1]


def test_one_profile_is_left_holding_both_ids_history(replay: tuple[FakeSailthru, Any]) -> None:
    fake = replay[0]
    assert len(fake.users) == 1
    assert fake.find_user(extid="anon-7f3c") is None
    assert fake.find_user(extid="legacy-42") is None
    user = fake.find_user(extid="u-1001")
    assert user is not None
    assert user == fake.find_user(email="jane.doe@example.com")
    assert user["keys"]["email"] == "jane.doe@example.com"
    assert user["keys"]["extid"] == "u-1001"
    assert user["vars"] == {
        "loyalty_tier": "gold",
        "legacy_points": 1200,
        "firstName": "Jane",
        "lastName": "Doe",
        "plan": "premium",
        "address_city": "Oslo",
        "address_country": "NO",
        "createdAt": "2024-04-30T08:00:00Z",
    }
    assert set(user["lists"]) == {"Newsletter"}
    assert user["optout_email"] == "basic"
    assert user["purchase_incomplete"] is None  # the order emptied the cart


def test_the_default_list_exists_once(replay: tuple[FakeSailthru, Any]) -> None:
    assert [entry["name"] for entry in replay[0].lists] == ["Newsletter"]


def test_the_anonymous_search_is_one_event_without_personal_data(
    replay: tuple[FakeSailthru, Any],
) -> None:
    [event] = replay[0].events
    assert (event["event"], event["key"], event["id"]) == (
        "Products Searched",
        "extid",
        "anon-7f3c",
    )
    assert event["vars"] == {"query": "trail shoes"}


def test_the_cart_followed_every_add_and_remove_with_its_reminder(
    replay: tuple[FakeSailthru, Any],
) -> None:
    posted: list[dict[str, Any]] = replay[1][1]
    carts = [p for p in posted if p["incomplete"] == 1]
    assert [{i["id"]: i["qty"] for i in c["items"]} for c in carts] == [
        {"sku-trail": 1},
        {"sku-trail": 1, "sku-socks": 2},
        {"sku-trail": 2, "sku-socks": 2},
        {"sku-trail": 2, "sku-socks": 1},
    ]
    assert {(c["email"], c["reminder_template"], c["reminder_time"]) for c in carts} == {
        ("jane.doe@example.com", "Abandoned Cart", "+1 hour")
    }
    socks = carts[1]["items"][1]
    assert (socks["price"], socks["url"]) == (550, SHOE_URL)  # the page url stood in


def test_the_order_is_one_purchase_in_exact_cents(replay: tuple[FakeSailthru, Any]) -> None:
    [purchase] = replay[0].purchases
    assert purchase["email"] == "jane.doe@example.com"
    assert purchase["purchase_keys"] == {"extid": "ord-5001"}
    assert purchase["date"] == 1714565400
    assert purchase["items"] == [
        {
            "id": "sku-trail",
            "title": "Trail Runner",
            "qty": 2,
            "price": 8999,
            "url": SHOE_URL,
            "tags": ["running", "shoes"],
            "images": {"full": {"url": "https://img.example.com/trail.png"}},
        },
        {"id": "sku-socks", "title": "Running Socks", "qty": 1, "price": 550, "url": SHOE_URL},
    ]
    assert purchase["adjustments"] == [
        {"title": "tax", "price": 1440},
        {"title": "shipping", "price": 499},
        {"title": "discount", "price": -930},
    ]
    assert purchase["total"] == 2 * 8999 + 550 + 1440 + 499 - 930


def test_the_refund_is_one_return_under_the_email_sailthru_holds(
    replay: tuple[FakeSailthru, Any],
) -> None:
    [returned] = replay[0].returns
    assert returned["email"] == "jane.doe@example.com"
    assert returned["order_id"] == "ord-5001"
    assert returned["items"] == [
        {
            "id": "sku-socks",
            "qty": 1,
            "price": 550,
            "url": "https://shop.example.com/running/socks",
        }
    ]


def test_the_page_view_reached_the_tracking_service(replay: tuple[FakeSailthru, Any]) -> None:
    [view] = replay[0].pageviews
    assert view["customer_id"] == "cust-123"
    assert (view["userIdKey"], view["userIdValue"]) == ("extid", "u-1001")
    assert view["url"] == SHOE_URL
    assert view["tags"] == ["running", "trail"]


def test_the_replay_made_exactly_the_calls_it_needed(replay: tuple[FakeSailthru, Any]) -> None:
    calls = replay[0].calls
    assert calls[("POST", "user")] == 3  # two identifies, one alias merge
    assert calls[("POST", "purchase")] == 5  # four cart updates, one order
    assert calls[("POST", "return")] == 1
    assert calls[("POST", "event")] == 1
    assert calls[("POST", "list")] == 1
