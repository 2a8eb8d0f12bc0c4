"""A fake Sailthru and a folder of state files, and the sync runs the stateful test makes.

The runs are wired as :func:`sailthru_destination.sync.run.run_sync` wires them (API,
destination with the state as its sent-keys store, runner), but in process, with waits
that return at once and an in-process rate limiter, so hundreds of runs fit in seconds.
An interrupted run forks: the child runs and SIGKILLs itself right after its N-th API
call (the request was sent and answered, nothing after it happened), as a crash would.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import sqlite3
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.runner import RecordFailure, RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.testing import _app as fake_app
from sailthru_destination.testing import _state as fake_state
from sailthru_destination.testing._errors import ApiError
from sailthru_destination.transport._protocol import ErrorCode
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallRecord
from sailthru_destination.transport.ratelimit import RateLimiterRegistry

KEY, SECRET = "stateful-key", "stateful-secret"
FAST = {"default": 100_000.0}
OBJECTS = ("users", "events", "purchases")
# How long a killed child may take before the test gives up on it (a hang is a failure).
_CHILD_TIMEOUT = 60.0


@dataclass
class ModelRun:
    """What one model's run said: its summary and the records it reported failed."""

    summary: RunSummary
    failures: list[RecordFailure] = field(default_factory=list)


class SkippedTime:
    """Waits that return at once, but count: the fake's clock runs ahead by their sum.

    A run never really sleeps (hundreds fit in seconds), yet Sailthru's eventual consistency
    stays faithful: a read soon after a write is stale, a read after a wait is not. The sum
    lives in shared memory, so the waits of a forked (killed) run count too.
    """

    def __init__(self) -> None:
        self._skipped = multiprocessing.Value("d", 0.0, lock=False)

    def sleep(self, seconds: float) -> None:
        """Skip a wait: the fake's clock jumps ahead instead."""
        self._skipped.value += max(seconds, 0.0)

    def monotonic(self) -> float:
        """The fake's clock: the real one plus every wait skipped so far."""
        return time.monotonic() + float(self._skipped.value)

    @contextlib.contextmanager
    def driving_the_fake(self) -> Iterator[None]:
        """Make the fake's stale-read windows follow this clock (restored on exit)."""
        with mock.patch.object(fake_state, "time", self):
            yield


@dataclass(frozen=True)
class Target:
    """Where the runs go and how: the fake's URL, the state folder, the sync settings, the clock."""

    url: str
    folder: Path
    settings: Mapping[str, Any]
    clock: SkippedTime


def run_model(
    target: Target,
    obj: str,
    rows: list[Row],
    on_call: Callable[[CallRecord], object] | None = None,
) -> ModelRun:
    """Run the sync of one model (``obj``: users, events or purchases) to the end."""
    config = SyncConfig(object=obj, name=obj, rate_limits=FAST, allow_empty=True,
                        **target.settings)
    app = AppOptions(KEY, SECRET, target.url, read_timeout=5.0)
    api = SailthruApi(app, sleep=target.clock.sleep, rate_limits=FAST,
                      concurrency=config.concurrency, limiters=RateLimiterRegistry(FAST))
    api.call_log.sink = on_call
    options = config.destination_options(lock_dir=str(target.folder / "locks"))
    failures: list[RecordFailure] = []
    with SyncState(target.folder / f"{obj}.db") as state, SailthruDestination(
        app, options, api=api, sent_keys=state
    ) as destination:
        runner = SyncRunner(destination, config, state, on_failure=failures.append)
        summary = runner.run(rows)
    return ModelRun(summary, failures)


def run_all(
    target: Target,
    models: Mapping[str, list[Row]],
    on_call: Callable[[CallRecord], object] | None = None,
) -> dict[str, ModelRun]:
    """Run the users model, then the events and purchases models that have rows."""
    return {obj: run_model(target, obj, models[obj], on_call)
            for obj in OBJECTS if obj == "users" or models[obj]}


def run_killed(target: Target, models: Mapping[str, list[Row]], kill_after: int) -> bool:
    """Run the models in a forked child that SIGKILLs itself after its ``kill_after``-th call.

    True when the kill happened (False: the runs finished in fewer calls).
    """
    calls = 0

    def count(_record: CallRecord) -> None:
        nonlocal calls
        calls += 1
        if calls >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    pid = _fork(lambda: run_all(target, models, count), target.folder)
    killed, crash = _reap(pid, target.folder)
    if crash:
        raise AssertionError(f"an interrupted run crashed on its own:\n{crash}")
    return killed


def run_together(target: Target, models: Mapping[str, list[Row]], copies: int = 2) -> list[str]:
    """Run the models in ``copies`` forked children at once; the tracebacks of those that crashed.

    An operator starting a second sync by mistake (or a scheduler overlapping two runs)
    does exactly this on one state folder.
    """
    pids = [_fork(lambda: run_all(target, models), target.folder) for _ in range(copies)]
    crashes = [_reap(pid, target.folder)[1] for pid in pids]
    return [crash for crash in crashes if crash]


def _fork(work: Callable[[], object], folder: Path) -> int:
    """Run ``work`` in a forked child; if it raises, its traceback goes to a file."""
    pid = os.fork()
    if pid == 0:  # the child: never return into the test runner
        code = 0
        try:
            work()
        except BaseException:
            (folder / f"crash-{os.getpid()}.txt").write_text(traceback.format_exc())
            code = 3
        os._exit(code)
    return pid


def _reap(pid: int, folder: Path) -> tuple[bool, str]:
    """Wait for a child: (whether SIGKILL ended it, the traceback it left or "")."""
    deadline = time.monotonic() + _CHILD_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("a forked run hung")
        time.sleep(0.002)
    crash_file = folder / f"crash-{pid}.txt"
    crash = crash_file.read_text() if crash_file.exists() else ""
    crash_file.unlink(missing_ok=True)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return True, crash
    if not crash and os.WEXITSTATUS(status) != 0:
        crash = f"exit {os.WEXITSTATUS(status)}"
    return False, crash


@contextlib.contextmanager
def answer_5xx_after_applying(rate: Callable[[], float], rng: random.Random) -> Iterator[None]:
    """Make the fake apply a POST/DELETE, then answer 503 with error 9 (``rate()`` of them).

    The fake's own ``server_error_rate`` fails a request *before* applying it; production
    also answers 5xx after doing the work (a gateway timeout), which only a reply-side fault
    shows. The route table is the fake's extension point; it is restored on exit.
    """
    saved = dict(fake_app.ROUTES)

    def wrap(handler: fake_app.Handler) -> fake_app.Handler:
        def applied_then_failed(state: Any, payload: Any, form: Any) -> tuple[int, dict[str, Any]]:
            reply = handler(state, payload, form)
            if reply[0] == 200 and rng.random() < rate():
                raise ApiError(503, ErrorCode.INTERNAL_ERROR, "Internal error (after applying)")
            return reply

        return applied_then_failed

    for route, handler in saved.items():
        if route[0] != "GET":
            fake_app.ROUTES[route] = wrap(handler)
    try:
        yield
    finally:
        fake_app.ROUTES.clear()
        fake_app.ROUTES.update(saved)


def sent_keys(folder: Path, obj: str) -> dict[str, str]:
    """The sent-keys store of a model's state: key -> pending, sent or unknown."""
    path = folder / f"{obj}.db"
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {str(k): str(s) for k, s in db.execute("SELECT key, state FROM sent")}


def applied_keys(folder: Path) -> set[str]:
    """The primary keys the users state remembers as applied."""
    path = folder / "users.db"
    if not path.exists():
        return set()
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {str(pk) for (pk,) in db.execute("SELECT pk FROM records")}


def scratch_folder() -> Path:
    """A new folder for state files, in memory when the machine has /dev/shm (SQLite commits
    cost most of a small run on disk)."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="sync-stateful-", dir=shm if shm.is_dir() else None))


def make_fake() -> FakeSailthru:
    """A fake Sailthru whose limits never make the runner wait."""
    return FakeSailthru(api_key=KEY, api_secret=SECRET, rate_limits=FAST)
