"""An order whose earlier send may have landed is never simply released (issue 18).

Pinned from the purchases.py mutation run: when an order marked 'unknown' is reclaimed and
then refused for certain, it stays 'unknown' (read back before it is ever sent again); an
order never sent before is released, so a fixed record can be sent. An order without a clear
answer is posted once and reported in doubt; a sent one says its order and item count.
"""

from __future__ import annotations

from helpers import app_for

from sailthru_destination.features.commerce import CommerceSender, Purchase, PurchaseItem
from sailthru_destination.once.sentkeys import InMemorySentKeys, KeyState
from sailthru_destination.results import Status
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog, CallRecord

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


def test_a_sent_purchase_says_its_order_and_item_count(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    order = Purchase("o-1", email="ann@example.com", items=(ITEM, ITEM))
    result = CommerceSender(api).send_purchase(order)
    assert (result.status, result.record_id) == (Status.SENT, "o-1")
    assert result.detail == "order 'o-1': 2 item(s)"


def test_a_purchase_without_a_clear_answer_is_posted_once_and_reported_in_doubt(
    fake: FakeSailthru,
) -> None:
    # Every POST answers 500 without landing; the read after it answers "absent".
    fake.faults = Faults(server_error_rate=1.0)

    def after(record: CallRecord) -> None:
        fake.faults = Faults() if record.method == "POST" else Faults(server_error_rate=1.0)

    with SailthruApi(app_for(fake), sleep=lambda _: None, call_log=CallLog(sink=after)) as api:
        sender = CommerceSender(api, purchase_doubt_age=90)
        result = sender.send_purchase(Purchase("o-1", email="ann@example.com", items=(ITEM,)))
        posts = [r for r in api.call_log.records() if r.method == "POST"]
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.retryable
    assert result.error.code == 9
    assert result.error.reason.startswith("in doubt: order 'o-1' may or may not be in Sailthru")
    assert "A read did not find it yet" in result.error.reason
    assert result.error.reason.endswith("posted again only when reads over 90 s find it absent")
    assert len(posts) == 1
    assert fake.purchases == []


def test_an_unknown_order_that_cannot_be_read_back_is_not_sent_and_says_why(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    assert store.claim("purchase", "o-1")
    store.settle("purchase", "o-1", KeyState.UNKNOWN)
    fake.faults = Faults(server_error_rate=1.0)  # Sailthru cannot be read
    result = CommerceSender(api, sent_keys=store).send_purchase(
        Purchase("o-1", email="ann@example.com", items=(ITEM,))
    )
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.retryable
    assert result.error.reason.startswith(
        "in doubt: order 'o-1' may or may not be in Sailthru. It is marked 'unknown' (an "
        "earlier send may have reached Sailthru) and could not be read back ("
    )
    assert store.state("purchase", "o-1") is KeyState.UNKNOWN
    assert fake.calls[("POST", "purchase")] == 0
