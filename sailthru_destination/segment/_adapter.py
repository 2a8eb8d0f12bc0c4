"""SegmentAdapter: every message to one result, one user's messages in order."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..destination import SailthruDestination
from ..errors import NotFound, RecordError, SailthruError
from ..once.locks import LockTimeout
from ..results import BatchResult, ExportResult, Status
from ..shaping.mapping import InvalidValue
from ..transport._concurrency import run_in_order
from ._message import _failed, _kind, _Message, _named
from ._presets import route
from ._settings import SegmentSettings

__all__ = ["SegmentAdapter"]

log = logging.getLogger(__name__)


class SegmentAdapter:
    """Sends Segment-spec messages (dicts as Segment delivers them) through a destination.

    ``process`` never raises for a bad message: each gets an :class:`ExportResult`.
    Close it (or use ``with``) to release the page-view connection.
    """

    def __init__(
        self,
        destination: SailthruDestination,
        settings: SegmentSettings | Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = SegmentSettings.of(settings)
        hours = self.settings.clear_cart_after_hours
        if hours is not None and hours != destination.options.clear_cart_after_hours:
            # Carts go through the destination's cart sender, which owns this option.
            raise ValueError(
                "clear_cart_after_hours is applied by the destination: build it with "
                f"DestinationOptions(clear_cart_after_hours={hours!r})"
            )
        self.destination = destination
        self.timezone = destination.app.timezone

    def __enter__(self) -> SegmentAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: the destination, which holds the connections, is the caller's."""

    # -- entry points --------------------------------------------------------------------------

    def process(self, message: Mapping[str, Any]) -> ExportResult:
        """Send one message; never raises for a bad message or a Sailthru refusal."""
        if not isinstance(message, Mapping):
            return _failed("", "message", f"a Segment message is an object, not {_kind(message)}")
        msg = _Message(message)
        try:
            handler = route(msg)
            if isinstance(handler, str):
                return ExportResult(Status.SKIPPED, msg.id, f"{msg.label}: {handler}")
            return _named(msg, handler(self, msg))
        except InvalidValue as exc:
            return _failed(msg.id, exc.field, f"{msg.label}: {exc.reason}")
        except SailthruError as exc:
            return _named(msg, ExportResult.failed(RecordError.from_error(msg.id, exc)))
        except LockTimeout as exc:
            error = RecordError(msg.id, f"{msg.label}: {exc}", field="lists", retryable=True)
            return ExportResult.failed(error)
        except Exception as exc:  # a bug must not cost the batch its other results
            log.exception("unexpected error on Segment message %r", msg.id)
            return _failed(msg.id, None, f"{msg.label}: unexpected {type(exc).__name__}")

    def iter_process(self, messages: Iterable[Mapping[str, Any]]) -> Iterator[ExportResult]:
        """Process messages concurrently, one user's in order, yielding results in input order."""
        sequencer = _Sequencer()

        def run(ticket: _Ticket) -> ExportResult:
            for earlier in ticket.after:
                earlier.wait()
            try:
                return self.process(ticket.message)
            finally:
                sequencer.finish(ticket)

        tickets = (sequencer.ticket(m, _order_keys(m)) for m in messages)
        return run_in_order(run, tickets, concurrency=self.destination.concurrency_for("segment"))

    def process_batch(self, messages: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Process a batch: one result per message, in input order."""
        return BatchResult.of(self.iter_process(messages))

    # -- helpers -------------------------------------------------------------------------------

    def post_user(self, payload: dict[str, Any], lists: Mapping[str, int]) -> None:
        """POST /user with list changes, creating each joined list first, once."""
        registry = self.destination.lists
        for name, flag in lists.items():
            if flag:
                # Never let a user update create a list: racing first uses duplicate it.
                registry.ensure(name)
        # Leaving a list that never existed is a no-op; naming it could create it.
        sent = {n: f for n, f in lists.items() if f or registry.exists(n)}
        if sent:
            payload = {**payload, "lists": sent}
        self.destination.api.post("user", payload)

    def has_extid(self, extid: str) -> bool:
        """Whether a Sailthru profile answers to this extid."""
        try:
            self.destination.api.get("user", {"id": extid, "key": "extid", "fields": {"keys": 1}})
        except NotFound:
            return False
        return True


# -- per-user ordering -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ticket:
    message: Any
    keys: tuple[str, ...]
    after: tuple[threading.Event, ...]
    done: threading.Event


class _Sequencer:
    """Makes each message wait for the earlier messages of the same user ids.

    Safe with a FIFO thread pool: a message starts only after every earlier one has
    started, so what it waits for is running and cannot be waiting for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, threading.Event] = {}

    def ticket(self, message: Any, keys: tuple[str, ...]) -> _Ticket:
        done = threading.Event()
        with self._lock:
            after = tuple({id(e): e for k in keys if (e := self._last.get(k))}.values())
            for key in keys:
                self._last[key] = done
        return _Ticket(message, keys, after, done)

    def finish(self, ticket: _Ticket) -> None:
        ticket.done.set()
        with self._lock:
            for key in ticket.keys:
                if self._last.get(key) is ticket.done:
                    del self._last[key]


def _order_keys(message: object) -> tuple[str, ...]:
    if not isinstance(message, Mapping):
        return ()
    keys = []
    for name in ("userId", "anonymousId", "previousId"):
        value = message.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            keys.append(str(value).strip())
    return tuple(keys)
