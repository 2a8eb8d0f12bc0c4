"""Running one job API job: post its file, then poll until it is done, failed or late."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from ...errors import OutcomeUnknown, SailthruError
from ...transport.api import SailthruApi

__all__ = ["JobFailed", "JobRefused", "JobRunner"]

log = logging.getLogger(__name__)

_DONE = ("completed", "complete", "done")


class JobFailed(Exception):
    """A job ended in error or never finished; ``job_id`` when one was started."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobRefused(JobFailed):
    """Sailthru refused to start the job (a clear error to its POST): nothing of it ran."""


class JobRunner:
    """Posts jobs and waits for them (usable from several threads at once).

    ``poll_interval`` is the first wait between polls (doubling up to ``max_poll``);
    ``timeout`` bounds the total wait for one job.
    """

    def __init__(
        self,
        api: SailthruApi,
        *,
        poll_interval: float = 0.2,
        max_poll: float = 10.0,
        timeout: float = 3600.0,
    ) -> None:
        self._api = api
        self._poll_interval = poll_interval
        self._max_poll = max_poll
        self._timeout = timeout
        self._lock = threading.Lock()
        self.started = 0

    def run(
        self, params: Mapping[str, Any], path: str, size: int, *, repeat: bool = True
    ) -> dict[str, Any]:
        """Post a job with ``path`` as its file; return its final status once completed.

        ``repeat=False`` for a job that must not run twice (an import of purchases): an
        unclear answer to its POST is then :class:`~sailthru_destination.errors.OutcomeUnknown`
        rather than a retry that could start a second job.

        Raises :class:`JobRefused` when Sailthru refused to start it, :class:`JobFailed` when
        it ends in error, is not done in time or cannot be polled (with its ``job_id``), and
        :class:`~sailthru_destination.errors.OutcomeUnknown` when its POST has no clear
        answer (the job may have been created, and may run, under an id nobody knows).
        """
        with self._lock:
            self.started += 1
        try:
            reply = self._api.post("job", dict(params), file=path, repeat=repeat)
        except OutcomeUnknown:
            raise
        except SailthruError as exc:
            raise JobRefused(f"the job was refused: {exc}") from exc
        job_id = reply.get("job_id")
        if not job_id:
            raise JobFailed(f"the job API answered without a job_id: {reply!r}")
        log.info("%s job %s started for %d lines", params.get("job"), job_id, size)
        waited, delay = 0.0, self._poll_interval
        while True:
            try:
                status = self._api.get("job", {"job_id": job_id})
            except SailthruError as exc:
                # The job was started: whoever handles this needs its id to look it up.
                raise JobFailed(f"job {job_id} could not be polled: {exc}", str(job_id)) from exc
            state = str(status.get("status", "")).lower()
            if state in _DONE:
                return status
            if state == "error":
                raise JobFailed(f"job {job_id} ended in error", str(job_id))
            if waited >= self._timeout:
                raise JobFailed(f"job {job_id} not done after {waited:.0f} s", str(job_id))
            self._api.wait(delay)
            waited += delay
            delay = min(delay * 2, self._max_poll)
