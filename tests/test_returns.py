"""Returns: what each result names and the fields a refusal names; the cart-clearing setting.

Pinned from the commerce mutation run's survivors (issue 18).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from sailthru_destination.features.commerce import CommerceSender, PurchaseItem, Return
from sailthru_destination.once.sentkeys import InMemorySentKeys, KeyState
from sailthru_destination.results import Status
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi


def item(**overrides: Any) -> PurchaseItem:
    values: dict[str, Any] = {"id": "sku-1", "title": "Shirt", "qty": 1, "price": "19.99",
                              "url": "https://shop.example/sku-1", **overrides}
    return PurchaseItem(**values)


def test_a_sent_return_names_its_record_and_order(fake: FakeSailthru, api: SailthruApi) -> None:
    sent = InMemorySentKeys()
    sender = CommerceSender(api, sent_keys=sent)
    by_order = sender.send_return(Return("o-1", email="a@example.com", items=(item(),)))
    by_record = sender.send_return(
        Return("o-2", email="a@example.com", items=(item(),), record_id="ret-9")
    )
    assert (by_order.status, by_order.record_id) == (Status.SENT, "o-1")
    assert by_order.detail == "return of order 'o-1' sent"
    assert (by_record.status, by_record.record_id) == (Status.SENT, "ret-9")
    # The store of sent keys (a sync's state file) keeps returns apart from purchases.
    assert sent.state("return", "o-1") is KeyState.SENT
    assert sent.state("return", "ret-9") is KeyState.SENT
    assert len(fake.returns) == 2


@pytest.mark.parametrize(
    ("returned", "field"),
    [
        (Return("", email="a@example.com", items=(item(),)), "order_id"),
        (Return("o-1", email="a@example.com", items=(item(),), record_id="\x00"), "record_id"),
    ],
    ids=["order_id", "record_id"],
)
def test_a_return_with_a_bad_id_fails_naming_that_field(
    fake: FakeSailthru, api: SailthruApi, returned: Return, field: str
) -> None:
    result = CommerceSender(api).send_return(returned)
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == field
    assert result.error.reason == f"the {field} must be 1 to 255 printable characters"
    assert fake.returns == []


def test_carts_may_be_cleared_after_less_than_an_hour_but_not_after_none(
    api: SailthruApi,
) -> None:
    CommerceSender(api, clear_cart_after_hours=0.5)
    message = "clear_cart_after_hours must be a positive number of hours"
    for hours in (0, -1.0):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            CommerceSender(api, clear_cart_after_hours=hours)
