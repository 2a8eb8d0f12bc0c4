"""Every public record type is checked at the batch boundary: a wrong-typed field fails that
record alone, with a RecordError naming the record and the field; the batch never raises and
the good records around it reach Sailthru (the fake, over real HTTP)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from helpers import destination_for, fuzz_examples, make_fake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.commerce import CartChange, Purchase, PurchaseItem, Return
from sailthru_destination.features.events import Event
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.results import BatchResult, ExportResult, Status
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.validation import CHECKS, RECORD_TYPES

_serial = itertools.count()


def _item(n: int) -> PurchaseItem:
    return PurchaseItem(id=f"sku{n}", title="Shoe", qty=1, price=9.99, url="https://x.test/s")


def _profile(n: int) -> ProfileChange:
    return ProfileChange(key=f"p{n}@example.com", new_properties={"n": n}, record_id=f"r{n}")


def _event(n: int) -> Event:
    return Event(f"e{n}@example.com", "email", "signed_up", {"n": n}, f"ev{n}")


def _purchase(n: int) -> Purchase:
    return Purchase(order_id=f"o{n}", email=f"b{n}@example.com", items=[_item(n)])


def _return(n: int) -> Return:
    return Return(order_id=f"o{n}", email=f"b{n}@example.com", items=[_item(n)])


def _cart(n: int) -> CartChange:
    return CartChange(user_id=f"c{n}@example.com", user_key="email", product=_item(n))


def _consented(n: int) -> ProfileChange:
    return dataclasses.replace(_profile(n), consents={"marketing"})


# Users the "clear" variant clears again and again (clearing an existing user always posts).
_CLEARED = [f"clear{n}@example.com" for n in range(3)]


def _clear(n: int) -> ProfileChange:
    key = _CLEARED[n % len(_CLEARED)]
    return ProfileChange(key=key, old_properties={"n": 1}, old_groups={"G"}, to_delete=True)


def _delete(n: int) -> ProfileChange:
    return ProfileChange(key=f"gone{n}@example.com", old_properties={"n": 1}, to_delete=True)


def _profile_applied(fake: FakeSailthru, record: Any) -> bool:
    return fake.find_user(email=record.key) is not None


def _cleared(fake: FakeSailthru, record: Any) -> bool:
    user = fake.find_user(email=record.key)
    return user is not None and not user["vars"].get("n")


def _gone(fake: FakeSailthru, record: Any) -> bool:
    return fake.find_user(email=record.key) is None


def _event_applied(fake: FakeSailthru, record: Any) -> bool:
    return any(e["id"] == record.key for e in fake.events)


def _purchase_applied(fake: FakeSailthru, record: Any) -> bool:
    return any(p["purchase_keys"].get("extid") == record.order_id for p in fake.purchases)


def _return_applied(fake: FakeSailthru, record: Any) -> bool:
    return any(r["order_id"] == record.order_id for r in fake.returns)


def _cart_applied(fake: FakeSailthru, record: Any) -> bool:
    user = fake.find_user(email=record.user_id)
    return user is not None and bool(user.get("purchase_incomplete"))


Send = Callable[[SailthruDestination, list[Any]], BatchResult]
# (record type, good record maker, batch call, applied-in-the-fake check)
KINDS: dict[str, tuple[type, Callable[[int], Any], Send, Callable[[FakeSailthru, Any], bool]]] = {
    "profile": (ProfileChange, _profile, lambda d, r: d.export_profiles(r), _profile_applied),
    "consented profile": (
        ProfileChange, _consented, lambda d, r: d.export_profiles(r), _profile_applied,
    ),
    "cleared profile": (ProfileChange, _clear, lambda d, r: d.export_profiles(r), _cleared),
    "deleted profile": (ProfileChange, _delete, lambda d, r: d.export_profiles(r), _gone),
    "event": (Event, _event, lambda d, r: d.send_events(r), _event_applied),
    "purchase": (Purchase, _purchase, lambda d, r: d.send_purchases(r), _purchase_applied),
    "return": (Return, _return, lambda d, r: d.send_returns(r), _return_applied),
    "cart": (CartChange, _cart, lambda d, r: d.update_carts(r), _cart_applied),
}


class _Odd:
    """An object no field expects; str() of it fails too."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"d": value}
    return value


WRONG: list[Any] = [
    None, 0, -1, 5, 2**70, 1.5, math.nan, math.inf, True, False, "", "  ", "x", "\ud800",
    b"bytes", [], [None], ["a"], [5], (), {}, {"a": 1}, {1: "x"}, {"a": object()}, set(),
    frozenset({"a"}), {"a", 5}, object(), _Odd(), datetime(2024, 1, 1, tzinfo=timezone.utc),
    date(2024, 1, 1), Decimal("NaN"), Decimal("1.5"), 1j, _deep(200), [[[]]],
    _item(0), [_item(0), None], [{"title": "x", "price": "free"}],
    ProfileChange(key="x@example.com"),
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSailthru]:
    with make_fake(seed=5, rate_limits={"default": 100_000}) as server:
        yield server


# The destination options each kind runs under (the profile paths differ by option).
OPTIONS: dict[str, dict[str, Any]] = {
    "consented profile": {"required_consents": {"marketing"}},
    "cleared profile": {"delete_behavior": "clear"},
    "deleted profile": {"delete_behavior": "delete"},
}


@pytest.fixture(scope="module")
def destinations(
    fake: FakeSailthru, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, SailthruDestination]]:
    locks = tmp_path_factory.mktemp("locks")
    made = {
        kind: destination_for(fake, locks, concurrency=2, **OPTIONS.get(kind, {}))
        for kind in KINDS
    }
    # The users the "clear" kind clears, with a var and a list to clear.
    made["profile"].export_profiles(
        [ProfileChange(key=k, new_properties={"n": 1}, new_groups={"G"}) for k in _CLEARED]
    )
    try:
        yield made
    finally:
        for dest in made.values():
            dest.close()


def _fields(kind: str) -> list[str]:
    record_type = KINDS[kind][0]
    return [f.name for f in dataclasses.fields(record_type)]


def _between_good_records(
    fake: FakeSailthru, destination: SailthruDestination, kind: str, bad: Any
) -> ExportResult:
    """Send ``bad`` between two good records; check they went through; ``bad``'s result."""
    _, make, send, applied = KINDS[kind]
    if kind == "cleared profile":
        # Re-arm the users the good records clear, so "cleared" is visible again.
        armed = [ProfileChange(key=k, old_properties={"n": 0}, new_properties={"n": 1})
                 for k in _CLEARED]
        KINDS["profile"][2](destination, armed)
    before, after = make(next(_serial)), make(next(_serial))
    batch = send(destination, [before, bad, after])
    assert len(batch.results) == 3
    first, middle, last = batch.results
    assert first.status is not Status.FAILED, first.error
    assert last.status is not Status.FAILED, last.error
    assert applied(fake, before)
    assert applied(fake, after)
    return middle


@settings(
    max_examples=fuzz_examples(250),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_a_wrong_typed_field_fails_its_record_alone(
    fake: FakeSailthru, destinations: dict[str, SailthruDestination], data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(sorted(KINDS)), label="kind")
    field = data.draw(st.sampled_from(_fields(kind)), label="field")
    value = data.draw(st.sampled_from(WRONG), label="value")
    bad = dataclasses.replace(KINDS[kind][1](next(_serial)), **{field: value})
    middle = _between_good_records(fake, destinations[kind], kind, bad)
    if middle.status is Status.FAILED:
        assert middle.error is not None
        assert isinstance(middle.error.record_id, str)
        assert middle.error.field, f"{kind}.{field}: no field named in {middle.error}"
        assert "unexpected" not in middle.error.reason, middle.error.reason


_ITEM_FIELDS = [f.name for f in dataclasses.fields(PurchaseItem)]


@settings(
    max_examples=fuzz_examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_a_wrong_typed_field_of_an_item_fails_its_record_alone(
    fake: FakeSailthru, destinations: dict[str, SailthruDestination], data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(["purchase", "return", "cart"]), label="kind")
    field = data.draw(st.sampled_from(_ITEM_FIELDS), label="item field")
    value = data.draw(st.sampled_from(WRONG), label="value")
    good = KINDS[kind][1](next(_serial))
    item = dataclasses.replace(_item(next(_serial)), **{field: value})
    if kind == "cart":
        bad = dataclasses.replace(good, product=item)
    else:
        bad = dataclasses.replace(good, items=[good.items[0], item])
    middle = _between_good_records(fake, destinations[kind], kind, bad)
    if middle.status is Status.FAILED:
        assert middle.error is not None
        assert middle.error.field, middle.error
        assert "unexpected" not in middle.error.reason, middle.error.reason


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("stranger", [None, "a record", {"key": "x@example.com"}, 5])
def test_something_that_is_not_a_record_fails_alone(
    fake: FakeSailthru,
    destinations: dict[str, SailthruDestination],
    kind: str,
    stranger: Any,
) -> None:
    middle = _between_good_records(fake, destinations[kind], kind, stranger)
    assert middle.status is Status.FAILED
    assert middle.error is not None
    assert middle.error.field == "record"
    assert KINDS[kind][0].__name__ in middle.error.reason


# ---- the cases the issue names, and the tables ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "bad", "field"),
    [
        ("profile", ProfileChange(key="a@example.com", old_properties=None), "old_properties"),  # type: ignore[arg-type]
        (
            "deleted profile",
            ProfileChange(key="a@example.com", old_properties=None, to_delete=True),  # type: ignore[arg-type]
            "old_properties",
        ),
        ("consented profile", ProfileChange(key="a@example.com", consents=5), "consents"),  # type: ignore[arg-type]
        ("deleted profile", ProfileChange(key="a@example.com", to_delete="no"), "to_delete"),  # type: ignore[arg-type]
    ],
    ids=["old_properties None", "old_properties None on delete", "consents 5", "to_delete 'no'"],
)
def test_the_fields_that_escaped_a_batch_now_fail_their_record_alone(
    fake: FakeSailthru,
    destinations: dict[str, SailthruDestination],
    kind: str,
    bad: ProfileChange,
    field: str,
) -> None:
    middle = _between_good_records(fake, destinations[kind], kind, bad)
    assert middle.status is Status.FAILED
    assert middle.error is not None
    assert (middle.error.record_id, middle.error.field) == ("a@example.com", field)


def test_export_profile_alone_never_raises_for_a_malformed_record(
    destinations: dict[str, SailthruDestination],
) -> None:
    bad = ProfileChange(key="a@example.com", new_properties=None)  # type: ignore[arg-type]
    result = destinations["profile"].export_profile(bad)
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "new_properties"


def test_every_field_of_every_record_type_has_a_check() -> None:
    for record_type in (*RECORD_TYPES, PurchaseItem):
        names = {f.name for f in dataclasses.fields(record_type)}
        assert set(CHECKS[record_type]) == names, record_type.__name__
