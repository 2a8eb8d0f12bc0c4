"""/event, /purchase, /return and the page-view endpoint through the official client."""

from __future__ import annotations

import pytest
import requests
from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport._protocol import RESERVED_EVENT_NAMES

ITEM = {"qty": 2, "title": "Mug", "price": 1250, "id": "sku-1", "url": "https://shop/mug"}


def test_event_is_recorded_and_creates_an_unknown_user(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    response = client.api_post(
        "event", {"id": "A@example.com", "event": "signed_up", "vars": {"plan": "pro"}}
    )
    assert response.get_body() == {"ok": True}
    (event,) = fake_sailthru.events
    assert event["id"] == "a@example.com"
    assert event["event"] == "signed_up"
    assert event["vars"] == {"plan": "pro"}
    assert event["sid"] == fake_sailthru.find_user(email="a@example.com")["keys"]["sid"]


@pytest.mark.parametrize("name", sorted(RESERVED_EVENT_NAMES))
def test_reserved_event_names_are_refused_with_400(client: SailthruClient, name: str) -> None:
    response = client.api_post("event", {"id": "a@example.com", "event": name})
    assert response.get_status_code() == 400
    assert response.get_error().get_error_code() == 2


def test_event_needs_id_and_event(client: SailthruClient, fake_sailthru: FakeSailthru) -> None:
    assert client.api_post("event", {"event": "x"}).get_status_code() == 400
    assert client.api_post("event", {"id": "a@example.com"}).get_status_code() == 400
    assert fake_sailthru.events == []


def test_event_schedule_time_is_kept(client: SailthruClient, fake_sailthru: FakeSailthru) -> None:
    client.api_post("event", {"id": "a@example.com", "event": "x", "schedule_time": "+1 hour"})
    assert fake_sailthru.events[0]["schedule_time"] == "+1 hour"


def test_incomplete_purchase_replaces_the_cart_with_its_reminder(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.purchase("a@example.com", [ITEM], incomplete=1)
    other = dict(ITEM, id="sku-2", title="Plate")
    client.purchase(
        "a@example.com", [other], incomplete=1,
        options={"reminder_template": "cart", "reminder_time": "+20 minutes"},
    )
    cart = client.get_user(
        "a@example.com", {"fields": {"purchase_incomplete": 1}}
    ).get_body()["purchase_incomplete"]
    assert [item["id"] for item in cart["items"]] == ["sku-2"]
    assert cart["reminder_template"] == "cart"
    assert cart["reminder_time"] == "+20 minutes"
    assert fake_sailthru.purchases == []


def test_a_purchase_is_recorded_and_clears_the_cart(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.purchase("a@example.com", [ITEM], incomplete=1)
    response = client.purchase(
        "a@example.com", [ITEM], incomplete=0,
        options={
            "purchase_keys": {"extid": "order-7"},
            "adjustments": [{"title": "Discount", "price": -500}],
        },
    )
    assert response.is_ok()
    user = fake_sailthru.find_user(email="a@example.com")
    assert user["purchase_incomplete"] is None
    assert len(user["purchases"]) == 1
    (purchase,) = fake_sailthru.purchases
    assert purchase["total"] == 2 * 1250 - 500
    assert purchase["purchase_keys"] == {"extid": "order-7"}


def test_get_purchase_by_sid_or_extid(client: SailthruClient) -> None:
    posted = client.purchase(
        "a@example.com", [ITEM], options={"purchase_keys": {"extid": "order-7"}}
    ).get_body()["purchase"]
    by_extid = client.get_purchase("order-7", purchase_key="extid").get_body()
    by_sid = client.get_purchase(posted["purchase_id"]).get_body()
    assert by_extid == by_sid == posted
    assert len(posted["purchase_id"]) == 24
    int(posted["purchase_id"], 16)


@pytest.mark.parametrize("purchase_key", ["sid", "extid"])
def test_an_unknown_purchase_is_error_99_not_found(
    client: SailthruClient, purchase_key: str
) -> None:
    client.purchase("a@example.com", [ITEM], options={"purchase_keys": {"extid": "order-7"}})
    response = client.get_purchase("order-8", purchase_key=purchase_key)
    assert response.get_status_code() == 400
    assert not response.is_ok()
    assert response.get_body() == {"error": 99, "errormsg": "Purchase not found: order-8"}


def test_a_purchase_is_not_found_within_the_stale_read_window(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    fake_sailthru.faults = Faults(stale_read_window=60.0)
    posted = client.purchase(
        "a@example.com", [ITEM], options={"purchase_keys": {"extid": "order-7"}}
    ).get_body()["purchase"]
    assert client.get_purchase("order-7", purchase_key="extid").get_status_code() == 400
    assert client.get_purchase(posted["purchase_id"]).get_status_code() == 400
    fake_sailthru.faults = Faults()  # the window has passed
    assert client.get_purchase("order-7", purchase_key="extid").get_body() == posted
    assert client.get_purchase(posted["purchase_id"]).get_body() == posted


def test_purchase_items_need_their_fields_and_integer_cents(client: SailthruClient) -> None:
    no_url = {k: v for k, v in ITEM.items() if k != "url"}
    assert client.purchase("a@example.com", [no_url]).get_status_code() == 400
    assert client.purchase("a@example.com", [dict(ITEM, price=12.5)]).get_status_code() == 400
    assert client.purchase("a@example.com", []).get_status_code() == 400


def test_purchases_show_in_the_user_fields(client: SailthruClient) -> None:
    client.purchase("a@example.com", [ITEM])
    body = client.get_user("a@example.com", {"fields": {"purchases": 1}}).get_body()
    assert [p["items"][0]["id"] for p in body["purchases"]] == ["sku-1"]


def test_return_is_recorded_on_its_own_endpoint(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    response = client.api_post(
        "return",
        {"email": "a@example.com", "items": [{"qty": 1, "price": 1250, "url": "u"}],
         "order_id": "order-7"},
    )
    assert response.get_body() == {"ok": True}
    (record,) = fake_sailthru.returns
    assert record["order_id"] == "order-7"
    assert fake_sailthru.purchases == []
    bad = client.api_post("return", {"email": "a@example.com", "items": [{"qty": 1}]})
    assert bad.get_status_code() == 400


def test_pageview_is_recorded_with_the_customer_id(fake_sailthru: FakeSailthru) -> None:
    response = requests.post(
        f"{fake_sailthru.url}/v1/track/event/pageview",
        json={"userIdKey": "extid", "userIdValue": "E1", "url": "https://x/p", "tags": ["a"]},
        headers={"Authorization": "Bearer cust-1"},
        timeout=5,
    )
    assert response.status_code == 200
    assert "X-Rate-Limit-Limit" in response.headers
    (view,) = fake_sailthru.pageviews
    assert view["customer_id"] == "cust-1"
    assert view["userIdValue"] == "E1"
    assert view["tags"] == ["a"]
    assert fake_sailthru.calls[("POST", "v1/track/event/pageview")] == 1


def test_pageview_without_bearer_or_fields_is_refused(fake_sailthru: FakeSailthru) -> None:
    url = f"{fake_sailthru.url}/v1/track/event/pageview"
    unauthorised = requests.post(url, json={"url": "x"}, timeout=5)
    assert unauthorised.status_code == 401
    incomplete = requests.post(
        url, json={"url": "x"}, headers={"Authorization": "Bearer c"}, timeout=5
    )
    assert incomplete.status_code == 400
    assert set(incomplete.json()) == {"error", "errormsg"}
    assert fake_sailthru.pageviews == []
