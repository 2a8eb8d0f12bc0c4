"""The audit finds exactly the drift made in Sailthru, says what the plan says the next sync
does, and its repair leaves Sailthru as the model says: random hand edits (users deleted,
vars changed or removed, list memberships added or removed) and model edits since the last
run, against the fake over HTTP."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sailthru_destination.errors import NotFound
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.plan import plan_sync
from sailthru_destination.sync.reporting.audit import audit_model
from sailthru_destination.sync.run import run_sync
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 100_000.0}
MANAGED = ("A", "B")  # the lists the model's groups name
USERS = 5


def _model() -> list[dict[str, Any]]:
    return [{"id": str(n), "email": f"u{n}@example.com", "first_name": f"U{n}", "tier": n,
             "groups": ";".join(MANAGED[: n % 3])} for n in range(USERS)]


def _rows(model: list[dict[str, Any]]) -> list[Row]:
    return [Row(f"row {n + 1}", dict(data)) for n, data in enumerate(model)]


_EDITS = st.lists(st.tuples(
    st.sampled_from(("delete", "set_name", "clear_name", "set_tier", "join", "leave")),
    st.integers(0, USERS - 1),
    st.sampled_from((*MANAGED, "Other")),
), max_size=8)


def _edit(api: SailthruApi, kind: str, n: int, name: str) -> None:
    """One hand edit of user ``n`` in Sailthru (an edit of a deleted user re-creates it)."""
    user = {"id": f"u{n}@example.com", "key": "email"}
    if kind == "delete":
        with contextlib.suppress(NotFound):  # deleted twice
            api.delete("user", user)
    elif kind == "set_name":
        api.post("user", {**user, "vars": {"first_name": f"Hand{n}"}})
    elif kind == "clear_name":
        api.post("user", {**user, "vars": {"first_name": ""}})
    elif kind == "set_tier":
        api.post("user", {**user, "vars": {"tier": 100 + n}})
    else:
        api.post("user", {**user, "lists": {name: 1 if kind == "join" else 0}})


def _expected_drift(fake: FakeSailthru, model: list[dict[str, Any]]) -> dict[str, Any]:
    """The drift an oracle sees: per record, missing, or the vars and lists that differ."""
    drift: dict[str, Any] = {}
    for row in model:
        user = fake.find_user(email=row["email"])
        if user is None:
            drift[row["id"]] = "missing"
            continue
        wanted = {"first_name": row["first_name"], "tier": row["tier"]}
        variables = {k for k, v in wanted.items() if user["vars"].get(k) != v}
        # The lists the model put the user on; another list (even one the model names for
        # other users) is not the model's to judge for this user.
        groups = set(filter(None, row["groups"].split(";")))
        lists = {name for name in groups if name not in user["lists"]}
        if variables or lists:
            drift[row["id"]] = (variables, lists)
    return drift


def _found_drift(folder: Path) -> dict[str, Any]:
    drift: dict[str, Any] = {}
    for line in (folder / "drift.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        drift[entry["record"]] = "missing" if "missing" in entry["drift"] else (
            set(entry.get("vars", {})), set(entry.get("lists", {})))
    return drift


def _plan(app: AppOptions, config: SyncConfig, model: list[dict[str, Any]],
          home: Path) -> dict[str, str]:
    """The plan's action per record (records it leaves unchanged are not in it)."""
    _, folder = plan_sync(app, config, _rows(model), state_file=home / "people.db",
                          home=home)
    lines = (folder / "plan.jsonl").read_text(encoding="utf-8").splitlines()
    return {entry["record"]: entry["action"] for entry in map(json.loads, lines)}


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=_EDITS, renamed=st.sets(st.integers(0, USERS - 1)),
       read=st.sampled_from(("user", "export")))
def test_audit_finds_exactly_the_drift_and_repair_makes_sailthru_what_the_model_says(
    tmp_path_factory: Any, edits: list[tuple[str, int, str]], renamed: set[int], read: str
) -> None:
    home = tmp_path_factory.mktemp("audit")
    model = _model()
    config = SyncConfig(name="people")
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as fake:
        app = AppOptions(api_key="k", api_secret="s", api_url=fake.url)
        assert run_sync(app, config, _rows(model), home=home).summary.failed == 0
        with SailthruApi(app) as api:
            for edit in edits:
                _edit(api, *edit)
        hand_made = set(_expected_drift(fake, model))
        for n in renamed:  # changed in the model since the last run: the next sync sends it
            model[n]["first_name"] = f"New{n}"
        expected = _expected_drift(fake, model)
        state = home / "people.db"
        result = audit_model(app, config, _rows(model), state_file=state, home=home, read=read)
        assert result.summary["read"] == read
        assert _found_drift(result.folder) == expected
        assert result.summary["users_missing"] == sum(v == "missing" for v in expected.values())
        # The audit says what the plan says the next sync does, and which drift it fixes.
        planned = _plan(app, config, model, home)
        lines = (result.folder / "drift.jsonl").read_text(encoding="utf-8").splitlines()
        for entry in map(json.loads, lines):
            assert entry["next_sync"] == planned.get(entry["record"], "unchanged")
            if entry["record"] not in {str(n) for n in hand_made}:
                assert entry["fixed_by_sync"] is True
        repair = run_sync(app, config, _rows(model), home=home, resend=result.resend)
        assert repair.summary.failed == 0
        assert _expected_drift(fake, model) == {}
        again = audit_model(app, config, _rows(model), state_file=state, home=home)
        assert again.drifted == 0
