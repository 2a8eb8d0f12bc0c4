"""Write-ahead intents: durable before the call, settled with the record, read back after a kill."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import app_for
from test_sync_runner import _rows

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.intents import Intent
from sailthru_destination.sync.memory.settle import RESEND, settle_intents
from sailthru_destination.sync.memory.state import AppliedRecord, SyncState
from sailthru_destination.sync.reporting.summary import RecordNotice
from sailthru_destination.sync.runner import RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi

ANN = "ann@example.com"
BOB = "bob@example.com"


def _record(pk: str, email: str = ANN, **properties: object) -> AppliedRecord:
    return AppliedRecord(pk, f"h{pk}", email, {"email": email, **properties}, frozenset({"G"}),
                         None, email)


def _open_ids(path: Path) -> list[tuple[str, str]]:
    """The open intents as another process sees them: (ident, kind)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [(str(i), str(k)) for i, k in db.execute("SELECT ident, kind FROM intents")]


def _create(fake: FakeSailthru, email: str, **variables: object) -> None:
    api = SailthruApi(app_for(fake), sleep=lambda _: None)
    api.post("user", {"id": email, "key": "email", "vars": variables})


def _settle(fake: FakeSailthru, state: SyncState, **settings: object) -> list[RecordNotice]:
    notices: list[RecordNotice] = []
    api = SailthruApi(app_for(fake), sleep=lambda _: None)
    settled = settle_intents(api, SyncConfig(**settings), state, notices.append, lag=0.0)
    assert settled.in_doubt == len(notices)
    return notices


def _sync(fake: FakeSailthru, tmp_path: Path, rows: list[Row], **settings: Any) -> RunSummary:
    """One run of the runner, as the CLI runs it, with the tests' credentials."""
    config = SyncConfig(name="t", **settings)
    api = SailthruApi(app_for(fake), sleep=lambda _: None)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    with (SailthruDestination(app_for(fake), options, api=api) as dest,
          SyncState(tmp_path / "s.db") as state):
        return SyncRunner(dest, config, state).run(rows)


def test_an_old_state_file_gains_the_intents_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript("CREATE TABLE records (pk TEXT PRIMARY KEY, hash TEXT NOT NULL, "
                         "match TEXT, properties TEXT NOT NULL, groups TEXT NOT NULL, "
                         "optout TEXT); INSERT INTO records VALUES "
                         "('1', 'h', 'a@example.com', '{}', '[]', NULL);")
    with SyncState(path) as state:
        assert state.open_intents() == []
        assert state.get("1") is not None


def test_an_intent_is_durable_before_its_call_and_settled_with_its_record(
    tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    with SyncState(path) as state:
        first = state.intend(Intent("upsert", "row", "1", _record("1", plan="gold")))
        assert first.id > 0
        assert first.at > 0
        # Committed at once: another process (the next run after a kill) sees it.
        assert _open_ids(path) == [("1", "upsert")]
        second = state.intend(Intent("delete", "left", ANN, _record("1")))
        state.put(first.record, settles=first)
        state.flush()
        # Only the settled intent (and older ones of the same row) is closed.
        assert _open_ids(path) == [(ANN, "delete")]
        assert state.get("1") == first.record
        state.drop_left(ANN, settles=second)
    assert _open_ids(path) == []
    with SyncState(path) as state:
        state.put(_record("2"))
        older = state.intend(Intent("upsert", "row", "2", _record("2", plan="a")))
        newer = state.intend(Intent("upsert", "row", "2", _record("2", plan="b")))
        state.settle_intent(older)
        state.flush()
        assert [i.id for i in state.open_intents()] == [newer.id]


def test_an_intents_age_counts_from_when_it_was_recorded() -> None:
    intent = Intent("upsert", "row", "1", _record("1"), at=1000.0)
    assert intent.age(now=1060.0) == 60.0
    assert intent.age(now=990.0) == 0.0  # a clock set back: never a negative age


def test_a_kind_or_target_outside_the_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="intent kind"):
        Intent("post", "row", "1", _record("1"))
    with pytest.raises(ValueError, match="intent target"):
        Intent("upsert", "user", "1", _record("1"))


def test_a_user_a_killed_run_created_is_recorded_and_sent_again(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _create(fake, ANN, plan="gold")
    with SyncState(tmp_path / "s.db") as state:
        state.intend(Intent("upsert", "row", "1", _record("1", plan="gold")))
        assert _settle(fake, state) == []
        record = state.get("1")
        assert record is not None
        assert record.key == ANN
        assert record.hash == RESEND  # the row is sent again, whatever it holds now
        assert record.properties == {"email": ANN, "plan": "gold"}
        assert state.open_intents() == []


def test_a_create_no_read_finds_did_not_happen(fake: FakeSailthru, tmp_path: Path) -> None:
    with SyncState(tmp_path / "s.db") as state:
        state.intend(Intent("upsert", "row", "1", _record("1", plan="gold")))
        assert _settle(fake, state) == []
        assert state.get("1") is None
        assert state.open_intents() == []


def test_a_write_whose_read_fails_stays_in_doubt_with_its_age(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with SyncState(tmp_path / "s.db") as state:
        state.intend(Intent("upsert", "row", "1", _record("1", plan="gold"), at=time.time() - 90))
        fake.faults = Faults(server_error_rate=1.0)
        [notice] = _settle(fake, state)
        assert notice.record == "1"
        assert "in doubt" in notice.reason
        age = re.search(r"sent (\d+) s ago", notice.reason)
        assert age is not None
        assert 89 <= int(age.group(1)) <= 95
        assert len(state.open_intents()) == 1  # read again by the next run
        fake.faults = Faults()
        assert _settle(fake, state) == []
        assert state.open_intents() == []


def test_the_reads_wait_out_the_lag_after_the_youngest_intent(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    waits: list[float] = []
    api = SailthruApi(app_for(fake), sleep=waits.append)
    with SyncState(tmp_path / "s.db") as state:
        state.intend(Intent("upsert", "row", "1", _record("1"), at=time.time() - 0.25))
        settled = settle_intents(api, SyncConfig(), state, lambda _: None)  # default lag: 1 s
    assert (settled.settled, settled.in_doubt) == (1, 0)
    assert len(waits) == 1
    assert 0.5 < waits[0] <= 0.75


def test_an_email_change_is_settled_by_which_email_the_user_has(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _create(fake, BOB)  # renamed: ann's user is bob's now
    with SyncState(tmp_path / "s.db") as state:
        state.put(_record("1"))
        state.intend(Intent("email", "row", "1", _record("1", email=BOB), old_match=ANN))
        assert _settle(fake, state, delete_behavior="delete") == []
        assert getattr(state.get("1"), "key", None) == BOB  # its later delete finds bob
        assert state.left() == []  # ann's user is bob's: nobody is left behind


def test_a_delete_seen_done_forgets_the_row_and_one_not_done_sends_it_again(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _create(fake, BOB)
    with SyncState(tmp_path / "s.db") as state:
        for pk, email in (("1", ANN), ("2", BOB), ("3", BOB)):
            state.put(_record(pk, email=email))
            state.intend(Intent("delete", "row", pk, _record(pk, email=email)))
        state.set_hash("3", "")  # a mapping change's empty hash stays empty
        assert _settle(fake, state, delete_behavior="delete") == []
        assert state.get("1") is None  # ann is gone: the delete applied
        kept = state.get("2")
        assert kept is not None
        assert kept.hash == RESEND
        assert state.get_hash("3") == ""
        assert state.open_intents() == []  # it is sent again; if not, deleted again


def test_an_intent_keeps_typed_old_values_as_text(tmp_path: Path) -> None:
    """A date the write replaces (a typed date column) is kept, as the state keeps dates:
    the intent is recorded, not refused, and its old values read back."""
    signed = datetime.date(2026, 3, 4)
    with SyncState(tmp_path / "s.db") as state:
        state.intend(Intent("upsert", "row", "1", _record("1", signup=signed),
                            old_properties={"signup": datetime.date(2025, 1, 2)},
                            old_groups=frozenset({"A"}), old_match=BOB))
        [intent] = state.open_intents()
    assert intent.old_properties == {"signup": "2025-01-02"}
    assert intent.record.properties["signup"] == "2026-03-04"
    assert (intent.old_groups, intent.old_match) == (frozenset({"A"}), BOB)


def test_an_email_change_not_applied_keeps_the_old_user_and_sends_the_row_again(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    """Bob's email was never taken: the row is still ann's, sent again whole, and whatever
    the write may have set (old and new values) is cleared when the row later drops it."""
    _create(fake, ANN)
    with SyncState(tmp_path / "s.db") as state:
        state.put(_record("1"))
        state.put(dataclasses.replace(_record("2", email="cy@example.com"), hash=""))
        for pk in ("1", "2", "3"):
            state.intend(Intent("email", "row", pk, _record(pk, email=BOB, plan="gold"),
                                old_properties={"tier": "a"}, old_groups=frozenset({"OLD"}),
                                old_match=ANN))
        assert _settle(fake, state) == []
        kept = state.get("1")
        assert kept is not None
        assert (kept.key, kept.match, kept.hash) == (ANN, ANN, RESEND)
        assert kept.properties == {"email": BOB, "plan": "gold", "tier": "a"}
        assert kept.groups == frozenset({"G", "OLD"})
        mapped = state.get("2")  # a mapping change's empty hash stays empty
        assert mapped is not None
        assert mapped.hash == ""
        assert state.get("3") is None  # no record, no user: nothing to know
        assert state.open_intents() == []


@pytest.mark.parametrize(("behavior", "left"), [("delete", [ANN]), ("nothing", [])])
def test_an_email_change_onto_an_existing_user_leaves_the_old_one_behind(
    fake: FakeSailthru, tmp_path: Path, behavior: str, left: list[str]
) -> None:
    _create(fake, ANN)
    _create(fake, BOB)  # bob's own user took the row: ann's is left for the delete behaviour
    with SyncState(tmp_path / "s.db") as state:
        state.put(_record("1"))
        state.intend(Intent("email", "row", "1", _record("1", email=BOB), old_match=ANN))
        assert _settle(fake, state, delete_behavior=behavior) == []
        assert [user.key for user in state.left()] == left
        assert getattr(state.get("1"), "key", None) == BOB
        assert state.open_intents() == []


@pytest.mark.parametrize(("behavior", "left"), [("delete", [ANN]), ("nothing", [])])
def test_a_row_moved_to_another_user_leaves_its_old_one_unless_told_not_to(
    fake: FakeSailthru, tmp_path: Path, behavior: str, left: list[str]
) -> None:
    _create(fake, BOB)
    with SyncState(tmp_path / "s.db") as state:
        state.put(_record("1"))
        state.intend(Intent("upsert", "row", "1", _record("1", email=BOB)))
        assert _settle(fake, state, delete_behavior=behavior) == []
        assert [user.key for user in state.left()] == left
        assert getattr(state.get("1"), "key", None) == BOB


def test_every_intent_whose_read_fails_is_counted_and_logged(
    fake: FakeSailthru, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SyncState(tmp_path / "s.db") as state:
        for pk in ("1", "2"):
            state.intend(Intent("upsert", "row", pk, _record(pk)))
        fake.faults = Faults(server_error_rate=1.0)
        with caplog.at_level(logging.WARNING, logger="sailthru_destination.sync.memory.settle"):
            notices = _settle(fake, state)  # checks the count against the notices
    assert [n.record for n in notices] == ["1", "2"]
    warnings = [r.getMessage() for r in caplog.records if r.name.endswith(".settle")]
    assert len(warnings) == 2
    assert all(w.startswith("intent upsert of row ") for w in warnings)
    assert all("the read failed: " in w and not w.endswith("None") for w in warnings)


def test_a_left_user_seen_deleted_is_dropped_and_one_still_there_kept(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _create(fake, BOB)
    with SyncState(tmp_path / "s.db") as state:
        for email in (ANN, BOB):
            state.leave(_record("1", email=email))
            state.intend(Intent("delete", "left", email, _record("1", email=email)))
        assert _settle(fake, state, delete_behavior="delete") == []
        assert [user.key for user in state.left()] == [BOB]  # deleted again by the next run
        assert state.open_intents() == []


def test_an_email_change_a_failed_run_left_open_renames_the_same_user_next_run(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    """The runner's intent of an email change names the old email: the next run reads both
    back, finds the rename not done, and renames ann's own user (same sid), deleting no one."""
    ann = {"id": 1, "email": ANN, "plan": "gold"}
    moved = ann | {"email": BOB}
    _sync(fake, tmp_path, _rows(ann), delete_behavior="delete")
    user = fake.find_user(email=ANN)
    assert user is not None
    sid = user["keys"]["sid"]
    fake.faults = Faults(server_error_rate=1.0)  # every call fails before it is applied
    failed = _sync(fake, tmp_path, _rows(moved), delete_behavior="delete")
    assert failed.counts["failed"] == 1
    fake.faults = Faults()
    summary = _sync(fake, tmp_path, _rows(moved), delete_behavior="delete")
    assert (summary.intents_settled, summary.counts["deleted"]) == (1, 0)
    assert summary.counts["updated"] == 1
    assert fake.find_user(email=ANN) is None
    renamed = fake.find_user(email=BOB)
    assert renamed is not None
    assert renamed["keys"]["sid"] == sid
    assert renamed["vars"]["plan"] == "gold"


def test_a_create_by_extid_is_read_back_by_extid(fake: FakeSailthru, tmp_path: Path) -> None:
    """Matching on extid, a killed run's create is looked up by its extid, not as an email."""
    fake.extid_lookup = True
    api = SailthruApi(app_for(fake), sleep=lambda _: None)
    api.post("user", {"id": ANN, "key": "email", "keys": {"extid": "cust-1"}})
    record = AppliedRecord("1", "h1", "cust-1", {"email": ANN}, frozenset(), None, "cust-1")
    with SyncState(tmp_path / "s.db") as state:
        state.intend(Intent("upsert", "row", "1", record))
        assert _settle(fake, state, match_key="extid") == []
        settled = state.get("1")
        assert settled is not None
        assert (settled.key, settled.hash) == ("cust-1", RESEND)  # written: sent again whole


def test_a_run_waits_out_the_accounts_read_lag_before_settling(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    """The lag is the destination's ``delete_confirm_after`` (30 s here, not the default 1 s):
    a read sooner could miss a write the killed run made."""
    _create(fake, ANN)
    with SyncState(tmp_path / "s.db") as state:
        state.intend(Intent("upsert", "row", "1", _record("1")))
    waits: list[float] = []
    config = SyncConfig(name="t")
    api = SailthruApi(app_for(fake), sleep=waits.append)
    options = dataclasses.replace(config.destination_options(lock_dir=str(tmp_path / "locks")),
                                  delete_confirm_after=30.0)
    with (SailthruDestination(app_for(fake), options, api=api) as dest,
          SyncState(tmp_path / "s.db") as state):
        summary = SyncRunner(dest, config, state).run(_rows({"id": 1, "email": ANN}))
    assert summary.intents_settled == 1
    assert 20.0 < waits[0] <= 30.0  # less the intent's age; waits are recorded, not slept


def test_a_clear_answered_with_an_error_is_undone_when_its_row_comes_back(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    """The clear applied but its answer was lost: the next run reads the intent, and when the
    row is back in the model it is sent whole, so bob's vars are not left emptied."""
    ann = {"id": 1, "email": ANN, "plan": "gold"}
    bob = {"id": 2, "email": BOB, "plan": "free"}
    _sync(fake, tmp_path, _rows(ann, bob), delete_behavior="clear")
    fake.faults = Faults(error_after_apply_rate=1.0)  # the clear applies, the answer is a 504
    failed = _sync(fake, tmp_path, _rows(ann), delete_behavior="clear")
    assert failed.counts["failed"] == 1
    assert fake.find_user(email=BOB)["vars"].get("plan") in (None, "")  # type: ignore[index]
    fake.faults = Faults()
    back = _sync(fake, tmp_path, _rows(ann, bob), delete_behavior="clear")
    assert fake.find_user(email=BOB)["vars"]["plan"] == "free"  # type: ignore[index]
    assert (back.intents_settled, back.counts["updated"]) == (1, 1)
