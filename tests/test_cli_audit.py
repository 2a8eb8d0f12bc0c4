"""``audit`` and ``sync --full-resync`` run as a user runs them, against the fake over HTTP:
drift made by a restarted Sailthru or by hand is found, and repaired."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_cli
from test_cli import FAST, people, run, snapshot, write_csv

from sailthru_destination.options import AppOptions
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

fake = test_cli.fake  # the CLI tests' fake (their credentials) is a fixture here too


@pytest.fixture
def restarted() -> Iterator[FakeSailthru]:
    """A second, empty fake with the same credentials: Sailthru "restarted"."""
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST) as running:
        yield running


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    """The counts a run had (the summary lists every outcome, zeros included)."""
    return {name: count for name, count in counts.items() if count}


def by_hand(fake: FakeSailthru) -> SailthruApi:
    """An API client editing the fake as a person in Sailthru's UI would."""
    return SailthruApi(AppOptions(api_key="cli-key", api_secret="cli-secret", api_url=fake.url))


def audit(cwd: Path, fake: FakeSailthru, *args: str) -> tuple[int, dict[str, Any],
                                                               list[dict[str, Any]]]:
    """Run ``audit --json``: its exit code, summary and drift lines."""
    result = run(cwd, fake, "audit", *args, "--json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    summary = json.loads(result.stdout)
    lines = (cwd / summary["drift"]).read_text(encoding="utf-8").splitlines()
    return result.returncode, summary, [json.loads(line) for line in lines]


def test_a_restarted_sailthru_is_found_by_audit_and_repaired(
    fake: FakeSailthru, restarted: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(5))
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    code, summary, lines = audit(tmp_path, fake, str(model))
    assert (code, summary["users_drifted"], lines) == (0, 0, [])
    code, summary, lines = audit(tmp_path, restarted, str(model))
    assert code == 1
    assert summary["users_missing"] == summary["users_drifted"] == 5
    assert {line["record"] for line in lines} == {"1", "2", "3", "4", "5"}
    # The state believes every row applied: the next plain sync would not fix it.
    assert {(line["next_sync"], line["fixed_by_sync"]) for line in lines} == {
        ("unchanged", False)}
    repaired = run(tmp_path, restarted, "audit", str(model), "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert snapshot(restarted) == snapshot(fake)
    assert audit(tmp_path, restarted, str(model))[0] == 0
    # The state is consistent with Sailthru again: a plain sync has nothing to do.
    again = run(tmp_path, restarted, "sync", str(model), "--json")
    assert _nonzero(json.loads(again.stdout)["counts"]) == {"unchanged": 5}


def test_a_full_resync_repairs_a_restarted_sailthru(
    fake: FakeSailthru, restarted: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(5))
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    resync = run(tmp_path, restarted, "sync", str(model), "--full-resync", "--json")
    assert resync.returncode == 0, resync.stdout + resync.stderr
    assert _nonzero(json.loads(resync.stdout)["counts"]) == {"updated": 5}
    assert snapshot(restarted) == snapshot(fake)
    assert audit(tmp_path, restarted, str(model))[0] == 0


def test_a_full_resync_sends_every_row_and_still_clears_what_the_model_removed(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = people(4)
    model = write_csv(tmp_path / "people.csv", rows)
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    rows[0]["first_name"] = ""  # p1 loses its var and list VIP
    rows[0]["groups"] = "Newsletter"
    write_csv(model, rows)
    planned = run(tmp_path, fake, "sync", str(model), "--full-resync", "--plan", "--json")
    assert _nonzero(json.loads(planned.stdout)["counts"]) == {"updated": 4}
    resync = run(tmp_path, fake, "sync", str(model), "--full-resync", "--json")
    assert _nonzero(json.loads(resync.stdout)["counts"]) == {"updated": 4}
    p1 = fake.find_user(email="p1@example.com")
    assert p1 is not None
    assert "first_name" not in p1["vars"]
    assert sorted(p1["lists"]) == ["Newsletter"]
    assert audit(tmp_path, fake, str(model))[0] == 0


def test_a_user_deleted_or_edited_by_hand_is_found_and_repaired(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(4))
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    before = snapshot(fake)
    api = by_hand(fake)
    api.delete("user", {"id": "p2@example.com", "key": "email"})
    api.post("user", {"id": "p3@example.com", "key": "email", "vars": {"first_name": "Hand"},
                      "lists": {"VIP": 0, "Elsewhere": 1}})
    for read in ("user", "export"):
        code, summary, lines = audit(tmp_path, fake, str(model), "--read", read)
        assert (code, summary["read"]) == (1, read)
        assert (summary["users_missing"], summary["vars_differ"], summary["lists_differ"]) == (
            1, 1, 1)
        drift = {line["record"]: line for line in lines}
        assert drift["2"]["drift"] == ["missing"]
        assert drift["3"]["vars"] == {"first_name": {"model": "P3", "sailthru": "Hand"}}
        assert drift["3"]["lists"] == {"VIP": "join"}  # "Elsewhere" is not the model's
        assert set(drift) == {"2", "3"}
    assert run(tmp_path, fake, "audit", str(model), "--repair").returncode == 0
    after = snapshot(fake)
    assert after["p3@example.com"] == ({"first_name": "P3"}, ["Elsewhere", "Newsletter", "VIP"])
    assert {k: v for k, v in after.items() if k != "p3@example.com"} == {
        k: v for k, v in before.items() if k != "p3@example.com"}
    assert audit(tmp_path, fake, str(model))[0] == 0


def test_a_user_that_should_be_gone_but_exists_is_found_and_deleted(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    config = tmp_path / "mapping.json"
    config.write_text(json.dumps({"deleted_column": "_deleted"}), encoding="utf-8")
    rows = people(3, _deleted="false")
    model = write_csv(tmp_path / "people.csv", rows)
    flags = ("--config", str(config), "--delete-behavior", "delete")
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    rows[2]["_deleted"] = "true"
    write_csv(model, rows)
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    assert fake.find_user(email="p3@example.com") is None
    by_hand(fake).post("user", {"id": "p3@example.com", "key": "email"})  # back by hand
    code, summary, lines = audit(tmp_path, fake, str(model), *flags)
    assert (code, summary["users_should_be_gone"]) == (1, 1)
    assert [(line["record"], line["drift"], line["repair"]) for line in lines] == [
        ("3", ["should_be_gone"], "delete")]
    assert run(tmp_path, fake, "audit", str(model), *flags, "--repair").returncode == 0
    assert fake.find_user(email="p3@example.com") is None
    assert audit(tmp_path, fake, str(model), *flags)[0] == 0


def test_audit_says_what_the_plan_says_the_next_sync_does(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = people(4)
    model = write_csv(tmp_path / "people.csv", rows)
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    rows[0]["first_name"] = "Changed"  # pending: the next sync sends it
    write_csv(model, rows)
    by_hand(fake).delete("user", {"id": "p2@example.com", "key": "email"})  # drift
    planned = run(tmp_path, fake, "sync", str(model), "--plan", "--json")
    plan_file = tmp_path / json.loads(planned.stdout)["plan"]
    plan = {e["record"]: e for e in map(json.loads, plan_file.read_text().splitlines())}
    _, _, lines = audit(tmp_path, fake, str(model))
    drift = {line["record"]: line for line in lines}
    assert set(drift) == {"1", "2"}
    assert (drift["1"]["next_sync"], drift["1"]["fixed_by_sync"]) == (plan["1"]["action"], True)
    assert "2" not in plan
    assert drift["2"]["next_sync"] == "unchanged"
    assert drift["2"]["fixed_by_sync"] is False


def test_audit_refuses_a_model_that_is_not_users(fake: FakeSailthru, tmp_path: Path) -> None:
    model = write_csv(tmp_path / "events.csv", [{"id": 1, "email": "a@example.com",
                                                 "event": "signed_up"}])
    result = run(tmp_path, fake, "audit", str(model), "--object", "events")
    assert result.returncode == 2
    assert "audit compares users" in result.stderr


def test_a_user_the_sync_deleted_that_is_back_by_hand_is_found_and_deleted_again(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = people(3)
    model = write_csv(tmp_path / "people.csv", rows)
    flags = ("--delete-behavior", "delete")
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    write_csv(model, rows[:2])  # p3 gone from the model: the sync deletes its user
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    assert fake.find_user(email="p3@example.com") is None
    by_hand(fake).post("user", {"id": "p3@example.com", "key": "email",
                                "vars": {"first_name": "Back"}})
    code, summary, lines = audit(tmp_path, fake, str(model), *flags)
    assert (code, summary["users_should_be_gone"], summary["users_drifted"]) == (1, 1, 1)
    assert [(line["record"], line["drift"]) for line in lines] == [("3", ["should_be_gone"])]
    assert run(tmp_path, fake, "audit", str(model), *flags, "--repair").returncode == 0
    assert fake.find_user(email="p3@example.com") is None
    assert audit(tmp_path, fake, str(model), *flags)[0] == 0
    # A user the model holds again is the model's, not a user to delete.
    write_csv(model, rows)
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    assert audit(tmp_path, fake, str(model), *flags)[0] == 0


def test_a_deleted_user_back_in_sailthru_is_left_by_the_next_sync_as_its_plan_says(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # Found by the outside red team: the audit said next_sync "delete", fixed_by_sync true,
    # while the plan (and the sync) left the user alone.
    rows = people(2)
    model = write_csv(tmp_path / "people.csv", rows)
    flags = ("--delete-behavior", "delete", "--max-delete", "100%")
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    write_csv(model, rows[:1])
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    by_hand(fake).post("user", {"id": "p2@example.com", "key": "email", "vars": {"n": "back"}})
    planned = run(tmp_path, fake, "sync", str(model), *flags, "--plan", "--json")
    plan_file = tmp_path / json.loads(planned.stdout)["plan"]
    assert plan_file.read_text() == ""
    _, _, lines = audit(tmp_path, fake, str(model), *flags)
    assert [(line["record"], line["repair"], line["next_sync"], line["fixed_by_sync"])
            for line in lines] == [("2", "delete", "unchanged", False)]
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    assert fake.find_user(email="p2@example.com") is not None  # only --repair deletes it
