"""One Sailthru user, several rows: a delete never removes a user the model still holds.

Two rows of the model can map to one Sailthru user: a row re-created under a new primary
key, two rows with one email (in any case), a row that takes the email another row leaves.
The user is deleted or cleared only when no live row maps to it, is counted once, and the
row that loses a duplicate is a per-record error naming both primary keys.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import AppliedRecord, SyncState
from sailthru_destination.sync.runner import RecordFailure, RecordNotice, RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 10000.0}


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as running:
        yield running


class Run:
    """One run's summary, failures and notices."""

    def __init__(self) -> None:
        self.failures: list[RecordFailure] = []
        self.notices: list[RecordNotice] = []
        self.summary = RunSummary()


def _sync(fake: FakeSailthru, tmp_path: Path, people: list[dict[str, Any]],
          **settings: Any) -> Run:
    settings = {"delete_behavior": "delete", "bulk": "never", "concurrency": 1, **settings}
    config = SyncConfig(name="t", rate_limits=FAST, **settings)
    app = AppOptions("k", "s", fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    rows = [Row(f"line {n}", dict(p)) for n, p in enumerate(people, start=2)]
    run = Run()
    with SailthruDestination(app, options, api=api) as dest, SyncState(tmp_path / "s.db") as st:
        runner = SyncRunner(dest, config, st, on_failure=run.failures.append,
                            on_notice=run.notices.append)
        run.summary = runner.run(rows)
    return run


def _user(fake: FakeSailthru, email: str) -> dict[str, Any]:
    user = fake.find_user(email=email)
    assert user is not None, f"{email} is not in Sailthru"
    return user


ANN = {"id": 1, "email": "ann@example.com", "plan": "gold", "city": "Lyon", "groups": "VIP"}


@pytest.mark.parametrize("behavior", ["delete", "clear"])
def test_a_row_recreated_under_a_new_key_keeps_its_user(
    fake: FakeSailthru, tmp_path: Path, behavior: str, caplog: pytest.LogCaptureFixture
) -> None:
    _sync(fake, tmp_path, [ANN], delete_behavior=behavior)
    recreated = {**ANN, "id": 7}
    del recreated["city"]
    with caplog.at_level(logging.INFO, logger="sailthru_destination.sync.gone"):
        second = _sync(fake, tmp_path, [recreated], delete_behavior=behavior)
    user = _user(fake, "ann@example.com")
    assert user["vars"]["plan"] == "gold"
    # the new row took over the old row's values: what it no longer has is cleared
    assert user["vars"].get("city") in (None, "")
    assert sorted(user["lists"]) == ["VIP"]
    counts = second.summary.counts
    assert counts["deleted"] == counts["cleared"] == counts["created"] == 0
    assert counts["updated"] == 1
    assert counts["kept"] == 1
    [notice] = second.notices
    assert notice.record == "1"
    done = "deleted" if behavior == "delete" else "cleared"
    assert notice.reason == ("row id='7' of the model maps to the same Sailthru user "
                             f"(email 'ann@example.com'): it was not {done}")
    assert [m for m in caplog.messages if " kept: " in m] == [
        f"1 ({notice.where}) kept: {notice.reason}"]
    third = _sync(fake, tmp_path, [recreated], delete_behavior=behavior)
    assert third.summary.total_calls == 0
    assert third.summary.counts["unchanged"] == 1
    # Row 1 was forgotten once row 7 held its user: it is not reported kept again.
    assert (third.notices, third.summary.counts["kept"]) == ([], 0)
    assert _user(fake, "ann@example.com")["vars"]["plan"] == "gold"


def test_two_rows_with_one_email_are_one_user_and_one_error(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    twin = {"id": 2, "email": "  ANN@Example.com ", "plan": "silver", "groups": "News"}
    first = _sync(fake, tmp_path, [ANN, twin])
    assert len(fake.users) == 1
    assert first.summary.counts["created"] == 1
    assert first.summary.failed == 1
    [failure] = first.failures
    assert (failure.record, failure.field, failure.where) == ("2", "email", "line 3")
    assert "id='1'" in failure.reason
    assert "ann@example.com" in failure.reason
    assert _user(fake, "ann@example.com")["vars"]["plan"] == "gold"

    # the first row goes away: its user stays, and the twin now owns it
    second = _sync(fake, tmp_path, [twin])
    user = _user(fake, "ann@example.com")
    assert user["vars"]["plan"] == "silver"
    assert user["vars"].get("city") in (None, "")
    assert sorted(user["lists"]) == ["News"]
    assert second.summary.counts["deleted"] == 0
    assert second.summary.counts["kept"] == 1
    assert second.summary.failed == 0
    third = _sync(fake, tmp_path, [twin])
    assert third.summary.total_calls == 0
    assert fake.find_user(email="ann@example.com") is not None


def test_removing_the_duplicate_row_deletes_nothing(fake: FakeSailthru, tmp_path: Path) -> None:
    twin = {"id": 2, "email": "Ann@example.com", "plan": "silver"}
    _sync(fake, tmp_path, [ANN, twin])
    second = _sync(fake, tmp_path, [ANN])
    assert second.summary.total_calls == 0
    assert second.summary.failed == 0
    assert _user(fake, "ann@example.com")["vars"]["plan"] == "gold"


def test_the_row_that_already_owns_the_user_wins_a_duplicate(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN])
    newcomer = {"id": 9, "email": "ann@example.com", "plan": "bronze"}
    second = _sync(fake, tmp_path, [newcomer, ANN])
    [failure] = second.failures
    assert failure.record == "9"
    assert "id='1'" in failure.reason
    assert second.summary.counts["unchanged"] == 1
    assert second.summary.total_calls == 0
    assert _user(fake, "ann@example.com")["vars"]["plan"] == "gold"


def test_an_email_taken_over_by_another_row_is_not_renamed_away(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN])
    taker = {"id": 5, "email": "ann@example.com", "plan": "bronze"}
    mover = {**ANN, "email": "ann@new.example.com"}
    second = _sync(fake, tmp_path, [taker, mover])
    assert second.summary.failed == 0
    assert _user(fake, "ann@example.com")["vars"]["plan"] == "bronze"
    assert _user(fake, "ann@new.example.com")["vars"]["plan"] == "gold"
    third = _sync(fake, tmp_path, [taker, mover])
    assert third.summary.total_calls == 0
    assert len(fake.users) == 2


def test_a_gone_row_whose_user_is_unclaimed_is_still_deleted(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    bob = {"id": 2, "email": "bob@example.com"}
    _sync(fake, tmp_path, [ANN, bob])
    second = _sync(fake, tmp_path, [{**ANN, "id": 3}])
    assert fake.find_user(email="bob@example.com") is None
    assert second.summary.counts["deleted"] == 1
    assert second.summary.counts["kept"] == 1


def test_a_duplicate_primary_key_is_reported_and_only_the_first_row_is_used(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    run = _sync(fake, tmp_path, [ANN, {**ANN, "plan": "other"}])
    [failure] = run.failures
    assert (failure.record, failure.field, failure.where) == ("1", "id", "line 3")
    assert "duplicate primary key" in failure.reason
    assert run.summary.counts["created"] == 1
    assert _user(fake, "ann@example.com")["vars"]["plan"] == "gold"


def test_a_state_file_from_before_user_keys_gets_them_and_keeps_the_user(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN])
    with sqlite3.connect(tmp_path / "s.db") as old:  # the file as older versions wrote it
        old.execute("DROP INDEX records_key")
        old.execute("ALTER TABLE records DROP COLUMN key")
    second = _sync(fake, tmp_path, [{**ANN, "id": 7, "email": "ANN@example.com"}])
    assert second.summary.counts["kept"] == 1
    assert second.summary.counts["deleted"] == 0
    assert fake.find_user(email="ann@example.com") is not None


def test_a_row_moving_onto_a_user_sailthru_already_has_brings_all_its_values(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    bob = {"id": 2, "email": "bob@example.com", "plan": "silver", "groups": "News"}
    _sync(fake, tmp_path, [ANN, bob], delete_behavior="clear")
    _sync(fake, tmp_path, [ANN], delete_behavior="clear")  # bob is cleared, and kept
    assert _user(fake, "bob@example.com")["vars"].get("plan") in (None, "")
    moved = _sync(fake, tmp_path, [{**ANN, "email": "bob@example.com"}], delete_behavior="clear")
    assert moved.summary.failed == 0
    user = _user(fake, "bob@example.com")
    assert (user["vars"]["plan"], user["vars"]["city"]) == ("gold", "Lyon")
    assert sorted(user["lists"]) == ["VIP"]


def test_a_row_moving_off_a_user_sailthru_lost_is_created_whole(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN])
    with SailthruApi(AppOptions("k", "s", fake.url), rate_limits=FAST) as api:
        api.delete("user", {"id": "ann@example.com"})  # deleted outside the sync
    moved = _sync(fake, tmp_path, [{**ANN, "email": "ann@new.example.com"}])
    assert moved.summary.counts["created"] == 1
    user = _user(fake, "ann@new.example.com")
    assert (user["vars"]["plan"], user["vars"]["city"]) == ("gold", "Lyon")
    assert sorted(user["lists"]) == ["VIP"]


def test_a_row_moving_onto_a_gone_rows_user_keeps_it_and_its_old_user_goes(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    bob = {"id": 2, "email": "bob@example.com", "plan": "silver", "groups": "News"}
    _sync(fake, tmp_path, [ANN, bob])
    moved = _sync(fake, tmp_path, [{**ANN, "email": "bob@example.com"}])
    assert moved.summary.failed == 0
    user = _user(fake, "bob@example.com")
    assert (user["vars"]["plan"], user["vars"]["city"]) == ("gold", "Lyon")
    assert sorted(user["lists"]) == ["VIP"]
    assert fake.find_user(email="ann@example.com") is None  # no row maps to it any more
    counts = moved.summary.counts
    assert (counts["updated"], counts["kept"], counts["deleted"]) == (1, 1, 1)
    assert [n.record for n in moved.notices] == ["2"]
    assert _sync(fake, tmp_path, [{**ANN, "email": "bob@example.com"}]).summary.total_calls == 0


def test_an_email_change_to_a_free_email_renames_the_user_and_deletes_nothing(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN])
    moved = _sync(fake, tmp_path, [{**ANN, "email": "ann@new.example.com"}])
    assert moved.summary.counts["deleted"] == 0
    assert moved.summary.counts["updated"] == 1
    assert len(fake.users) == 1
    assert _user(fake, "ann@new.example.com")["vars"]["plan"] == "gold"


def test_a_new_extid_is_a_new_user_and_the_old_one_gets_the_delete_behaviour(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    fake.extid_lookup = True
    row = {"id": 1, "extid": "c-1", "email": "ann@example.com", "plan": "gold"}
    _sync(fake, tmp_path, [row], match_column="extid", match_key="extid",
          delete_behavior="clear")
    replaced = {**row, "extid": "c-2", "email": "ann@new.example.com"}
    moved = _sync(fake, tmp_path, [replaced], match_column="extid", match_key="extid",
                  delete_behavior="clear")
    assert moved.failures == []
    assert (moved.summary.counts["created"], moved.summary.counts["cleared"]) == (1, 1)
    new = fake.find_user(extid="c-2")
    assert new is not None
    assert new["vars"]["plan"] == "gold"
    old = fake.find_user(extid="c-1")
    assert old is not None
    assert old["vars"].get("plan") in (None, "")


def test_a_row_whose_only_change_is_its_extid_is_sent_to_its_new_user(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    fake.extid_lookup = True
    settings: dict[str, Any] = {"match_column": "extid", "match_key": "extid",
                                "delete_behavior": "nothing"}
    _sync(fake, tmp_path, [{"id": 1, "extid": "c-1", "plan": "gold"}], **settings)
    moved = _sync(fake, tmp_path, [{"id": 1, "extid": "c-2", "plan": "gold"}], **settings)
    assert moved.summary.counts["created"] == 1
    new = fake.find_user(extid="c-2")
    assert new is not None
    assert new["vars"]["plan"] == "gold"
    assert fake.find_user(extid="c-1") is not None  # delete behaviour 'nothing': kept


@pytest.mark.parametrize(("model", "record", "where", "gone"), [
    ([ANN], "2", "gone from the model", "bob@example.com"),
    ([{**ANN, "email": "bob@example.com"}], "1", "left behind by row id='1'", "ann@example.com"),
], ids=["gone-row", "left-behind"])
def test_a_failed_delete_is_reported_and_retried_on_the_next_run(
    fake: FakeSailthru, tmp_path: Path, model: list[dict[str, Any]], record: str, where: str,
    gone: str,
) -> None:
    _sync(fake, tmp_path, [ANN, {"id": 2, "email": "bob@example.com"}])
    fake.faults = Faults(false_ok_delete_rate=1.0)
    failed = _sync(fake, tmp_path, model)
    [failure] = failed.failures
    assert (failure.record, failure.where, failure.retryable) == (record, where, True)
    assert "NOT deleted" in failure.reason
    assert failed.summary.counts["deleted"] == 0
    assert fake.find_user(email=gone) is not None
    fake.faults = Faults()
    retried = _sync(fake, tmp_path, model)
    assert retried.summary.counts["deleted"] == 1
    assert retried.summary.failed == 0
    assert fake.find_user(email=gone) is None
    assert _sync(fake, tmp_path, model).summary.total_calls == 0


def test_two_gone_rows_of_one_user_from_an_older_state_make_one_delete(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, [ANN])
    with SyncState(tmp_path / "s.db") as state:  # older versions applied both rows
        state.put(AppliedRecord("2", "h", "Ann@Example.com", {"plan": "x"}, frozenset()))
    bob = {"id": 3, "email": "bob@example.com"}
    run = _sync(fake, tmp_path, [bob])
    assert fake.find_user(email="ann@example.com") is None
    assert fake.calls[("DELETE", "user")] == 1
    assert run.summary.counts["deleted"] == 1
    assert [n.record for n in run.notices] == ["2"]
    assert "deleted with it" in run.notices[0].reason
    assert _sync(fake, tmp_path, [bob]).summary.total_calls == 0
