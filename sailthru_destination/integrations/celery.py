"""Celery tasks for many Sailthru accounts on many workers (extra ``celery``).

:class:`SailthruTasks` registers five tasks on a host's Celery app, one per kind of record:
``export_profiles``, ``send_events``, ``send_purchases``, ``send_returns`` and
``update_carts``. Each takes an account name and a list of plain JSON dicts (the fields of
:class:`~sailthru_destination.ProfileChange`, :class:`~sailthru_destination.Event`, ...) and
returns one JSON dict per record, in order: ``{record_id, status, detail, error}``. A bad
record gets its own error naming the field; the batch goes on.

What the tasks promise, and how:

* **Credentials stay on the workers.** A message names the account; the worker asks the
  host's resolver for its :class:`Account` (API key, secret, options) and keeps one
  :class:`~sailthru_destination.SailthruDestination` per account per process. So pacing, the
  list cache and the list lock are per account (and shared through Redis by every worker).
* **One user's changes apply in order.** :meth:`SailthruTasks.enqueue` routes records to a
  queue per account and partition (a stable hash of the user key) and numbers each task in
  its partition; a task waits for its predecessor to finish before it applies, whatever
  worker or thread runs it, and even when the predecessor was redelivered after a worker was
  lost. Within a task, a user's records are applied one after another.
* **A redelivered task never posts twice.** Tasks are ``acks_late`` with
  ``reject_on_worker_lost``: a worker lost mid-task leaves the message to be delivered again
  (with the Redis broker, after its ``visibility_timeout``). The sent-keys store in Redis
  skips events, purchases and returns already sent; a purchase whose worker died mid-send is
  looked up in Sailthru and then recorded or sent, once; profile updates are idempotent.
* **The shared pacer is the only throttle.** Celery's ``rate_limit`` is off on every task.
* **Task retries are for whole-task failures.** Redis unreachable (no lock, no pacing, no
  sent keys, so nothing is sent) retries the task later; record failures are results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

# The extra's own packages first: without them the message names the 'celery' extra (which
# brings redis too), not the 'redis' extra the coordination would ask for.
try:
    import celery as _celery  # noqa: F401
    import redis as _redis  # noqa: F401
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sailthru_destination.integrations.celery needs the 'celery' extra: "
        "pip install 'sailthru-destination[celery]'"
    ) from _missing

from celery import Celery, Task
from celery.exceptions import Ignore

from ..coordination import CoordinationError, RedisCoordination
from ..destination import SailthruDestination
from ..errors import RecordError
from ..once.sentkeys_redis import DEFAULT_LEASE, scope_digest
from ..options import AppOptions, DestinationOptions
from ..results import BatchResult, ExportResult
from ..transport.api import SailthruApi
from ._records import build, result_dict, user_of

__all__ = ["WORKER_SETTINGS", "Account", "SailthruTasks", "partition_of"]

log = logging.getLogger(__name__)

WORKER_SETTINGS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "worker_disable_rate_limits": True,
}
"""Celery settings the tasks are built for: JSON only, late acks, one message reserved per
pool slot, no Celery rate limits. Apply with ``app.conf.update(WORKER_SETTINGS)``; with the
Redis broker also set ``broker_transport_options={"visibility_timeout": ...}`` longer than
your longest task (a shorter one redelivers tasks still running)."""

# Task name suffix -> (kind of record, the destination's batch method).
_TASKS: dict[str, tuple[str, Callable[[SailthruDestination, list[Any]], BatchResult]]] = {
    "export_profiles": ("profiles", SailthruDestination.export_profiles),
    "send_events": ("events", SailthruDestination.send_events),
    "send_purchases": ("purchases", SailthruDestination.send_purchases),
    "send_returns": ("returns", SailthruDestination.send_returns),
    "update_carts": ("carts", SailthruDestination.update_carts),
}
_TASK_OF_KIND = {kind: name for name, (kind, _) in _TASKS.items()}

# A task whose predecessor has not finished polls this often, for at most order_wait seconds,
# then hands its slot back (a retry) so a lost predecessor cannot hold a pool slot.
_POLL = 0.02

# Marks partition task ``seq`` done unless a later one already is (replies may race).
_DONE = """
local done = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) > done then redis.call('set', KEYS[1], ARGV[1]) end
return 0
"""

# The last task done in a partition, first stepping over numbers whose task never got queued.
_TURN = """
local done = tonumber(redis.call('get', KEYS[1]) or '0')
local start = done
while redis.call('srem', KEYS[2], tostring(done + 1)) == 1 do done = done + 1 end
if done > start then redis.call('set', KEYS[1], done) end
return done
"""


@dataclasses.dataclass(frozen=True)
class Account:
    """What a worker needs for one account: where and how to send. Given by the resolver."""

    app: AppOptions
    options: DestinationOptions = dataclasses.field(default_factory=DestinationOptions)
    rate_limits: Mapping[str, float] | None = None
    """Starting limits (calls per second, keyed as in ``_protocol.DEFAULT_RATE_LIMITS``) until
    Sailthru's replies tell the account's own; set them for an account with custom limits."""


def partition_of(user: str, partitions: int) -> int:
    """The partition of a user key: a stable hash (the same on every host and every run)."""
    digest = hashlib.sha256(user.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions


class SailthruTasks:
    """The Sailthru tasks on one Celery app, for every account the ``resolver`` knows.

    ``resolver(account)`` returns the :class:`Account` of an account name; it runs on the
    workers only, so secrets never travel in messages. ``coordination`` is the Redis that
    shares locks, pacing, sent keys and task order between workers (an account whose
    options carry none uses it). ``partitions`` is the number of ordered queues per account;
    ``queue_prefix`` starts each queue name. ``order_wait`` bounds how long a task waits for
    its predecessor before retrying, and ``order_give_up`` how long in all before it applies
    anyway (a predecessor lost for good must not stall its partition forever).
    ``claim_lease`` is how long a worker's claim on an event, purchase or return is its own
    (:class:`~sailthru_destination.once.sentkeys_redis.RedisSentKeys`): longer than one send with
    its retries, shorter than the broker's visibility timeout, so that a redelivered task
    finds the lost worker's claims lapsed and reconciles its purchases.
    """

    def __init__(
        self,
        celery: Celery,
        resolver: Callable[[str], Account],
        coordination: RedisCoordination,
        *,
        partitions: int = 8,
        queue_prefix: str = "sailthru",
        order_wait: float = 5.0,
        order_give_up: float = 3600.0,
        claim_lease: float = DEFAULT_LEASE,
    ) -> None:
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be a whole number >= 1, got {partitions!r}")
        self.celery = celery
        self.partitions = partitions
        self.queue_prefix = queue_prefix
        self._resolver = resolver
        self._coord = coordination
        self._order_wait = order_wait
        self._order_give_up = order_give_up
        self._claim_lease = claim_lease
        self._destinations: dict[str, SailthruDestination] = {}
        self._guard = threading.Lock()
        self._mark_done = coordination.redis.register_script(_DONE)
        self._turn = coordination.redis.register_script(_TURN)
        self.tasks: dict[str, Task] = {name: self._register(name) for name in _TASKS}

    def __repr__(self) -> str:
        return f"SailthruTasks({self._coord!r}, partitions={self.partitions})"

    # -- the producer's side --------------------------------------------------------------------

    def queue(self, account: str, user: str) -> str:
        """The queue of ``user``'s records in ``account``."""
        return f"{self.queue_prefix}.{account}.{partition_of(user, self.partitions)}"

    def queues(self, account: str) -> list[str]:
        """Every queue of ``account`` (give them to the workers' ``-Q``)."""
        return [f"{self.queue_prefix}.{account}.{p}" for p in range(self.partitions)]

    def enqueue(self, kind: str, account: str, records: Iterable[Mapping[str, Any]]) -> list[Any]:
        """Send ``records`` of ``kind`` (``profiles``, ``events``, ...) as ordered tasks.

        One task per partition the records fall in, in their order; returns Celery's
        ``AsyncResult`` of each. Raises :class:`CoordinationError` if Redis cannot number
        them (nothing is sent then).
        """
        if kind not in _TASK_OF_KIND:
            raise ValueError(f"kind must be one of {', '.join(_TASK_OF_KIND)}; got {kind!r}")
        if not account:
            raise ValueError("account must name an account the resolver knows")
        groups: dict[int, list[Mapping[str, Any]]] = {}
        for record in records:
            partition = partition_of(user_of(kind, record), self.partitions)
            groups.setdefault(partition, []).append(dict(record))
        task = self.tasks[_TASK_OF_KIND[kind]]
        redis = self._coord.redis
        sent = []
        for partition, group in groups.items():
            key = self._order_key(account, partition, "next")
            seq = int(self._coord.run("number a task", partial(redis.incr, key)))
            queue = f"{self.queue_prefix}.{account}.{partition}"
            try:
                sent.append(task.apply_async(args=(account, group, partition, seq), queue=queue))
            except Exception:
                # Not queued: the next task of the partition must not wait for this one.
                skipped = self._order_key(account, partition, "skipped")
                self._coord.run("skip a task number", partial(redis.sadd, skipped, str(seq)))
                raise
        return sent

    # -- the worker's side ----------------------------------------------------------------------

    def destination(self, account: str) -> SailthruDestination:
        """This process's destination for ``account`` (built on first use, then kept)."""
        with self._guard:
            found = self._destinations.get(account)
            if found is None:
                settings = self._resolver(account)
                app, options = settings.app, settings.options
                coordination = options.coordination
                if coordination is None:
                    coordination = self._coord
                    options = dataclasses.replace(options, coordination=coordination)
                api = SailthruApi(
                    app,
                    concurrency=options.concurrency,
                    limiters=coordination.limiters(settings.rate_limits),
                )
                sent = coordination.sent_keys(app.api_key, lease=self._claim_lease)
                found = SailthruDestination(app, options, api=api, sent_keys=sent)
                self._destinations[account] = found
            return found

    def close(self) -> None:
        """Close every destination this process built."""
        with self._guard:
            for destination in self._destinations.values():
                destination.close()
            self._destinations.clear()

    def run(self, kind: str, account: str, records: Sequence[Any]) -> list[dict[str, Any]]:
        """Apply ``records`` of ``kind`` for ``account``: one JSON result per record, in order.

        A user's records are applied one after another; different users' concurrently.
        """
        _, method = _TASKS[_TASK_OF_KIND[kind]]
        results: list[ExportResult | None] = [None] * len(records)
        waves: list[list[tuple[int, Any]]] = []
        seen: dict[str, int] = {}
        for position, record in enumerate(records):
            built = build(kind, position, record)
            if isinstance(built, RecordError):
                log.warning("record %s not sent: %s", built.record_id, built.reason)
                results[position] = ExportResult.failed(built)
                continue
            user = user_of(kind, record)
            wave = seen.get(user, 0)
            seen[user] = wave + 1
            if wave == len(waves):
                waves.append([])
            waves[wave].append((position, built))
        if waves:
            destination = self.destination(account)
            for wave_items in waves:
                batch = method(destination, [item for _, item in wave_items])
                for (position, _), result in zip(wave_items, batch.results, strict=True):
                    results[position] = result
        done = [r for r in results if r is not None]
        for result in done:
            if result.error is not None:
                log.warning("record %s failed: %s", result.record_id, result.error.reason)
        return [result_dict(r) for r in done]

    def _register(self, name: str) -> Task:
        kind, _ = _TASKS[name]

        def task(
            this: Task,
            account: str,
            records: list[Any],
            partition: int | None = None,
            seq: int | None = None,
            waited: float = 0.0,
        ) -> list[dict[str, Any]]:
            order = (partition, seq) if partition is not None and seq is not None else None
            if order and not self._wait_turn(this, account, records, *order, waited):
                # Done before, and its result stored then: record nothing over it.
                raise Ignore()
            try:
                results = self.run(kind, account, records)
                used = self.destination(account).options.coordination
                if self._coord.failed or (used is not None and used.failed):
                    # Nothing was sent for the records Redis failed (no lock, pacing or claim):
                    # the whole task goes again later, and the sent keys skip what went out.
                    raise CoordinationError("Redis failed during the task; it will be retried")
            except CoordinationError:
                raise  # retried: the tasks after it in its partition wait for it
            except Exception:
                # Failed for good (an unknown account, a bug): do not stall its partition.
                if order:
                    self._finish(account, *order)
                raise
            if order:
                self._finish(account, *order)
            return results

        task.__name__ = name
        registered: Task = self.celery.task(
            task,
            name=f"{self.queue_prefix}.{name}",
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            rate_limit=None,
            autoretry_for=(CoordinationError,),
            retry_backoff=True,
            retry_backoff_max=60,
            max_retries=None,
        )
        return registered

    def _finish(self, account: str, partition: int, seq: int) -> None:
        key = self._order_key(account, partition, "done")
        self._coord.run("mark a task done", lambda: self._mark_done(keys=[key], args=[seq]))

    def _order_key(self, account: str, partition: int, which: str) -> str:
        return self._coord.key("order", scope_digest(account), str(partition), which)

    def _wait_turn(
        self,
        task: Task,
        account: str,
        records: list[Any],
        partition: int,
        seq: int,
        waited_before: float,
    ) -> bool:
        """Wait until task ``seq - 1`` of the partition is done; False if ``seq`` already is."""
        keys = [self._order_key(account, partition, w) for w in ("done", "skipped")]
        deadline = time.monotonic() + self._order_wait
        started = time.monotonic()
        while True:
            done = int(self._coord.run("read the task order", lambda: self._turn(keys=keys)))
            if done >= seq:
                log.info("task %s of %s.%s already done: not run again", seq, account, partition)
                return False
            if done == seq - 1:
                return True
            waited = waited_before + time.monotonic() - started
            if waited >= self._order_give_up:
                log.error(
                    "task %s of %s.%s: the tasks before it did not finish in %gs; applying it",
                    seq,
                    account,
                    partition,
                    self._order_give_up,
                )
                return True
            if time.monotonic() >= deadline:
                raise task.retry(
                    args=(account, records, partition, seq),
                    kwargs={"waited": waited},
                    countdown=_POLL * 10,
                )
            time.sleep(_POLL)
