"""``sync --plan`` and the sync share one decision, so the plan is what the sync then does.

A hypothesis test builds situations: rows synced once, users Sailthru already holds from
elsewhere, then a changed model (vars, lists, opt-out, an email change onto a free address
or onto one Sailthru has, a row removed or marked deleted) and the options of the next run
(delete behaviour, update-only mode). The plan's counts and failures must equal the sync's
that follows, against the fake.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, make_fake
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.plan import plan_sync
from sailthru_destination.sync.runner import RecordFailure, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 100_000.0}
POOL = ("a", "b", "c", "d")  # the emails rows and outside users are drawn from
_examples = itertools.count()


@pytest.fixture(scope="module")
def shared() -> Iterator[FakeSailthru]:
    with make_fake(rate_limits=FAST) as running:
        yield running


def _config(**settings: Any) -> SyncConfig:
    return SyncConfig(name="people", rate_limits=FAST, deleted_column="deleted",
                      optout_column="optout", bulk="never", concurrency=1, allow_empty=True,
                      **settings)


def _sync(fake: FakeSailthru, state: Path, rows: list[dict[str, Any]],
          config: SyncConfig) -> tuple[dict[str, int], list[tuple[str, str | None]]]:
    app = AppOptions(KEY, SECRET, fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
    options = config.destination_options(lock_dir=str(state.parent / "locks"))
    failures: list[RecordFailure] = []
    with SailthruDestination(app, options, api=api) as dest, SyncState(state) as st_:
        summary = SyncRunner(dest, config, st_, on_failure=failures.append).run(_rows(rows))
    return dict(summary.counts), sorted((f.record, f.field) for f in failures)


def _rows(rows: list[dict[str, Any]]) -> list[Row]:
    return [Row(f"line {n}", dict(r)) for n, r in enumerate(rows, 2)]


row_change = st.sampled_from(("same", "var", "optout", "lists", "email", "remove", "deleted"))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    first=st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True),
    outside=st.sets(st.sampled_from(POOL)),
    changes=st.lists(st.tuples(row_change, st.sampled_from(POOL)), min_size=3, max_size=3),
    behavior=st.sampled_from(("nothing", "clear", "delete")),
    mode=st.sampled_from(("upsert", "update")),
    new_row=st.one_of(st.none(), st.sampled_from(POOL)),
)
# Issue 21's two: an email change onto an address Sailthru has, with delete (the plan said
# "updated 1", the sync "updated 1, deleted 1"); a new row in update mode (the plan said
# "created", the sync "skipped").
@example(first=["a"], outside={"b"}, changes=[("email", "b")] * 3, behavior="delete",
         mode="upsert", new_row=None)
@example(first=["a"], outside=set(), changes=[("same", "a")] * 3, behavior="nothing",
         mode="update", new_row="b")
def test_the_plan_is_what_the_sync_does(
    shared: FakeSailthru, tmp_path_factory: pytest.TempPathFactory, first: list[str],
    outside: set[str], changes: list[tuple[str, str]], behavior: str, mode: str,
    new_row: str | None,
) -> None:
    folder = tmp_path_factory.mktemp("agree")
    tag = f"x{next(_examples)}"

    def email(name: str) -> str:
        return f"{name}.{tag}@example.com"

    # Users Sailthru holds that this model never synced.
    if outside:
        _sync(shared, folder / "elsewhere.db",
              [{"id": f"o{n}", "email": email(name)} for n, name in enumerate(sorted(outside))],
              _config())
    rows = [{"id": str(n), "email": email(name), "plan": "gold", "groups": '["VIP"]',
             "optout": "none", "deleted": ""} for n, name in enumerate(first)]
    state = folder / "people.db"
    _sync(shared, state, rows, _config(delete_behavior=behavior))
    model: list[dict[str, Any]] = []
    for row, (change, name) in zip(rows, changes, strict=False):
        if change == "remove":
            continue
        changed = dict(row)
        if change == "var":
            changed["plan"] = "free"
        elif change == "optout":
            changed["optout"] = "all"
        elif change == "lists":
            changed["groups"] = '["News"]'
        elif change == "email":
            changed["email"] = email(name)
        elif change == "deleted":
            changed["deleted"] = "true"
        model.append(changed)
    if new_row is not None:
        model.append({"id": "new", "email": email(new_row), "plan": "new", "groups": "",
                      "optout": "", "deleted": ""})
    config = _config(delete_behavior=behavior, sync_mode=mode)
    app = AppOptions(KEY, SECRET, shared.url)
    planned, _ = plan_sync(app, config.replace(report_dir=str(folder / "plan")), _rows(model),
                           state_file=state, home=folder)
    plan_failures = sorted((str(f["record"]), f.get("field"))
                           for f in _jsonl(folder / "plan" / "errors.jsonl"))
    counts, failures = _sync(shared, state, model, config)
    assert planned["counts"] == counts, (rows, model)
    assert plan_failures == failures


def _jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_decide_row_asks_for_what_it_needs_then_decides() -> None:
    from sailthru_destination.sync.decide import Action, Lookup, Sailthru, decide_row
    from sailthru_destination.sync.memory.records import AppliedRecord
    from sailthru_destination.sync.model import read_user_row

    config = _config(delete_behavior="delete")
    row = read_user_row(Row("line 2", {"id": "1", "email": "b@example.com", "plan": "gold"}),
                        config, "1")
    record = AppliedRecord("1", "old:digest", "a@example.com", {"plan": "gold"}, frozenset(),
                           None, "a@example.com")
    first = decide_row(row, record, None, config)
    assert (first.needs, first.lookup) == (Lookup.USER, ("email", "b@example.com"))
    onto = decide_row(row, record, Sailthru(user=True), config)
    assert (onto.action, onto.leaves_old_user) == (Action.UPDATE, True)
    assert onto.why.startswith("the new email is already a user in Sailthru: that ")
    assert onto.plan is not None  # its result carries the plan's notes (dropped vars)
    assert decide_row(row, record, Sailthru(user=False), config).needs is Lookup.OLD_USER
    renamed = decide_row(row, record, Sailthru(user=False, old_user=True), config)
    assert (renamed.action, renamed.why) == (Action.UPDATE,
                                             "the email changed: the user is renamed")
    assert renamed.plan is not None
    assert renamed.payload is not None
    assert renamed.payload["id"] == "a@example.com"
    assert decide_row(None, record, None, config).action is Action.DELETE
    same = AppliedRecord("1", f"{row.hash}:d", "b@example.com", row.properties, row.groups)
    unchanged = decide_row(row, same, None, config)
    assert (unchanged.action, unchanged.why, unchanged.detail) == (
        Action.UNCHANGED, "no field of the row changed", "unchanged: no call made")
    with pytest.raises(ValueError, match="needs the record last applied"):
        decide_row(None, None, None, config)


def test_decide_row_resends_unchanged_rows_only_when_asked_and_clears_gone_users() -> None:
    from sailthru_destination.sync.decide import Action, Sailthru, decide_row
    from sailthru_destination.sync.memory.digest import RESEND
    from sailthru_destination.sync.memory.records import AppliedRecord
    from sailthru_destination.sync.model import read_user_row

    config = _config(delete_behavior="clear")
    row = read_user_row(Row("line 2", {"id": "1", "email": "b@example.com", "plan": "gold"}),
                        config, "1")
    same = AppliedRecord("1", f"{row.hash}:d", "b@example.com", row.properties, row.groups)
    asked = decide_row(row, same, None, config, resend=True)
    assert (asked.action, asked.why) == (Action.UPDATE, "resent whole (full resync or repair)")
    # Another content hash, the same fields: nothing to send, and the plan says why.
    stale = AppliedRecord("1", "other:d", "b@example.com", row.properties, row.groups)
    idle = decide_row(row, stale, None, config)
    assert (idle.action, idle.why) == (Action.UNCHANGED, "no field of the row changed")
    # A row whose last resend failed is in doubt: sent whole again.
    doubtful = AppliedRecord("1", RESEND, "b@example.com", row.properties, row.groups)
    assert decide_row(row, doubtful, None, config).action is Action.UPDATE
    # Gone under "clear": first read the user, then empty its vars by the match key.
    first = decide_row(None, same, None, config)
    assert first.needs is not None
    assert first.why == f"needs to know: {first.needs.value}"
    cleared = decide_row(None, same, Sailthru(user=True), config)
    assert cleared.action is Action.CLEAR
    assert cleared.payload == {"id": "b@example.com", "key": "email", "vars": {"plan": ""}}


def test_decide_says_each_action_why_with_its_plan_and_clears_vars_as_they_were_sent() -> None:
    from sailthru_destination.features.decide import Action, Lookup, Sailthru, decide
    from sailthru_destination.features.profiles import ProfileChange
    from sailthru_destination.options import DeleteBehavior, DestinationOptions, SyncMode

    # What a read adds to the facts keeps the other fact.
    assert Sailthru(old_user=True).knowing(Lookup.USER, False) == Sailthru(False, True)
    assert Sailthru(user=True).knowing(Lookup.OLD_USER, False) == Sailthru(True, False)
    upsert = DestinationOptions()
    new = ProfileChange(key="a@example.com", new_properties={"plan": "gold"})
    created = decide(new, upsert)
    # A plain create or update has no detail: its export result says nothing more.
    assert (created.action, created.why, created.detail, created.plan is not None) == (
        Action.CREATE, "new to the state", "", True)
    changed = ProfileChange(key="a@example.com", old_properties={"plan": "gold"},
                            new_properties={"plan": "silver"})
    updated = decide(changed, upsert)
    assert (updated.action, updated.why, updated.detail, updated.plan is not None) == (
        Action.UPDATE, "fields of the row changed", "", True)
    # An email change: renamed (the old user found) or created (neither found), each with
    # its plan; in update mode, neither found is a skip.
    moved = ProfileChange(key="b@example.com", old_key="a@example.com",
                          old_properties={"plan": "gold"}, new_properties={"plan": "gold"})
    renamed = decide(moved, upsert, Sailthru(user=False, old_user=True))
    assert (renamed.action, renamed.detail) == (Action.UPDATE, "email changed")
    assert renamed.plan is not None
    fresh = decide(moved, upsert, Sailthru(user=False, old_user=False))
    assert (fresh.action, fresh.plan is not None) == (Action.CREATE, True)
    update_only = DestinationOptions(sync_mode=SyncMode.UPDATE)
    nobody = decide(moved, update_only, Sailthru(user=False, old_user=False))
    assert (nobody.action, nobody.why) == (
        Action.SKIP, "no user with the old or new email (update mode)")
    assert decide(changed, update_only, Sailthru(user=False)).action is Action.SKIP
    # Update mode reads the user once; only a clear's read believes "absent" as a delete's
    # verification does (two reads a wait apart).
    asks = decide(changed, update_only)
    assert (asks.needs, asks.verified) == (Lookup.USER, False)
    assert decide(ProfileChange(key="a@example.com", to_delete=True),
                  DestinationOptions(delete_behavior=DeleteBehavior.CLEAR)).verified
    # Gone: deleted, kept, skipped (no consent, or nothing to clear) with why.
    gone = ProfileChange(key="a@example.com", to_delete=True,
                         old_properties={"plan": "gold", "bad name!": "x"})
    deleted = decide(gone, DestinationOptions(delete_behavior=DeleteBehavior.DELETE))
    assert (deleted.action, deleted.why, deleted.target) == (
        Action.DELETE, "no row maps to this user any more", ("email", "a@example.com"))
    kept = decide(gone, DestinationOptions(delete_behavior=DeleteBehavior.NOTHING))
    assert (kept.action, kept.why) == (Action.KEEP, "no row maps to this user any more")
    unconsented = decide(gone, DestinationOptions(delete_behavior=DeleteBehavior.DELETE,
                                                  required_consents=frozenset({"email"})))
    assert (unconsented.action, unconsented.why) == (
        Action.SKIP, "no consent to any of: email")
    clear = DestinationOptions(delete_behavior=DeleteBehavior.CLEAR, var_names={"plan": "tier"})
    absent = decide(gone, clear, Sailthru(user=False))
    assert (absent.action, absent.why) == (Action.SKIP,
                                           "no such user in Sailthru: nothing to clear")
    # The clear empties the vars under the names they were sent by: renamed by var_names,
    # and a bad name repaired when invalid_vars="drop" sent it repaired (else never sent).
    cleared = decide(gone, clear, Sailthru(user=True))
    assert (cleared.action, cleared.why, cleared.detail) == (
        Action.CLEAR, "no row maps to this user any more", "")
    assert cleared.payload == {"id": "a@example.com", "key": "email", "vars": {"tier": ""}}
    drop = DestinationOptions(delete_behavior=DeleteBehavior.CLEAR, invalid_vars="drop")
    repaired = decide(gone, drop, Sailthru(user=True))
    assert repaired.payload is not None
    assert repaired.payload["vars"] == {"plan": "", "bad name_": ""}


def test_a_changed_extid_renames_the_user_only_when_the_email_stays() -> None:
    from sailthru_destination.sync.decide import change_of, renames
    from sailthru_destination.sync.memory.records import AppliedRecord
    from sailthru_destination.sync.model import UserRow

    config = _config(match_key="extid", match_column="extid")
    old = AppliedRecord("1", "h:d", "x1", {"email": "A@example.com "}, frozenset())
    same_person = UserRow("1", "x2", {"email": "a@example.com"}, frozenset({"vip"}), "all",
                          "h2")
    other_person = UserRow("1", "x2", {"email": "b@example.com"}, frozenset(), None, "h3")
    no_email = UserRow("1", "x2", {}, frozenset(), None, "h4")
    assert renames(old, same_person, config)
    assert not renames(old, other_person, config)
    assert not renames(old, no_email, config)
    change = change_of(same_person, old, config)
    # The row's opt-out level goes with the change (a level change alone is sent); a change
    # is resent whole only when asked.
    assert (change.old_key, change.optout, change.resend) == ("x1", "all", False)
    assert change.new_groups == {"vip"}
    assert change_of(other_person, old, config).old_key is None


def test_a_clear_leaves_the_rows_lists() -> None:
    from sailthru_destination.features.decide import Action, Sailthru, decide
    from sailthru_destination.features.profiles import ProfileChange
    from sailthru_destination.options import DeleteBehavior, DestinationOptions

    gone = ProfileChange(key="a@example.com", to_delete=True, old_properties={"plan": "gold"},
                         old_groups=frozenset({"vip"}))
    options = DestinationOptions(delete_behavior=DeleteBehavior.CLEAR, list_prefix="crm-")
    cleared = decide(gone, options, Sailthru(user=True))
    assert (cleared.action, cleared.lists) == (Action.CLEAR, {"crm-vip": 0})
