"""What a sync run reports, and the rows it must not use (issue 18: mutants that survived).

The run summary is what the CLI prints and the run report stores: lists created, skipped and
unchanged counts, the path taken. A host's own call-log sink must keep working after a run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import AppliedRecord, SyncState
from sailthru_destination.sync.reporting.summary import RecordNotice
from sailthru_destination.sync.runner import RecordFailure, RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog, CallRecord

FAST = {"default": 10000.0}
ITEM = {"id": "sku1", "title": "Shoe", "qty": 1, "price": 9.99, "url": "https://x.test/s"}


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as running:
        yield running


def _sync(
    fake: FakeSailthru,
    tmp_path: Path,
    people: list[dict[str, Any]],
    failures: list[RecordFailure] | None = None,
    call_log: CallLog | None = None,
    progress: bool = False,
    secret: str = "s",
    notices: list[RecordNotice] | None = None,
    **settings: Any,
) -> RunSummary:
    config = SyncConfig(name="t", rate_limits=FAST, **settings)
    app = AppOptions("k", secret, fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None, call_log=call_log)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    rows = [Row(f"line {n}", dict(p)) for n, p in enumerate(people, start=2)]
    with SyncState(tmp_path / "s.db") as st, \
            SailthruDestination(app, options, api=api, sent_keys=st) as dest:
        sink = failures.append if failures is not None else None
        runner = SyncRunner(dest, config, st, on_failure=sink, progress=progress,
                            on_notice=notices.append if notices is not None else None)
        return runner.run(rows)


ANN = {"id": 1, "email": "ann@example.com", "plan": "gold", "groups": ["VIP", "News"]}
BOB = {"id": 2, "email": "bob@example.com", "plan": "free", "groups": ["News"]}


def test_the_summary_counts_the_lists_a_run_created(fake: FakeSailthru, tmp_path: Path) -> None:
    first = _sync(fake, tmp_path, [ANN, BOB])
    assert first.lists_created == 2
    assert first.to_dict()["lists_created"] == 2
    assert sorted(lst["name"] for lst in fake.lists) == ["News", "VIP"]
    joined = _sync(fake, tmp_path, [ANN, BOB | {"groups": ["News", "VIP", "Beta"]}])
    assert joined.lists_created == 1
    assert _sync(fake, tmp_path, [ANN, BOB | {"groups": ["News"]}]).lists_created == 0


def test_a_duplicate_primary_key_is_reported_and_its_row_not_used(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    failures: list[RecordFailure] = []
    summary = _sync(fake, tmp_path, [ANN, ANN | {"plan": "platinum"}, BOB], failures)
    [failure] = failures
    assert (failure.record, failure.field, failure.where) == ("1", "id", "line 3")
    assert failure.reason == (
        "duplicate primary key id='1': only the first row with this key was used"
    )
    assert (summary.counts["created"], summary.failed) == (2, 1)
    assert fake.find_user(email="ann@example.com")["vars"]["plan"] == "gold"  # type: ignore[index]
    assert fake.find_user(email="bob@example.com") is not None  # rows after it still count
    assert fake.calls[("POST", "user")] == 2


def test_a_duplicate_of_an_unchanged_row_is_reported_where_it_is(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # The no-change shortcut (a row exactly as last applied) still catches a second copy.
    _sync(fake, tmp_path, [ANN])
    failures: list[RecordFailure] = []
    summary = _sync(fake, tmp_path, [ANN, ANN], failures)
    [failure] = failures
    assert (failure.record, failure.field, failure.where) == ("1", "id", "line 3")
    assert (summary.counts["unchanged"], summary.failed, summary.total_calls) == (1, 1, 0)


def test_a_duplicate_primary_key_among_rows_marked_deleted_is_reported_where_it_is(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    failures: list[RecordFailure] = []
    gone = {"id": 1, "email": "ann@example.com", "deleted": True}
    _sync(fake, tmp_path, [gone, gone, BOB], failures, deleted_column="deleted")
    [failure] = failures
    assert (failure.record, failure.field, failure.where) == ("1", "id", "line 3")
    assert "duplicate primary key" in failure.reason


def test_a_user_skipped_in_update_mode_is_counted_and_tried_again_next_run(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    skipped = _sync(fake, tmp_path, [ANN], sync_mode="update")
    assert dict(skipped.counts) == {"skipped": 1}
    assert fake.find_user(email="ann@example.com") is None
    # Not remembered as applied: once the user exists, the next run updates it.
    _sync(fake, tmp_path / "other", [ANN])
    again = _sync(fake, tmp_path, [ANN | {"plan": "gold"}], sync_mode="update")
    assert dict(again.counts) == {"updated": 1}


def test_every_record_skipped_in_update_mode_is_reported_with_its_reason(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    """Red team: counted ``skipped: 1`` with an empty skipped.jsonl (the report's file of
    notices): a skipped record must say which one it was and why."""
    notices: list[RecordNotice] = []
    summary = _sync(fake, tmp_path, [ANN], notices=notices, sync_mode="update")
    assert dict(summary.counts) == {"skipped": 1}
    [notice] = notices
    assert (notice.record, notice.where) == ("1", "line 2")
    assert "update" in notice.reason


def test_a_row_marked_deleted_that_was_never_synced_is_reported_as_skipped(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    notices: list[RecordNotice] = []
    summary = _sync(fake, tmp_path, [{"id": 7, "deleted": True}], notices=notices,
                    deleted_column="deleted")
    assert dict(summary.counts) == {"skipped": 1}
    assert [(n.record, n.where) for n in notices] == [("7", "line 2")]
    assert "never synced" in notices[0].reason


def test_a_hosts_call_log_sink_is_restored_after_the_run(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    seen: list[str] = []

    def mine(record: CallRecord) -> None:
        seen.append(f"{record.method} {record.endpoint}")

    log = CallLog(sink=mine)
    summary = _sync(fake, tmp_path, [ANN], call_log=log)
    assert log.sink is mine
    assert "POST user" in seen  # the host's sink saw the run's calls too
    assert summary.calls["POST user"] == 1


@pytest.mark.parametrize(("changed", "path"), [(5, "per-user"), (6, "bulk")])
def test_the_bulk_path_starts_exactly_at_the_threshold(
    fake: FakeSailthru, tmp_path: Path, changed: int, path: str
) -> None:
    people = [{"id": n, "email": f"p{n}@example.com", "n": n} for n in range(changed)]
    summary = _sync(fake, tmp_path, people, bulk="auto", bulk_threshold=6)
    assert (summary.path, summary.counts["created"]) == (path, changed)
    assert len(fake.users) == changed


@pytest.mark.parametrize(
    ("kind", "row"),
    [
        ("events", {"id": "e1", "email": "a@example.com", "event": "viewed"}),
        ("purchases", {"id": "p1", "order_id": "o1", "email": "a@example.com",
                       "items": [ITEM]}),
        ("returns", {"id": "r1", "order_id": "o1", "email": "a@example.com",
                     "items": [ITEM]}),
    ],
)
def test_an_activity_run_returns_its_summary(
    fake: FakeSailthru, tmp_path: Path, kind: str, row: dict[str, Any]
) -> None:
    first = _sync(fake, tmp_path, [row], object=kind, bulk="never")
    assert (first.rows, dict(first.counts)) == (1, {"sent": 1})
    endpoint = {"events": "event", "purchases": "purchase", "returns": "return"}[kind]
    assert first.calls[f"POST {endpoint}"] >= 1
    again = _sync(fake, tmp_path, [row], object=kind, bulk="never")
    assert (again.rows, dict(again.counts), again.total_calls) == (1, {"unchanged": 1}, 0)


def test_the_opt_out_column_reaches_sailthru_on_the_per_user_path(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    summary = _sync(fake, tmp_path, [ANN | {"optout": "basic"}], optout_column="optout",
                    bulk="never")
    assert summary.counts["created"] == 1
    assert fake.find_user(email="ann@example.com")["optout_email"] == "basic"  # type: ignore[index]


def test_calls_refused_for_bad_credentials_are_counted(fake: FakeSailthru, tmp_path: Path) -> None:
    summary = _sync(fake, tmp_path, [ANN, BOB], secret="wrong", bulk="never")
    assert summary.failed == 2
    assert summary.refused_calls == summary.total_calls >= 2
    assert fake.users == {}


def test_a_run_with_nothing_changed_makes_no_job_even_with_bulk_always(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    first = _sync(fake, tmp_path, [ANN, BOB], bulk="always")
    assert (first.path, first.jobs) == ("bulk", 1)
    again = _sync(fake, tmp_path, [ANN, BOB], bulk="always")
    assert (again.path, again.jobs, again.total_calls) == ("per-user", 0, 0)


def test_progress_shows_an_exporting_and_a_removing_bar_on_stderr(
    fake: FakeSailthru, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sync(fake, tmp_path, [ANN, BOB], progress=True, bulk="never")
    assert re.search(r"(?<![A-Za-z])exporting: ", capsys.readouterr().err)
    _sync(fake, tmp_path, [ANN], progress=True, delete_behavior="delete")
    assert re.search(r"(?<![A-Za-z])removing: ", capsys.readouterr().err)


def test_a_gone_row_that_fails_does_not_stop_the_others(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    carl = {"id": 3, "email": "carl@example.com"}
    _sync(fake, tmp_path, [ANN, BOB, carl])
    with SyncState(tmp_path / "s.db") as state:  # an older state kept a key that is no email
        for pk, key in (("0", "0"), ("25", "25"), ("26", "25")):  # 26: the same user as 25
            state.put(AppliedRecord(pk, "h", f"not-an-email-{key}", {}, frozenset()))
    failures: list[RecordFailure] = []
    summary = _sync(fake, tmp_path, [ANN], failures, delete_behavior="delete")
    # Each failure names the field to fix (the stored key), and is not worth a retry.
    assert sorted((f.record, f.where, f.field, f.retryable) for f in failures) == [
        ("0", "gone from the model", "key", False), ("25", "gone from the model", "key", False),
        ("26", "gone from the model", "key", False)]
    assert summary.counts["deleted"] == 2
    assert fake.find_user(email="bob@example.com") is None
    assert fake.find_user(email="carl@example.com") is None


def test_a_gone_row_kept_by_the_delete_behaviour_is_counted_as_kept(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN, BOB])
    summary = _sync(fake, tmp_path, [ANN])
    assert dict(summary.counts) == {"unchanged": 1, "kept": 1}
    assert fake.find_user(email="bob@example.com") is not None


def test_a_second_gone_row_of_one_user_is_noticed_where_it_was(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN])
    with SyncState(tmp_path / "s.db") as state:  # older versions applied both rows
        state.put(AppliedRecord("2", "h", "Ann@Example.com", {"plan": "x"}, frozenset()))
    notices: list[RecordNotice] = []
    _sync(fake, tmp_path, [BOB | {"id": 3}], delete_behavior="delete", notices=notices)
    [notice] = notices
    assert (notice.record, notice.where) == ("2", "gone from the model")


def test_every_gone_row_of_one_user_is_reported_when_its_delete_fails(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN])
    with SyncState(tmp_path / "s.db") as state:  # older versions applied both rows
        state.put(AppliedRecord("2", "h", "Ann@Example.com", {"plan": "x"}, frozenset()))
    fake.faults = Faults(false_ok_delete_rate=1.0)
    failures: list[RecordFailure] = []
    failed = _sync(fake, tmp_path, [BOB | {"id": 3}], failures, delete_behavior="delete",
                   notices=[])
    assert sorted(f.record for f in failures) == ["1", "2"]
    assert failed.failed == 2
    assert all(f.retryable and "NOT deleted" in f.reason for f in failures)
    fake.faults = Faults()
    retried = _sync(fake, tmp_path, [BOB | {"id": 3}], delete_behavior="delete", notices=[])
    assert (retried.counts["deleted"], retried.failed) == (1, 0)
    assert fake.find_user(email="ann@example.com") is None


def test_deleted_rows_count_as_changed_rows_in_the_calls_per_changed_row(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    """Red team: 1 update and 1 delete costing 5 calls showed 5.00 per changed row (the
    delete was left out of the divisor); the console and summary.json say the same."""
    from sailthru_destination.cli._sync import format_summary

    _sync(fake, tmp_path, [ANN, BOB], delete_behavior="delete")
    summary = _sync(fake, tmp_path, [ANN | {"plan": "platinum"}], delete_behavior="delete")
    assert dict(summary.counts) == {"updated": 1, "deleted": 1}
    assert summary.changed == 2
    per_changed = summary.to_dict()["calls_per_changed_row"]
    assert per_changed == round(summary.total_calls / 2, 3)
    [calls_line] = [line for line in format_summary(summary) if "API calls" in line]
    assert f"({summary.total_calls / 2:.2f} per changed row" in calls_line


def test_a_write_that_failed_on_sailthrus_side_is_reported_retryable(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # "retryable" tells the operator (and dlt/Singer's retry memory) to run the row again.
    fake.faults = Faults(server_error_rate=1.0)
    failures: list[RecordFailure] = []
    summary = _sync(fake, tmp_path, [ANN], failures)
    assert summary.failed == 1
    [failure] = failures
    assert (failure.record, failure.where, failure.retryable) == ("1", "line 2", True)
    assert failure.to_dict()["retryable"] is True
