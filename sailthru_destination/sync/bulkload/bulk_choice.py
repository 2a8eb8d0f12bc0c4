"""When ``--bulk auto`` takes the job path: whichever path the cost model says is faster.

    per-user time ≈ changed / pace
    bulk time     ≈ job overhead + changed × per-row cost

``pace`` is the POST /user rate the account allows, as the API's rate limiter knows it
(from ``--rate-limit`` or learned from Sailthru's rate-limit headers). The job overhead is
the time Sailthru takes to pick up and run a job (:data:`JOB_SECONDS`, an estimate) plus
the worst wait between two polls (``max_poll``); the per-row cost is building a line,
uploading it and recording the row as applied (:data:`ROW_SECONDS`, measured by
``bench/sync_bulk.py``). At 300 users/s the job path wins from about 23,000 changed users.
An explicit ``bulk_threshold`` replaces the model.
"""

from __future__ import annotations

from ..config import SyncConfig

__all__ = ["JOB_SECONDS", "MAX_POLL", "ROW_SECONDS", "bulk_is_faster", "bulk_seconds",
           "use_bulk"]

JOB_SECONDS = 60.0
"""Seconds from posting a job file until Sailthru reports it completed (an estimate)."""

MAX_POLL = 10.0
"""The longest wait between two polls of a job (the bulk exporter's ``max_poll``)."""

ROW_SECONDS = 0.00025
"""Seconds of work per row on the job path: build, upload, record (measured, rounded up)."""


def bulk_seconds(changed: int, *, job_seconds: float = JOB_SECONDS,
                 max_poll: float = MAX_POLL, row_seconds: float = ROW_SECONDS) -> float:
    """The expected time of the job path for ``changed`` rows."""
    return job_seconds + max_poll + changed * row_seconds


def bulk_is_faster(changed: int, pace: float, **costs: float) -> bool:
    """Whether ``changed`` rows go faster through a job than one call each at ``pace``/s."""
    if changed <= 0:
        return False
    if pace <= 0:
        return True
    return bulk_seconds(changed, **costs) < changed / pace


def use_bulk(config: SyncConfig, changed: int, pace: float) -> bool:
    """Whether ``changed`` rows take the job path: ``bulk`` always/never, else the explicit
    ``bulk_threshold`` when set, else the cost model at ``pace`` calls per second."""
    if config.bulk == "never" or changed <= 0:
        return False
    if config.bulk == "always":
        return True
    if config.bulk_threshold is not None:
        return changed >= config.bulk_threshold
    return bulk_is_faster(changed, pace)
