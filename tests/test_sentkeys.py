"""The sent-keys store and send_once: at most once per key, unknown outcomes kept for review."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sailthru_destination.coordination import CoordinationError
from sailthru_destination.errors import InvalidRequest, OutcomeUnknown
from sailthru_destination.once.sentkeys import InMemorySentKeys, KeyState, SentKeys, send_once
from sailthru_destination.results import ExportResult, Status
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.transport._concurrency import KeyedLocks


def sent(rid: str = "r") -> ExportResult:
    return ExportResult(Status.SENT, rid, "ok")


def test_the_in_memory_store_follows_the_protocol() -> None:
    assert isinstance(InMemorySentKeys(), SentKeys)


def test_a_claim_succeeds_once_per_kind_and_key() -> None:
    store = InMemorySentKeys()
    assert store.claim("purchase", "o1")
    assert not store.claim("purchase", "o1")
    assert store.claim("event", "o1")
    assert store.state("purchase", "o1") is KeyState.PENDING
    store.settle("purchase", "o1", KeyState.SENT)
    assert store.state("purchase", "o1") is KeyState.SENT
    store.release("purchase", "o1")
    assert store.state("purchase", "o1") is None
    assert store.claim("purchase", "o1")


def test_settle_refuses_pending_as_an_outcome() -> None:
    with pytest.raises(ValueError, match=r"^settle records an outcome: SENT or UNKNOWN$"):
        InMemorySentKeys().settle("event", "e", KeyState.PENDING)


def test_claims_are_atomic_across_threads() -> None:
    store = InMemorySentKeys()
    start = threading.Barrier(16)

    def claim(_: int) -> bool:
        start.wait()
        return store.claim("event", "k")

    with ThreadPoolExecutor(16) as pool:
        wins = list(pool.map(claim, range(16)))
    assert wins.count(True) == 1


def test_send_once_sends_then_skips_the_same_key() -> None:
    store, locks, calls = InMemorySentKeys(), KeyedLocks(), []

    def send() -> ExportResult:
        calls.append(1)
        return sent()

    assert send_once(store, locks, "event", "k", "r", send).status is Status.SENT
    again = send_once(store, locks, "event", "k", "r", send)
    assert again.status is Status.SKIPPED
    assert "already sent" in again.detail
    assert len(calls) == 1
    assert store.state("event", "k") is KeyState.SENT


def test_a_refused_send_releases_the_key() -> None:
    store = InMemorySentKeys()

    def refused() -> ExportResult:
        raise InvalidRequest("bad", endpoint="purchase", method="POST", status=400, code=2)

    with pytest.raises(InvalidRequest):
        send_once(store, KeyedLocks(), "purchase", "o", "r", refused)
    assert store.state("purchase", "o") is None


def test_a_skipped_or_failed_result_releases_the_key() -> None:
    store = InMemorySentKeys()
    result = send_once(
        store, KeyedLocks(), "cart", "c", "r", lambda: ExportResult(Status.SKIPPED, "r", "no-op")
    )
    assert result.status is Status.SKIPPED
    assert store.state("cart", "c") is None


def test_an_unknown_outcome_is_kept_and_never_sent_again() -> None:
    store, locks, calls = InMemorySentKeys(), KeyedLocks(), []

    def timed_out() -> ExportResult:
        calls.append(1)
        raise OutcomeUnknown("read timeout", endpoint="purchase", method="POST")

    first = send_once(store, locks, "purchase", "o9", "r-9", timed_out)
    assert first.status is Status.FAILED
    assert first.error is not None
    assert not first.error.retryable
    assert (first.record_id, first.error.record_id) == ("r-9", "r-9")
    assert first.detail.endswith(
        " The purchase 'o9' is marked 'unknown' and will not be sent again: check Sailthru, "
        "then release the key if it was not applied")
    assert store.state("purchase", "o9") is KeyState.UNKNOWN
    second = send_once(store, locks, "purchase", "o9", "r-9", timed_out)
    assert second.status is Status.FAILED
    assert second.detail == (
        "the purchase 'o9' is marked 'unknown': an earlier send may or may not have reached "
        "Sailthru, so it is not sent again; check Sailthru, then release the key if it was "
        "not applied")
    assert len(calls) == 1


def test_a_key_left_pending_by_a_crash_is_not_sent_again() -> None:
    store = InMemorySentKeys()
    assert store.claim("purchase", "o1")  # the process died before settling
    result = send_once(store, KeyedLocks(), "purchase", "o1", "r", sent)
    assert result.status is Status.FAILED
    assert "'pending'" in result.detail


def test_reclaim_moves_a_key_back_to_pending_only_from_the_given_state() -> None:
    store = InMemorySentKeys()
    assert not store.reclaim("purchase", "o-1", KeyState.UNKNOWN)  # not recorded
    assert store.claim("purchase", "o-1")
    assert not store.reclaim("purchase", "o-1", KeyState.UNKNOWN)  # pending, not unknown
    store.settle("purchase", "o-1", KeyState.UNKNOWN)
    assert store.reclaim("purchase", "o-1", KeyState.UNKNOWN)
    assert store.state("purchase", "o-1") is KeyState.PENDING
    assert not store.reclaim("purchase", "o-1", KeyState.UNKNOWN)


def test_of_many_threads_one_reclaims_an_unknown_key() -> None:
    store = InMemorySentKeys()
    store.claim("purchase", "o-1")
    store.settle("purchase", "o-1", KeyState.UNKNOWN)
    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(pool.map(lambda _: store.reclaim("purchase", "o-1", KeyState.UNKNOWN),
                            range(32)))
    assert won.count(True) == 1


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_a_send_interrupted_while_out_is_unknown_never_released(
    stop: type[BaseException], tmp_path: Path
) -> None:
    # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI) or a bug while the POST is
    # out: it may have been applied, so the next run must not send it again.
    with SyncState(tmp_path / "state.db") as state:
        for store in (InMemorySentKeys(), state):
            _check_interrupted(store, stop)


def _check_interrupted(store: SentKeys, stop: type[BaseException]) -> None:
    def interrupted() -> ExportResult:
        raise stop()

    with pytest.raises(stop):
        send_once(store, KeyedLocks(), "event", "e1", "r", interrupted)
    assert store.state("event", "e1") is KeyState.UNKNOWN
    again = send_once(store, KeyedLocks(), "event", "e1", "r", sent)
    assert again.status is Status.FAILED
    assert "'unknown'" in again.detail


class _Busy(InMemorySentKeys):
    """A store shared with another worker, which holds every key's lease (Redis's case)."""

    def claim(self, kind: str, key: str) -> bool:
        return False

    def in_flight(self, kind: str, key: str) -> bool:
        return key == "held"


def test_a_key_another_worker_is_sending_or_released_meanwhile_fails_retryable() -> None:
    store, calls = _Busy(), list[int]()

    def counted() -> ExportResult:
        calls.append(1)
        return sent()

    for key, verb in (("held", "is"), ("freed", "was")):
        result = send_once(store, KeyedLocks(), "event", key, f"r-{key}", counted)
        assert result.status is Status.FAILED
        assert result.error is not None
        assert (result.record_id, result.error.record_id, result.error.retryable) == (
            f"r-{key}", f"r-{key}", True)
        assert result.detail == (
            f"the event {key!r} {verb} being sent by another worker; send it again")
    assert calls == []


def test_a_send_whose_recording_fails_stays_sent_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unrecorded(InMemorySentKeys):
        def settle(self, kind: str, key: str, state: KeyState) -> None:
            raise CoordinationError("Redis went away")

    store = Unrecorded()
    with caplog.at_level(logging.ERROR, logger="sailthru_destination.once.sentkeys"):
        result = send_once(store, KeyedLocks(), "event", "k1", "r", sent)
    assert result.status is Status.SENT
    assert store.state("event", "k1") is KeyState.PENDING  # never sent again
    [message] = caplog.messages
    assert message.startswith("event 'k1': sent, but recording it failed: ")
    assert "Redis went away" in message
