"""An order whose earlier send may have landed is never simply released (issue 18).

Pinned from the purchases.py mutation run: when an order marked 'unknown' is reclaimed and
then refused for certain, it stays 'unknown' (read back before it is ever sent again); an
order never sent before is released, so a fixed record can be sent.
"""

from __future__ import annotations

from sailthru_destination.api import SailthruApi
from sailthru_destination.commerce import CommerceSender, Purchase, PurchaseItem
from sailthru_destination.results import Status
from sailthru_destination.sentkeys import InMemorySentKeys, KeyState
from sailthru_destination.testing import FakeSailthru

ITEM = PurchaseItem("sku-1", "Blue shirt", 2, "19.99", url="https://shop.example/sku-1")
# Bought by an extid Sailthru has no email for: refused for certain, before any post.
UNKNOWN_BUYER = Purchase("o-1", extid="nobody", items=(ITEM,))


def test_a_reclaimed_unknown_order_refused_for_certain_stays_unknown(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    assert store.claim("purchase", "o-1")
    store.settle("purchase", "o-1", KeyState.UNKNOWN)
    result = CommerceSender(api, sent_keys=store).send_purchase(UNKNOWN_BUYER)
    assert result.status is Status.FAILED
    assert store.state("purchase", "o-1") is KeyState.UNKNOWN
    assert fake.purchases == []


def test_a_new_order_refused_for_certain_is_released_to_be_sent_once_fixed(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    result = CommerceSender(api, sent_keys=store).send_purchase(UNKNOWN_BUYER)
    assert result.status is Status.FAILED
    assert store.state("purchase", "o-1") is None
    fixed = Purchase("o-1", email="ann@example.com", items=(ITEM,))
    assert CommerceSender(api, sent_keys=store).send_purchase(fixed).status is Status.SENT
    assert len(fake.purchases) == 1
