"""Which events, purchases and returns were already sent, so a re-run sends nothing twice.

Sailthru cannot edit or undo a purchase, and a repeated event triggers its flow again, so
these writes go out **at most once** per key and store:

1. check and claim: :meth:`SentKeys.claim` atomically records the key as ``pending``
   (durably, before the call) or says it is already recorded;
2. send;
3. settle: ``sent`` after a success, ``unknown`` when the call got no answer
   (:class:`~sailthru_destination.errors.OutcomeUnknown`) and when the send was
   interrupted (Ctrl-C, SIGTERM) while the call may be out, or :meth:`SentKeys.release`
   when the call surely did not apply (Sailthru refused it, or it never left).

A key found ``pending`` or ``unknown`` is never sent again blind: a crash between claim and
settle, or an unclear answer (a 5xx, a read timeout), leaves it there, and the record is
reported failed "for reconciliation" (check Sailthru, then :meth:`SentKeys.release` it to
send it again). We prefer losing a send to a human's review over posting an event twice:
that is the at-most-once choice. Purchases can be read back, so :mod:`.purchases` does the
reconciling itself and sends each order exactly once: an ``unknown`` order confirmed absent
is taken back with :meth:`SentKeys.reclaim`, which only one worker can win. A store whose
pending claims carry a lease (:class:`Leased`, e.g. Redis across hosts) also tells a claim
whose owner may still be sending (reported retryable) from one its owner abandoned (a killed
worker): an abandoned purchase is read back, then recorded or sent once. Within one
process a per-key lock (:func:`send_once`) keeps two threads from sending the same key at
once; across processes the store's atomic claim does.

:class:`InMemorySentKeys` is the default (one process, forgotten at exit); the runner's
SQLite state implements the same :class:`SentKeys` protocol.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from enum import Enum
from typing import Protocol, runtime_checkable

from ..errors import OutcomeUnknown, RecordError, SailthruError
from ..results import ExportResult, Status
from ..shaping._invalid import InvalidValue
from ..transport._concurrency import KeyedLocks

__all__ = ["InMemorySentKeys", "KeyState", "Leased", "SentKeys", "send_once"]

log = logging.getLogger(__name__)


class KeyState(str, Enum):
    """What a store knows about one key."""

    PENDING = "pending"
    """Claimed for a send that has not settled (in flight, or its process died)."""
    SENT = "sent"
    """Sailthru accepted it."""
    UNKNOWN = "unknown"
    """Sent, but no answer came: it may or may not have been applied."""

    def __str__(self) -> str:
        return str(self.value)


@runtime_checkable
class SentKeys(Protocol):
    """A store of the keys (per kind: ``event``, ``purchase``, ``return``, ``cart``) sent.

    Implementations must be safe to share between threads; ``claim`` must be atomic and
    durable before it returns (a crash after it must leave the key ``pending``).
    """

    def claim(self, kind: str, key: str) -> bool:
        """Record ``key`` as pending and return True, or return False if it is recorded."""
        ...

    def state(self, kind: str, key: str) -> KeyState | None:
        """The recorded state of ``key``, or None when it is not recorded."""
        ...

    def settle(self, kind: str, key: str, state: KeyState) -> None:
        """Record the outcome of a claimed send: ``SENT`` or ``UNKNOWN``."""
        ...

    def release(self, kind: str, key: str) -> None:
        """Forget ``key``: its send surely did not apply, so it may be sent again."""
        ...

    def reclaim(self, kind: str, key: str, state: KeyState) -> bool:
        """Atomically move ``key`` from ``state`` back to pending; False if not in ``state``.

        For a send found not applied after all: of the workers that find it so, only the
        one that reclaims it sends it again.
        """
        ...


@runtime_checkable
class Leased(Protocol):
    """A store whose pending claims belong to their owner for a lease only (e.g. Redis)."""

    def in_flight(self, kind: str, key: str) -> bool:
        """Whether ``key`` is pending under a claim whose owner may still be sending it."""
        ...


class InMemorySentKeys:
    """A thread-safe :class:`SentKeys` held in memory: it lasts as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], KeyState] = {}

    def claim(self, kind: str, key: str) -> bool:
        with self._lock:
            if (kind, key) in self._states:
                return False
            self._states[(kind, key)] = KeyState.PENDING
            return True

    def state(self, kind: str, key: str) -> KeyState | None:
        with self._lock:
            return self._states.get((kind, key))

    def settle(self, kind: str, key: str, state: KeyState) -> None:
        if state is KeyState.PENDING:
            raise ValueError("settle records an outcome: SENT or UNKNOWN")
        with self._lock:
            self._states[(kind, key)] = state

    def release(self, kind: str, key: str) -> None:
        with self._lock:
            self._states.pop((kind, key), None)

    def reclaim(self, kind: str, key: str, state: KeyState) -> bool:
        with self._lock:
            if self._states.get((kind, key)) is not state:
                return False
            self._states[(kind, key)] = KeyState.PENDING
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def __repr__(self) -> str:
        return f"InMemorySentKeys({len(self)} keys)"


def send_once(
    store: SentKeys,
    locks: KeyedLocks,
    kind: str,
    key: str,
    record_id: str,
    send: Callable[[], ExportResult],
) -> ExportResult:
    """Run ``send`` unless ``key`` of ``kind`` was already sent (or may have been).

    ``send`` makes the Sailthru calls and returns the record's result, or raises. A
    ``SKIPPED``/``FAILED`` result, a Sailthru refusal or an invalid value (the call surely
    did not apply) releases the key; an ``OutcomeUnknown`` settles it ``unknown`` and is
    reported as a failure to reconcile. Any other exception (Ctrl-C, SIGTERM, SystemExit,
    a bug) may come while the call is out: the key is settled ``unknown`` (left ``pending``
    if even that fails), never released, and the exception goes on.
    """
    with locks.for_key((kind, key)):
        if not store.claim(kind, key):
            if isinstance(store, Leased) and store.in_flight(kind, key):
                reason = f"the {kind} {key!r} is being sent by another worker; send it again"
                return ExportResult.failed(RecordError(record_id, reason, retryable=True))
            return _already(store.state(kind, key), kind, key, record_id)
        try:
            result = send()
        except OutcomeUnknown as exc:
            store.settle(kind, key, KeyState.UNKNOWN)
            log.warning("%s %r: no clear answer from Sailthru; marked unknown", kind, key)
            reason = (
                f"{exc} The {kind} {key!r} is marked 'unknown' and will not be sent again: "
                "check Sailthru, then release the key if it was not applied"
            )
            return ExportResult.failed(RecordError(record_id, reason, code=exc.code))
        except (SailthruError, InvalidValue):
            store.release(kind, key)  # refused for certain, or never sent: it did not apply
            raise
        except BaseException:
            # Ctrl-C, SIGTERM, a bug: the call may be out and applied. Never released: the
            # next run reports it for reconciliation rather than sending it twice.
            log.warning("%s %r: interrupted while it was being sent; marked unknown", kind, key)
            with contextlib.suppress(Exception):  # left pending if even that fails
                store.settle(kind, key, KeyState.UNKNOWN)
            raise
        if result.status is not Status.SENT:
            store.release(kind, key)
            return result
        try:
            store.settle(kind, key, KeyState.SENT)
        except SailthruError as exc:
            # Sent, but not recorded: the claim stays pending, so it is never sent again, and
            # reporting the record retryable would invite a retry that the claim then blocks.
            log.error("%s %r: sent, but recording it failed: %s", kind, key, exc)
        return result


def _already(state: KeyState | None, kind: str, key: str, record_id: str) -> ExportResult:
    if state is KeyState.SENT:
        return ExportResult(Status.SKIPPED, record_id, f"already sent ({kind} {key!r})")
    if state is None:
        # Released by someone else between our claim and this read: let a re-run decide.
        reason = f"the {kind} {key!r} was being sent by another worker; send it again"
        return ExportResult.failed(RecordError(record_id, reason, retryable=True))
    reason = (
        f"the {kind} {key!r} is marked {state.value!r}: an earlier send may or may not have "
        "reached Sailthru, so it is not sent again; check Sailthru, then release the key "
        "if it was not applied"
    )
    return ExportResult.failed(RecordError(record_id, reason))
