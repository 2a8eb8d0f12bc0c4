"""The Segment adapter against the fake Sailthru: every routing rule, one message at a time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, make_fake, posted_payloads

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.results import ExportResult, Status
from sailthru_destination.segment import PRESETS, SegmentAdapter, SegmentSettings
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

PAGE = "https://shop.example.com/p/sneaker"
SETTINGS: dict[str, Any] = {
    "default_list_name": "Newsletter",
    "optout_value": "basic",
    "default_reminder_template": "Abandoned Cart",
    "default_reminder_time": "20 minutes",
    "customer_id": "cust-123",
}


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with make_fake(seed=5, rate_limits={"default": 100_000}) as server:
        yield server


def build(
    fake: FakeSailthru,
    tmp_path: Path,
    settings: dict[str, Any] | None = None,
    *,
    tracking_url: str | None = None,
    **options: Any,
) -> tuple[SailthruDestination, SegmentAdapter]:
    app = AppOptions(KEY, SECRET, fake.url, read_timeout=5.0, tracking_url=tracking_url or fake.url)
    opts = DestinationOptions(lock_dir=str(tmp_path), **options)
    api = SailthruApi(app, sleep=lambda _: None, concurrency=opts.concurrency)
    dest = SailthruDestination(app, opts, api=api)
    return dest, SegmentAdapter(dest, SETTINGS if settings is None else settings)


@pytest.fixture
def adapter(fake: FakeSailthru, tmp_path: Path) -> Iterator[SegmentAdapter]:
    dest, segment = build(fake, tmp_path)
    with dest, segment:
        yield segment


_counter = iter(range(1, 1_000_000))


def message(kind: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": kind,
        "messageId": f"m-{next(_counter)}",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "context": {"page": {"url": PAGE}},
    }
    return {**base, **fields}


def identify(user_id: str | None = "u-1", **fields: Any) -> dict[str, Any]:
    traits = fields.pop("traits", {"email": "Ann@Example.com", "first_name": "Ann"})
    return message("identify", userId=user_id, traits=traits, **fields)


def track(event: str, properties: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    fields.setdefault("userId", "u-1")
    return message("track", event=event, properties=properties or {}, **fields)


def product(pid: str = "sku-1", qty: int = 1, price: Any = 19.99, **extra: Any) -> dict[str, Any]:
    return {"product_id": pid, "name": f"Product {pid}", "quantity": qty, "price": price, **extra}


def cart(fake: FakeSailthru, extid: str = "u-1") -> dict[str, int]:
    user = fake.find_user(extid=extid)
    assert user is not None
    incomplete = user["purchase_incomplete"]
    return {i["id"]: i["qty"] for i in incomplete["items"]} if incomplete else {}


def sent(result: ExportResult) -> ExportResult:
    assert result.status is Status.SENT, result.detail
    return result


# -- routing ------------------------------------------------------------------------------------


def test_the_routing_table_reads_like_segment_presets() -> None:
    assert set(PRESETS) == {
        ("identify", None),
        ("track", "Order Completed"),
        ("track", "Product Added"),
        ("track", "Product Removed"),
        ("track", "Order Refunded"),
        ("track", "Subscribed"),
        ("track", None),
        ("page", None),
        ("alias", None),
    }


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        ({"type": "group", "messageId": "g-1", "groupId": "acme"}, Status.SKIPPED, "'group'"),
        ({"type": "screen", "messageId": "s-1", "name": "Home"}, Status.SKIPPED, "'screen'"),
        (
            {
                "type": "track",
                "messageId": "t-1",
                "event": "X",
                "integrations": {"Sailthru": False},
            },
            Status.SKIPPED,
            "turn Sailthru off",
        ),
        (
            {"type": "track", "messageId": "t-2", "event": "X", "integrations": {"All": False}},
            Status.SKIPPED,
            "turn Sailthru off",
        ),
        ({"messageId": "n-1"}, Status.FAILED, "no type"),
        ({"type": "track", "messageId": "n-2", "userId": "u-1"}, Status.FAILED, "event name"),
        ({"type": "track", "messageId": "n-3", "event": "purchase"}, Status.SKIPPED, "reserves"),
    ],
)
def test_unknown_types_and_unsupported_events_get_a_reason_and_no_call(
    adapter: SegmentAdapter, fake: FakeSailthru, raw: dict[str, Any], status: Status, reason: str
) -> None:
    result = adapter.process(raw)
    assert result.status is status
    assert result.record_id == raw["messageId"]
    assert reason in result.detail
    assert raw["messageId"] in result.detail
    assert sum(fake.calls.values()) == 0


def test_a_message_that_is_not_an_object_fails_instead_of_raising(adapter: SegmentAdapter) -> None:
    result = adapter.process(["not", "a", "message"])  # type: ignore[arg-type]
    assert result.status is Status.FAILED
    assert "object" in result.detail


# -- identify and alias -------------------------------------------------------------------------


def test_identify_posts_the_extid_profile_with_email_vars_default_list_and_optout(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    traits = {"email": "Ann@Example.com", "first_name": "Ann", "address": {"city": "Oslo"}}
    result = sent(adapter.process(identify(traits=traits)))
    assert "'u-1'" in result.detail
    user = fake.find_user(extid="u-1")
    assert user is not None
    assert user["keys"]["email"] == "ann@example.com"
    assert user["vars"] == {"first_name": "Ann", "address_city": "Oslo"}
    assert set(user["lists"]) == {"Newsletter"}
    assert user["optout_email"] == "basic"


def test_identify_without_user_id_uses_the_anonymous_id(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify(None, anonymousId="anon-1", traits={"plan": "free"})))
    user = fake.find_user(extid="anon-1")
    assert user is not None
    assert user["vars"] == {"plan": "free"}


def test_identify_merges_the_anonymous_profile_into_the_user_id_profile(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(track("Products Searched", {"query": "shoes"}, userId="anon-1")))
    sent(adapter.process(identify("u-1", traits={"plan": "pro"})))
    result = sent(adapter.process(identify("u-1", anonymousId="anon-1")))
    assert "merged" in result.detail
    assert fake.find_user(extid="anon-1") is None
    user = fake.find_user(extid="u-1")
    assert user is not None
    assert user["vars"] == {"plan": "pro", "first_name": "Ann"}
    assert user["keys"]["email"] == "ann@example.com"
    assert len(fake.users) == 1
    merge = posted_payloads(adapter.destination)[-1]
    assert merge["keysconflict"] == "merge"
    assert (merge["id"], merge["keys"]["extid"]) == ("anon-1", "u-1")


def test_identify_with_both_ids_and_no_anonymous_profile_keeps_the_user_profile(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify("u-1")))
    before = fake.find_user(extid="u-1")
    assert before is not None
    result = sent(adapter.process(identify("u-1", anonymousId="anon-new")))
    assert "merged" not in result.detail
    after = fake.find_user(extid="u-1")
    assert after is not None
    assert after["keys"]["sid"] == before["keys"]["sid"]
    assert posted_payloads(adapter.destination)[-1]["id"] == "u-1"


def test_per_message_options_override_the_list_and_optout(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    options = {"Sailthru": {"defaultListName": "VIP", "optoutValue": "all"}}
    sent(adapter.process(identify(integrations=options)))
    user = fake.find_user(extid="u-1")
    assert user is not None
    assert set(user["lists"]) == {"VIP"}
    assert user["optout_email"] == "all"


def test_audience_traits_join_and_leave_the_audience_list_when_enabled(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    personas = {"personas": {"computation_key": "high_ltv", "computation_class": "audience"}}
    dest, adapter = build(fake, tmp_path, {**SETTINGS, "audiences_to_lists": True})
    with dest, adapter:
        sent(adapter.process(identify(traits={"high_ltv": True}, context=personas)))
        user = fake.find_user(extid="u-1")
        assert user is not None
        assert set(user["lists"]) == {"Newsletter", "high_ltv"}
        sent(adapter.process(identify(traits={"high_ltv": False}, context=personas)))
        user = fake.find_user(extid="u-1")
        assert user is not None
        assert set(user["lists"]) == {"Newsletter"}
        bad = adapter.process(identify(traits={"high_ltv": "yes"}, context=personas))
        assert bad.status is Status.FAILED
        assert "true or false" in bad.detail


def test_audience_traits_are_only_vars_when_audiences_to_lists_is_off(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    personas = {"personas": {"computation_key": "high_ltv", "computation_class": "audience"}}
    sent(adapter.process(identify(traits={"high_ltv": True}, context=personas)))
    user = fake.find_user(extid="u-1")
    assert user is not None
    assert set(user["lists"]) == {"Newsletter"}
    assert user["vars"] == {"high_ltv": True}


def test_default_list_is_created_once_under_concurrent_first_use(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    dest, adapter = build(fake, tmp_path, concurrency=20)
    with dest, adapter:
        batch = adapter.process_batch(
            identify(f"u-{n}", traits={"email": f"user{n}@example.com"}) for n in range(20)
        )
    assert batch.ok
    assert [entry["name"] for entry in fake.lists] == ["Newsletter"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (identify(None, traits={"email": "a@example.com"}), "userId"),
        (identify(traits={"email": "not-an-email"}), "traits.email"),
        (identify(integrations={"Sailthru": {"optoutValue": "sometimes"}}), None),
    ],
)
def test_bad_identifies_fail_naming_the_field_without_a_user_post(
    adapter: SegmentAdapter, fake: FakeSailthru, raw: dict[str, Any], field: str | None
) -> None:
    result = adapter.process(raw)
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.record_id == raw["messageId"]
    if field is not None:
        assert result.error.field == field
    assert fake.calls[("POST", "user")] == 0


def test_a_sailthru_refusal_fails_the_message_with_sailthrus_reason(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify("u-1")))
    # Subscribed sets the email key without asking for a merge: Sailthru refuses the conflict.
    result = adapter.process(
        track("Subscribed", {"list": "News", "email": "ann@example.com"}, userId="u-2")
    )
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.code == 2
    assert "Key conflict" in result.detail
    assert result.record_id in result.detail


def test_alias_merges_the_previous_id_into_the_user_id(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify("legacy-9", traits={"tier": "gold"})))
    sent(adapter.process(identify("u-1", traits={"email": "new@example.com", "plan": "pro"})))
    result = sent(adapter.process(message("alias", previousId="legacy-9", userId="u-1")))
    assert "merged" in result.detail
    assert fake.find_user(extid="legacy-9") is None
    user = fake.find_user(extid="u-1")
    assert user is not None
    assert user["vars"] == {"tier": "gold", "plan": "pro"}
    assert user["keys"]["email"] == "new@example.com"
    assert len(fake.users) == 1


def test_alias_of_an_unknown_previous_id_is_skipped_without_a_post(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    result = adapter.process(message("alias", previousId="ghost", userId="u-1"))
    assert result.status is Status.SKIPPED
    assert "nothing to merge" in result.detail
    assert fake.calls[("POST", "user")] == 0
    failed = adapter.process(message("alias", userId="u-1"))
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.field == "previousId"


# -- track: custom events -----------------------------------------------------------------------


def test_a_custom_event_carries_flattened_properties_without_personal_fields(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    props = {
        "plan": {"name": "pro", "seats": 3},
        "email": "ann@example.com",
        "phone": "+4712345678",
        "first_name": "Ann",
        "coupon": "SPRING",
    }
    msg = track("Plan Upgraded", props)
    result = sent(adapter.process(msg))
    assert result.record_id == msg["messageId"]
    [event] = fake.events
    assert (event["event"], event["key"], event["id"]) == ("Plan Upgraded", "extid", "u-1")
    assert event["vars"] == {"plan_name": "pro", "plan_seats": 3, "coupon": "SPRING"}


def test_a_replayed_event_message_is_sent_once(adapter: SegmentAdapter, fake: FakeSailthru) -> None:
    msg = track("Video Played", {"title": "Intro"})
    sent(adapter.process(msg))
    again = adapter.process(msg)
    assert again.status is Status.SKIPPED
    assert "already sent" in again.detail
    assert len(fake.events) == 1


def test_a_message_without_any_user_fails(adapter: SegmentAdapter) -> None:
    result = adapter.process(track("Video Played", userId=None))
    assert result.status is Status.FAILED
    assert "names no user" in result.detail


# -- track: orders, refunds, carts ---------------------------------------------------------------


def order(**props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": "ord-1",
        "products": [
            product("sku-1", 2, 19.99, url="https://shop.example.com/p/1", tags=["shoes"]),
            product("sku-2", 1, "5.50", image_url="https://img.example.com/2.png"),
        ],
    }
    return {**base, **props}


def test_order_completed_becomes_a_purchase_with_items_and_signed_adjustments(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify()))
    props = order(tax=3.6, shipping="4.99", discount=5, adjustments=[{"title": "fee", "price": 1}])
    sent(adapter.process(track("Order Completed", props)))
    [purchase] = fake.purchases
    assert purchase["email"] == "ann@example.com"
    assert purchase["purchase_keys"] == {"extid": "ord-1"}
    first, second = purchase["items"]
    assert first == {
        "id": "sku-1",
        "title": "Product sku-1",
        "qty": 2,
        "price": 1999,
        "url": "https://shop.example.com/p/1",
        "tags": ["shoes"],
    }
    assert (second["price"], second["url"]) == (550, PAGE)  # url from context.page.url
    assert second["images"] == {"full": {"url": "https://img.example.com/2.png"}}
    assert purchase["adjustments"] == [
        {"title": "fee", "price": 100},
        {"title": "tax", "price": 360},
        {"title": "shipping", "price": 499},
        {"title": "discount", "price": -500},
    ]
    assert purchase["date"] == 1714564800  # the message timestamp, in Unix seconds


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"order_id": "ord-9", "checkout_id": "chk-9"}, "ord-9"),
        ({"order_id": None, "checkout_id": "chk-9"}, "chk-9"),
        ({"order_id": None}, "m-order-key"),
    ],
)
def test_the_order_key_is_order_id_else_checkout_id_else_message_id(
    adapter: SegmentAdapter, fake: FakeSailthru, ids: dict[str, Any], expected: str
) -> None:
    sent(adapter.process(identify()))
    sent(adapter.process(track("Order Completed", order(**ids), messageId="m-order-key")))
    assert fake.purchases[0]["purchase_keys"] == {"extid": expected}


def test_an_order_is_posted_once_even_from_two_messages(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify()))
    sent(adapter.process(track("Order Completed", order())))
    again = adapter.process(track("Order Completed", order()))
    assert again.status is Status.SKIPPED
    assert "already sent" in again.detail
    assert len(fake.purchases) == 1


@pytest.mark.parametrize(
    ("price", "cents"),
    [
        (0.1 + 0.2, 30),
        (19.99, 1999),
        (1e-3, 0),
        (0.005, 1),
        (-4.25, -425),
        ("19.99", 1999),
        (" 7 ", 700),
    ],
)
def test_prices_become_exact_cents(
    adapter: SegmentAdapter, fake: FakeSailthru, price: Any, cents: int
) -> None:
    sent(adapter.process(identify()))
    sent(
        adapter.process(
            track("Order Completed", {"order_id": "o", "products": [product(price=price)]})
        )
    )
    assert fake.purchases[0]["items"][0]["price"] == cents


@pytest.mark.parametrize("price", [None, "abc", float("nan"), True])
def test_a_price_that_is_not_a_number_fails_naming_the_product(
    adapter: SegmentAdapter, fake: FakeSailthru, price: Any
) -> None:
    sent(adapter.process(identify()))
    result = adapter.process(
        track("Order Completed", {"order_id": "o", "products": [product(price=price)]})
    )
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "properties.products[0].price"
    assert fake.purchases == []


def test_an_order_of_a_user_without_email_asks_to_identify_first(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    result = adapter.process(track("Order Completed", order()))
    assert result.status is Status.FAILED
    assert "identify the user with an email first" in result.detail


def test_order_refunded_becomes_a_return_keyed_by_the_message(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify()))
    refund = track("Order Refunded", {"order_id": "ord-1", "products": [product("sku-2", 1, 5.5)]})
    result = sent(adapter.process(refund))
    assert result.record_id == refund["messageId"]
    [returned] = fake.returns
    assert returned["order_id"] == "ord-1"
    assert returned["email"] == "ann@example.com"
    assert returned["items"] == [{"id": "sku-2", "qty": 1, "price": 550, "url": PAGE}]
    missing = adapter.process(track("Order Refunded", {"products": [product()]}))
    assert missing.status is Status.FAILED
    assert missing.error is not None
    assert missing.error.field == "properties.order_id"


def test_products_added_and_removed_keep_the_cart_with_the_reminder(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify()))
    sent(adapter.process(track("Product Added", product("sku-1", 2))))
    sent(adapter.process(track("Product Added", product("sku-2", 1, 5))))
    sent(adapter.process(track("Product Removed", {"product_id": "sku-1", "quantity": 1})))
    assert cart(fake) == {"sku-1": 1, "sku-2": 1}
    user = fake.find_user(extid="u-1")
    assert user is not None
    incomplete = user["purchase_incomplete"]
    assert incomplete["reminder_template"] == "Abandoned Cart"
    assert incomplete["reminder_time"] == "+20 minutes"
    assert incomplete["items"][0]["url"] == PAGE


def test_per_message_reminder_options_override_the_settings(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify()))
    options = {"Sailthru": {"reminder_template": "VIP Cart", "reminder_time": "2 hours"}}
    sent(adapter.process(track("Product Added", product(), integrations=options)))
    payload = posted_payloads(adapter.destination, "purchase")[-1]
    assert (payload["reminder_template"], payload["reminder_time"]) == ("VIP Cart", "+2 hours")


def test_removing_from_an_empty_cart_fails_clearly(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify()))
    result = adapter.process(track("Product Removed", {"product_id": "sku-1"}))
    assert result.status is Status.FAILED
    assert "Nothing to remove from the incomplete cart for this user" in result.detail


def test_twenty_concurrent_cart_messages_for_one_user_lose_no_update(tmp_path: Path) -> None:
    # Latency widens the read-modify-write window that a missing lock would lose updates in.
    with make_fake(rate_limits={"default": 100_000}, latency=0.002) as slow:
        dest, adapter = build(slow, tmp_path, concurrency=20)
        with dest, adapter:
            sent(adapter.process(identify()))
            sent(adapter.process(track("Product Added", product("sku-1", 20))))
            messages = [track("Product Added", product("sku-1", 2)) for _ in range(12)] + [
                track("Product Removed", {"product_id": "sku-1", "quantity": 1}) for _ in range(8)
            ]
            messages = [messages[(n * 7) % 20] for n in range(20)]  # interleave
            results: list[ExportResult] = []
            threads = [
                threading.Thread(target=lambda m=m: results.append(adapter.process(m)))
                for m in messages
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert [r.status for r in results] == [Status.SENT] * 20
            assert cart(slow) == {"sku-1": 20 + 12 * 2 - 8}
            replayed = adapter.process_batch(messages)
            assert replayed.counts == {"skipped": 20}  # each message id is applied once
            fresh = [{**m, "messageId": f"again-{n}"} for n, m in enumerate(messages)]
            assert adapter.process_batch(fresh).counts == {"sent": 20}
            assert cart(slow) == {"sku-1": 36 + 12 * 2 - 8}


def test_a_cart_older_than_clear_cart_after_hours_is_emptied_before_an_add(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    settings = {**SETTINGS, "clear_cart_after_hours": 2}
    dest, adapter = build(fake, tmp_path, settings, clear_cart_after_hours=2)
    with dest, adapter:
        sent(adapter.process(identify()))
        sent(adapter.process(track("Product Added", product("sku-1"))))
        user = fake.find_user(extid="u-1")
        assert user is not None
        stale = datetime.now(timezone.utc) - timedelta(hours=3)
        state = fake._state  # the fake's clock cannot be moved: age the stored cart instead
        with state.lock:
            state.users[user["keys"]["sid"]]["purchase_incomplete"]["time"] = format_datetime(stale)
        sent(adapter.process(track("Product Added", product("sku-2"))))
    assert cart(fake) == {"sku-2": 1}


def test_subscribed_joins_the_list_and_resets_the_optout(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(identify(integrations={"Sailthru": {"optoutValue": "all"}})))
    result = sent(adapter.process(track("Subscribed", {"list": "Weekly Deals"})))
    assert "Weekly Deals" in result.detail
    user = fake.find_user(extid="u-1")
    assert user is not None
    assert set(user["lists"]) == {"Newsletter", "Weekly Deals"}
    assert user["optout_email"] == "none"
    assert fake.calls[("POST", "list")] == 2  # each list created by the registry, once
    missing = adapter.process(track("Subscribed", {}))
    assert missing.status is Status.FAILED
    assert "properties.list" == (missing.error and missing.error.field)


# -- page ---------------------------------------------------------------------------------------


def test_a_page_view_goes_to_the_tracking_service_with_url_and_keywords(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    sent(adapter.process(message("page", userId="u-1", properties={"keywords": ["shoes", "red"]})))
    sent(
        adapter.process(
            message(
                "page",
                anonymousId="anon-1",
                properties={"url": "https://shop.example.com/", "keywords": "home, sale"},
            )
        )
    )
    first, second = fake.pageviews
    assert first["customer_id"] == "cust-123"
    assert (first["userIdKey"], first["userIdValue"], first["url"]) == ("extid", "u-1", PAGE)
    assert first["tags"] == ["shoes", "red"]
    assert (second["userIdValue"], second["url"]) == ("anon-1", "https://shop.example.com/")
    assert second["tags"] == ["home", "sale"]


def test_a_page_without_url_or_customer_id_is_skipped_with_the_reason(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    dest, adapter = build(fake, tmp_path, {k: v for k, v in SETTINGS.items() if k != "customer_id"})
    with dest, adapter:
        skipped = adapter.process(message("page", userId="u-1"))
    assert skipped.status is Status.SKIPPED
    assert "customer_id" in skipped.detail
    dest, adapter = build(fake, tmp_path)
    with dest, adapter:
        no_url = adapter.process(message("page", userId="u-1", context={}))
        not_text = adapter.process(message("page", userId="u-1", properties={"url": 5}))
    assert no_url.status is Status.SKIPPED
    assert "no page url (properties.url or context.page.url)" in no_url.detail
    assert not_text.status is Status.FAILED
    assert not_text.error is not None
    assert not_text.error.field == "properties.url"
    assert fake.pageviews == []


def test_an_unreachable_tracking_service_is_a_retryable_failure(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    dest, adapter = build(fake, tmp_path, tracking_url=closed)
    with dest, adapter:
        result = adapter.process(message("page", userId="u-1"))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.retryable
    assert "tracking service" in result.detail
    assert "cust-123" not in result.detail


# -- batches and settings -----------------------------------------------------------------------


def test_a_batch_keeps_each_users_messages_in_order_and_names_every_result(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    dest, adapter = build(fake, tmp_path, concurrency=8)
    messages: list[Any] = []
    for n in range(10):
        user = f"u-{n}"
        messages += [
            identify(user, traits={"email": f"user{n}@example.com"}),
            track("Product Added", product("sku-1", 3), userId=user),
            track("Product Removed", {"product_id": "sku-1", "quantity": 2}, userId=user),
        ]
    messages.append({"type": "group", "messageId": "g-1"})
    with dest, adapter:
        batch = adapter.process_batch(messages)
    assert [r.record_id for r in batch.results] == [m["messageId"] for m in messages]
    assert batch.counts == {"sent": 30, "skipped": 1}
    assert all(cart(fake, f"u-{n}") == {"sku-1": 1} for n in range(10))


def test_settings_come_from_a_mapping_and_bad_ones_are_refused() -> None:
    settings = SegmentSettings.of({"default_reminder_time": 30, "optout_value": "BASIC"})
    assert settings.default_reminder_time == "+30 minutes"
    assert settings.optout_value == "basic"
    assert "cust-123" not in repr(SegmentSettings(customer_id="cust-123"))
    for bad, said in (
        ({"defaultListName": "x"}, "unknown Segment settings: defaultListName"),
        ({"optout_value": "sometimes"}, "optout_value"),
        ({"default_reminder_time": "soon"}, "reminder_time"),
        ({"clear_cart_after_hours": 0}, "clear_cart_after_hours"),
        ({"customer_id": ""}, "customer_id"),
    ):
        with pytest.raises(ValueError, match=said):
            SegmentSettings.of(bad)


def test_clear_cart_after_hours_must_match_the_destination(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="DestinationOptions"):
        build(fake, tmp_path, {"clear_cart_after_hours": 5})
