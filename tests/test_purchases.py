"""Purchases exactly once: an unknown outcome is settled by reading the order back.

Issue 12, defect 2: a server that applied a POST /purchase and then answered 504 got it
again, because a 5xx was taken for "never reached". Now any unknown outcome (5xx, error 9,
read timeout, dropped connection) is followed by GET /purchase by the order id; found, it
is sent. Issue 22, defect 1: one read (or two a pause apart) that misses it proves
nothing, as reads lag writes with no bound: the order is in doubt, and only a later run
posts it again, once reads spread over the doubt age miss it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import VirtualClock, app_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sailthru_destination.features.commerce import CommerceSender, Purchase, PurchaseItem
from sailthru_destination.features.purchases import doubt_log_of
from sailthru_destination.once.doubt import Doubt
from sailthru_destination.once.sentkeys import InMemorySentKeys, KeyState
from sailthru_destination.results import ExportResult, Status
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi
from sailthru_destination.transport.calllog import CallLog, CallRecord

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




AGE = 600.0


def test_reads_lagging_past_the_pause_never_post_an_order_twice() -> None:
    # Issue 22, defect 1: a 5xx after the purchase was applied, and reads lagging ~1.5 s,
    # more than the 1 s read-back pause: the read-back saw "absent" and posted again (8 of
    # 30 orders went in two or three times).
    clock = VirtualClock()
    faults = Faults(error_after_apply_rate=0.5, stale_read_window=1.5)
    store = InMemorySentKeys()
    batch = [purchase(f"o-{n}", f"buyer{n}@example.com") for n in range(30)]
    with FakeSailthru(api_key="test-key", api_secret="test-secret", faults=faults, seed=7,
                      rate_limits={"default": 100_000}, clock=clock) as fake:
        with api_on(fake, sleep=clock.sleep) as api:
            first = list(CommerceSender(api, sent_keys=store, clock=clock)
                         .iter_send_purchases(batch))
        assert max(orders(fake).values()) == 1  # never twice
        in_doubt = [r for r in first if r.status is Status.FAILED]
        assert in_doubt
        assert all(r.detail.startswith(f"in doubt: order {r.record_id!r}") for r in in_doubt)
        assert all(orders(fake)[r.record_id] == 1 for r in first if r.status is Status.SENT)
        fake.faults = Faults()
        clock.sleep(AGE + 1)  # a later run: the reads have caught up
        with api_on(fake, sleep=clock.sleep) as api:
            again = list(CommerceSender(api, sent_keys=store, clock=clock)
                         .iter_send_purchases(batch))
        assert orders(fake) == {f"o-{n}": 1 for n in range(30)}
        assert {r.status for r in again} <= {Status.SENT, Status.SKIPPED}


def test_an_order_not_applied_is_in_doubt_then_posted_once_by_a_later_run_after_the_age(
    fake: FakeSailthru,
) -> None:
    clock = VirtualClock()
    store = InMemorySentKeys()
    fake.faults = Faults(server_error_rate=1.0)
    # The read after the 500 is answered, and finds nothing: in doubt, not posted again.
    with api_on(fake, after_call=lambda _: setattr(fake, "faults", Faults())) as api:
        sender = CommerceSender(api, sent_keys=store, clock=clock)
        first = sender.send_purchase(purchase())
        assert (calls_to(api, "POST"), calls_to(api, "GET")) == (1, 1)
        assert first.status is Status.FAILED
        assert first.error is not None
        assert first.error.retryable
        assert first.detail.startswith("in doubt: order 'o-1'")
        assert store.state("purchase", "o-1") is KeyState.UNKNOWN
        doubt = doubt_log_of(store).doubt("purchase", "o-1")
        assert doubt is not None
        assert (doubt.misses, doubt.owner) == (1, sender._purchases.session)  # the miss counts
        clock.sleep(AGE + 1)
        # The sender that put it in doubt never posts it again (the same run)...
        assert sender.send_purchase(purchase()).status is Status.FAILED
        # ...nor a later one before the age has passed since it went into doubt...
        early = VirtualClock()
        early.now = clock.now - 2
        assert CommerceSender(api, sent_keys=store, clock=early).send_purchase(
            purchase()).status is Status.FAILED
        assert calls_to(api, "POST") == 1
        # ...but a later run after it does, once.
        later = CommerceSender(api, sent_keys=store, clock=clock)
        assert later.send_purchase(purchase()).status is Status.SENT
        assert later.send_purchase(purchase()).status is Status.SKIPPED
    assert orders(fake) == {"o-1": 1}


def test_doubt_age_must_be_a_number_of_seconds(api: SailthruApi) -> None:
    with pytest.raises(ValueError, match="doubt_age"):
        CommerceSender(api, purchase_doubt_age=-1)


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


def test_an_unknown_purchase_confirmed_absent_is_reclaimed_once_and_sent_once(
    fake: FakeSailthru, api: SailthruApi
) -> None:
    store = InMemorySentKeys()
    assert store.claim("purchase", "o-1")
    store.settle("purchase", "o-1", KeyState.UNKNOWN)
    doubt_log_of(store).note_doubt("purchase", "o-1", Doubt(0.0, misses=1, owner="a dead run"))
    results = [CommerceSender(api, sent_keys=store).send_purchase(purchase()) for _ in range(2)]
    assert [r.status for r in results] == [Status.SENT, Status.SKIPPED]
    assert orders(fake) == {"o-1": 1}
    assert store.reclaim("purchase", "o-1", KeyState.UNKNOWN) is False
    assert doubt_log_of(store).doubt("purchase", "o-1") is None


def test_in_the_sync_state_an_order_in_doubt_is_read_back_and_sent_once_by_a_later_run(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path
) -> None:
    clock = VirtualClock()
    fake.faults = Faults(server_error_rate=1.0)  # nothing applied, nothing readable
    with SyncState(tmp_path / "state.sqlite") as state:
        first = CommerceSender(api, sent_keys=state, clock=clock).send_purchase(purchase())
        assert first.status is Status.FAILED
        assert state.state("purchase", "o-1") is KeyState.UNKNOWN
    fake.faults = Faults()
    with SyncState(tmp_path / "state.sqlite") as state:  # a later run, too early
        again = CommerceSender(api, sent_keys=state, clock=clock).send_purchase(purchase())
        assert again.status is Status.FAILED
        doubt = state.doubt("purchase", "o-1")
        assert doubt is not None
        assert doubt.since <= clock.now
        assert doubt.misses == 1
    clock.sleep(AGE)
    with SyncState(tmp_path / "state.sqlite") as state:  # a later run, after the age
        assert not state.reclaim("purchase", "o-1", KeyState.SENT)
        last = CommerceSender(api, sent_keys=state, clock=clock).send_purchase(purchase())
        assert last.status is Status.SENT
        assert state.state("purchase", "o-1") is KeyState.SENT
        assert state.doubt("purchase", "o-1") is None
    assert orders(fake) == {"o-1": 1}


# -- any mix of faults ----------------------------------------------------------------------

STALE_WINDOW = 0.02  # seconds (real ones: these fakes run on the real clock)

fault_mixes = st.builds(
    Faults,
    connection_error_rate=st.sampled_from([0.0, 0.1, 0.3]),
    server_error_rate=st.sampled_from([0.0, 0.1, 0.3]),
    error_after_apply_rate=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    rate_limit_burst=st.sampled_from([0.0, 0.2]),
    stale_read_window=st.sampled_from([0.0, STALE_WINDOW]),
)


def _send_all(
    fake: FakeSailthru, store: InMemorySentKeys, batch: list[Purchase], clock: VirtualClock
) -> list[ExportResult]:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002, jitter=False)
    with SailthruApi(app_for(fake), sleep=time.sleep, retry=policy) as api:
        sender = CommerceSender(api, sent_keys=store, clock=clock)
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
        clock = VirtualClock()
        first = _send_all(fake, store, batch, clock)
        _check(first, orders(fake))
        # Later runs with the faults gone settle every order: each exactly once.
        fake.faults = Faults(stale_read_window=faults.stale_read_window)
        for _ in range(2):
            time.sleep(STALE_WINDOW)
            clock.sleep(AGE)
            again = _send_all(fake, store, batch, clock)
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
