"""Abandoned carts against the fake Sailthru: read, add or remove, post the whole cart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import app_for, make_fake

from sailthru_destination.features.carts import _cart_time
from sailthru_destination.features.commerce import CartChange, CommerceSender, PurchaseItem
from sailthru_destination.once.sentkeys import InMemorySentKeys
from sailthru_destination.results import Status
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

EMAIL = "ann@example.com"


@pytest.fixture
def api(fake: FakeSailthru) -> Iterator[SailthruApi]:
    with SailthruApi(app_for(fake), sleep=lambda _: None, concurrency=20) as client:
        yield client


def product(pid: str = "sku-1", price: Any = "19.99", **overrides: Any) -> PurchaseItem:
    values: dict[str, Any] = {"url": f"https://shop.example/{pid}", **overrides}
    return PurchaseItem(pid, f"Product {pid}", 1, price, **values)


def add(pid: str = "sku-1", quantity: int = 1, **overrides: Any) -> CartChange:
    values: dict[str, Any] = {"user_key": "email", **overrides}
    return CartChange(overrides.pop("user_id", EMAIL), product(pid), quantity, "add", **values)


def remove(pid: str = "sku-1", quantity: int = 1, **overrides: Any) -> CartChange:
    values: dict[str, Any] = {"user_key": "email", **overrides}
    return CartChange(EMAIL, product(pid), quantity, "remove", **values)


def cart(fake: FakeSailthru, email: str = EMAIL) -> dict[str, int] | None:
    """The cart in the fake as {product id: qty}, None when there is none."""
    user = fake.find_user(email=email)
    assert user is not None
    incomplete = user["purchase_incomplete"]
    if incomplete is None:
        return None
    return {line["id"]: line["qty"] for line in incomplete["items"]}


def cart_posts(api: SailthruApi) -> list[dict[str, Any]]:
    return [
        dict(r.payload)
        for r in api.call_log.records()
        if r.method == "POST" and r.endpoint == "purchase"
    ]


def test_adding_to_an_empty_cart_posts_an_incomplete_purchase_with_the_reminder(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = CommerceSender(
        api, default_reminder_template="Abandoned Cart", default_reminder_time="20 minutes"
    )
    result = sender.update_cart(add())
    assert result.status is Status.SENT
    assert cart(fake) == {"sku-1": 1}
    [payload] = cart_posts(api)
    assert payload == {
        "email": EMAIL,
        "incomplete": 1,
        "items": [
            {
                "id": "sku-1",
                "title": "Product sku-1",
                "qty": 1,
                "price": 1999,
                "url": "https://shop.example/sku-1",
            }
        ],
        "reminder_template": "Abandoned Cart",
        "reminder_time": "+20 minutes",
    }
    reads = [r.payload for r in api.call_log.records() if r.method == "GET"]
    assert reads == [{"id": EMAIL, "key": "email", "fields": {"keys": 1, "purchase_incomplete": 1}}]
    assert fake.purchases == []


def test_adds_and_removes_keep_the_whole_cart(fake: FakeSailthru, api: SailthruApi) -> None:
    sender = CommerceSender(api)
    sender.update_cart(add("sku-1"))
    sender.update_cart(add("sku-1", 2))
    sender.update_cart(add("sku-2"))
    assert cart(fake) == {"sku-1": 3, "sku-2": 1}
    sender.update_cart(remove("sku-1", 2))
    assert cart(fake) == {"sku-1": 1, "sku-2": 1}
    sender.update_cart(remove("sku-1", 5))  # below zero: the item is dropped
    assert cart(fake) == {"sku-2": 1}
    assert cart_posts(api)[-1]["items"][0]["title"] == "Product sku-2"
    sender.update_cart(remove("sku-2"))
    assert cart(fake) is None
    assert cart_posts(api)[-1]["items"] == []


def test_removing_from_an_empty_cart_fails_without_a_post(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = CommerceSender(api)
    result = sender.update_cart(remove())
    assert result.status is Status.FAILED
    assert result.detail == "Nothing to remove from the incomplete cart for this user"
    assert fake.calls[("POST", "purchase")] == 0


def test_removing_a_product_that_is_not_in_the_cart_is_skipped(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = CommerceSender(api)
    sender.update_cart(add("sku-1"))
    result = sender.update_cart(remove("sku-9"))
    assert result.status is Status.SKIPPED
    assert "not in the cart" in result.detail
    assert fake.calls[("POST", "purchase")] == 1


def test_removing_needs_only_the_product_id(fake: FakeSailthru, api: SailthruApi) -> None:
    sender = CommerceSender(api)
    sender.update_cart(add("sku-1", 2))
    bare = PurchaseItem("sku-1", "", 1, None)
    assert sender.update_cart(CartChange(EMAIL, bare, 1, "remove", user_key="email")).ok
    assert cart(fake) == {"sku-1": 1}


@pytest.mark.parametrize("user_id", [None, "", "  "])
def test_a_cart_change_without_a_user_id_fails(
    fake: FakeSailthru, api: SailthruApi, user_id: Any
) -> None:
    result = CommerceSender(api).update_cart(CartChange(user_id, product()))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "user_id"
    assert sum(fake.calls.values()) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (CartChange("u1", product(), 0), "quantity"),
        (CartChange("u1", product(), 1, "empty"), "action"),  # type: ignore[arg-type]
        (CartChange("u1", product(price=None)), "product.price"),
        (CartChange("u1", product(url=None)), "product.url"),
        (CartChange("u1", product(), reminder_time="20 fortnights"), "reminder_time"),
        (CartChange("u1", product(), user_key="sid"), "user_key"),  # type: ignore[arg-type]
        (CartChange("u1", product(), email="not-an-email"), "email"),
    ],
)
def test_bad_cart_changes_fail_naming_the_field_without_a_call(
    fake: FakeSailthru, api: SailthruApi, change: CartChange, field: str
) -> None:
    result = CommerceSender(api).update_cart(change)
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == field
    assert sum(fake.calls.values()) == 0


def test_a_product_without_url_takes_the_page_url(fake: FakeSailthru, api: SailthruApi) -> None:
    change = CartChange(
        EMAIL,
        product(url=None),
        user_key="email",
        page_url="https://shop.example/page",
    )
    assert CommerceSender(api).update_cart(change).ok
    assert cart_posts(api)[0]["items"][0]["url"] == "https://shop.example/page"


def test_the_cart_of_an_extid_user_is_posted_under_the_email_sailthru_holds(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    api.post("user", {"id": "cust-1", "key": "extid", "keys": {"email": EMAIL}})
    result = CommerceSender(api).update_cart(CartChange("cust-1", product()))
    assert result.status is Status.SENT
    assert result.record_id == "cust-1"
    assert cart(fake) == {"sku-1": 1}
    reads = [r.payload for r in api.call_log.records() if r.method == "GET"]
    assert reads == [
        {"id": "cust-1", "key": "extid", "fields": {"keys": 1, "purchase_incomplete": 1}}
    ]


def test_an_extid_user_without_email_is_asked_to_identify_first(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    api.post("user", {"id": "cust-2", "key": "extid"})
    sender = CommerceSender(api)
    for user in ("cust-2", "nobody"):
        result = sender.update_cart(CartChange(user, product()))
        assert result.status is Status.FAILED
        assert "identify the user with an email first" in result.detail
    assert fake.calls[("POST", "purchase")] == 0


def test_an_email_given_with_the_extid_names_the_cart(fake: FakeSailthru, api: SailthruApi) -> None:
    result = CommerceSender(api).update_cart(
        CartChange("cust-3", product(), email="Cy@Example.com")
    )
    assert result.status is Status.SENT
    assert cart(fake, "cy@example.com") == {"sku-1": 1}


def test_the_record_reminder_overrides_the_default_and_is_normalised(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = CommerceSender(api, default_reminder_template="Default", default_reminder_time=30)
    sender.update_cart(add())
    sender.update_cart(add(reminder_template="VIP Cart", reminder_time="1 Hour"))
    first, second = cart_posts(api)
    assert (first["reminder_template"], first["reminder_time"]) == ("Default", "+30 minutes")
    assert (second["reminder_template"], second["reminder_time"]) == ("VIP Cart", "+1 hour")
    user = fake.find_user(email=EMAIL)
    assert user is not None
    assert user["purchase_incomplete"]["reminder_time"] == "+1 hour"


def test_no_reminder_is_sent_without_configuration_or_for_an_emptied_cart(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    CommerceSender(api).update_cart(add())
    sender = CommerceSender(api, default_reminder_template="T", default_reminder_time="+2 days")
    sender.update_cart(remove())
    assert all("reminder_template" not in p for p in cart_posts(api))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default_reminder_time": "soon"}, "default_reminder_time"),
        ({"clear_cart_after_hours": 0}, "clear_cart_after_hours"),
    ],
)
def test_bad_sender_defaults_are_refused_when_built(
    api: SailthruApi, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CommerceSender(api, **kwargs)


@pytest.mark.parametrize(
    ("hours", "expected"), [(2.0, {"sku-2": 1}), (4.0, {"sku-1": 1, "sku-2": 1})]
)
def test_a_cart_older_than_clear_cart_after_hours_is_emptied_first(
    fake: FakeSailthru, api: SailthruApi, hours: float, expected: dict[str, int]
) -> None:
    CommerceSender(api).update_cart(add("sku-1"))
    three_hours_later = CommerceSender(
        api, clear_cart_after_hours=hours, clock=lambda: time.time() + 3 * 3600
    )
    three_hours_later.update_cart(add("sku-2"))
    assert cart(fake) == expected


def test_a_cart_change_with_a_record_id_is_applied_once(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    sender = CommerceSender(api, sent_keys=store)
    assert sender.update_cart(add(record_id="m-1")).status is Status.SENT
    again = sender.update_cart(add(record_id="m-1"))
    assert again.status is Status.SKIPPED
    assert again.record_id == "m-1"
    assert cart(fake) == {"sku-1": 1}


def test_twenty_concurrent_changes_for_one_user_lose_no_update(api: SailthruApi) -> None:
    # Latency widens the read-modify-write window that a missing lock would lose updates in.
    with make_fake(rate_limits={"default": 100_000}, latency=0.002) as slow:
        with SailthruApi(app_for(slow), sleep=lambda _: None, concurrency=20) as client:
            sender = CommerceSender(client)
            assert sender.update_cart(add("sku-1", 10)).ok
            changes = [add("sku-1", 2) for _ in range(12)] + [remove("sku-1", 1)] * 8
            changes = [changes[(n * 7) % 20] for n in range(20)]  # interleave adds and removes
            results = list(sender.iter_update_carts(changes, concurrency=20))
            assert [r.status for r in results] == [Status.SENT] * 20
            assert cart(slow) == {"sku-1": 10 + 12 * 2 - 8}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Fri, 01 Mar 2024 12:00:00 +0000", 1709294400.0),
        ("2024-03-01T12:00:00+00:00", 1709294400.0),
        (1709294400, 1709294400.0),
        (1709294400000, 1709294400.0),
        ({"$date": 1709294400000}, 1709294400.0),
        ({"sec": 1709294400}, 1709294400.0),
        ("2024-03-01 12:00:00", None),  # no zone: the cart is kept rather than guessed old
        ("yesterday", None),
        (None, None),
    ],
)
def test_the_cart_time_is_read_in_the_formats_sailthru_may_answer(
    raw: Any, expected: float | None
) -> None:
    assert _cart_time({"time": raw}) == expected


def test_a_cart_result_says_how_many_units_the_cart_holds(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = CommerceSender(api)
    details = [sender.update_cart(change).detail
               for change in (add("sku-1", 2), add("sku-2"), remove("sku-1", 2), remove("sku-2"))]
    assert details == [
        "cart now holds 2 unit(s)",
        "cart now holds 3 unit(s)",
        "cart now holds 1 unit(s)",
        "cart now holds 0 unit(s)",
    ]
