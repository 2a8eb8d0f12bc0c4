"""The worker: drains the queue through the SegmentAdapter, one user's messages in order.

Chunks are taken in arrival order and each chunk goes through
:meth:`~sailthru_destination.segment.SegmentAdapter.iter_process`, which keeps every user's
messages in order while different users run concurrently; the next chunk starts when the
last one is done, so order holds across chunks too. Each result is recorded in the queue;
each failure also lands in the run report (``errors.jsonl``), each message skipped on purpose
in ``skipped.jsonl`` (and the log, at ``-v``), and each message applied with renamed or
dropped vars in ``renamed.jsonl`` beside it.

At a graceful stop (:meth:`Worker.stop`) the sends in flight finish and the messages of the
chunk not yet started go back to the queue untouched (they are not marked done), so the next
start sends them; see :class:`OnceAdapter`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import RecordError
from ..once.sentkeys import SentKeys, send_once
from ..results import ExportResult, Status
from ..segment import SegmentAdapter
from ..sync.reporting.report import RunReport
from ..sync.reporting.summary import RecordNotice
from ..sync.runner import RecordFailure
from ..transport._concurrency import KeyedLocks
from ..transport._protocol import ErrorCode
from .queue import MessageQueue

__all__ = ["OnceAdapter", "Worker", "refuses_credentials"]

log = logging.getLogger(__name__)


class Worker:
    """A thread that sends queued messages until stopped."""

    def __init__(
        self,
        queue: MessageQueue,
        adapter: SegmentAdapter,
        report: RunReport,
        *,
        chunk: int = 100,
        on_result: Callable[[str, str], None] | None = None,
        on_refusal: Callable[[str | None], None] | None = None,
    ) -> None:
        """``on_result(outcome, kind)`` is told each message's outcome (for the metrics);
        ``on_refusal(sentence)`` that Sailthru refuses the credentials, ``on_refusal(None)``
        that a send went through again (the app closes and reopens its intake)."""
        self._queue = queue
        self._adapter = adapter
        self._on_result = on_result
        self._on_refusal = on_refusal
        self._report = report
        self._chunk = chunk
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serve-worker", daemon=True)
        self.counts: dict[str, int] = {}

    def start(self) -> None:
        """Start draining in the background."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish the sends in flight, return the rest of the chunk to the queue, and stop.

        Returns whether the worker stopped within ``timeout`` seconds.
        """
        self._stop.set()
        if isinstance(self._adapter, OnceAdapter):
            self._adapter.halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def drain_once(self, wait: float = 0.0) -> int:
        """Send one chunk; returns how many messages it held."""
        taken = self._queue.take(self._chunk, wait)
        if not taken:
            return 0
        log.info("queue depth %d, sending %d message(s)", self._queue.depth(), len(taken))
        messages = [message for _, message in taken]
        for (seq, message), result in zip(taken, self._adapter.iter_process(messages), strict=True):
            self._record(seq, message, result)
        return len(taken)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain_once(wait=0.5)
            except Exception:  # a bug must not stop the queue for good; the message stays
                log.exception("serve worker: chunk failed, retrying in 1 s")
                self._stop.wait(1.0)

    def _record(self, seq: int, message: Mapping[str, Any], result: ExportResult) -> None:
        if result is RETURNED:
            return  # stopping: left in the queue, not done
        status = str(result.status)
        self.counts[status] = self.counts.get(status, 0) + 1
        kind = str(message.get("type", "")) if isinstance(message, Mapping) else ""
        fields = {"message_id": result.record_id, "outcome": status, "kind": kind}
        log.info("message %s: %s", result.record_id, status, extra=fields)
        if self._on_result is not None:
            self._on_result(status, kind)
        refused = result.error is not None and refuses_credentials(result.error)
        if refused and result.error is not None:
            # Not the message's fault: kept replayable (``serve replay``) once the key, secret
            # or IP allowance is fixed, never lost for good.
            result = ExportResult.failed(dataclasses.replace(result.error, retryable=True))
            log.error("Sailthru refuses the credentials: %s", result.detail)
        if self._on_refusal is not None and (
            refused or (result.ok and result.status is not Status.SKIPPED)
        ):
            self._on_refusal(result.detail if refused else None)
        if result.error is not None:
            error = result.error
            self._report.add_failure(
                RecordFailure(
                    record=error.record_id,
                    reason=error.reason,
                    field=error.field,
                    where=f"queue #{seq}",
                    retryable=error.retryable,
                )
            )
        elif result.status is Status.SKIPPED:
            # Left alone on purpose (a page view with no user, a screen call): said where a
            # person looks, not only in the queue's database.
            log.info("message %s (queue #%d) skipped: %s", result.record_id, seq, result.detail)
            self._report.add_notice(RecordNotice(result.record_id, result.detail,
                                                 f"queue #{seq}"))
        elif "not sent as named" in result.detail:
            # Applied, but not all as sent: the report names each renamed or dropped var.
            log.info("%s", result.detail)
            line = {"record": result.record_id, "where": f"queue #{seq}", "detail": result.detail}
            with (self._report.folder / "renamed.jsonl").open("a", encoding="utf-8") as notes:
                notes.write(json.dumps(line, ensure_ascii=False) + "\n")
        retryable = result.error is not None and result.error.retryable
        self._queue.done(seq, status, result.detail, retryable=retryable)


_CREDENTIAL_CODES = frozenset(
    {ErrorCode.INVALID_API_KEY, ErrorCode.DISALLOWED_IP, ErrorCode.AUTHENTICATION_FAILED}
)


def refuses_credentials(error: RecordError) -> bool:
    """Whether ``error`` is Sailthru refusing the key, secret, IP or permission (HTTP 401 or
    403), not the message: sending it again with fixed credentials would work."""
    if error.code in _CREDENTIAL_CODES:
        return True
    return "(HTTP 401" in error.reason or "(HTTP 403" in error.reason


RETURNED = ExportResult(Status.SKIPPED, "", "returned to the queue: the server is stopping")
"""What :class:`OnceAdapter` answers for a message it did not start because it was halted."""


class OnceAdapter(SegmentAdapter):
    """A SegmentAdapter that also sends each page view at most once per messageId.

    Events, orders, returns and carts are already guarded by the destination's sent keys;
    identify, alias and Subscribed set state (applying them twice changes nothing); a page
    view is the one other write a replay after a crash would repeat.
    """

    def __init__(self, *args: Any, sent_keys: SentKeys, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sent = sent_keys
        self._locks = KeyedLocks()
        self.halt = threading.Event()
        """Set at a graceful stop: messages not yet started are returned, not sent."""

    def process(self, message: Mapping[str, Any]) -> ExportResult:
        """Send one message; a page view only if its messageId was never sent."""
        if self.halt.is_set():
            return RETURNED
        if not isinstance(message, Mapping) or message.get("type") != "page":
            return super().process(message)
        key = message.get("messageId")
        if not isinstance(key, str) or not key:
            return super().process(message)

        def send() -> ExportResult:
            return SegmentAdapter.process(self, message)

        return send_once(self._sent, self._locks, "page", key, key, send)
