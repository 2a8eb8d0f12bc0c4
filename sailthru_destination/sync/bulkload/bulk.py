"""The bulk path: many changed users through job API ``update`` jobs instead of a call each.

Each user's POST /user payload is built by :func:`~sailthru_destination.features.profile_payload.
plan_upsert`, the same pure function the per-user path uses, and streamed into a job file
a line at a time (:mod:`.jobfile`). The lists those users join are ensured first, once
each, under the list mutex (a job naming a missing list would let Sailthru create
duplicates). While one job is uploaded and polled, the next file is being built (at most
``in_flight`` jobs at once); only when a job is done are its rows recorded as applied.
When a job ends in error, its rows go through the per-user path instead (a bulk update is
idempotent, so a partly applied job is safe to send again). Rows that need a read first
(an email change, update mode) always go per user.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ...destination import SailthruDestination
from ...errors import RecordError, SailthruError
from ...features._commerce_records import guard
from ...features.profile_payload import ProfileChange, plan_upsert, with_lists
from ...once.locks import LockTimeout
from ...options import SyncMode
from ...results import ExportResult, Status
from ..config import SyncConfig
from .jobfile import JobFile
from .jobs import JobFailed, JobRunner

__all__ = ["BulkExporter", "JobFailed"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_APPLIED = "applied by a bulk job"

_Line = tuple[dict[str, Any], ExportResult]
# Stands for "needs a read first": never a real result (its record id is empty).
_NEEDS_READ = ExportResult(Status.SKIPPED, "", "needs a read before its write")


class BulkExporter:
    """Sends changes through job API ``update`` jobs of at most ``chunk`` users each.

    ``poll_interval`` is the first wait between job polls (doubling up to ``max_poll``);
    ``timeout`` bounds the total wait for one job (then its rows go per user);
    ``in_flight`` bounds the jobs uploaded or polled while the next file is built.
    """

    def __init__(
        self,
        destination: SailthruDestination,
        config: SyncConfig,
        *,
        chunk: int = 10_000,
        poll_interval: float = 0.2,
        max_poll: float = 10.0,
        timeout: float = 3600.0,
        in_flight: int = 2,
    ) -> None:
        self._dest = destination
        self._config = config
        self._chunk = chunk
        self._in_flight = max(1, in_flight)
        self._ensured: set[str] = set()
        self._jobs = JobRunner(destination.api, poll_interval=poll_interval, max_poll=max_poll,
                               timeout=timeout)

    @property
    def jobs(self) -> int:
        """How many jobs were started."""
        return self._jobs.started

    def export(
        self, items: Iterable[T], change_for: Callable[[T], ProfileChange]
    ) -> Iterator[tuple[T, ExportResult]]:
        """Yield ``(item, result)`` for every item, in chunks through the job API."""
        per_user: list[T] = []
        running: deque[tuple[Future[str], list[tuple[T, ExportResult]]]] = deque()
        with tempfile.TemporaryDirectory(prefix="sailthru-bulk-") as folder, \
                ThreadPoolExecutor(self._in_flight, thread_name_prefix="bulk-job") as pool:
            files = 0

            def new_file() -> JobFile:
                nonlocal files
                files += 1
                return JobFile(os.path.join(folder, f"update-{files}.jsonl"))

            current, batch = new_file(), []
            try:
                for item in items:
                    outcome = self.line(change_for(item))
                    if isinstance(outcome, ExportResult):
                        yield item, outcome
                    elif outcome is None:
                        per_user.append(item)
                        if len(per_user) >= self._chunk:
                            yield from self._per_user(per_user, change_for)
                            per_user = []
                    else:
                        current.add(outcome[0])
                        batch.append((item, outcome[1]))
                        if len(batch) >= self._chunk:
                            current.close()
                            running.append((pool.submit(self._job, current), batch))
                            current, batch = new_file(), []
                            while running and (running[0][0].done()
                                               or len(running) >= self._in_flight):
                                yield from self._finished(*running.popleft(), change_for)
            finally:
                current.close()
            if batch:
                running.append((pool.submit(self._job, current), batch))
            while running:
                yield from self._finished(*running.popleft(), change_for)
        if per_user:
            yield from self._per_user(per_user, change_for)

    def line(self, change: ProfileChange) -> _Line | ExportResult | None:
        """The change's job-file line and its result-to-be; a final result; or None: the
        change needs a read before its write, so it goes per user."""
        options = self._dest.options
        if options.sync_mode is SyncMode.UPDATE:
            return None
        outcome: _Line | None = None

        def build() -> ExportResult:
            nonlocal outcome
            plan = plan_upsert(change, options, self._dest.app.timezone)
            if isinstance(plan, ExportResult):
                return plan
            if plan.needs_read:
                return _NEEDS_READ
            status = Status.CREATED if plan.created else Status.UPDATED
            outcome = (with_lists(plan.payload, plan.lists, self._dest.lists, self._ensured),
                       plan.noted(ExportResult(status, change.id, _APPLIED)))
            return outcome[1]

        try:
            result = guard(change.id, build)
        except LockTimeout as exc:
            return ExportResult.failed(RecordError(change.id, str(exc), field="lists",
                                                   retryable=True))
        if outcome is not None:
            return outcome
        return None if result is _NEEDS_READ else result

    def _job(self, file: JobFile) -> str:
        self._jobs.run({"job": "update"}, file.path, file.lines)
        return file.path

    def _finished(
        self,
        job: Future[str],
        batch: list[tuple[T, ExportResult]],
        change_for: Callable[[T], ProfileChange],
    ) -> Iterator[tuple[T, ExportResult]]:
        try:
            path = job.result()
        except (JobFailed, SailthruError) as exc:
            log.warning("bulk job failed (%s): sending its %d users one by one", exc, len(batch))
            yield from self._per_user([item for item, _ in batch], change_for)
            return
        os.remove(path)  # the disk holds at most the files of the jobs in flight
        yield from batch

    def _per_user(
        self, items: list[T], change_for: Callable[[T], ProfileChange]
    ) -> Iterator[tuple[T, ExportResult]]:
        results = self._dest.iter_export_profiles(change_for(item) for item in items)
        yield from zip(items, results, strict=True)
