"""What a sync run reports, and the rows it must not use (issue 18: mutants that survived).

The run summary is what the CLI prints and the run report stores: lists created, skipped and
unchanged counts, the path taken. A host's own call-log sink must keep working after a run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.api import SailthruApi
from sailthru_destination.calllog import CallLog, CallRecord
from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.runner import RecordFailure, RunSummary, SyncRunner
from sailthru_destination.sync.sources import Row
from sailthru_destination.sync.state import SyncState
from sailthru_destination.testing import FakeSailthru

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
    **settings: Any,
) -> RunSummary:
    config = SyncConfig(name="t", rate_limits=FAST, **settings)
    app = AppOptions("k", "s", fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None, call_log=call_log)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    rows = [Row(f"line {n}", dict(p)) for n, p in enumerate(people, start=2)]
    with SyncState(tmp_path / "s.db") as st, \
            SailthruDestination(app, options, api=api, sent_keys=st) as dest:
        sink = failures.append if failures is not None else None
        return SyncRunner(dest, config, st, on_failure=sink).run(rows)


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
    summary = _sync(fake, tmp_path, [ANN, ANN | {"plan": "platinum"}], failures)
    [failure] = failures
    assert (failure.record, failure.field, failure.where) == ("1", "id", "line 3")
    assert failure.reason == (
        "duplicate primary key id='1': only the first row with this key was used"
    )
    assert (summary.counts["created"], summary.failed) == (1, 1)
    assert fake.find_user(email="ann@example.com")["vars"]["plan"] == "gold"  # type: ignore[index]
    assert fake.calls[("POST", "user")] == 1


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
