"""``sync --plan`` run as a user runs it against the fake: nothing sent, the state untouched,
one line per row to act on, and the sync after it does exactly what it said."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import test_cli
from test_cli import AUTH_CHECK, people, run, snapshot, write_csv

from sailthru_destination.testing import FakeSailthru

fake = test_cli.fake  # the CLI tests' fake (their credentials) is a fixture here too


def _plan_path(stdout: str, cwd: Path) -> Path:
    line = next(x for x in stdout.splitlines() if x.startswith("Plan: "))
    return cwd / line.removeprefix("Plan: ").split(" (")[0]


def _plan(stdout: str, cwd: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in _plan_path(stdout, cwd).read_text().splitlines()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_plan_sends_nothing_changes_no_state_and_the_sync_does_what_it_said(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = people(6)
    model = write_csv(tmp_path / "people.csv", rows)
    flags = ("--delete-behavior", "delete")
    assert run(tmp_path, fake, "sync", str(model), *flags).returncode == 0
    state = tmp_path / ".sailthru-sync" / "people.db"
    before_state, before_users, before_calls = _digest(state), snapshot(fake), sum(
        fake.calls.values())
    rows[0]["first_name"] = "Changed"
    rows[1]["groups"] = "VIP"
    del rows[2]["first_name"]
    rows.append({"id": 99, "email": "new@example.com", "first_name": "New", "groups": ""})
    write_csv(model, [r for r in rows if r["id"] != 4])  # p4 gone
    planned = run(tmp_path, fake, "sync", str(model), *flags, "--plan")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "nothing was sent" in planned.stdout
    assert sum(fake.calls.values()) == before_calls + AUTH_CHECK
    assert snapshot(fake) == before_users
    assert _digest(state) == before_state
    plan = {str(entry["record"]): entry for entry in _plan(planned.stdout, tmp_path)}
    assert plan["1"]["set"] == {"first_name": "Changed"}
    assert (plan["2"]["join"], plan["2"]["leave"]) == (["VIP"], ["Newsletter"])
    assert plan["3"]["clear"] == ["first_name"]
    assert plan["99"]["action"] == "create"
    assert plan["4"]["action"] == "delete"
    assert set(plan) == {"1", "2", "3", "4", "99"}
    # The sync after it does exactly that: the same records, the same outcomes.
    synced = run(tmp_path, fake, "sync", str(model), *flags)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    summary = json.loads((max((tmp_path / ".sailthru-sync" / "reports").glob("people-2*"),
                              key=lambda p: p.stat().st_mtime) / "summary.json").read_text())
    assert summary["counts"] == {"created": 1, "updated": 3, "deleted": 1, "unchanged": 2}
    planned_summary = json.loads(
        (_plan_path(planned.stdout, tmp_path).parent / "summary.json").read_text())
    assert planned_summary["status"] == "planned"
    assert planned_summary["counts"] == summary["counts"]
    assert planned_summary["api_calls"] == 0
    assert fake.find_user(email="p4@example.com") is None
    assert fake.find_user(email="p1@example.com")["vars"]["first_name"] == "Changed"
    assert "first_name" not in fake.find_user(email="p3@example.com")["vars"]
    again = run(tmp_path, fake, "sync", str(model), *flags, "--plan")
    assert _plan(again.stdout, tmp_path) == []


def test_a_plan_needs_good_credentials_and_a_users_model(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(2))
    bad = run(tmp_path, fake, "sync", str(model), "--plan", "--api-secret", "nope")
    assert bad.returncode == 2
    assert "--api-secret" in bad.stderr
    events = write_csv(tmp_path / "e.csv", [{"id": 1, "email": "a@example.com", "event": "x"}])
    other = run(tmp_path, fake, "sync", str(events), "--object", "events", "--plan")
    assert other.returncode == 2
    assert "users model" in other.stderr
