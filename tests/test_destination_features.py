"""The facade's event, commerce and import methods reach Sailthru through the same API layer."""

from __future__ import annotations

from pathlib import Path

from helpers import destination_for

from sailthru_destination.features.commerce import CartChange, Purchase, PurchaseItem, Return
from sailthru_destination.features.events import Event
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.testing import FakeSailthru

ITEM = PurchaseItem(id="sku-1", title="Mug", qty=2, price="19.99", url="https://shop.test/mug")


def test_events_purchases_returns_and_carts_go_through_the_destination(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(
        fake, tmp_path, reminder_template="cart-reminder", reminder_time="20 minutes"
    ) as dest:
        dest.export_profile(ProfileChange("ann@example.com", new_properties={"a": 1}))
        events = dest.send_events(
            [Event("ann@example.com", "email", "signed_up", {"plan": "gold"}, "ev-1")]
        )
        cart = dest.update_carts(
            [CartChange("ann@example.com", ITEM, quantity=1, user_key="email", record_id="c-1")]
        )
        purchases = dest.send_purchases(
            [Purchase("order-1", email="ann@example.com", items=(ITEM,))]
        )
        returns = dest.send_returns([Return("order-1", email="ann@example.com", items=(ITEM,))])
    assert events.ok
    assert cart.ok
    assert purchases.ok
    assert returns.ok
    assert fake.events[-1]["event"] == "signed_up"
    assert fake.purchases[-1]["items"][0]["price"] == 1999
    assert fake.returns[-1]["order_id"] == "order-1"


def test_a_rerun_of_the_same_event_and_order_sends_nothing(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    event = Event("bo@example.com", "email", "viewed", {}, "ev-9")
    order = Purchase("order-9", email="bo@example.com", items=(ITEM,))
    with destination_for(fake, tmp_path) as dest:
        dest.send_events([event])
        dest.send_purchases([order])
        calls = sum(fake.calls.values())
        again_events = dest.send_events([event])
        again_orders = dest.send_purchases([order])
    assert sum(fake.calls.values()) == calls
    assert str(again_events.results[0].status) == "skipped"
    assert str(again_orders.results[0].status) == "skipped"


def test_list_members_come_back_through_the_destination(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profiles(
            ProfileChange(f"m{i}@example.com", new_properties={"n": i}, new_groups={"Club"})
            for i in range(3)
        )
        members = list(dest.import_list_members(["Club"]))
    assert sorted(m.email or "" for m in members) == [f"m{i}@example.com" for i in range(3)]
    assert {m.source_list for m in members} == {"Club"}
