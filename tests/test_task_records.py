"""Task-message dicts to records and results back (integrations/_records.py), in process.

The Celery tests run these through real workers in other processes; these pin each rule
where a mutation run can see it: every bad dict names its record and field, one bad dict
never sinks its batch, and a result turns into JSON types.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sailthru_destination.errors import RecordError
from sailthru_destination.features.commerce import CartChange, Purchase, PurchaseItem
from sailthru_destination.features.events import Event
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.integrations._records import KINDS, build, result_dict, user_of
from sailthru_destination.results import ExportResult, Status

ITEM = {"id": "sku-1", "title": "Shirt", "qty": 2, "price": "9.99"}


def test_a_purchase_dict_becomes_a_purchase_with_its_products() -> None:
    record = build("purchases", 0, {"order_id": "o-1", "email": "a@example.com",
                                    "items": [ITEM, PurchaseItem("sku-2", "Hat", 1, 5)]})
    assert record == Purchase("o-1", email="a@example.com", items=(
        PurchaseItem("sku-1", "Shirt", 2, "9.99"), PurchaseItem("sku-2", "Hat", 1, 5)))


def test_a_cart_dict_takes_one_product() -> None:
    record = build("carts", 0, {"user_id": "u1", "product": ITEM, "quantity": 3})
    assert record == CartChange("u1", PurchaseItem("sku-1", "Shirt", 2, "9.99"), quantity=3)


def test_a_profile_dict_takes_its_groups_as_sets_and_defaults_the_rest() -> None:
    record = build("profiles", 0, {"key": "a@example.com", "new_groups": ["News", "VIP"],
                                   "old_groups": None, "consents": ["email"]})
    assert record == ProfileChange("a@example.com", new_groups=frozenset({"News", "VIP"}),
                                   old_groups=None, consents=frozenset({"email"}))


def test_an_event_dict_needs_every_field_without_a_default() -> None:
    error = build("events", 0, {"record_id": "e-1", "key": "a@example.com"})
    assert error == RecordError("e-1", "the field 'key_type' is required", field="key_type")
    whole = {"record_id": "e-1", "key": "a@example.com", "key_type": "email", "name": "n",
             "properties": {}}
    assert build("events", 0, whole) == Event("a@example.com", "email", "n", {}, "e-1")


@pytest.mark.parametrize(("kind", "record", "expected"), [
    ("purchases", ["o-1"], RecordError("#4", "a record is an object, got list")),
    ("purchases", {"order_id": "o-1", "bogus": 1},
     RecordError("o-1", "unknown field 'bogus'", field="bogus")),
    ("purchases", {"order_id": "o-1", "items": "sku-1"},
     RecordError("o-1", "items must be a list of products", field="items")),
    ("purchases", {"order_id": "o-1", "items": [ITEM, "sku-2"]},
     RecordError("o-1", "a product is an object with id, title, qty and price",
                 field="items[1]")),
    ("purchases", {"order_id": "o-1", "items": [{**ITEM, "colour": "red"}]},
     RecordError("o-1", "unknown field 'colour'", field="items[0].colour")),
    ("purchases", {"order_id": "o-1", "items": [{"id": "s", "title": "T", "qty": 1}]},
     RecordError("o-1", "the field 'price' is required", field="items[0].price")),
    ("purchases", {"order_id": "  ", "bogus": 1},  # a blank id: named by its place
     RecordError("#4", "unknown field 'bogus'", field="bogus")),
    ("carts", {"user_id": "u1", "product": ["sku-1"]},
     RecordError("u1", "a product is an object with id, title, qty and price",
                 field="product")),
    ("profiles", {"key": "k", "record_id": "r-1", "new_groups": "News"},
     RecordError("r-1", "new_groups must be a list of names", field="new_groups")),
    ("profiles", {"key": "k", "new_groups": ["News", 3]},
     RecordError("k", "new_groups must be a list of names", field="new_groups")),
    ("returns", {"email": "a@example.com"},
     RecordError("#4", "the field 'order_id' is required", field="order_id")),
])
def test_a_bad_dict_is_an_error_naming_its_record_and_field(
    kind: str, record: object, expected: RecordError
) -> None:
    assert build(kind, 4, record) == expected


@pytest.mark.parametrize(("kind", "record", "user"), [
    ("purchases", {"email": "a@example.com", "extid": "e"}, "a@example.com"),
    ("purchases", {"email": "  ", "extid": "e"}, "e"),
    ("purchases", {"email": None, "extid": 7}, "7"),
    ("carts", {"user_id": "u1", "email": "a@example.com"}, "u1"),
    ("profiles", {"key": "k"}, "k"),
    ("events", {}, ""),
    ("events", ["not", "a", "dict"], ""),
])
def test_the_user_of_a_record_is_its_first_named_key(kind: str, record: object,
                                                     user: str) -> None:
    assert user_of(kind, record) == user


def test_every_kind_names_its_id_and_user_fields() -> None:
    assert set(KINDS) == {"profiles", "events", "purchases", "returns", "carts"}
    assert KINDS["returns"].id_fields == ("record_id", "order_id")
    assert KINDS["profiles"].id_fields == ("record_id", "key")
    assert KINDS["carts"].user_fields == ("user_id", "email")


def test_a_result_becomes_json_types() -> None:
    sent = result_dict(ExportResult(Status.SENT, "o-1", "order 'o-1': 1 item(s)"))
    assert sent == {"record_id": "o-1", "status": "sent", "detail": "order 'o-1': 1 item(s)",
                    "error": None}
    failed = result_dict(ExportResult.failed(RecordError("o-2", "in doubt", field="x",
                                                         retryable=True, code=9)))
    assert failed == {"record_id": "o-2", "status": "failed", "detail": "in doubt",
                      "error": {"reason": "in doubt", "field": "x", "retryable": True,
                                "code": 9}}
    assert json.loads(json.dumps(failed)) == failed


@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8),
                       max_size=6))
def test_any_dict_builds_a_record_or_names_why_not(record: dict[str, Any]) -> None:
    for kind in KINDS:
        built = build(kind, 1, record)
        if isinstance(built, RecordError):
            assert built.reason
            assert built.record_id
