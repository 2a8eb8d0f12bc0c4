"""RedisSentKeys: one store of sent keys for every host, on a real redis-server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import test_coordination
from helpers import KEY, app_for, make_fake
from test_coordination import RedisServer

from sailthru_destination.coordination import CoordinationError, RedisCoordination
from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.commerce import Purchase, PurchaseItem
from sailthru_destination.features.events import Event
from sailthru_destination.once.sentkeys import KeyState, Leased, SentKeys, send_once
from sailthru_destination.once.sentkeys_redis import RedisSentKeys
from sailthru_destination.options import DestinationOptions
from sailthru_destination.results import ExportResult, Status
from sailthru_destination.transport._concurrency import KeyedLocks

# The coordination tests' fixtures: a redis-server for this module, a key prefix per test.
redis_server = test_coordination.redis_server
coord = test_coordination.coord


def _host(coord: RedisCoordination, redis_url: str) -> RedisCoordination:
    """Another machine's view of the same Redis."""
    return RedisCoordination(redis_url, prefix=coord.prefix)


def _event(record_id: str) -> Event:
    return Event(
        key="ann@example.com", key_type="email", name="viewed", properties={}, record_id=record_id
    )


def _purchase(order_id: str) -> Purchase:
    return Purchase(
        order_id=order_id,
        email="ann@example.com",
        items=(PurchaseItem(id="sku-1", title="Mug", qty=1, price="9.50", url="https://x.test/1"),),
    )


def test_the_store_fits_the_protocols_and_keeps_accounts_apart(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    store = coord.sent_keys(KEY)
    assert isinstance(store, SentKeys)
    assert isinstance(store, Leased)
    other_host = _host(coord, redis_server.url)
    try:
        assert store.claim("event", "e1")
        assert not other_host.sent_keys(KEY).claim("event", "e1")
        assert other_host.sent_keys("another-account").claim("event", "e1")
        store.settle("event", "e1", KeyState.SENT)
        assert other_host.sent_keys(KEY).state("event", "e1") is KeyState.SENT
        assert other_host.sent_keys(KEY).state("purchase", "e1") is None
    finally:
        other_host.close()
    assert KEY not in repr(store)
    assert all(KEY not in k.decode() for k in coord.redis.keys("*"))


def test_only_one_of_many_concurrent_claims_wins(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    hosts = [_host(coord, redis_server.url) for _ in range(4)]
    wins: list[bool] = []
    guard = threading.Lock()

    def claim(host: RedisCoordination) -> None:
        store = host.sent_keys(KEY)
        for _ in range(5):
            won = store.claim("purchase", "order-1")
            with guard:
                wins.append(won)

    threads = [threading.Thread(target=claim, args=(h,)) for h in hosts for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for host in hosts:
        host.close()
    assert wins.count(True) == 1
    assert len(wins) == 40


def test_a_live_claim_is_never_reclaimed_and_a_lapsed_one_is(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    now = [1000.0]
    dying = RedisCoordination(redis_server.url, prefix=coord.prefix, wall_clock=lambda: now[0])
    survivor = RedisCoordination(redis_server.url, prefix=coord.prefix, wall_clock=lambda: now[0])
    try:
        assert dying.sent_keys(KEY, lease=10).claim("purchase", "o1")
        other = survivor.sent_keys(KEY, lease=10)
        assert not other.reclaim("purchase", "o1", KeyState.PENDING)
        now[0] += 11
        assert not other.reclaim("purchase", "o1", KeyState.UNKNOWN)  # pending, not unknown
        assert other.reclaim("purchase", "o1", KeyState.PENDING)
        # The lapsed owner's release must not drop the new owner's claim.
        dying.sent_keys(KEY, lease=10).release("purchase", "o1")
        assert other.state("purchase", "o1") is KeyState.PENDING
        other.settle("purchase", "o1", KeyState.UNKNOWN)
        assert other.reclaim("purchase", "o1", KeyState.UNKNOWN)  # anyone may look it up
        other.settle("purchase", "o1", KeyState.SENT)
        assert not other.reclaim("purchase", "o1", KeyState.UNKNOWN)
        assert not other.reclaim("purchase", "o1", KeyState.PENDING)
        assert not other.reclaim("purchase", "never-claimed", KeyState.UNKNOWN)
    finally:
        dying.close()
        survivor.close()


def test_two_hosts_sending_the_same_records_post_each_once(
    coord: RedisCoordination, redis_server: RedisServer, tmp_path: Path
) -> None:
    events = [_event(f"e{i}") for i in range(20)]
    purchases = [_purchase(f"o{i}") for i in range(20)]
    with make_fake() as fake:
        hosts = [_host(coord, redis_server.url) for _ in range(2)]
        results: list[list[ExportResult]] = []

        def run(index: int) -> None:
            options = DestinationOptions(
                lock_dir=str(tmp_path / f"host{index}"), coordination=hosts[index]
            )
            with SailthruDestination(app_for(fake), options) as dest:
                found = list(dest.send_events(events).results)
                found += dest.send_purchases(purchases).results
                results.append(found)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for host in hosts:
            host.close()
        posted_events = [e["vars"] for e in fake.events]
        order_ids = [p["purchase_keys"]["extid"] for p in fake.purchases]
    assert len(posted_events) == 20
    assert sorted(order_ids) == sorted(f"o{i}" for i in range(20))
    statuses = [r.status for found in results for r in found]
    # Each record went out from one host; the other skipped it, saw it in flight, or (an
    # order it found claimed) read it back from Sailthru and found it there: "sent" too, by
    # the doubt rule. Sailthru holds each exactly once (above); every record is reported sent.
    sent = {r.record_id for found in results for r in found if r.status is Status.SENT}
    assert sent == {f"e{i}" for i in range(20)} | {f"o{i}" for i in range(20)}
    assert statuses.count(Status.SENT) >= 40
    for result in (r for found in results for r in found if r.status is Status.FAILED):
        assert result.error is not None
        assert result.error.retryable


def test_a_purchase_left_pending_by_a_dead_worker_is_looked_up_then_sent_once_later(
    coord: RedisCoordination, redis_server: RedisServer, tmp_path: Path
) -> None:
    # The dead worker's clock is an hour behind: every lease it took has run out by now.
    dead = RedisCoordination(
        redis_server.url, prefix=coord.prefix, wall_clock=lambda: time.time() - 3600
    )
    with make_fake() as fake:
        options = DestinationOptions(lock_dir=str(tmp_path), coordination=dead)
        with SailthruDestination(app_for(fake), options) as dest:
            assert dest.send_purchases([_purchase("posted")]).results[0].status is Status.SENT
        # The dead worker claimed these and died: "posted-too" reached Sailthru, "lost" did not.
        store = dead.sent_keys(KEY, lease=5)
        for order_id in ("posted-too", "lost"):
            assert store.claim("purchase", order_id)
        with SailthruDestination(app_for(fake), options) as dest:
            dest.api.post("purchase", {**_payload("posted-too")})
        event = _event("ev")
        assert store.claim("event", "ev")
        survivor = _host(coord, redis_server.url)
        survivor_options = DestinationOptions(lock_dir=str(tmp_path), coordination=survivor)
        with SailthruDestination(app_for(fake), survivor_options) as dest:
            again = dest.send_purchases(
                [_purchase("posted"), _purchase("posted-too"), _purchase("lost")]
            ).results
            event_result = dest.send_events([event]).results[0]
        # "lost" may have been posted just before its worker died, and reads lag: in doubt
        # (shared through Redis) until reads over the doubt age miss it; a later task sends it.
        assert dest.send_purchases([_purchase("lost")]).results[0].status is Status.FAILED
        later = time.time() + 601
        with SailthruDestination(app_for(fake), survivor_options, clock=lambda: later) as dest:
            last = dest.send_purchases([_purchase("lost")]).results[0]
        survivor.close()
        order_ids = sorted(p["purchase_keys"]["extid"] for p in fake.purchases)
        events = len(fake.events)
    dead.close()
    assert [r.status for r in again] == [Status.SKIPPED, Status.SENT, Status.FAILED]
    assert "found in Sailthru" in again[1].detail  # recorded, not posted again
    assert again[2].detail.startswith("in doubt: order 'lost'")
    assert last.status is Status.SENT
    assert order_ids == ["lost", "posted", "posted-too"]  # each exactly once
    # An event cannot be read back: a lapsed claim stays at most once, for reconciliation.
    assert event_result.status is Status.FAILED
    assert events == 0
    assert event_result.error is not None
    assert not event_result.error.retryable


def _payload(order_id: str) -> dict[str, object]:
    return {
        "email": "ann@example.com",
        "items": [
            {"id": "sku-1", "title": "Mug", "qty": 1, "price": 950, "url": "https://x.test/1"}
        ],
        "incomplete": 0,
        "purchase_keys": {"extid": order_id},
    }


def test_redis_lost_mid_run_sends_nothing_unguarded_and_reports_retryable(
    tmp_path: Path,
) -> None:
    server = RedisServer()
    coordination = RedisCoordination(server.url, prefix="lost", cooldown=60.0)
    try:
        with make_fake() as fake:
            # Pacing is this machine's (it needs no Redis), so only the sent keys meet Redis.
            options = DestinationOptions(lock_dir=str(tmp_path))
            store = coordination.sent_keys(KEY)
            with SailthruDestination(app_for(fake), options, sent_keys=store) as dest:
                assert dest.send_purchases([_purchase("before")]).results[0].status is Status.SENT
                server.stop()
                results = dest.send_purchases([_purchase("a"), _purchase("b")]).results
                event = _event("x")
                event_result = dest.send_events([event]).results[0]
            purchases = len(fake.purchases)
            events = len(fake.events)
    finally:
        server.stop()
        coordination.close()
    assert purchases == 1
    assert events == 0
    for result in (*results, event_result):
        assert result.status is Status.FAILED
        assert result.error is not None
        assert result.error.retryable
        assert "Redis" in result.error.reason


def test_a_send_that_succeeded_is_reported_sent_when_recording_it_fails() -> None:
    server = RedisServer()
    coordination = RedisCoordination(server.url, prefix="settle")
    store = coordination.sent_keys(KEY)

    def send() -> ExportResult:
        server.stop()  # Redis dies after Sailthru took the write
        return ExportResult(Status.SENT, "r1", "sent")

    try:
        result = send_once(store, KeyedLocks(), "event", "r1", "r1", send)
    finally:
        coordination.close()
    assert result.status is Status.SENT


def test_a_redis_failure_during_claim_raises_a_retryable_coordination_error() -> None:
    server = RedisServer()
    coordination = RedisCoordination(server.url, prefix="claim")
    store = RedisSentKeys(coordination, KEY)
    server.stop()
    try:
        with pytest.raises(CoordinationError) as caught:
            store.claim("event", "e1")
        with pytest.raises(CoordinationError) as recording:
            store.settle("event", "e1", KeyState.SENT)
    finally:
        coordination.close()
    assert caught.value.retryable
    # Each error names what could not be done, and to which key.
    assert "claim the event 'e1'" in str(caught.value)
    assert "record the event 'e1' as sent" in str(recording.value)
    with pytest.raises(ValueError, match="lease"):
        RedisSentKeys(coordination, KEY, lease=0)


def test_an_interrupted_send_stays_claimed_as_unknown(coord: RedisCoordination) -> None:
    store = coord.sent_keys(KEY)

    def interrupted() -> ExportResult:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        send_once(store, KeyedLocks(), "event", "e-int", "r", interrupted)
    assert store.state("event", "e-int") is KeyState.UNKNOWN
    assert not store.in_flight("event", "e-int")
    again = send_once(store, KeyedLocks(), "event", "e-int", "r",
                      lambda: ExportResult(Status.SENT, "r", "ok"))
    assert again.status is Status.FAILED


def test_a_released_key_is_forgotten_and_may_be_sent(coord: RedisCoordination) -> None:
    """A send that surely did not apply gives its key back: the next claim wins it."""
    store = coord.sent_keys(KEY)
    assert store.claim("event", "e-rel")
    assert store.in_flight("event", "e-rel")
    store.release("event", "e-rel")
    assert store.state("event", "e-rel") is None
    assert not store.in_flight("event", "e-rel")
    assert store.claim("event", "e-rel")
    with pytest.raises(ValueError, match="SENT or UNKNOWN"):
        store.settle("event", "e-rel", KeyState.PENDING)  # an outcome, never a claim
    assert store.state("event", "e-rel") is KeyState.PENDING


def test_a_redis_url_that_decodes_replies_reads_the_same_states(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    """``?decode_responses=true`` in the URL makes Redis answer text, not bytes: a claim
    is still seen in flight and an outcome still read back."""
    decoding = RedisCoordination(f"{redis_server.url}?decode_responses=true", prefix=coord.prefix)
    try:
        store = decoding.sent_keys(KEY)
        assert store.claim("purchase", "o-text")
        assert store.in_flight("purchase", "o-text")
        assert store.state("purchase", "o-text") is KeyState.PENDING
        store.settle("purchase", "o-text", KeyState.SENT)
        assert store.state("purchase", "o-text") is KeyState.SENT
        assert not store.in_flight("purchase", "o-text")
    finally:
        decoding.close()
