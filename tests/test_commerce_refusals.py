"""Each refused purchase names the field and says why, exactly (issue 18).

Pinned from the _commerce_records.py mutation run: the field names and reasons are what a
user reads in the run report to fix the record.
"""

from __future__ import annotations

from typing import Any

import pytest

from sailthru_destination.features.commerce import CommerceSender, Purchase, PurchaseItem
from sailthru_destination.results import Status
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi


def item(**overrides: Any) -> PurchaseItem:
    values: dict[str, Any] = {"id": "sku-1", "title": "Shirt", "qty": 1, "price": "19.99",
                              "url": "https://shop.example/sku-1", **overrides}
    return PurchaseItem(**values)


REFUSED = [
    ("no buyer", Purchase("o-1", items=(item(),)), "email",
     "the record names no user: identify the user with an email first"),
    ("buyer unknown by extid", Purchase("o-1", extid="nobody", items=(item(),)), "email",
     "identify the user with an email first"),
    ("bad extid", Purchase("o-1", extid="x" * 256, items=(item(),)), "extid",
     "an extid must be at most 255 printable characters"),
    ("no items", Purchase("o-1", email="a@example.com", items=()), "items",
     "at least one item is required"),
    ("items not a list", Purchase("o-1", email="a@example.com", items="sku-1"), "items",  # type: ignore[arg-type]
     "items must be a list of PurchaseItem"),
    ("url not text", Purchase("o-1", email="a@example.com", items=(item(url=5),)),
     "items[0].url", "a url must be a non-empty string"),
    ("qty a flag", Purchase("o-1", email="a@example.com", items=(item(qty=True),)),
     "items[0].qty", "a quantity is a whole number above 0"),
    ("unknown unit", Purchase("o-1", email="a@example.com", items=(item(),),
                              currency_unit="euros"),  # type: ignore[arg-type]
     "currency_unit", "the currency unit must be 'dollars' or 'cents'"),
    ("url blank", Purchase("o-1", email="a@example.com", items=(item(url="  "),)),
     "items[0].url", "a url must be a non-empty string"),
]


@pytest.mark.parametrize(
    ("purchase", "field", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_a_refused_purchase_names_the_field_and_the_reason(
    fake: FakeSailthru, api: SailthruApi, purchase: Purchase, field: str, reason: str
) -> None:
    result = CommerceSender(api).send_purchase(purchase)
    assert result.status is Status.FAILED
    assert result.error is not None
    assert (result.error.field, result.error.reason) == (field, reason)
    assert fake.purchases == []


def test_a_buyer_known_by_extid_without_an_email_is_refused_on_email(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    api.post("user", {"id": "cust-7", "key": "extid"})
    result = CommerceSender(api).send_purchase(Purchase("o-1", extid="cust-7", items=(item(),)))
    assert result.error is not None
    assert (result.error.field, result.error.reason) == (
        "email", "identify the user with an email first"
    )
    assert fake.purchases == []
