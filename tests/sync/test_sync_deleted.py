"""Rows marked deleted (``deleted_column``), and runs that apply only new rows (``apply``)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, app_for
from test_sync_runner import ANN, BOB, FAST, _rows

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.model import is_deleted
from sailthru_destination.sync.reporting.summary import RecordNotice
from sailthru_destination.sync.runner import RecordFailure, RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi


def _apply(fake: FakeSailthru, tmp_path: Path, rows: list[Row], *, whole: bool = False,
           failures: list[RecordFailure] | None = None,
           notices: list[RecordNotice] | None = None, timezone: str = "UTC",
           **settings: Any) -> RunSummary:
    config = SyncConfig(name="t", rate_limits=FAST, deleted_column="_deleted", **settings)
    app = app_for(fake, timezone=timezone)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    with SailthruDestination(app, options, api=api) as dest, SyncState(tmp_path / "s.db") as st:
        sink = failures.append if failures is not None else None
        runner = SyncRunner(dest, config, st, on_failure=sink,
                            on_notice=notices.append if notices is not None else None)
        return runner.run(rows) if whole else runner.apply(rows)


@pytest.mark.parametrize(("value", "deleted"), [
    (True, True), (1, True), ("true", True), ("2026-01-02T00:00:00Z", True), ("yes", True),
    (" TRUE ", True), ("2026-01-02 03:04:05.123+02:00", True),
    (False, False), (0, False), ("false", False), ("0", False), ("", False), (None, False),
    ("No", False), ("  ", False),
])
def test_what_marks_a_row_deleted(value: Any, deleted: bool) -> None:
    config = SyncConfig(deleted_column="_deleted")
    assert is_deleted(Row("line 2", {"id": 1, "_deleted": value}), config) is deleted
    assert not is_deleted(Row("line 2", {"id": 1, "_deleted": value}), SyncConfig())


def test_apply_leaves_rows_it_was_not_given_alone(fake: FakeSailthru, tmp_path: Path) -> None:
    _apply(fake, tmp_path, _rows(ANN, BOB), delete_behavior="delete")
    summary = _apply(fake, tmp_path, _rows({**ANN, "plan": "silver"}), delete_behavior="delete")
    assert dict(summary.counts) == {"updated": 1}
    assert fake.find_user(email="bob@example.com") is not None


def test_a_marked_row_is_deleted_with_its_last_applied_values(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _apply(fake, tmp_path, _rows(ANN, BOB), delete_behavior="clear")
    # Only the key and the mark: the old vars and lists come from the state.
    summary = _apply(fake, tmp_path, _rows({"id": 1, "_deleted": "true"}),
                     delete_behavior="clear")
    assert summary.counts["cleared"] == 1, summary.counts
    ann = fake.find_user(email="ann@example.com")
    assert ann["vars"] == {}
    assert not ann["lists"]
    # The same deletion handed over again (a replayed batch): its tombstone says it is
    # applied, so the row is unchanged, with no call.
    calls = sum(fake.calls.values())
    again = _apply(fake, tmp_path, _rows({"id": 1, "_deleted": "true"}), delete_behavior="clear")
    assert dict(again.counts) == {"unchanged": 1}
    assert sum(fake.calls.values()) == calls


def test_a_whole_model_run_deletes_marked_rows_too(fake: FakeSailthru, tmp_path: Path) -> None:
    _apply(fake, tmp_path, _rows(ANN, BOB), whole=True, delete_behavior="delete")
    summary = _apply(fake, tmp_path, _rows(ANN, {**BOB, "_deleted": 1}), whole=True,
                     delete_behavior="delete")
    assert summary.counts["deleted"] == 1
    assert fake.find_user(email="bob@example.com") is None
    assert fake.find_user(email="ann@example.com") is not None


def test_the_mark_is_not_a_var(fake: FakeSailthru, tmp_path: Path) -> None:
    _apply(fake, tmp_path, _rows({**ANN, "_deleted": False}))
    assert "_deleted" not in fake.find_user(email="ann@example.com")["vars"]


def test_a_never_synced_marked_row_with_an_email_gets_the_delete_behaviour(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _apply(fake, tmp_path / "elsewhere", _rows(BOB))  # synced by another state
    failures: list[RecordFailure] = []
    summary = _apply(fake, tmp_path, _rows({**BOB, "_deleted": True}), failures=failures,
                     delete_behavior="delete")
    assert failures == []
    assert summary.counts["deleted"] == 1
    assert fake.find_user(email="bob@example.com") is None


def test_the_cli_takes_deleted_column_from_its_config_file(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    from test_cli import COMMAND

    config = tmp_path / "mapping.json"
    config.write_text(json.dumps({"deleted_column": "_deleted", "delete_behavior": "delete"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
    env.update(SAILTHRU_API_KEY=KEY, SAILTHRU_API_SECRET=SECRET, SAILTHRU_API_URL=fake.url)
    model = tmp_path / "people.csv"
    for rows in ("id,email,_deleted\n1,a@example.com,\n2,b@example.com,\n",
                 "id,email,_deleted\n1,a@example.com,\n2,b@example.com,yes\n"):
        model.write_text(rows)
        done = subprocess.run([*COMMAND, "sync", str(model), "--config", str(config)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    assert fake.find_user(email="b@example.com") is None
    assert "_deleted" not in fake.find_user(email="a@example.com")["vars"]


def test_a_row_that_cannot_be_identified_keeps_every_missing_user(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # A line that is not JSON (or has no key) may be any user: deleting the users missing from
    # that run would delete the very row the model still holds.
    _apply(fake, tmp_path, _rows(ANN, BOB), whole=True, delete_behavior="delete")
    unreadable = Row("line 2", {"__problem__": "not valid JSON: Expecting value"})
    failures: list[RecordFailure] = []
    notices: list[RecordNotice] = []
    summary = _apply(fake, tmp_path, [*_rows(ANN), unreadable], whole=True,
                     delete_behavior="delete", failures=failures, notices=notices)
    assert fake.find_user(email="bob@example.com") is not None
    assert "deleted" not in summary.counts
    assert [f.where for f in failures] == ["line 2"]
    # The report says why, about the model as a whole (no row of it).
    [notice] = notices
    assert notice.record == "(model)"
    assert notice.reason.startswith("1 row(s) could not be identified")
    assert "none of the 1 applied row(s) missing from this run is treated as gone" in notice.reason
    # Once the model reads whole again, the missing row is gone and its user deleted.
    summary = _apply(fake, tmp_path, _rows(ANN), whole=True, delete_behavior="delete")
    assert summary.counts["deleted"] == 1
    assert fake.find_user(email="bob@example.com") is None


def test_a_marked_row_whose_user_another_row_holds_is_kept(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _apply(fake, tmp_path, _rows(ANN), delete_behavior="delete")
    # Row 9 takes Ann's email under a new key while row 1 is marked deleted in the same load.
    summary = _apply(fake, tmp_path, _rows({**ANN, "id": 9}, {"id": 1, "_deleted": True}),
                     delete_behavior="delete")
    assert fake.find_user(email=ANN["email"]) is not None
    assert "deleted" not in summary.counts


def test_a_row_to_retry_keeps_its_typed_values_and_the_rows_after_an_unreadable_one(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # dlt hands over typed values (timestamps, decimals): the row is remembered typed.
    seen = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
    fake.faults = Faults(server_error_rate=1.0)
    failures: list[RecordFailure] = []
    typed = {"seen_at": seen, "seen_time": seen, "amount": Decimal("1.25"),
             "local_time": datetime.datetime(2024, 5, 1, 12, 0)}  # naive: the account's zone
    _apply(fake, tmp_path, _rows({**ANN, **typed}), failures=failures, timezone="Europe/Paris")
    assert [f.retryable for f in failures] == [True]
    again: list[RecordFailure] = []
    _apply(fake, tmp_path, [], failures=again, timezone="Europe/Paris")
    assert [(f.record, f.where) for f in again] == [("1", "line 2")]  # where it was read
    fake.faults = Faults()
    with SyncState(tmp_path / "s.db") as state:  # remembered under a key no longer readable
        state.keep_retry("0", Row("line 9", {"email": "ghost@example.com"}))
    summary = _apply(fake, tmp_path, [], timezone="Europe/Paris")
    assert summary.counts["created"] == 1
    user = fake.find_user(email=ANN["email"])
    assert user is not None
    # As the first attempt would have sent them (the typing rule), not as str() text.
    assert {k: user["vars"][k] for k in typed} == {
        "seen_at": "2024-05-01T12:00:00+00:00", "seen_time": 1714564800, "amount": 1.25,
        "local_time": 1714557600}  # 12:00 in Paris is 10:00 UTC
