"""What the stateful sync test found beyond issue 12's list, each as the smallest history.

Each test is the shrunk example, written out by hand so it names the promise it breaks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_world import (
    SkippedTime,
    Target,
    answer_5xx_after_applying,
    make_fake,
    run_killed,
    run_model,
)

from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru, Faults

ANN = "ann@model.example.com"
BOB = "bob@model.example.com"


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with make_fake() as running:
        yield running


def _sync(fake: FakeSailthru, folder: Path, *rows: dict[str, Any], behavior: str = "nothing",
          clock: SkippedTime | None = None) -> None:
    settings = {"delete_behavior": behavior, "concurrency": 1, "bulk": "never"}
    model = [Row(f"line {n}", row) for n, row in enumerate(rows, 2)]
    run = run_model(Target(fake.url, folder, settings, clock or SkippedTime()), "users", model)
    # Two rows on one user: the second is reported as a duplicate (it is not synced).
    assert [f for f in run.failures if not f.reason.startswith("duplicate email")] == []


def _users(fake: FakeSailthru) -> dict[str, tuple[dict[str, Any], set[str]]]:
    return {u["keys"]["email"]: (u["vars"], set(u["lists"])) for u in fake.users.values()}


def test_a_row_leaving_a_shared_email_leaves_the_user_to_the_row_still_on_it(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    first = {"id": "1", "email": ANN, "plan": "gold"}
    second = {"id": "2", "email": ANN, "plan": "gold"}
    _sync(fake, tmp_path, first, second)
    _sync(fake, tmp_path, first, second | {"email": BOB})
    # Row 1 still says ann: its user must stay. Today the email change of row 2 moves the
    # one user to bob, and row 1, unchanged, is never sent again: ann is gone for good.
    _sync(fake, tmp_path, first, second | {"email": BOB})
    assert set(_users(fake)) == {ANN, BOB}


@pytest.mark.parametrize("behavior", ["nothing", "clear"])
def test_a_row_moving_onto_a_kept_user_gives_that_user_its_vars_and_lists(
    fake: FakeSailthru, tmp_path: Path, behavior: str
) -> None:
    gone = {"id": "1", "email": ANN, "plan": "gold", "groups": ["A"]}
    mover = {"id": "2", "email": BOB, "plan": "free", "groups": ["B"]}
    _sync(fake, tmp_path, gone, mover, behavior=behavior)
    _sync(fake, tmp_path, mover, behavior=behavior)  # ann's user is kept (or cleared)
    _sync(fake, tmp_path, mover | {"email": ANN}, behavior=behavior)
    # The only row on ann says plan free, group B; an update of the user that already owns
    # the new email must carry the row's whole state, not its diff against the old email.
    variables, lists = _users(fake)[ANN]
    assert variables.get("plan") == "free"
    assert "B" in lists


@pytest.mark.parametrize("behavior", ["clear", "delete"])
def test_a_user_created_by_a_killed_run_gets_the_delete_behaviour_when_its_row_goes(
    fake: FakeSailthru, tmp_path: Path, behavior: str
) -> None:
    settings = {"delete_behavior": behavior, "concurrency": 1, "bulk": "never"}
    ann = {"id": "1", "email": ANN, "plan": "gold"}
    models = {"users": [Row("line 2", ann)], "events": [], "purchases": []}
    # Killed right after the POST /user that created ann was answered: Sailthru has the
    # user, the state never heard of it (it is written after the reply, in batches).
    assert run_killed(Target(fake.url, tmp_path, settings, SkippedTime()), models, kill_after=1)
    assert set(_users(fake)) == {ANN}
    _sync(fake, tmp_path, behavior=behavior)  # ann's row is gone from the model
    assert _users(fake).get(ANN, ({}, set())) == ({}, set())


def test_a_var_written_by_a_killed_run_is_cleared_when_the_row_drops_it(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    settings = {"delete_behavior": "nothing", "concurrency": 1, "bulk": "never"}
    ann = {"id": "1", "email": ANN}
    _sync(fake, tmp_path, ann)
    models = {"users": [Row("line 2", ann | {"plan": "gold"})], "events": [], "purchases": []}
    # Killed right after Sailthru applied plan=gold: the state still holds the row without it.
    assert run_killed(Target(fake.url, tmp_path, settings, SkippedTime()), models, kill_after=1)
    assert _users(fake)[ANN][0] == {"plan": "gold"}
    # The row drops plan again: it now hashes as the state remembers it, so no call is made
    # and plan=gold stays on the user for good.
    _sync(fake, tmp_path, ann)
    assert _users(fake)[ANN][0] == {}


def _runs_under_stale_reads(fake: FakeSailthru, folder: Path, *models: list[dict[str, Any]],
                            behavior: str = "nothing") -> None:
    """One run per model, back to back, while reads this soon after a write see the user as
    it was before (eventual consistency): a read of a user just created misses it."""
    clock = SkippedTime()
    with clock.driving_the_fake():
        fake.faults = Faults(stale_read_window=0.4)
        for rows in models:
            _sync(fake, folder, *rows, behavior=behavior, clock=clock)


ANN_GOLD = {"id": "1", "email": ANN, "plan": "gold", "groups": ["A"]}


def test_an_email_change_that_cannot_find_the_old_user_creates_the_new_one_whole(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _runs_under_stale_reads(fake, tmp_path, [ANN_GOLD], [ANN_GOLD | {"email": BOB}])
    # The old user was not found (a stale read here; deleted by hand elsewhere): bob is a
    # new user and must get the row whole, not the empty diff of an unchanged row.
    assert _users(fake)[BOB] == ({"plan": "gold"}, {"A"})


def test_a_clear_believes_no_such_user_only_after_a_second_read(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _runs_under_stale_reads(fake, tmp_path, [ANN_GOLD], [], behavior="clear")
    # A read right after the create said "no such user"; the clear was skipped and the
    # row forgotten, so the user kept its vars and lists for good.
    assert _users(fake)[ANN] == ({}, set())


def test_a_user_renamed_by_a_post_answered_5xx_is_still_deleted_when_its_row_goes(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    ann = {"id": "1", "email": ANN, "plan": "gold"}
    _sync(fake, tmp_path, ann, behavior="delete")
    first_only = iter([1.0])
    with answer_5xx_after_applying(lambda: next(first_only, 0.0), random.Random(0)):
        settings = {"delete_behavior": "delete", "concurrency": 1, "bulk": "never"}
        run = run_model(Target(fake.url, tmp_path, settings, SkippedTime()), "users",
                        [Row("line 2", ann | {"email": BOB})])
    # The rename to bob was applied and answered 503; its retry, "ann -> bob" again, meets
    # a key conflict (ann is gone, bob is taken): reported failed, fair. But the state
    # still says ann, so when the row goes the delete looks for ann and bob stays.
    assert [f.record for f in run.failures] == ["1"]
    assert set(_users(fake)) == {BOB}
    _sync(fake, tmp_path, behavior="delete")
    assert _users(fake) == {}
