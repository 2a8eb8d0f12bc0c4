"""Small builders shared by the tests: a destination wired to a fake, without real sleeps."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

KEY = "test-key"
SECRET = "test-secret"


class VirtualClock:
    """Unix time that moves only when slept on: share it between the fake (its jobs and
    read lags), the API layer's waits and the code under test, and no test sleeps for real."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def make_fake(**kwargs: Any) -> FakeSailthru:
    """A fake Sailthru with the tests' credentials (start it with ``with``)."""
    return FakeSailthru(api_key=KEY, api_secret=SECRET, **kwargs)


def app_for(fake: FakeSailthru, **overrides: Any) -> AppOptions:
    """AppOptions pointing at ``fake`` (made by :func:`make_fake`) with its credentials."""
    values: dict[str, Any] = {
        "api_key": KEY,
        "api_secret": SECRET,
        "api_url": fake.url,
        "read_timeout": 5.0,
        **overrides,
    }
    return AppOptions(**values)


def destination_for(
    fake: FakeSailthru, lock_dir: Path, *, sleeps: list[float] | None = None, **options: Any
) -> SailthruDestination:
    """A destination on ``fake`` whose waits are recorded in ``sleeps`` instead of slept."""
    recorded = sleeps if sleeps is not None else []
    app = app_for(fake)
    opts = DestinationOptions(lock_dir=str(lock_dir), **options)
    api = SailthruApi(app, sleep=recorded.append, concurrency=opts.concurrency)
    return SailthruDestination(app, opts, api=api)


def posted_payloads(dest: SailthruDestination, endpoint: str = "user") -> list[dict[str, Any]]:
    """The payloads of the POSTs the destination made to ``endpoint``, in order."""
    return [
        dict(r.payload)
        for r in dest.api.call_log.records()
        if r.method == "POST" and r.endpoint == endpoint
    ]


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most calls that fall inside any ``window`` seconds of ``times``."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def kill_when(child: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 60) -> None:
    """SIGKILL ``child`` as soon as ``ready()`` (a crash at an unknown point of its work)."""
    try:
        deadline = time.monotonic() + timeout
        while not ready() and child.poll() is None:
            assert time.monotonic() < deadline, "the child never got going"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)


def fuzz_examples(ci_budget: int) -> int:
    """A property test's example count: ``ci_budget`` in CI, times ``SAILTHRU_FUZZ_SCALE`` from
    ``bench/fuzz_inputs.py`` (big budgets belong in bench/, not in CI)."""
    return ci_budget * max(1, int(os.environ.get("SAILTHRU_FUZZ_SCALE", "1")))


def assert_under_limit(times: list[float], limit: float) -> None:
    """The calls at ``times`` kept to ``limit`` per second, as Sailthru counts them.

    Sailthru counts per minute, so the run (seconds long) must average at most ``limit``. The
    pacer spaces send slots at 97.5 % of it; on a loaded machine a thread can be descheduled
    between its slot and its send, bunching two or three calls into one second, so the peak
    second is held to the limit plus 10 %: a pacing fault (two accounts sharing one schedule,
    or none) shows as a multiple, not as 10 %.
    """
    span = max(times) - min(times)
    assert len(times) - 1 <= limit * span, (len(times), span, limit)
    assert max_in_any_window(times) <= limit * 1.1, (max_in_any_window(times), limit)
