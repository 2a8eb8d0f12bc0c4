"""A row that stays marked deleted is deleted once: later runs of the same row cost nothing.

Once a flagged row's delete is applied, the state keeps its tombstone (the row's digest);
the very same flagged row is then unchanged, with no call, on the whole-model run and on
``apply`` (dlt, Singer re-sending a tombstone record). So a user who signs up again through
another source is left alone by a plain sync of the unchanged model; a flagged row that
changes, or one un-flagged, is acted on as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_fake
from test_sync_deleted import _apply
from test_sync_runner import ANN, BOB, _rows

FLAGGED = {**BOB, "_deleted": "yes"}


@pytest.mark.parametrize("whole", [True, False])
def test_an_unchanged_flagged_row_is_deleted_once(tmp_path: Path, whole: bool) -> None:
    with make_fake(rate_limits={"default": 10000.0}) as fake:
        _apply(fake, tmp_path, _rows(ANN, BOB), whole=True, delete_behavior="delete")
        first = _apply(fake, tmp_path, _rows(ANN, FLAGGED), whole=whole,
                       delete_behavior="delete")
        assert first.counts["deleted"] == 1
        assert fake.find_user(email=BOB["email"]) is None
        for _ in range(2):
            before = sum(fake.calls.values())
            again = _apply(fake, tmp_path, _rows(ANN, FLAGGED), whole=whole,
                           delete_behavior="delete")
            assert sum(fake.calls.values()) == before, "a re-run of the same rows made calls"
            assert "deleted" not in again.counts
            assert again.counts["unchanged"] == 2


@pytest.mark.parametrize("whole", [True, False])
def test_a_user_back_from_another_source_is_left_alone(tmp_path: Path, whole: bool) -> None:
    with make_fake(rate_limits={"default": 10000.0}) as fake:
        _apply(fake, tmp_path, _rows(ANN, BOB), whole=True, delete_behavior="delete")
        _apply(fake, tmp_path, _rows(ANN, FLAGGED), whole=whole, delete_behavior="delete")
        # Another system, with its own state, signs Bob up again.
        _apply(fake, tmp_path / "other", _rows({"id": "x1", "email": BOB["email"]}),
               whole=True)
        assert fake.find_user(email=BOB["email"]) is not None
        _apply(fake, tmp_path, _rows(ANN, FLAGGED), whole=whole, delete_behavior="delete")
        assert fake.find_user(email=BOB["email"]) is not None, "the plain sync deleted him"
        # A changed flagged row is acted on as before: its user is deleted.
        changed = _apply(fake, tmp_path, _rows(ANN, {**FLAGGED, "_deleted": "true"}),
                         whole=whole, delete_behavior="delete")
        assert changed.counts["deleted"] == 1
        assert fake.find_user(email=BOB["email"]) is None


def test_an_unflagged_then_reflagged_row_is_deleted_again(tmp_path: Path) -> None:
    with make_fake(rate_limits={"default": 10000.0}) as fake:
        _apply(fake, tmp_path, _rows(ANN, BOB), whole=True, delete_behavior="delete")
        _apply(fake, tmp_path, _rows(ANN, FLAGGED), whole=True, delete_behavior="delete")
        back = _apply(fake, tmp_path, _rows(ANN, BOB), whole=True, delete_behavior="delete")
        assert back.counts["created"] == 1
        again = _apply(fake, tmp_path, _rows(ANN, FLAGGED), whole=True,
                       delete_behavior="delete")
        assert again.counts["deleted"] == 1
        assert fake.find_user(email=BOB["email"]) is None


def test_the_cli_plan_and_sync_agree_the_repeat_is_unchanged(tmp_path: Path) -> None:
    from test_sync_deleted_flag import _cli

    model = tmp_path / "people.csv"
    model.write_text("id,email,_deleted\n1,a@example.com,\n2,b@example.com,\n")
    with make_fake(rate_limits={"default": 10000.0}) as fake:
        assert _cli(fake, tmp_path, str(model)).returncode == 0
        model.write_text("id,email,_deleted\n1,a@example.com,yes\n2,b@example.com,\n")
        assert _cli(fake, tmp_path, str(model)).returncode == 0
        assert fake.find_user(email="a@example.com") is None
        for args in (("--plan",), ()):
            done = _cli(fake, tmp_path, str(model), "--json", *args)
            assert done.returncode == 0, done.stdout + done.stderr
            counts = {k: v for k, v in json.loads(done.stdout)["counts"].items() if v}
            assert counts == {"unchanged": 2}, (args, counts)
        assert fake.calls.get(("DELETE", "user"), 0) == 1
