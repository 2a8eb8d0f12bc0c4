"""The doubt rule of purchases.py, case by case (issue 22): what an order in doubt waits for.

Pinned from the purchases.py mutation run: the job an order waits for, the time its doubt
is counted from, and the wording each waiting order is reported with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import KEY, SECRET, VirtualClock, app_for

from sailthru_destination.features.commerce import CommerceSender, Purchase, PurchaseItem
from sailthru_destination.features.purchases import doubt_log_of
from sailthru_destination.once.doubt import UNKNOWN_JOB, Doubt, InMemoryDoubtLog, may_post_again
from sailthru_destination.once.sentkeys import InMemorySentKeys, KeyState
from sailthru_destination.results import Status
from sailthru_destination.sync.bulkload.jobfile import dumps_line
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi

ITEM = PurchaseItem("sku-1", "Blue shirt", 1, "5.00", url="https://shop.example/sku-1")
ORDER = Purchase("o-1", email="ann@example.com", items=(ITEM,))


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> Iterator[tuple[FakeSailthru, SailthruApi]]:
    with FakeSailthru(api_key=KEY, api_secret=SECRET, clock=clock, job_seconds=60,
                      rate_limits={"default": 100_000}) as fake, \
            SailthruApi(app_for(fake), sleep=clock.sleep) as api:
        yield fake, api


def _in_doubt(store: InMemorySentKeys, doubt: Doubt) -> None:
    assert store.claim("purchase", "o-1")
    store.settle("purchase", "o-1", KeyState.UNKNOWN)
    doubt_log_of(store).note_doubt("purchase", "o-1", doubt)


def _doubted(store: InMemorySentKeys, clock: VirtualClock, since: float) -> Doubt:
    """The order's doubt, its time checked to lie between ``since`` and now (the API layer's
    pacing may move the clock on by a few microseconds) and then left out."""
    doubt = doubt_log_of(store).doubt("purchase", "o-1")
    assert doubt is not None
    assert since <= doubt.since <= clock.now
    return replace(doubt, since=0.0)


def _import_job(api: SailthruApi, tmp_path: Path, order_id: str) -> str:
    path = tmp_path / "orders.jsonl"
    path.write_text(dumps_line({"email": "ann@example.com", "purchase_keys": {"extid": order_id},
                                "items": [{"id": "s", "title": "S", "qty": 1, "price": 500,
                                           "url": "https://shop.example/s"}]}))
    return str(api.post("job", {"job": "purchase_import"}, file=str(path))["job_id"])


@pytest.mark.parametrize("imported", [True, False])
def test_an_order_of_a_running_job_waits_for_it_then_is_read_back(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock, tmp_path: Path,
    imported: bool,
) -> None:
    fake, api = world
    job = _import_job(api, tmp_path, "o-1" if imported else "another")
    store = InMemorySentKeys()
    _in_doubt(store, Doubt(0.0, 3, "the importing run", job))
    sender = CommerceSender(api, sent_keys=store, clock=clock)
    started = clock.now
    waiting = sender.send_purchase(ORDER)
    assert waiting.status is Status.FAILED
    assert f"Its purchase_import job {job} is still 'pending'" in waiting.detail
    # Its reads count from the job's end: nothing counted yet, the owner kept.
    assert _doubted(store, clock, started) == Doubt(0.0, 0, "the importing run", job)
    assert fake.calls[("GET", "purchase")] == 0
    clock.sleep(61)  # the job runs
    started = clock.now
    after = sender.send_purchase(ORDER)
    if imported:
        assert after.status is Status.SENT
        assert doubt_log_of(store).doubt("purchase", "o-1") is None
    else:
        assert after.status is Status.FAILED
        assert _doubted(store, clock, started) == Doubt(0.0, 1, "the importing run", None)
        assert "1 read(s) did not find it since" in after.detail
    assert fake.calls[("POST", "purchase")] == 0


def test_an_order_whose_job_cannot_be_looked_up_stays_in_doubt(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock,
) -> None:
    fake, api = world
    store = InMemorySentKeys()
    _in_doubt(store, Doubt(0.0, 3, "the importing run", "no-such-job"))
    result = CommerceSender(api, sent_keys=store, clock=clock).send_purchase(ORDER)
    assert result.status is Status.FAILED
    assert "Its purchase_import job no-such-job could not be looked up (" in result.detail
    assert fake.calls[("GET", "purchase")] == 0


def test_the_doubt_names_when_it_began(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock,
) -> None:
    _, api = world
    store = InMemorySentKeys()
    _in_doubt(store, Doubt(1_700_000_000.0, 0, "a dead run"))
    result = CommerceSender(api, sent_keys=store, clock=clock).send_purchase(ORDER)
    assert result.detail.startswith("in doubt: order 'o-1' may or may not be in Sailthru. It "
                                    "is marked 'unknown' and 1 read(s) did not find it since "
                                    "2023-11-14 22:13:20 UTC;")


def test_an_order_confirmed_absent_but_taken_by_another_worker_is_left_to_it(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock,
) -> None:
    fake, api = world

    class Raced(InMemorySentKeys):
        def reclaim(self, kind: str, key: str, state: KeyState) -> bool:
            return False  # another worker reclaimed it first

    store = Raced()
    _in_doubt(store, Doubt(0.0, 1, "a dead run"))
    result = CommerceSender(api, sent_keys=store, clock=clock).send_purchase(ORDER)
    assert result.status is Status.FAILED
    assert result.detail == "the purchase 'o-1' was taken over by another worker; send it again"
    assert fake.calls[("POST", "purchase")] == 0


def test_an_order_another_worker_is_sending_is_left_to_it(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock,
) -> None:
    fake, api = world
    asked: list[tuple[str, str]] = []

    class Busy(InMemorySentKeys):
        def in_flight(self, kind: str, key: str) -> bool:
            asked.append((kind, key))
            return True

    store = Busy()
    assert store.claim("purchase", "o-1")
    result = CommerceSender(api, sent_keys=store, clock=clock).send_purchase(ORDER)
    assert result.detail == "the purchase 'o-1' is being sent by another worker; send it again"
    assert asked == [("purchase", "o-1")]
    assert sum(fake.calls.values()) == 0


def test_an_unclear_post_is_logged_with_its_order(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, api = world
    fake.faults = Faults(server_error_rate=1.0)
    api.call_log.sink = lambda record: setattr(fake, "faults", Faults())
    with caplog.at_level(logging.WARNING, logger="sailthru_destination.features.purchases"):
        result = CommerceSender(api, clock=clock).send_purchase(ORDER)
    assert result.status is Status.FAILED
    assert "purchase 'o-1': not found right after a post without a clear answer: in doubt" in (
        caplog.text)


def test_a_bad_message_id_fails_naming_its_field(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock,
) -> None:
    _, api = world
    bad = Purchase("o-1", email="ann@example.com", items=(ITEM,), message_id=" ")
    result = CommerceSender(api, clock=clock).send_purchase(bad)
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "message_id"


def test_an_order_of_a_job_found_over_counts_its_reads_afresh(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock, tmp_path: Path,
) -> None:
    _, api = world
    job = _import_job(api, tmp_path, "another")
    clock.sleep(61)  # the job is over before the order is first looked at again
    store = InMemorySentKeys()
    _in_doubt(store, Doubt(0.0, 3, "the importing run", job))
    started = clock.now
    result = CommerceSender(api, sent_keys=store, clock=clock).send_purchase(ORDER)
    assert result.status is Status.FAILED
    assert _doubted(store, clock, started) == Doubt(0.0, 1, "the importing run", None)


def test_an_order_that_cannot_be_read_back_is_remembered_in_doubt(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock,
) -> None:
    fake, api = world
    store = InMemorySentKeys()
    assert store.claim("purchase", "o-1")  # left pending by a run that died
    fake.faults = Faults(server_error_rate=1.0)
    result = CommerceSender(api, sent_keys=store, clock=clock).send_purchase(ORDER)
    assert "could not be read back" in result.detail
    doubt = doubt_log_of(store).doubt("purchase", "o-1")
    assert doubt is not None
    assert (doubt.misses, doubt.job) == (0, None)


def test_a_store_that_keeps_its_own_doubts_is_asked_for_them() -> None:
    own = InMemoryDoubtLog()

    class Shared(InMemorySentKeys):
        def doubt_log(self) -> InMemoryDoubtLog:
            return own

    assert doubt_log_of(Shared()) is own
    plain = InMemorySentKeys()
    assert doubt_log_of(plain) is doubt_log_of(plain)  # one per store, for its lifetime
    assert doubt_log_of(plain) is not doubt_log_of(InMemorySentKeys())


def test_an_order_released_by_another_worker_meanwhile_is_left_to_a_rerun(
    world: tuple[FakeSailthru, SailthruApi], clock: VirtualClock,
) -> None:
    fake, api = world

    class Released(InMemorySentKeys):
        def claim(self, kind: str, key: str) -> bool:
            return False  # claimed by another worker, which then released it

    result = CommerceSender(api, sent_keys=Released(), clock=clock).send_purchase(ORDER)
    assert result.error is not None
    assert result.error.retryable
    assert result.detail == "the purchase 'o-1' was being sent by another worker; send it again"
    assert sum(fake.calls.values()) == 0


@pytest.mark.parametrize(("job", "again"), [(None, True), (UNKNOWN_JOB, True), ("job-7", False)])
def test_an_order_whose_job_was_not_seen_finished_is_never_posted_again(
    job: str | None, again: bool
) -> None:
    # Old enough, missed twice, put in doubt by a dead run: posted again, unless the
    # purchase_import job that may still import it was not seen finished (a known job id).
    doubt = Doubt(since=0.0, misses=2, owner="a dead run", job=job)
    assert may_post_again(doubt, now=3600.0, age=600.0, session="this run") is again
