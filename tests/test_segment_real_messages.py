"""The Segment adapter against what real sources send: issue 14, items 1-6.

Each test is a message shape the real ``segment-analytics-python`` client (or any server
source) emits, which used to fail although Sailthru could take it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_segment import SETTINGS, adapter, build, fake, identify, message, product, sent, track

from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import DestinationOptions
from sailthru_destination.results import Status
from sailthru_destination.segment import SegmentAdapter, SegmentSettings
from sailthru_destination.shaping.varnames import var_name_problem
from sailthru_destination.testing import FakeSailthru

__all__ = ["adapter", "fake"]  # the fixtures, shared with test_segment

SERVER_SIDE: dict[str, Any] = {"context": {"library": {"name": "analytics-python"}}}


# -- 1. identify for an email that already has a profile ---------------------------------------


def test_identify_for_an_email_with_a_profile_merges_it_with_traits_and_lists(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    # The newsletter signup came first: a profile known only by its email, on a list.
    signup = track("Subscribed", {"list": "Weekly", "email": "known@example.com"}, userId=None)
    sent(adapter.process(signup))
    result = sent(
        adapter.process(identify("u-5", traits={"email": "known@example.com", "plan": "pro"}))
    )
    assert "updated" in result.detail
    assert len(fake.users) == 1
    user = fake.find_user(extid="u-5")
    assert user is not None
    assert user["keys"]["email"] == "known@example.com"
    assert user["vars"] == {"plan": "pro"}
    assert set(user["lists"]) == {"Weekly", "Newsletter"}


# -- 2. bad trait names ---------------------------------------------------------------------------


def test_bad_trait_names_are_renamed_or_dropped_and_named_while_the_rest_applies(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    traits = {
        "email": "ann@example.com",
        "id": "u-7",
        "first-name": "Ann",
        "prénom": "Anne",
        "2fa": True,
        "lists": "x",
        "plan": "pro",
    }
    result = sent(adapter.process(identify("u-7", traits=traits)))
    user = fake.find_user(extid="u-7")
    assert user is not None
    assert user["keys"]["email"] == "ann@example.com"
    assert user["vars"] == {"first_name": "Ann", "prenom": "Anne", "plan": "pro"}
    assert "Newsletter" in user["lists"]
    assert "'traits.first-name' sent as 'first_name'" in result.detail
    assert "'traits.prénom' sent as 'prenom'" in result.detail
    assert "'traits.2fa' dropped" in result.detail
    assert "'traits.lists' dropped" in result.detail
    assert "traits.id" not in result.detail  # the userId itself: not news


def test_a_trait_id_other_than_the_user_id_is_dropped_and_named(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    result = sent(adapter.process(identify("u-8", traits={"id": 42, "plan": "pro"})))
    assert "'traits.id' dropped" in result.detail
    user = fake.find_user(extid="u-8")
    assert user is not None
    assert user["vars"] == {"plan": "pro"}


def test_bad_property_names_on_a_custom_event_are_repaired_and_named(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    result = sent(adapter.process(track("Video Played", {"video-id": "v1", "ok": 1})))
    assert "'properties.video-id' sent as 'video_id'" in result.detail
    assert fake.events[-1]["vars"] == {"video_id": "v1", "ok": 1}


_names = st.text(min_size=1, max_size=12)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(traits=st.dictionaries(_names, st.integers(0, 9), max_size=6))
def test_any_trait_names_never_fail_an_identify_and_each_is_sent_or_named(
    adapter: SegmentAdapter, fake: FakeSailthru, traits: dict[str, int]
) -> None:
    traits.pop("email", None)
    result = adapter.process(identify("u-prop", traits=traits))
    assert result.status is Status.SENT, result.detail
    user = fake.find_user(extid="u-prop")
    assert user is not None
    for name in traits:
        if name == "id":
            continue
        if var_name_problem(name) is None:
            assert user["vars"].get(name) == traits[name]
        else:
            assert repr(f"traits.{name}") in result.detail


# -- 3. server-side orders ------------------------------------------------------------------------


def _order(**props: Any) -> dict[str, Any]:
    body = {"order_id": "o-1", "email": "buyer@example.com", **props}
    return message("track", event="Order Completed", userId="u-1", properties=body, **SERVER_SIDE)


def test_a_server_side_order_takes_item_urls_from_product_url_template(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    template = "https://shop.example/p/{product_id}"
    dest, adapter = build(fake, tmp_path, {**SETTINGS, "product_url_template": template})
    with dest, adapter:
        sent(
            adapter.process(
                _order(products=[product("sku 1"), product("sku-2", url="https://x/2")])
            )
        )
    items = fake.purchases[-1]["items"]
    assert [i["url"] for i in items] == ["https://shop.example/p/sku%201", "https://x/2"]


def test_a_server_side_order_without_template_fails_naming_the_setting(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    result = adapter.process(_order(products=[product()]))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "properties.products[0].url"
    assert "product_url_template" in result.detail
    assert fake.purchases == []


def test_an_order_with_revenue_and_no_products_fails_saying_so(adapter: SegmentAdapter) -> None:
    result = adapter.process(_order(revenue=25.0, products=[]))
    assert result.status is Status.FAILED
    assert "a revenue of 25.0 but no products" in result.detail


def test_product_added_without_name_names_properties_name(adapter: SegmentAdapter) -> None:
    props = {"product_id": "p1", "price": 3, "email": "a@example.com"}
    result = adapter.process(track("Product Added", props))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "properties.name"


def test_a_bad_url_template_is_refused_when_the_settings_are_built() -> None:
    for bad in ("shop.example/p/{product_id}", "https://x/{product_id!r}", "https://x/{a b}"):
        with pytest.raises(ValueError, match="product_url_template"):
            SegmentSettings(product_url_template=bad)


# -- 5. anonymous carts ---------------------------------------------------------------------------


def test_an_anonymous_cart_without_email_is_retryable_and_works_after_identify(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    added = track("Product Added", product("p1"), userId=None, anonymousId="anon-9")
    first = adapter.process(added)
    assert first.status is Status.FAILED
    assert first.error is not None
    assert first.error.retryable
    assert "retry it after an identify" in first.detail
    sent(adapter.process(identify(None, anonymousId="anon-9", traits={"email": "a9@example.com"})))
    sent(adapter.process({**added, "messageId": "retry-of-" + added["messageId"]}))
    user = fake.find_user(email="a9@example.com")
    assert user is not None
    assert [i["id"] for i in user["purchase_incomplete"]["items"]] == ["p1"]


# -- 6. ISO-8601 dates ----------------------------------------------------------------------------


def test_iso_date_strings_under_time_and_date_names_are_sent_as_dates(
    adapter: SegmentAdapter, fake: FakeSailthru
) -> None:
    traits = {
        "signup_date": "2024-03-05T23:30:00-05:00",
        "last_login_time": "2024-03-05T10:00:00.123Z",
        "birthday_date": "1990-07-14",
        "trial": {"end_time": "2024-03-06T00:00:00+0000", "start_time": "2024-03-05T10:00Z"},
        "note_date": "soon",
        "bad_date": "2024-02-30",
        "created_at": "2024-03-05T10:00:00Z",
    }
    sent(adapter.process(identify("u-d", traits=traits)))
    user = fake.find_user(extid="u-d")
    assert user is not None
    assert user["vars"] == {
        "signup_date": "2024-03-06",
        "last_login_time": 1709632800,
        "birthday_date": "1990-07-14",
        "trial_end_time": 1709683200,
        "trial_start_time": 1709632800,
        "note_date": "soon",
        "bad_date": "2024-02-30",
        "created_at": "2024-03-05T10:00:00Z",
    }


# -- 2b. the host export path: invalid_vars ------------------------------------------------------


def test_host_export_fails_bad_var_names_by_default_and_drop_sends_the_rest(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    props = {"first-name": "Ann", "plan": "pro", "id": 3}
    dest, _ = build(fake, tmp_path)
    with dest:
        failed = dest.export_profile(ProfileChange("a@example.com", new_properties=props))
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.field == "first-name"
    dest, _ = build(fake, tmp_path, invalid_vars="drop")
    with dest:
        done = dest.export_profile(ProfileChange("a@example.com", new_properties=props))
        assert done.status is Status.CREATED
        assert "'first-name' sent as 'first_name'" in done.detail
        assert "'id' dropped" in done.detail
        user = fake.find_user(email="a@example.com")
        assert user is not None
        assert user["vars"] == {"first_name": "Ann", "plan": "pro"}
        # Removing the property later clears the var its repaired name created.
        dest.export_profile(
            ProfileChange("a@example.com", old_properties=props, new_properties={"plan": "pro"})
        )
    user = fake.find_user(email="a@example.com")
    assert user is not None
    assert user["vars"] == {"plan": "pro"}


def test_invalid_vars_accepts_only_fail_or_drop() -> None:
    assert DestinationOptions().invalid_vars == "fail"
    with pytest.raises(ValueError, match="invalid_vars"):
        DestinationOptions(invalid_vars="rename")  # type: ignore[arg-type]


def test_an_anonymous_order_without_email_is_retryable_but_a_bad_email_is_not(
    adapter: SegmentAdapter,
) -> None:
    order = {"order_id": "o-9", "products": [product("p1", url="https://x/p1")]}
    anonymous = adapter.process(track("Order Completed", order, userId=None, anonymousId="a-1"))
    assert anonymous.status is Status.FAILED
    assert anonymous.error is not None
    assert anonymous.error.retryable
    bad = adapter.process(track("Order Completed", {**order, "email": "nope"}, userId="u-1"))
    assert bad.status is Status.FAILED
    assert bad.error is not None
    assert not bad.error.retryable
