"""Purchases and returns against the fake Sailthru: exact cents, item rules, once per order."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from pytest_mock import MockerFixture
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ReadTimeoutError

from sailthru_destination.features.commerce import CommerceSender, Purchase, PurchaseItem, Return
from sailthru_destination.once.sentkeys import InMemorySentKeys, KeyState
from sailthru_destination.results import Status
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi


def item(price: Any = "19.99", **overrides: Any) -> PurchaseItem:
    values: dict[str, Any] = {
        "id": "sku-1",
        "title": "Blue shirt",
        "qty": 2,
        "price": price,
        "url": "https://shop.example/sku-1",
        **overrides,
    }
    return PurchaseItem(**values)


def purchase(order_id: str = "o-1", **overrides: Any) -> Purchase:
    values: dict[str, Any] = {"email": "ann@example.com", "items": (item(),), **overrides}
    return Purchase(order_id, **values)


def make_user(api: SailthruApi, extid: str, email: str | None) -> None:
    payload: dict[str, Any] = {"id": extid, "key": "extid"}
    if email:
        payload["keys"] = {"email": email}
    api.post("user", payload)


def test_a_purchase_is_posted_complete_with_cents_and_the_order_as_extid(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    full = PurchaseItem(
        "sku-9",
        " Hat ",
        1,
        Decimal("5.5"),
        url="https://shop.example/hat",
        tags=("summer", "sale"),
        image_url="https://img.example/hat.jpg",
        image_url_thumb="https://img.example/hat-s.jpg",
        vars={"color": {"name": "red"}},
    )
    result = CommerceSender(api).send_purchase(
        purchase(
            items=(item(), full),
            adjustments=({"title": "Shipping", "price": 4.99}, {"title": "Discount", "price": -2}),
            tenders=({"title": "visa", "price": "44.47"},),
            date=datetime(2024, 3, 1, tzinfo=timezone.utc),
            message_id="msg-77",
        )
    )
    assert result.status is Status.SENT
    assert result.record_id == "o-1"
    [sent] = fake.purchases
    assert sent["email"] == "ann@example.com"
    assert sent["purchase_keys"] == {"extid": "o-1"}
    assert sent["items"] == [
        {
            "id": "sku-1",
            "title": "Blue shirt",
            "qty": 2,
            "price": 1999,
            "url": "https://shop.example/sku-1",
        },
        {
            "id": "sku-9",
            "title": "Hat",
            "qty": 1,
            "price": 550,
            "url": "https://shop.example/hat",
            "tags": ["summer", "sale"],
            "images": {
                "full": {"url": "https://img.example/hat.jpg"},
                "thumb": {"url": "https://img.example/hat-s.jpg"},
            },
            "vars": {"color_name": "red"},
        },
    ]
    assert sent["adjustments"] == [
        {"title": "Shipping", "price": 499},
        {"title": "Discount", "price": -200},
    ]
    assert sent["tenders"] == [{"title": "visa", "price": 4447}]
    assert sent["date"] == int(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp())
    assert sent["message_id"] == "msg-77"
    assert sent["total"] == 2 * 1999 + 550 + 499 - 200
    assert fake.calls[("POST", "purchase")] == 1


def test_the_purchase_payload_says_incomplete_zero(fake: FakeSailthru, api: SailthruApi) -> None:
    sender = CommerceSender(api)
    sender.send_purchase(purchase())
    [record] = api.call_log.records()
    assert record.payload["incomplete"] == 0


@pytest.mark.parametrize(
    ("price", "unit", "expected"),
    [
        (0.1 + 0.2, "dollars", 30),
        (19.99, "dollars", 1999),
        ("19.99", "dollars", 1999),
        (" 19.99 ", "dollars", 1999),
        (Decimal("19.99"), "dollars", 1999),
        (1e-3, "dollars", 0),
        (0.005, "dollars", 1),
        (-3.5, "dollars", -350),
        (1999, "cents", 1999),
        ("1999", "cents", 1999),
        (1234567.891, "dollars", 123456789),
    ],
)
def test_prices_become_exact_integer_cents(
    fake: FakeSailthru, api: SailthruApi, price: Any, unit: str, expected: int
) -> None:
    result = CommerceSender(api).send_purchase(purchase(items=(item(price),), currency_unit=unit))
    assert result.status is Status.SENT
    assert fake.purchases[0]["items"][0]["price"] == expected


@pytest.mark.parametrize("price", [None, "abc", float("nan"), float("inf"), True, [1]])
def test_a_price_that_is_not_a_number_fails_naming_the_item(
    fake: FakeSailthru, api: SailthruApi, price: Any
) -> None:
    result = CommerceSender(api).send_purchase(purchase(items=(item(), item(price))))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "items[1].price"
    assert sum(fake.calls.values()) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id": ""}, "items[0].id"),
        ({"id": None}, "items[0].id"),
        ({"title": ""}, "items[0].title"),
        ({"qty": 0}, "items[0].qty"),
        ({"qty": -1}, "items[0].qty"),
        ({"qty": 1.5}, "items[0].qty"),
        ({"qty": True}, "items[0].qty"),
        ({"url": None}, "items[0].url"),
        ({"tags": [1]}, "items[0].tags"),
        ({"vars": {"bad-name": 1}}, "items[0].vars.bad-name"),
    ],
)
def test_bad_items_fail_per_record_naming_the_field(
    fake: FakeSailthru, api: SailthruApi, overrides: dict[str, Any], field: str
) -> None:
    result = CommerceSender(api).send_purchase(purchase(items=(item(**overrides),)))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == field
    assert sum(fake.calls.values()) == 0


def test_an_item_without_url_takes_the_page_url_or_fails_clearly(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = CommerceSender(api)
    failed = sender.send_purchase(purchase("o-a", items=(item(), item(url=None))))
    assert failed.error is not None
    assert failed.error.field == "items[1].url"
    assert "no url" in failed.detail
    ok = sender.send_purchase(
        purchase("o-b", items=(item(url=None),), page_url="https://shop.example/cart")
    )
    assert ok.status is Status.SENT
    assert fake.purchases[0]["items"][0]["url"] == "https://shop.example/cart"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"items": ()}, "items"),
        ({"email": None}, "email"),
        ({"email": "nope"}, "email"),
        ({"currency_unit": "euros"}, "currency_unit"),
        ({"adjustments": ({"price": 1},)}, "adjustments[0].title"),
        ({"adjustments": ({"title": "Tax", "price": None},)}, "adjustments[0]"),
        ({"tenders": "visa"}, "tenders"),
        ({"date": object()}, "date"),
    ],
)
def test_bad_purchases_fail_before_any_call(
    fake: FakeSailthru, api: SailthruApi, overrides: dict[str, Any], field: str
) -> None:
    result = CommerceSender(api).send_purchase(purchase(**overrides))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == field
    assert sum(fake.calls.values()) == 0


def test_a_purchase_without_order_id_fails(fake: FakeSailthru, api: SailthruApi) -> None:
    result = CommerceSender(api).send_purchase(purchase(order_id=""))
    assert result.error is not None
    assert result.error.field == "order_id"


def test_the_buyer_email_is_looked_up_by_extid(fake: FakeSailthru, api: SailthruApi) -> None:
    make_user(api, "cust-1", "bob@example.com")
    result = CommerceSender(api).send_purchase(purchase(email=None, extid="cust-1"))
    assert result.status is Status.SENT
    assert fake.purchases[0]["email"] == "bob@example.com"
    lookups = [r.payload for r in api.call_log.records() if r.method == "GET"]
    assert lookups == [{"id": "cust-1", "key": "extid", "fields": {"keys": 1}}]


@pytest.mark.parametrize("email", [None, ""])
def test_a_buyer_without_email_in_sailthru_fails_asking_to_identify_first(
    fake: FakeSailthru, api: SailthruApi, email: str | None
) -> None:
    if email is not None:
        make_user(api, "cust-2", None)
    store = InMemorySentKeys()
    result = CommerceSender(api, sent_keys=store).send_purchase(
        purchase(email=email, extid="cust-2")
    )
    assert result.status is Status.FAILED
    assert "identify the user with an email first" in result.detail
    assert fake.purchases == []
    assert store.state("purchase", "o-1") is None


def test_the_same_order_is_never_posted_twice_by_one_store(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    orders = [purchase(f"o-{n}") for n in range(4)] + [purchase("o-1")]
    first = list(CommerceSender(api, sent_keys=store).iter_send_purchases(orders, concurrency=4))
    assert [r.status for r in first].count(Status.SENT) == 4
    # The two "o-1" records run concurrently: whichever claims the key first sends it, and
    # the other is skipped as already sent (which one wins is up to the thread scheduler).
    assert sorted(str(first[i].status) for i in (1, 4)) == ["sent", "skipped"]
    assert next(r.detail for r in first if r.status is Status.SKIPPED).startswith("already sent")
    calls = sum(fake.calls.values())
    again = list(CommerceSender(api, sent_keys=store).iter_send_purchases(orders, concurrency=4))
    assert {r.status for r in again} == {Status.SKIPPED}
    assert sum(fake.calls.values()) == calls
    assert sorted(p["purchase_keys"]["extid"] for p in fake.purchases) == [
        "o-0",
        "o-1",
        "o-2",
        "o-3",
    ]


def test_a_purchase_applied_whose_answer_timed_out_is_read_back_not_resent(
    fake: FakeSailthru, api: SailthruApi, mocker: MockerFixture
) -> None:
    real_urlopen = HTTPConnectionPool.urlopen

    def applied_then_timed_out(pool: HTTPConnectionPool, method: str, url: str, *args: Any,
                               **kwargs: Any) -> Any:
        reply = real_urlopen(pool, method, url, *args, **kwargs)
        if method == "POST":  # Sailthru applied it; the answer never arrived
            raise ReadTimeoutError(pool, url, "read timed out")
        return reply

    mocker.patch.object(HTTPConnectionPool, "urlopen", autospec=True,
                        side_effect=applied_then_timed_out)
    store = InMemorySentKeys()
    sender = CommerceSender(api, sent_keys=store)
    first = sender.send_purchase(purchase("o-x"))
    assert first.status is Status.SENT
    assert "read back" in first.detail
    assert store.state("purchase", "o-x") is KeyState.SENT
    assert sender.send_purchase(purchase("o-x")).status is Status.SKIPPED
    assert len(fake.purchases) == 1


def test_a_purchase_refused_for_certain_is_not_marked_and_can_be_sent_again(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    sender = CommerceSender(api, sent_keys=store)
    fake.faults = Faults(rate_limit_burst=1.0)  # a 429 is refused before anything is done
    result = sender.send_purchase(purchase())
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.retryable
    assert result.error.code == 43
    assert store.state("purchase", "o-1") is None
    assert fake.purchases == []
    fake.faults = Faults()
    assert sender.send_purchase(purchase()).status is Status.SENT


def test_a_return_is_posted_with_qty_price_url_and_id(fake: FakeSailthru, api: SailthruApi) -> None:
    result = CommerceSender(api).send_return(
        Return(
            "o-1",
            email="Ann@Example.com",
            items=(item("19.99", qty=1), item(5, id="sku-2", url=None, title="")),
            date="2024-03-02",
            page_url="https://shop.example/o-1",
        )
    )
    assert result.status is Status.SENT
    [returned] = fake.returns
    assert returned["email"] == "ann@example.com"
    assert returned["order_id"] == "o-1"
    assert returned["date"] == "2024-03-02"
    assert returned["items"] == [
        {"id": "sku-1", "qty": 1, "price": 1999, "url": "https://shop.example/sku-1"},
        {"id": "sku-2", "qty": 2, "price": 500, "url": "https://shop.example/o-1"},
    ]
    assert fake.purchases == []


def test_returns_follow_the_item_rules_and_the_email_lookup(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    sender = CommerceSender(api)
    bad = sender.send_return(Return("o-1", email="a@example.com", items=(item(qty=0),)))
    assert bad.error is not None
    assert bad.error.field == "items[0].qty"
    nourl = sender.send_return(Return("o-1", email="a@example.com", items=(item(url=None),)))
    assert nourl.error is not None
    assert nourl.error.field == "items[0].url"
    unknown = sender.send_return(Return("o-1", extid="nobody", items=(item(),)))
    assert "identify the user with an email first" in unknown.detail
    make_user(api, "cust-3", "cy@example.com")
    assert sender.send_return(Return("o-1", extid="cust-3", items=(item(),))).ok
    assert [r["email"] for r in fake.returns] == ["cy@example.com"]


def test_a_return_is_sent_once_per_record_and_partial_returns_each_once(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    sender = CommerceSender(api, sent_keys=store)
    whole = Return("o-1", email="a@example.com", items=(item(),))
    part1 = Return("o-2", email="a@example.com", items=(item(qty=1),), record_id="r-1")
    part2 = Return("o-2", email="a@example.com", items=(item(qty=1),), record_id="r-2")
    batch = [whole, part1, part2]
    assert [r.status for r in sender.iter_send_returns(batch, concurrency=3)] == [Status.SENT] * 3
    assert [r.status for r in sender.iter_send_returns(batch, concurrency=3)] == [
        Status.SKIPPED
    ] * 3
    assert [r.record_id for r in sender.iter_send_returns(batch)] == ["o-1", "r-1", "r-2"]
    assert len(fake.returns) == 3
