"""Exactly once at the edges, over random histories (issue 22).

Orders arrive; runs send every order known so far, one by one or through ``purchase_import``
jobs, against a fake Sailthru whose replies may be lost after it applied a write, whose
reads lag writes by a random amount, and whose jobs run a minute after their POST. A run may
be killed right after a call Sailthru applied; time passes between runs. Everything runs
on one virtual clock (the fake's lags and jobs, the API layer's waits, the doubt age), so a
history of hours costs no real time.

After every step no order is in Sailthru twice, and no order is reported sent unless it is
there. At the end, once the faults stop and time passes, every order is in Sailthru exactly
once, or its last run reported it in doubt.

CI runs a small budget; ``bench/exactly_once.py`` runs ten times as many histories
(``SAILTHRU_EXACTLY_ONCE_SCALE``).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from helpers import KEY, SECRET, VirtualClock
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.commerce import Purchase, PurchaseItem
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.results import ExportResult, Status
from sailthru_destination.sync.bulkload.purchase_import import PurchaseImporter
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog, CallRecord

SCALE = int(os.environ.get("SAILTHRU_EXACTLY_ONCE_SCALE", "1"))
AGE = 600.0
ITEM = PurchaseItem("sku-1", "Shirt", 1, "9.99", url="https://shop.example/sku-1")

RATES = st.sampled_from([0.0, 0.3, 1.0])
FAULTS = st.builds(
    Faults,
    error_after_apply_rate=RATES,
    drop_after_apply_rate=st.sampled_from([0.0, 0.5]),
    server_error_rate=st.sampled_from([0.0, 0.2]),
    stale_read_window=st.sampled_from([0.0, 1.5]),
    stale_read_jitter=st.sampled_from([0.0, 3.0, 120.0]),
)


class Killed(BaseException):
    """The process dies (SIGKILL) right after a call Sailthru answered."""


class ExactlyOnce(RuleBasedStateMachine):
    """Orders, runs (per purchase or by job), faults, kills and time (see the module)."""

    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed: int) -> None:
        self.clock = VirtualClock()
        self.fake = FakeSailthru(api_key=KEY, api_secret=SECRET, clock=self.clock, seed=seed,
                                 job_seconds=60.0, rate_limits={"default": 1_000_000})
        self.fake.start()
        self.folder = tempfile.TemporaryDirectory(prefix="exactly-once-")
        self.state_file = Path(self.folder.name) / "state.db"
        self.orders: list[str] = []
        self.last: dict[str, ExportResult] = {}

    def teardown(self) -> None:
        if not hasattr(self, "fake"):
            return
        try:
            self.check_end()
        finally:
            self.fake.stop()
            self.folder.cleanup()

    # -- steps --------------------------------------------------------------------------------

    @rule(count=st.integers(1, 4))
    def new_orders(self, count: int) -> None:
        start = len(self.orders)
        self.orders += [f"o{n}" for n in range(start, start + count)]

    @precondition(lambda self: bool(self.orders))
    @rule(faults=FAULTS, by_job=st.booleans(), kill_after=st.none() | st.integers(1, 12))
    def run(self, faults: Faults, by_job: bool, kill_after: int | None) -> None:
        self.fake.faults = faults
        try:
            self._run(by_job, kill_after)
        except Killed:
            pass
        finally:
            self.fake.faults = Faults()

    @rule(seconds=st.sampled_from([1.0, 30.0, 90.0, AGE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    # -- checks -------------------------------------------------------------------------------

    @invariant()
    def never_twice(self) -> None:
        if hasattr(self, "fake"):
            twice = {o: n for o, n in self._posted().items() if n > 1}
            assert not twice, twice

    def check_end(self) -> None:
        """With the faults gone and time passing, each order lands exactly once."""
        for _ in range(4):
            self.clock.sleep(AGE + 1)
            self._run(by_job=False, kill_after=None)
        posted = self._posted()
        for order in self.orders:
            result = self.last.get(order)
            in_doubt = result is not None and result.detail.startswith("in doubt")
            assert posted[order] == 1 or (posted[order] == 0 and in_doubt), (order, result)

    # -- helpers ------------------------------------------------------------------------------

    def _posted(self) -> Counter[str]:
        return Counter(str(p["purchase_keys"].get("extid")) for p in self.fake.purchases)

    def _run(self, by_job: bool, kill_after: int | None) -> None:
        calls = 0

        def sink(_record: CallRecord) -> None:
            nonlocal calls
            calls += 1
            if kill_after is not None and calls >= kill_after:
                raise Killed

        app = AppOptions(KEY, SECRET, self.fake.url, read_timeout=5.0)
        api = SailthruApi(app, clock=self.clock, wall_clock=self.clock, sleep=self.clock.sleep,
                          call_log=CallLog(sink=sink), rate_limits={"default": 1_000_000})
        options = DestinationOptions(concurrency=1, purchase_doubt_age=AGE,
                                     lock_dir=str(Path(self.folder.name) / "locks"))
        purchases = [Purchase(o, email=f"{o}@example.com", items=(ITEM,)) for o in self.orders]
        with SyncState(self.state_file) as state, \
                SailthruDestination(app, options, api=api, sent_keys=state,
                                    clock=self.clock) as dest:
            results: list[Any]
            if by_job:
                importer = PurchaseImporter(dest, state, chunk=50)
                results = [r for _, r in importer.send(purchases, lambda p: p)]
            else:
                results = dest.send_purchases(purchases).results
            posted = self._posted()
            for result in results:
                self.last[result.record_id] = result
                if result.status is Status.SENT or result.status is Status.SKIPPED:
                    assert posted[result.record_id] == 1, result  # never "sent" when absent
                else:
                    assert result.detail.startswith("in doubt"), result


ExactlyOnce.TestCase.settings = settings(
    max_examples=12 * SCALE, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestExactlyOnce = ExactlyOnce.TestCase
