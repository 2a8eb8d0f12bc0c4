"""Historical purchases through purchase_import jobs: each order in Sailthru exactly once."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import VirtualClock, make_fake

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.once.doubt import Doubt
from sailthru_destination.once.sentkeys import KeyState
from sailthru_destination.options import AppOptions
from sailthru_destination.results import Status
from sailthru_destination.sync.bulkload import jobs
from sailthru_destination.sync.bulkload.jobfile import dumps_line
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.runner import RecordFailure, RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 10000.0}
ITEM = {"id": "sku1", "title": "Shoe", "qty": 2, "price": 9.99, "url": "https://x.test/s"}


AGE = 600.0  # the default doubt age




@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with make_fake(rate_limits=FAST, clock=VirtualClock()) as running:
        yield running


_IMPORT_LOG = "sailthru_destination.sync.bulkload.purchase_import"

def _later(fake: FakeSailthru, seconds: float = AGE + 1) -> None:
    """Let time pass between runs (the fake's jobs run, the doubt age goes by)."""
    clock = fake.clock
    assert isinstance(clock, VirtualClock)
    clock.sleep(seconds)


def _orders(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": f"o{i}", "order_id": f"o{i}", "email": f"p{i}@example.com", "items": [ITEM]}
            for i in range(start, start + n)]


def _sync(fake: FakeSailthru, tmp_path: Path, rows: list[dict[str, Any]],
          failures: list[RecordFailure] | None = None, rate: float = 10000.0,
          **settings: Any) -> RunSummary:
    limits = {**FAST, "purchase": rate}
    config = SyncConfig(name="t", object="purchases", rate_limits=limits, **settings)
    app = AppOptions("test-key", "test-secret", fake.url)
    clock = fake.clock
    assert isinstance(clock, VirtualClock)
    api = SailthruApi(app, rate_limits=limits, sleep=clock.sleep)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    with SyncState(tmp_path / "s.db") as state, \
            SailthruDestination(app, options, api=api, sent_keys=state, clock=clock) as dest:
        sink = failures.append if failures is not None else None
        source = [Row(f"line {n}", dict(r)) for n, r in enumerate(rows, start=1)]
        return SyncRunner(dest, config, state, on_failure=sink).run(source)


def _extids(fake: FakeSailthru) -> list[str]:
    return sorted(str(p["purchase_keys"]["extid"]) for p in fake.purchases)


def test_the_fake_imports_each_line_and_reports_a_malformed_one(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    good = {"email": "a@example.com", "items": [{"id": "s", "title": "T", "qty": 1,
                                                 "price": 500, "url": "https://x.test/s"}],
            "purchase_keys": {"extid": "A-1"}}
    fake.job_seconds = 0  # what the job does, not when
    path = tmp_path / "p.jsonl"
    path.write_text(dumps_line(good) + "not json\n" + dumps_line({"email": "b@example.com"}),
                    encoding="utf-8")
    api = SailthruApi(AppOptions("test-key", "test-secret", fake.url), sleep=lambda _s: None)
    with api:
        job_id = api.post("job", {"job": "purchase_import"}, file=str(path))["job_id"]
        status = api.get("job", {"job_id": job_id})
        found = api.get("purchase", {"purchase_id": "A-1", "purchase_key": "extid"})
    assert (status["status"], status["processed"], status["errors"]) == ("completed", 1, 2)
    assert [e["line"] for e in status["error_lines"]] == [2, 3]
    assert "JSON" in status["error_lines"][0]["error"]
    assert found["email"] == "a@example.com"
    assert found["total"] == 500


def test_a_backfill_goes_in_one_job_and_a_rerun_sends_nothing(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    summary = _sync(fake, tmp_path, _orders(50), bulk="always")
    assert (summary.path, summary.jobs, summary.counts["sent"]) == ("bulk", 1, 50)
    assert fake.calls[("POST", "purchase")] == 0
    assert _extids(fake) == sorted(f"o{i}" for i in range(50))
    again = _sync(fake, tmp_path, _orders(55), bulk="always")
    assert (again.counts["unchanged"], again.counts["sent"]) == (50, 5)
    assert len(fake.purchases) == 55
    with SyncState(tmp_path / "s.db") as state:
        assert state.sent_count("purchase") == 55


def test_a_bad_row_fails_alone(fake: FakeSailthru, tmp_path: Path) -> None:
    failures: list[RecordFailure] = []
    rows = [*_orders(3), {"id": "bad", "order_id": "bad", "email": "x@example.com",
                          "items": [{"id": "s", "title": "T", "qty": 1}]}]
    summary = _sync(fake, tmp_path, rows, failures, bulk="always")
    assert (summary.counts["sent"], summary.failed) == (3, 1)
    assert (failures[0].where, failures[0].field) == ("line 4", "items")


def test_a_job_that_errors_after_importing_part_of_its_file_leaves_each_order_once(
    tmp_path: Path,
) -> None:
    with make_fake(rate_limits=FAST, job_fails=True, clock=VirtualClock()) as fake:
        # As if the failed job had imported the first 4 orders before it stopped.
        api = SailthruApi(AppOptions("test-key", "test-secret", fake.url),
                          sleep=lambda _s: None)
        with api:
            for order in _orders(4):
                api.post("purchase", {"email": order["email"], "incomplete": 0,
                                      "items": [{**ITEM, "price": 999}],
                                      "purchase_keys": {"extid": order["order_id"]}})
        failures: list[RecordFailure] = []
        first = _sync(fake, tmp_path, _orders(10), failures, bulk="always")
        # The job may have imported any of them: all in doubt, none touched in this run.
        assert (first.counts["sent"], first.failed) == (0, 10)
        assert all(f.reason.startswith("in doubt: order 'o") for f in failures)
        assert all(f.retryable for f in failures)
        assert fake.calls[("GET", "purchase")] == 0
        _later(fake)
        # The job is over: the 4 it imported are found; the 6 others missed once more.
        second = _sync(fake, tmp_path, _orders(10), bulk="always")
        assert (second.counts["sent"], second.failed) == (4, 6)
        _later(fake)
        third = _sync(fake, tmp_path, _orders(10), bulk="always")
        assert (third.counts["sent"], third.failed) == (6, 0)
        assert _extids(fake) == sorted(f"o{i}" for i in range(10))  # each exactly once
        assert fake.calls[("POST", "purchase")] == 4 + 6
        with SyncState(tmp_path / "s.db") as state:
            assert state.sent_count("purchase") == 10


def test_a_refused_job_releases_its_claims_and_sends_one_by_one(
    fake: FakeSailthru, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = jobs.JobRunner.run

    def refused(self: jobs.JobRunner, params: Any, path: str, size: int,
               **kw: Any) -> dict[str, Any]:
        return real(self, {**params, "job": "no_such_job"}, path, size, **kw)

    monkeypatch.setattr(jobs.JobRunner, "run", refused)
    with caplog.at_level(logging.WARNING, logger=_IMPORT_LOG):
        summary = _sync(fake, tmp_path, _orders(5), bulk="always")
    assert summary.counts["sent"] == 5
    assert fake.calls[("GET", "purchase")] == 0  # nothing in doubt: no read-back
    # The operator is told why the run went slow: the refusal, then what was done instead.
    said = [r.getMessage() for r in caplog.records if r.name.endswith("purchase_import")]
    assert len(said) == 1
    assert said[0].startswith("the job was refused: POST /job failed (HTTP 400")
    assert said[0].endswith(": sending its 5 orders one by one")
    assert _extids(fake) == sorted(f"o{i}" for i in range(5))


@pytest.mark.parametrize("posted", [True, False])
def test_a_crash_mid_run_never_sends_an_order_twice(
    fake: FakeSailthru, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, posted: bool
) -> None:
    real = jobs.JobRunner.run

    def crash(self: jobs.JobRunner, params: Any, path: str, size: int,
             **kw: Any) -> dict[str, Any]:
        if posted:
            real(self, params, path, size, **kw)
        raise KeyboardInterrupt  # the process dies before the orders are settled

    with monkeypatch.context() as patch:
        patch.setattr(jobs.JobRunner, "run", crash)
        with pytest.raises(KeyboardInterrupt):
            _sync(fake, tmp_path, _orders(6), bulk="always")
    with SyncState(tmp_path / "s.db") as state:
        assert state.sent_count("purchase", KeyState.PENDING) == 6
    failures: list[RecordFailure] = []
    _later(fake, 1.0)  # the job (if posted) has run
    again = _sync(fake, tmp_path, _orders(6), failures, bulk="always")
    if posted:
        assert again.counts["sent"] == 6  # read back and found: recorded, not re-sent
        assert fake.calls[("POST", "purchase")] == 0
    else:  # claimed, never posted: in doubt, never silently re-sent or dropped
        assert (again.failed, len(fake.purchases)) == (6, 0)
        assert "in doubt" in failures[0].reason
        assert "'pending'" in failures[0].reason
        _later(fake)  # reads over the doubt age miss them: a later run sends each once
        assert _sync(fake, tmp_path, _orders(6), bulk="always").counts["sent"] == 6
    assert _extids(fake) == sorted(f"o{i}" for i in range(6))


def test_auto_imports_only_when_the_cost_model_says_it_is_faster(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    few = _sync(fake, tmp_path, _orders(5), bulk="auto")
    assert (few.path, fake.calls[("POST", "purchase")]) == ("per-user", 5)
    assert few.counts["sent"] == 5  # the one-by-one path reports its results too
    # At 1 order/s, 100 orders cost 100 s one by one: a job (about 70 s) is faster.
    many = _sync(fake, tmp_path, _orders(100, start=5), bulk="auto", rate=1.0)
    assert (many.path, many.jobs, many.counts["sent"]) == ("bulk", 1, 100)
    assert fake.calls[("POST", "purchase")] == 5
    never = _sync(fake, tmp_path, _orders(100, start=200), bulk="never", rate=1.0)
    assert never.path == "per-user"
    assert json.dumps(many.to_dict())


def test_a_job_refusing_lines_without_naming_them_leaves_its_orders_in_doubt(
    fake: FakeSailthru, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = jobs.JobRunner.run

    def with_errors(self: jobs.JobRunner, params: Any, path: str, size: int,
                   **kw: Any) -> dict[str, Any]:
        return {**real(self, params, path, size, **kw), "errors": 1, "error_lines": []}

    monkeypatch.setattr(jobs.JobRunner, "run", with_errors)
    failures: list[RecordFailure] = []
    first = _sync(fake, tmp_path, _orders(4), failures, bulk="always")
    assert (first.counts["sent"], first.failed) == (0, 4)
    assert all("refused 1 line(s) without saying which" in f.reason for f in failures)
    _later(fake)
    assert _sync(fake, tmp_path, _orders(4), bulk="always").counts["sent"] == 4
    assert _extids(fake) == sorted(f"o{i}" for i in range(4))
    assert fake.calls[("POST", "purchase")] == 0


def test_the_lines_a_job_names_as_refused_are_sent_one_by_one_and_the_rest_are_sent(
    fake: FakeSailthru, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = jobs.JobRunner.run

    def refusing_line_2(self: jobs.JobRunner, params: Any, path: str, size: int,
                        **kw: Any) -> dict[str, Any]:
        lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
        Path(path).write_text("".join(lines[:1] + lines[2:]), encoding="utf-8")
        status = real(self, params, path, size - 1, **kw)
        return {**status, "errors": 1, "error_lines": [{"line": 2, "error": "refused"}]}

    monkeypatch.setattr(jobs.JobRunner, "run", refusing_line_2)
    with caplog.at_level(logging.WARNING, logger=_IMPORT_LOG):
        summary = _sync(fake, tmp_path, _orders(4), bulk="always")
    assert (summary.counts["sent"], summary.failed) == (4, 0)
    assert _extids(fake) == sorted(f"o{i}" for i in range(4))
    assert fake.calls[("POST", "purchase")] == 1  # only the refused line, one by one
    # The warning names the job (to look it up) and its refused lines.
    said = [r for r in caplog.records if r.name.endswith("purchase_import")]
    assert len(said) == 1
    job_id = said[0].args[0] if isinstance(said[0].args, tuple) else None
    assert job_id is not None
    assert said[0].getMessage() == (f"purchase_import job {job_id} refused line(s) [2]: "
                                    "sending those orders one by one")


def test_an_import_job_answered_5xx_after_it_ran_imports_each_order_once(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # Found by the stateful test: the job's POST was retried as if a job could not land twice,
    # so a 5xx after Sailthru had started it started a second import of the same orders.
    from sailthru_destination.testing import Faults

    fake.faults = Faults(error_after_apply_rate=1.0)
    rows = _orders(5)
    first = _sync(fake, tmp_path, rows, bulk="always")
    fake.faults = Faults()
    _later(fake, 1.0)
    second = _sync(fake, tmp_path, rows, bulk="always")
    assert _extids(fake) == sorted(str(r["order_id"]) for r in rows)
    assert (first.counts["failed"], second.counts["sent"]) == (5, 5)


@pytest.mark.parametrize("fault", ["error_after_apply_rate", "drop_after_apply_rate"])
def test_an_import_whose_post_has_no_clear_answer_is_never_doubled_by_its_slow_job(
    fake: FakeSailthru, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    # Issue 22, defect 2: the job was created but its POST answered 504 (or lost its
    # connection); it imports a minute later. The orders were read back at once, found
    # absent and posted one by one, then the job imported them too: 20 of 20 twice.
    from sailthru_destination.testing import Faults

    real = jobs.JobRunner.run

    def unclear(self: jobs.JobRunner, params: Any, path: str, size: int,
                **kw: Any) -> dict[str, Any]:
        fake.faults = Faults(**{fault: 1.0})
        try:
            return real(self, params, path, size, **kw)
        finally:
            fake.faults = Faults()

    fake.job_seconds = 60.0  # real jobs take about a minute
    monkeypatch.setattr(jobs.JobRunner, "run", unclear)
    failures: list[RecordFailure] = []
    first = _sync(fake, tmp_path, _orders(20), failures, bulk="always")
    monkeypatch.undo()
    assert first.counts["sent"] == 0  # in doubt, never reported sent
    assert all("the job's POST had no clear answer (" in f.reason for f in failures)
    assert all("it may run under an id that never came back" in f.reason for f in failures)
    with SyncState(tmp_path / "s.db") as state:  # its job's id never came back
        assert {state.doubt("purchase", f"o{i}").job for i in range(20)} == {"?"}
    for _ in range(3):  # the job runs; later runs find each order
        _later(fake)
        _sync(fake, tmp_path, _orders(20), bulk="always")
    assert _extids(fake) == sorted(f"o{i}" for i in range(20))  # each exactly once


@contextlib.contextmanager
def _importer(fake: FakeSailthru, tmp_path: Path, timezone: str = "UTC",
              **settings: Any) -> Iterator[Any]:
    """A PurchaseImporter on the fake, its state and the fake's clock."""
    from sailthru_destination.sync.bulkload.purchase_import import PurchaseImporter

    clock = fake.clock
    assert isinstance(clock, VirtualClock)
    app = AppOptions("test-key", "test-secret", fake.url, timezone=timezone)
    with SyncState(tmp_path / "s.db") as state, \
            SailthruApi(app, rate_limits=FAST, sleep=clock.sleep) as api, \
            SailthruDestination(app, api=api, sent_keys=state, clock=clock) as dest:
        yield PurchaseImporter(dest, state, **settings)


def _purchases(*numbers: int) -> list[Any]:
    from sailthru_destination.features.commerce import Purchase, PurchaseItem

    item = PurchaseItem("sku1", "Shoe", 1, "9.99", url="https://x.test/s")
    return [Purchase(f"o{i}", email=f"p{i}@example.com", items=(item,)) for i in numbers]


def test_chunks_of_a_file_each_go_in_their_own_job_and_say_so(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with _importer(fake, tmp_path, chunk=2) as importer:
        results = [r for _, r in importer.send(_purchases(*range(5)), lambda p: p)]
        assert importer.jobs == 3
    assert [r.detail for r in results] == [
        f"order 'o{i}': 1 item(s) (imported by a job)" for i in range(5)]
    assert _extids(fake) == [f"o{i}" for i in range(5)]


def test_an_order_twice_in_one_file_is_imported_once_and_then_skipped(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    orders = _purchases(1, 1)
    with _importer(fake, tmp_path) as importer:
        sent = list(importer.send(orders, lambda p: p))
    assert [item is order for (item, _), order in zip(sent, orders, strict=True)] == [True, True]
    assert [r.status for _, r in sent] == [Status.SENT, Status.SKIPPED]
    assert _extids(fake) == ["o1"]


def test_the_importer_polls_as_often_as_it_is_told(fake: FakeSailthru, tmp_path: Path) -> None:
    fake.job_seconds = 30.0
    with _importer(fake, tmp_path, poll_interval=1.0, max_poll=1.0) as importer:
        list(importer.send(_purchases(1), lambda p: p))
    assert fake.calls[("GET", "job")] in (30, 31)  # every second, never backing off further


def test_only_purchases_models_not_sent_one_by_one_have_a_bulk_path(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    from sailthru_destination.sync.bulkload.purchase_import import bulk_purchases

    app = AppOptions("test-key", "test-secret", fake.url)
    with SyncState(tmp_path / "s.db") as state, SailthruDestination(app, sent_keys=state) as dest:
        def path(obj: str, bulk: str) -> bool:
            config = SyncConfig(name="t", object=obj, bulk=bulk)
            return bulk_purchases(dest, config, state, RunSummary()) is not None

        assert path("purchases", "always")
        assert path("purchases", "auto")
        assert not path("purchases", "never")
        assert not path("events", "always")
        assert not path("returns", "auto")


def test_an_unclear_job_keeps_its_id_with_each_order_and_says_why(
    tmp_path: Path,
) -> None:
    with make_fake(rate_limits=FAST, job_polls=None, clock=VirtualClock()) as fake:
        failures: list[RecordFailure] = []
        _sync(fake, tmp_path, _orders(2), failures, bulk="always")  # never completes
        job = fake.jobs[0]["job_id"]
        assert [f.record for f in failures] == ["o0", "o1"]
        assert all(f"the job failed or is not over (job {job} not done after" in f.reason
                   for f in failures)
        with SyncState(tmp_path / "s.db") as state:
            assert [state.doubt("purchase", f"o{i}").job for i in range(2)] == [job, job]


@pytest.mark.parametrize(("status", "refused"), [
    ({"errors": 2, "error_lines": [{"line": 1}, {"line": 3}]}, {1, 3}),
    ({"errors": 1, "error_lines": [{"line": 3}, {"line": 3}]}, {3}),
    ({"errors": 1}, None),  # not said which
    ({"errors": 1, "error_lines": ["3"]}, None),
    ({"errors": 1, "error_lines": [{"line": 4}]}, None),  # no such line
    ({"errors": 1, "error_lines": [{"line": 0}]}, None),
    ({"errors": 1, "error_lines": [{"line": True}]}, None),
    ({"errors": 1, "error_lines": [{"line": "1"}]}, None),
    ({"errors": 2, "error_lines": [{"line": 1}]}, None),  # does not add up
])
def test_the_refused_lines_are_believed_only_when_they_add_up(
    status: dict[str, Any], refused: set[int] | None
) -> None:
    from sailthru_destination.sync.bulkload.purchase_import import _refused_lines

    assert _refused_lines(status, 3) == refused


def test_a_naive_order_date_is_read_in_the_accounts_time_zone(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    import dataclasses
    from datetime import datetime, timezone

    (order,) = _purchases(1)
    dated = dataclasses.replace(order, date=datetime(2024, 1, 1, 12, 0))
    with _importer(fake, tmp_path, timezone="America/New_York") as importer:
        list(importer.send([dated], lambda p: p))
    noon_in_new_york = datetime(2024, 1, 1, 17, 0, tzinfo=timezone.utc).timestamp()
    assert [p["date"] for p in fake.purchases] == [int(noon_in_new_york)]


def test_an_importer_waits_for_its_job_as_long_as_it_is_told_then_says_why_in_doubt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with make_fake(rate_limits=FAST, job_polls=None, clock=VirtualClock()) as fake, \
            caplog.at_level(logging.WARNING, logger=_IMPORT_LOG):
        with _importer(fake, tmp_path, poll_interval=1.0, max_poll=1.0,
                       timeout=20.0) as importer:
            results = [r for _, r in importer.send(_purchases(1, 2), lambda p: p)]
        assert 19 <= fake.calls[("GET", "job")] <= 21  # gave up after 20 s, not an hour
        job = fake.jobs[0]["job_id"]
        with SyncState(tmp_path / "s.db") as state:
            doubts = [state.doubt("purchase", f"o{i}") for i in (1, 2)]
    assert [r.status for r in results] == [Status.FAILED, Status.FAILED]
    # Each doubt names its job and the sender that left it (so this run never resends it).
    assert [(d.job, bool(d.owner)) for d in doubts] == [(job, True), (job, True)]
    said = [r.getMessage() for r in caplog.records if r.name.endswith("purchase_import")]
    assert len(said) == 1
    assert said[0].startswith(f"purchase_import of 2 orders: the job failed or is not over "
                              f"(job {job} not done after")
    assert said[0].endswith("; they are in doubt")


def test_a_doubt_is_read_back_whole_from_the_state_file(tmp_path: Path) -> None:
    # Its owner decides whether this sender may post the order again: it must survive the file.
    doubt = Doubt(since=1700000000.5, misses=1, owner="run-a", job="job-9")
    with SyncState(tmp_path / "s.db") as state:
        state.note_doubt("purchase", "o1", doubt)
    with SyncState(tmp_path / "s.db") as state:
        assert state.doubt("purchase", "o1") == doubt
        state.clear_doubt("purchase", "o1")
    with SyncState(tmp_path / "s.db") as state:
        assert state.doubt("purchase", "o1") is None
