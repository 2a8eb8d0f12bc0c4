"""Purchases exactly once: an unknown outcome is settled by reading the order back.

Issue 12, defect 2: a server that applied a POST /purchase and then answered 504 got it
again, because a 5xx was taken for "never reached". Now any unknown outcome (5xx, error 9,
read timeout, dropped connection) is followed by GET /purchase by the order id, twice with
a pause (reads are eventually consistent), and the order is posted again only when it is
confirmed absent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from helpers import app_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sailthru_destination.api import RetryPolicy, SailthruApi
from sailthru_destination.calllog import CallLog, CallRecord
from sailthru_destination.commerce import CommerceSender, Purchase, PurchaseItem
from sailthru_destination.results import ExportResult, Status
from sailthru_destination.sentkeys import InMemorySentKeys, KeyState
from sailthru_destination.sync.state import SyncState
from sailthru_destination.testing import FakeSailthru, Faults

ITEM = PurchaseItem("sku-1", "Blue shirt", 2, "19.99", url="https://shop.example/sku-1")
APPLIED_THEN_504 = Faults(error_after_apply_rate=1.0)


def purchase(order_id: str = "o-1", email: str = "ann@example.com") -> Purchase:
    return Purchase(order_id, email=email, items=(ITEM,))


def orders(fake: FakeSailthru) -> Counter[str]:
    """How many times each order id is in the fake."""
    return Counter(str(p["purchase_keys"].get("extid")) for p in fake.purchases)


def api_on(fake: FakeSailthru, *, sleep: Callable[[float], object] = lambda _: None,
           after_call: Callable[[CallRecord], object] | None = None) -> SailthruApi:
    log = CallLog(sink=after_call) if after_call is not None else None
    return SailthruApi(app_for(fake), sleep=sleep, call_log=log)


def calls_to(api: SailthruApi, method: str) -> int:
    return sum(1 for r in api.call_log.records() if (r.method, r.endpoint) == (method, "purchase"))


def test_a_purchase_applied_then_answered_504_is_in_sailthru_once_and_reported_sent(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    fake.faults = APPLIED_THEN_504
    store = InMemorySentKeys()
    result = CommerceSender(api, sent_keys=store).send_purchase(purchase())
    assert result.status is Status.SENT
    assert "read back" in result.detail
    assert orders(fake) == {"o-1": 1}
    assert store.state("purchase", "o-1") is KeyState.SENT
    assert calls_to(api, "POST") == 1


def test_with_stale_reads_the_second_read_prevents_a_duplicate(fake: FakeSailthru) -> None:
    # The first read-back comes within the stale-read window and misses the purchase; the
    # pause (through the API layer's sleep) lets the window pass, and the second read finds it.
    fake.faults = Faults(error_after_apply_rate=1.0, stale_read_window=60.0)
    paused: list[float] = []

    def pause(seconds: float) -> None:
        paused.append(seconds)
        fake.faults = APPLIED_THEN_504  # the window has passed

    with api_on(fake, sleep=pause) as api:
        result = CommerceSender(api, confirm_after=2.5).send_purchase(purchase())
    assert result.status is Status.SENT
    assert orders(fake) == {"o-1": 1}
    assert 2.5 in paused  # the pause went through the API layer's sleep
    assert calls_to(api, "GET") == 2


def test_a_purchase_that_failed_before_it_was_applied_is_confirmed_absent_then_sent(
    fake: FakeSailthru,
) -> None:
    fake.faults = Faults(server_error_rate=1.0)
    # The reads after the 500 are answered, and find nothing: post again.
    with api_on(fake, after_call=lambda _: setattr(fake, "faults", Faults())) as api:
        result = CommerceSender(api).send_purchase(purchase())
    assert result.status is Status.SENT
    assert orders(fake) == {"o-1": 1}
    assert calls_to(api, "POST") == 2
    assert calls_to(api, "GET") == 2  # absent on both reads before the second post


def test_a_purchase_never_applied_fails_after_its_attempts_and_is_read_back_next_run(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    fake.faults = Faults(server_error_rate=1.0)
    store = InMemorySentKeys()
    sender = CommerceSender(api, sent_keys=store, purchase_attempts=2)
    first = sender.send_purchase(purchase())
    assert first.status is Status.FAILED
    assert first.error is not None
    assert first.error.retryable
    assert orders(fake) == {}
    assert store.state("purchase", "o-1") is KeyState.UNKNOWN
    fake.faults = Faults()
    second = sender.send_purchase(purchase())
    assert second.status is Status.SENT
    assert orders(fake) == {"o-1": 1}


def test_a_purchase_that_cannot_be_read_back_stays_unknown_and_is_not_posted_again(
    fake: FakeSailthru,
) -> None:
    fake.faults = APPLIED_THEN_504

    def after(record: CallRecord) -> None:
        if record.method == "POST":
            fake.faults = Faults(server_error_rate=1.0)  # Sailthru cannot be read

    store = InMemorySentKeys()
    with api_on(fake, after_call=after) as api:
        first = CommerceSender(api, sent_keys=store).send_purchase(purchase())
    assert first.status is Status.FAILED
    assert "could not be read back" in first.detail
    assert store.state("purchase", "o-1") is KeyState.UNKNOWN
    assert orders(fake) == {"o-1": 1}
    # The next run reads it back first: it is there, so it is recorded sent, not re-posted.
    fake.faults = Faults()
    with api_on(fake) as api:
        again = CommerceSender(api, sent_keys=store).send_purchase(purchase())
        assert calls_to(api, "POST") == 0
    assert again.status is Status.SENT
    assert "found in Sailthru" in again.detail
    assert orders(fake) == {"o-1": 1}
    assert store.state("purchase", "o-1") is KeyState.SENT


def test_a_purchase_left_pending_by_a_crash_is_recorded_sent_when_found(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    CommerceSender(api).send_purchase(purchase())  # posted by a run that died before settling
    assert store.claim("purchase", "o-1")
    result = CommerceSender(api, sent_keys=store).send_purchase(purchase())
    assert result.status is Status.SENT
    assert store.state("purchase", "o-1") is KeyState.SENT
    assert orders(fake) == {"o-1": 1}


def test_a_pending_purchase_not_found_is_not_sent_it_may_be_in_flight_elsewhere(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    assert store.claim("purchase", "o-1")  # another process claimed it and may be posting
    result = CommerceSender(api, sent_keys=store).send_purchase(purchase())
    assert result.status is Status.FAILED
    assert "pending" in result.detail
    assert store.state("purchase", "o-1") is KeyState.PENDING
    assert orders(fake) == {}


def test_an_unknown_purchase_found_absent_is_reclaimed_once_and_sent_once(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    assert store.claim("purchase", "o-1")
    store.settle("purchase", "o-1", KeyState.UNKNOWN)
    results = [CommerceSender(api, sent_keys=store).send_purchase(purchase()) for _ in range(2)]
    assert [r.status for r in results] == [Status.SENT, Status.SKIPPED]
    assert orders(fake) == {"o-1": 1}
    assert store.reclaim("purchase", "o-1", KeyState.UNKNOWN) is False


def test_in_the_sync_state_an_unknown_order_is_read_back_and_sent_once_by_the_next_run(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path
) -> None:
    fake.faults = Faults(server_error_rate=1.0)  # nothing applied, nothing readable
    with SyncState(tmp_path / "state.sqlite") as state:
        first = CommerceSender(api, sent_keys=state).send_purchase(purchase())
        assert first.status is Status.FAILED
        assert state.state("purchase", "o-1") is KeyState.UNKNOWN
    fake.faults = Faults()
    with SyncState(tmp_path / "state.sqlite") as state:  # the next run
        assert not state.reclaim("purchase", "o-1", KeyState.SENT)
        again = CommerceSender(api, sent_keys=state).send_purchase(purchase())
        assert again.status is Status.SENT
        assert state.state("purchase", "o-1") is KeyState.SENT
        assert not state.reclaim("purchase", "o-1", KeyState.UNKNOWN)
    assert orders(fake) == {"o-1": 1}


# -- any mix of faults ----------------------------------------------------------------------

STALE_WINDOW = 0.02  # seconds; the read-back pause is longer, so a second read sees the post

fault_mixes = st.builds(
    Faults,
    connection_error_rate=st.sampled_from([0.0, 0.1, 0.3]),
    server_error_rate=st.sampled_from([0.0, 0.1, 0.3]),
    error_after_apply_rate=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    rate_limit_burst=st.sampled_from([0.0, 0.2]),
    stale_read_window=st.sampled_from([0.0, STALE_WINDOW]),
)


def _send_all(
    fake: FakeSailthru, store: InMemorySentKeys, batch: list[Purchase]
) -> list[ExportResult]:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002, jitter=False)
    with SailthruApi(app_for(fake), sleep=time.sleep, retry=policy) as api:
        sender = CommerceSender(api, sent_keys=store, confirm_after=STALE_WINDOW * 1.5)
        return list(sender.iter_send_purchases(batch, concurrency=4))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults=fault_mixes, seed=st.integers(0, 2**16), duplicates=st.integers(0, 3))
def test_under_any_fault_mix_an_order_is_in_sailthru_once_or_reported_not_sent(
    faults: Faults, seed: int, duplicates: int
) -> None:
    batch = [purchase(f"o-{n}", f"buyer{n % 3}@example.com") for n in range(8)]
    batch += batch[:duplicates]  # the same order twice in one batch
    store = InMemorySentKeys()
    with FakeSailthru(api_key="test-key", api_secret="test-secret", faults=faults,
                      seed=seed, rate_limits={"default": 100_000}) as fake:
        first = _send_all(fake, store, batch)
        _check(first, orders(fake))
        # A re-run with the faults gone settles every order: each exactly once.
        fake.faults = Faults(stale_read_window=faults.stale_read_window)
        again = _send_all(fake, store, batch)
        _check(again, orders(fake))
        assert orders(fake) == {f"o-{n}": 1 for n in range(8)}
        assert all(r.status in (Status.SENT, Status.SKIPPED) for r in again)


def _check(results: list[ExportResult], posted: Counter[str]) -> None:
    assert all(n == 1 for n in posted.values()), posted  # never twice
    for result in results:
        if result.status is Status.SENT:
            assert posted[result.record_id] == 1, result  # never reported sent when absent
        elif posted[result.record_id] == 0:
            assert result.status is Status.FAILED, result  # absent: reported not sent
        assert result.status is not Status.SKIPPED or posted[result.record_id] == 1, result
