"""SailthruDestination: the one object a host uses to keep Sailthru in sync."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from types import TracebackType
from typing import Any

from .errors import AuthError, PermissionDenied, RecordError, SailthruError
from .features.commerce import CartChange, CommerceSender, Purchase, Return
from .features.events import Event, EventSender
from .features.imports import ImportedUser, ListImporter, PollPolicy
from .features.profiles import ProfileChange, ProfileExporter
from .once.lists import ListRegistry
from .once.locks import LocalLock, NamedLock
from .once.sentkeys import InMemorySentKeys, SentKeys
from .options import DEFAULT_API_URL, AppOptions, DestinationOptions
from .results import BatchResult, ConnectionCheck, ExportResult
from .transport._adaptive import MAX_IN_FLIGHT, AdaptiveLimit
from .transport._concurrency import KeyedLocks, run_in_order
from .transport.api import RetryPolicy, SailthruApi
from .transport.auth import auth_failure
from .transport.machine_pacer import machine_limiters
from .validation import record_id_of, record_problem

__all__ = ["RECORD_KINDS", "SailthruDestination", "test_connection"]

log = logging.getLogger(__name__)

_NO_SUCH_SID = "0" * 24

# One harmless read per endpoint: "not found" or "bad request" proves the key may use it.
_PROBES: dict[str, dict[str, Any]] = {
    "user": {"id": _NO_SUCH_SID, "key": "sid", "fields": {"keys": 1}},
    "list": {},
    "job": {"job_id": _NO_SUCH_SID},
    "event": {},
    "purchase": {"purchase_id": _NO_SUCH_SID, "purchase_key": "sid"},
    "return": {},
}
DEFAULT_CONNECTION_CHECKS = ("user", "list", "job")


RECORD_KINDS: frozenset[str] = frozenset(
    {"ProfileChange", "Event", "Purchase", "Return", "CartChange", "segment"}
)
"""The kinds of record :meth:`SailthruDestination.concurrency_for` keeps a limit for."""


class SailthruDestination:
    """Keeps one Sailthru account in sync with a host's profiles, groups, events and orders.

    Thread-safe; use it as a context manager (or call :meth:`close`) to release its
    connections. ``api`` and ``lock`` let a host share pacing or plug in a lock that
    spans machines; by default each destination builds its own. ``sent_keys`` remembers
    which events, orders and returns were sent, so a re-run sends none twice (in memory
    by default, in Redis for every host when the options carry a ``coordination``; the
    sync runner keeps it in its SQLite state). ``clock`` (Unix seconds) times orders in
    doubt and carts.
    """

    def __init__(
        self,
        app: AppOptions,
        options: DestinationOptions | None = None,
        *,
        api: SailthruApi | None = None,
        lock: NamedLock | None = None,
        sent_keys: SentKeys | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.options = options or DestinationOptions()
        self.clock = clock
        coordination = self.options.coordination
        # Sailthru counts calls per account: every destination on the same account shares
        # one pacing schedule (this machine's, or the cluster's through coordination).
        limiters = (
            coordination.limiters()
            if coordination is not None
            else machine_limiters(self.options.lock_dir)
        )
        self._api = api or SailthruApi(
            app, concurrency=self.options.concurrency, limiters=limiters
        )
        # One adaptive limit per kind of record, kept across batches (profiles, events, ...).
        self._limits: dict[str, AdaptiveLimit] = {}
        self._limits_guard = threading.Lock()
        if lock is None:
            lock = (
                coordination.lock(app.api_key)
                if coordination is not None
                else LocalLock(self.options.lock_dir, scope=app.api_key)
            )
        self._lock = lock
        shared = coordination.known_lists(app.api_key) if coordination is not None else None
        self._lists = ListRegistry(self._api, self._lock, shared)
        self._profiles = ProfileExporter(self._api, self._lists, self.options, app)
        self._user_locks = KeyedLocks()
        # One store for events, orders and returns, so a re-run never sends one twice.
        if sent_keys is None:
            sent_keys = (
                coordination.sent_keys(app.api_key)
                if coordination is not None
                else InMemorySentKeys()
            )
        sent = sent_keys
        self._events = EventSender(self._api, sent_keys=sent, timezone=app.timezone)
        self._commerce = CommerceSender(
            self._api,
            sent_keys=sent,
            timezone=app.timezone,
            default_reminder_template=self.options.reminder_template,
            default_reminder_time=self.options.reminder_time,
            clear_cart_after_hours=self.options.clear_cart_after_hours,
            user_locks=self._user_locks,
            purchase_doubt_age=self.options.purchase_doubt_age,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"SailthruDestination(api_url={self.app.api_url!r}, key={self.app.masked_key!r})"

    def __enter__(self) -> SailthruDestination:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the pooled connections."""
        self._api.close()

    @property
    def lists(self) -> ListRegistry:
        """The list registry: makes sure a list exists, creating each one once under the mutex."""
        return self._lists

    @property
    def api(self) -> SailthruApi:
        """The API layer: its call log is the record of every call made."""
        return self._api

    # -- connection --------------------------------------------------------------------------

    def test_connection(
        self, endpoints: Iterable[str] = DEFAULT_CONNECTION_CHECKS
    ) -> ConnectionCheck:
        """Check the credentials and each endpoint's permission; never raises for a refusal."""
        checks: list[tuple[str, bool, str]] = []
        for name in endpoints:
            if name not in _PROBES:
                known = ", ".join(sorted(_PROBES))
                raise ValueError(f"no connection check for {name!r}; known: {known}")
            try:
                self._api.get(name, _PROBES[name])
            except AuthError as exc:
                sentence = auth_failure(exc)
                checks.append(("authentication", False, sentence))
                return ConnectionCheck(False, sentence, tuple(checks))
            except PermissionDenied:
                checks.append((name, False, _not_permitted(name)))
                continue
            except SailthruError as exc:
                if exc.retryable:
                    # Nothing further can be learned from a service that does not answer.
                    sentence = f"could not reach Sailthru: {exc}"
                    checks.append((name, False, sentence))
                    return ConnectionCheck(False, sentence, tuple(checks))
            if not checks:
                checks.append(("authentication", True, "the API key and secret authenticate"))
            checks.append((name, True, f"this key may use the {name} endpoint"))
        ok = all(passed for _, passed, _ in checks)
        failed = [sentence for _, passed, sentence in checks if not passed]
        message = "connected: every check passed" if ok else "; ".join(failed)
        return ConnectionCheck(ok, message, tuple(checks))

    # -- profiles ----------------------------------------------------------------------------

    def export_profile(self, change: ProfileChange) -> ExportResult:
        """Apply one profile change; never raises for a bad record."""
        return _checked(ProfileChange, self._export_profile, change)

    def _export_profile(self, change: ProfileChange) -> ExportResult:
        with self._user_locks.for_key(change.key):
            return self._profiles.export(change)

    def iter_export_profiles(
        self,
        changes: Iterable[ProfileChange],
        *,
        on_result: Callable[[ProfileChange, ExportResult], object] | None = None,
    ) -> Generator[ExportResult, None, None]:
        """Apply changes concurrently, yielding each result in input order as it is ready.

        ``on_result(change, result)`` runs in the thread that got the result, as soon as it
        is there: a caller that records results there keeps every one that was confirmed,
        even when it stops consuming (an interrupt). Closing the iterator early sends no
        further change and waits for those in flight.
        """
        return self._stream(ProfileChange, self._export_profile, changes, on_result)

    def export_profiles(self, changes: Iterable[ProfileChange]) -> BatchResult:
        """Apply a batch of changes concurrently; one result per record, in input order."""
        return BatchResult.of(self.iter_export_profiles(changes))

    # -- events and commerce -----------------------------------------------------------------

    # ``on_result(record, result)`` of the senders below runs in the thread that got the
    # result, as soon as it is there (see :meth:`iter_export_profiles`): a caller that counts
    # results there keeps every confirmed send, even when an interrupt cuts the batch short.

    def send_events(
        self, events: Iterable[Event], *,
        on_result: Callable[[Event, ExportResult], object] | None = None,
    ) -> BatchResult:
        """Send custom events; an event already sent (by record id) is skipped."""
        return BatchResult.of(self._stream(Event, self._events.send, events, on_result))

    def send_purchases(
        self, purchases: Iterable[Purchase], *,
        on_result: Callable[[Purchase, ExportResult], object] | None = None,
    ) -> BatchResult:
        """Record completed purchases; an order id is never posted twice."""
        return BatchResult.of(
            self._stream(Purchase, self._commerce.send_purchase, purchases, on_result))

    def send_returns(
        self, returns: Iterable[Return], *,
        on_result: Callable[[Return, ExportResult], object] | None = None,
    ) -> BatchResult:
        """Record returned items of earlier orders."""
        return BatchResult.of(self._stream(Return, self._commerce.send_return, returns, on_result))

    def update_carts(self, changes: Iterable[CartChange]) -> BatchResult:
        """Add to or remove from users' incomplete purchases (abandoned carts)."""
        return BatchResult.of(self._stream(CartChange, self._commerce.update_cart, changes))

    # -- Sailthru to host ----------------------------------------------------------------------

    def import_list_members(
        self,
        lists: str | Iterable[str],
        *,
        fields: Collection[str] | None = None,
        poll: PollPolicy | None = None,
        merge: bool = False,
    ) -> Iterator[ImportedUser]:
        """Stream the members of Sailthru lists (smart lists too) through export jobs.

        One record per user and list, with ``source_list`` set; ``merge=True`` gives one
        record per user with all its lists instead (holding one entry per user in memory).
        """
        return ListImporter(self._api).members(lists, fields=fields, poll=poll, merge=merge)

    def concurrency_for(self, kind: str) -> int | AdaptiveLimit:
        """How many records of ``kind`` run at once: the pinned number, or the adaptive limit
        this destination keeps for that kind of record (so batches go on where the last left).

        ``kind`` is one of :data:`RECORD_KINDS` (a record class's name, or ``"segment"``);
        any other is a ValueError (a typo would get a fresh limit, learning nothing).
        """
        if kind not in RECORD_KINDS:
            raise ValueError(
                f"unknown record kind {kind!r}; use one of {', '.join(sorted(RECORD_KINDS))}"
            )
        if self.options.concurrency is not None:
            return self.options.concurrency
        with self._limits_guard:
            limit = self._limits.get(kind)
            if limit is None:
                limit = self._limits[kind] = AdaptiveLimit(maximum=MAX_IN_FLIGHT)
            return limit

    def _stream(
        self, kind: type, fn: Callable[[Any], ExportResult], items: Iterable[Any],
        on_result: Callable[[Any, ExportResult], object] | None = None,
    ) -> Generator[ExportResult, None, None]:
        coordination = self.options.coordination
        concurrency = self.concurrency_for(kind.__name__)

        def guarded(item: Any) -> ExportResult:
            # Without the shared lock and pacing nothing may be sent: stop taking new work.
            if coordination is not None and coordination.failed:
                reason = "not attempted: coordination (Redis) unavailable; retry the record"
                result = ExportResult.failed(
                    RecordError(record_id_of(item), reason, retryable=True))
            else:
                result = _checked(kind, fn, item)
            if on_result is not None:
                on_result(item, result)  # what it raises (a stopped run) ends the stream
            return result

        return run_in_order(guarded, items, concurrency=concurrency)


def _checked(kind: type, fn: Callable[[Any], ExportResult], item: Any) -> ExportResult:
    """``fn(item)`` for a well-formed record; any record, however malformed, gets one result."""
    problem = record_problem(item, kind)
    if problem is not None:
        return ExportResult.failed(problem)
    try:
        return fn(item)
    except Exception as exc:
        # The senders report every failure they know of; this is a bug, not bad input. One
        # record must still not sink its batch and lose the results of the others.
        log.exception("unexpected %s while sending a %s", type(exc).__name__, kind.__name__)
        reason = (
            f"unexpected {type(exc).__name__} (a bug in sailthru-destination, please report "
            "it); whether the record reached Sailthru is unknown"
        )
        return ExportResult.failed(RecordError(record_id_of(item), reason))


def _not_permitted(endpoint: str) -> str:
    return f"this key may not use the {endpoint} endpoint: ask Sailthru support to grant it"


def test_connection(
    api_key: str,
    api_secret: str,
    api_url: str | None = None,
    *,
    endpoints: Iterable[str] = DEFAULT_CONNECTION_CHECKS,
) -> ConnectionCheck:
    """Check credentials and endpoint permissions without building a destination first.

    Bad options (such as a plain-http URL) are reported as a failed check, not raised.
    """
    try:
        app = AppOptions(api_key, api_secret, api_url or DEFAULT_API_URL)
    except ValueError as exc:
        return ConnectionCheck(False, str(exc), (("options", False, str(exc)),))
    # A connection test answers in seconds: two tries, not a sync's patient retrying.
    api = SailthruApi(app, concurrency=1, retry=RetryPolicy(max_attempts=2, max_total=15.0))
    with SailthruDestination(app, api=api) as destination:
        return destination.test_connection(endpoints)


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
