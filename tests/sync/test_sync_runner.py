"""The runner: only differences cost calls, old values travel, gone rows get deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.runner import RecordFailure, RunAborted, RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 10000.0}


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as running:
        yield running


def _rows(*people: dict[str, Any]) -> list[Row]:
    return [Row(f"line {n}", dict(p)) for n, p in enumerate(people, start=2)]


def _sync(
    fake: FakeSailthru,
    tmp_path: Path,
    rows: list[Row],
    failures: list[RecordFailure] | None = None,
    **settings: Any,
) -> RunSummary:
    config = SyncConfig(name="t", rate_limits=FAST, **settings)
    app = AppOptions("k", "s", fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    with SailthruDestination(app, options, api=api) as dest, SyncState(tmp_path / "s.db") as st:
        sink = failures.append if failures is not None else None
        return SyncRunner(dest, config, st, on_failure=sink).run(rows)


ANN = {"id": 1, "email": "ann@example.com", "plan": "gold", "city": "Lyon",
       "groups": ["VIP", "News"]}
BOB = {"id": 2, "email": "bob@example.com", "plan": "free", "groups": "News"}


def test_unchanged_rows_cost_zero_calls(fake: FakeSailthru, tmp_path: Path) -> None:
    first = _sync(fake, tmp_path, _rows(ANN, BOB))
    assert first.counts["created"] == 2
    calls = sum(fake.calls.values())
    second = _sync(fake, tmp_path, _rows(ANN, BOB))
    assert second.counts["unchanged"] == 2
    assert second.total_calls == 0
    assert sum(fake.calls.values()) == calls


def test_removed_property_is_cleared_and_left_group_removed(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, _rows(ANN))
    changed = {k: v for k, v in ANN.items() if k != "city"} | {"groups": ["News"]}
    summary = _sync(fake, tmp_path, _rows(changed))
    assert summary.counts["updated"] == 1
    user = fake.find_user(email="ann@example.com")
    assert user is not None
    assert "city" not in user["vars"] or user["vars"]["city"] == ""
    assert set(user["lists"]) == {"News"}


def test_email_change_updates_the_same_user(fake: FakeSailthru, tmp_path: Path) -> None:
    _sync(fake, tmp_path, _rows(ANN))
    _sync(fake, tmp_path, _rows(ANN | {"email": "ann@new.example.com"}))
    assert fake.find_user(email="ann@example.com") is None
    assert fake.find_user(email="ann@new.example.com") is not None
    assert len(fake.users) == 1


def test_gone_rows_get_the_delete_behaviour(fake: FakeSailthru, tmp_path: Path) -> None:
    _sync(fake, tmp_path, _rows(ANN, BOB), delete_behavior="delete")
    summary = _sync(fake, tmp_path, _rows(ANN), delete_behavior="delete")
    assert summary.counts["deleted"] == 1
    assert fake.find_user(email="bob@example.com") is None
    again = _sync(fake, tmp_path, _rows(ANN), delete_behavior="delete")
    assert again.total_calls == 0


def test_bad_rows_fail_alone_and_are_not_treated_as_gone(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, _rows(ANN, BOB), delete_behavior="delete")
    failures: list[RecordFailure] = []
    summary = _sync(
        fake, tmp_path,
        _rows(ANN, BOB | {"groups": "[oops"}, ANN | {"plan": "x"}, {"email": "c@example.com"},
              {"id": 3, "email": "not-an-email"}),
        failures, delete_behavior="delete",
    )
    reasons = {f.where: (f.field, f.reason) for f in failures}
    assert summary.counts["failed"] == 4
    assert reasons["line 3"][0] == "groups"
    assert "duplicate primary key" in reasons["line 4"][1]
    assert reasons["line 5"][0] == "id"
    assert "not a valid email" in reasons["line 6"][1]
    assert fake.find_user(email="bob@example.com") is not None  # failed, not gone


def test_an_empty_model_does_not_delete_everyone(fake: FakeSailthru, tmp_path: Path) -> None:
    _sync(fake, tmp_path, _rows(ANN), delete_behavior="delete")
    with pytest.raises(RunAborted, match="--allow-empty"):
        _sync(fake, tmp_path, [], delete_behavior="delete")
    assert fake.find_user(email="ann@example.com") is not None


def test_a_mapping_change_exports_every_row_again(fake: FakeSailthru, tmp_path: Path) -> None:
    _sync(fake, tmp_path, _rows(ANN))
    summary = _sync(fake, tmp_path, _rows(ANN), list_prefix="crm-")
    assert summary.counts["updated"] == 1
    user = fake.find_user(email="ann@example.com")
    assert user is not None
    assert {"crm-VIP", "crm-News"} <= set(user["lists"])


def _people(count: int) -> list[dict[str, Any]]:
    return [{"id": n, "email": f"p{n}@example.com", "n": n, "groups": [f"G{n % 3}"]}
            for n in range(count)]


def _snapshot(fake: FakeSailthru) -> dict[str, Any]:
    return {u["keys"]["email"]: (u["vars"], sorted(u["lists"])) for u in fake.users.values()}


def test_bulk_path_uses_one_job_and_ends_like_the_per_user_path(tmp_path: Path) -> None:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as per_user:
        _sync(per_user, tmp_path / "a", _rows(*_people(30)), bulk="never")
        expected = _snapshot(per_user)
    # The API here never sleeps (sleep=no-op), so its job polls take no time: an instant job.
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST, job_seconds=0) as bulk:
        summary = _sync(bulk, tmp_path / "b", _rows(*_people(30)), bulk="always")
        assert summary.path == "bulk"
        assert summary.counts["created"] == 30
        assert [job["name"] for job in bulk.jobs] == ["Bulk Update"]
        assert bulk.calls[("POST", "user")] == 0
        assert _snapshot(bulk) == expected
        assert len({item["name"] for item in bulk.lists}) == len(bulk.lists) == 3


def test_bulk_job_error_falls_back_to_per_user(tmp_path: Path) -> None:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST, job_fails=True) as fake:
        summary = _sync(fake, tmp_path, _rows(*_people(12)), bulk="always")
        assert summary.counts["created"] == 12
        assert fake.calls[("POST", "user")] == 12
        assert len(fake.users) == 12


def test_bulk_auto_waits_for_the_threshold(fake: FakeSailthru, tmp_path: Path) -> None:
    summary = _sync(fake, tmp_path, _rows(*_people(5)), bulk="auto", bulk_threshold=6)
    assert summary.path == "per-user"
    more = _sync(fake, tmp_path, _rows(*_people(12)), bulk="auto", bulk_threshold=6)
    assert (more.path, more.counts["created"], more.counts["unchanged"]) == ("bulk", 7, 5)
    assert json.dumps(more.to_dict())


def test_a_new_row_sharing_a_never_synced_deleted_rows_user_is_a_creation(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # Found by the widened stateful test: the flagged row was never synced, so its values
    # were never Sailthru's; the live row on the same email created the user ("updated"
    # before), and the flagged row's user is kept for it.
    live = {"id": 3, "email": "ann3@example.com", "city": "gold", "gone": ""}
    flagged = {"id": 4, "email": "ANN3@example.com", "city": "Lyon", "gone": "true"}
    summary = _sync(fake, tmp_path, _rows(live, flagged), deleted_column="gone",
                    delete_behavior="clear")
    assert (summary.counts["created"], summary.counts["kept"]) == (1, 1)
    user = fake.find_user(email="ann3@example.com")
    assert user is not None
    assert user["vars"] == {"city": "gold"}
