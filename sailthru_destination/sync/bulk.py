"""The bulk path: many changed users through one job API ``update`` instead of a call each.

Each user's POST /user payload (built exactly as the per-user path builds it) becomes one
line of a JSON-lines file; the lists those users join are ensured first, once each, under
the list mutex (a job naming a missing list would let Sailthru create duplicates). The
file is posted as a job, the job polled until done, and only then are the rows recorded
as applied. When a job ends in error, its rows go through the per-user path instead.
Rows that need a read first (an email change, update mode) always go per user.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..api import SailthruApi
from ..destination import SailthruDestination
from ..errors import SailthruError
from ..profiles import ProfileChange, ProfileExporter
from ..results import ExportResult, Status
from .config import SyncConfig

if TYPE_CHECKING:
    pass

__all__ = ["BulkExporter", "JobFailed"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_DONE = ("completed", "complete", "done")


class JobFailed(Exception):
    """A bulk job ended in error or never finished."""


class _NeedsRead(Exception):
    """The change needs a read before its write: it cannot go in a bulk file."""


class _CapturingApi:
    """Stands in for the API while building payloads: keeps the POST /user, refuses reads."""

    def __init__(self) -> None:
        self.payload: dict[str, Any] | None = None

    def post(self, endpoint: str, payload: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        if endpoint != "user":
            raise _NeedsRead(endpoint)
        self.payload = dict(payload)
        return {}

    def get(self, endpoint: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        raise _NeedsRead(endpoint)

    def delete(self, endpoint: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        raise _NeedsRead(endpoint)

    def wait(self, seconds: float) -> None:
        raise _NeedsRead("wait")


class BulkExporter:
    """Sends changes through job API ``update`` jobs of at most ``chunk`` users each.

    ``poll_interval`` is the first wait between job polls (doubling up to ``max_poll``);
    ``timeout`` bounds the total wait for one job (then its rows go per user).
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
    ) -> None:
        self._dest = destination
        self._api = destination.api
        self._config = config
        self._chunk = chunk
        self._poll_interval = poll_interval
        self._max_poll = max_poll
        self._timeout = timeout
        self._capture = _CapturingApi()
        # The destination's own registry, so lists are created once under its mutex; the
        # payloads come from the same exporter code as the per-user path, so both agree.
        self._builder = ProfileExporter(
            cast(SailthruApi, self._capture),
            destination.lists,
            destination.options,
            destination.app,
        )
        self.jobs = 0

    def export(
        self, items: Iterable[T], change_for: Callable[[T], ProfileChange]
    ) -> Iterator[tuple[T, ExportResult]]:
        """Yield ``(item, result)`` for every item, in chunks through the job API."""
        batch: list[tuple[T, ExportResult]] = []
        per_user: list[T] = []
        with tempfile.TemporaryDirectory(prefix="sailthru-bulk-") as folder:
            path = os.path.join(folder, "update.jsonl")
            handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 (reopened per chunk)
            try:
                for item in items:
                    outcome = self._payload(change_for(item))
                    if isinstance(outcome, ExportResult):
                        yield item, outcome
                        continue
                    if outcome is None:
                        per_user.append(item)
                        if len(per_user) >= self._chunk:
                            yield from self._per_user(per_user, change_for)
                            per_user = []
                        continue
                    payload, result = outcome
                    handle.write(json.dumps(payload, separators=(",", ":")) + "\n")
                    batch.append((item, result))
                    if len(batch) >= self._chunk:
                        handle.close()
                        yield from self._run_job(path, batch, change_for)
                        batch = []
                        handle = open(path, "w", encoding="utf-8")  # noqa: SIM115
            finally:
                handle.close()
            if batch:
                yield from self._run_job(path, batch, change_for)
        if per_user:
            yield from self._per_user(per_user, change_for)

    def _payload(
        self, change: ProfileChange
    ) -> ExportResult | tuple[dict[str, Any], ExportResult] | None:
        """The user's payload and result-to-be; a final result; or None: send it per user."""
        self._capture.payload = None
        try:
            result = self._builder.export(change)
        except _NeedsRead:
            return None
        if result.status is Status.FAILED or self._capture.payload is None:
            return result
        return self._capture.payload, result

    def _run_job(
        self,
        path: str,
        batch: list[tuple[T, ExportResult]],
        change_for: Callable[[T], ProfileChange],
    ) -> Iterator[tuple[T, ExportResult]]:
        try:
            self._job(path, len(batch))
        except (JobFailed, SailthruError) as exc:
            log.warning("bulk job failed (%s): sending its %d users one by one", exc, len(batch))
            yield from self._per_user([item for item, _ in batch], change_for)
            return
        for item, result in batch:
            yield item, ExportResult(result.status, result.record_id, "applied by a bulk job")

    def _job(self, path: str, size: int) -> None:
        self.jobs += 1
        reply = self._api.post("job", {"job": "update"}, file=path)
        job_id = reply.get("job_id")
        if not job_id:
            raise JobFailed(f"the job API answered without a job_id: {reply!r}")
        log.info("bulk update job %s started for %d users", job_id, size)
        waited, delay = 0.0, self._poll_interval
        while True:
            status = self._api.get("job", {"job_id": job_id})
            state = str(status.get("status", "")).lower()
            if state in _DONE:
                return
            if state == "error":
                raise JobFailed(f"job {job_id} ended in error")
            if waited >= self._timeout:
                raise JobFailed(f"job {job_id} not done after {waited:.0f} s")
            self._api.wait(delay)
            waited += delay
            delay = min(delay * 2, self._max_poll)

    def _per_user(
        self, items: list[T], change_for: Callable[[T], ProfileChange]
    ) -> Iterator[tuple[T, ExportResult]]:
        results = self._dest.iter_export_profiles(change_for(item) for item in items)
        yield from zip(items, results, strict=True)
