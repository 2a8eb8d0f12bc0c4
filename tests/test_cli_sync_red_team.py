"""The users sync's defects the outside red team found (``sync``, ``--plan``, ``audit``), each
reproduced as the red team ran it: through the CLI against the fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_cli
from test_cli import run

from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.model import RowProblem, read_user_row
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru

fake = test_cli.fake  # the CLI tests' fake (their credentials) is a fixture here too


def _summary(stdout: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(stdout)
    return loaded


def _counts(stdout: str) -> dict[str, int]:
    counts = _summary(stdout)["counts"]
    assert isinstance(counts, dict)
    return {name: n for name, n in counts.items() if n}


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("how", ["flags", "config"])
def test_a_plan_reads_the_columns_map_and_types_make_as_the_sync_does(
    fake: FakeSailthru, tmp_path: Path, how: str
) -> None:
    if how == "flags":
        flags: tuple[str, ...] = ("--map", "last-name=last_name", "--types", "age=int")
    else:
        (tmp_path / "c.json").write_text(json.dumps(
            {"map": {"last-name": "last_name"}, "types": {"age": "int"}}))
        flags = ("--config", "c.json")
    model = tmp_path / "p.csv"
    model.write_text("id,email,last-name,age\n1,a@example.com,L,30\n")
    planned = run(tmp_path, fake, "sync", "p.csv", "--plan", "--json", *flags)
    assert planned.returncode == 0, planned.stderr
    assert _counts(planned.stdout) == {"created": 1}
    synced = run(tmp_path, fake, "sync", "p.csv", "--json", *flags)
    assert _counts(synced.stdout) == {"created": 1}
    user = fake.find_user(email="a@example.com")
    assert user is not None
    assert user["vars"] == {"last_name": "L", "age": 30}
    model.write_text("id,email,last-name,age\n1,a@example.com,L,31\n")
    planned = run(tmp_path, fake, "sync", "p.csv", "--plan", "--json", *flags)
    assert _counts(planned.stdout) == {"updated": 1}, planned.stdout
    entries = _lines(tmp_path / str(_summary(planned.stdout)["plan"]))
    assert [e["set"] for e in entries] == [{"age": 31}]
    synced = run(tmp_path, fake, "sync", "p.csv", "--json", *flags)
    assert _counts(synced.stdout) == {"updated": 1}
    audited = run(tmp_path, fake, "audit", "p.csv", "--json", *flags)
    assert audited.returncode == 0, audited.stdout + audited.stderr


@pytest.mark.parametrize("blank", ["", "  ", "\t"])
def test_a_blank_opt_out_cell_reads_like_an_empty_one(blank: str) -> None:
    config = SyncConfig(optout_column="oo")
    empty = read_user_row(Row("line 2", {"id": "1", "email": "a@x.com", "oo": ""}), config, "1")
    row = read_user_row(Row("line 2", {"id": "1", "email": "a@x.com", "oo": blank}), config, "1")
    assert row.optout is None
    assert row == empty


def test_an_unknown_opt_out_level_is_quoted_as_the_cell_holds_it() -> None:
    config = SyncConfig(optout_column="oo")
    with pytest.raises(RowProblem) as caught:
        read_user_row(Row("line 2", {"id": "1", "email": "a@x.com", "oo": " nope "}), config, "1")
    assert caught.value.field == "oo"
    assert "got ' nope '" in str(caught.value)
    level = read_user_row(Row("line 2", {"id": "1", "email": "a@x.com", "oo": " basic "}),
                          config, "1")
    assert level.optout == "basic"


def test_a_model_whose_rows_are_all_marked_deleted_meets_the_mass_delete_guard_not_the_empty_one(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    header = "id,email,name,gone\n"
    model = tmp_path / "p.csv"
    (tmp_path / "c.json").write_text('{"deleted_column": "gone"}')
    flags = ("--config", "c.json", "--delete-behavior", "delete")
    model.write_text(header + "".join(f"{i},u{i}@x.com,n,0\n" for i in range(12)))
    assert run(tmp_path, fake, "sync", "p.csv", *flags).returncode == 0
    model.write_text(header + "".join(f"{i},u{i}@x.com,n,1\n" for i in range(12)))
    refused = run(tmp_path, fake, "sync", "p.csv", *flags)
    assert refused.returncode == 2
    assert "no rows" not in refused.stderr
    assert "would delete 12 of the 12 users" in refused.stderr
    assert len(fake.users) == 12
    allowed = run(tmp_path, fake, "sync", "p.csv", *flags, "--max-delete", "100%", "--json")
    assert _counts(allowed.stdout) == {"deleted": 12}
    assert not fake.users


@pytest.mark.parametrize("behavior", ["delete", "clear", "nothing"])
def test_a_row_whose_extid_changes_and_email_stays_renames_its_user_as_planned(
    fake: FakeSailthru, tmp_path: Path, behavior: str
) -> None:
    # Before: the plan said "create E2, delete E1" and every sync failed the row with a key
    # conflict (the email belongs to E1's user), never retried.
    flags = ("--match-column", "extid", "--match-key", "extid", "--delete-behavior", behavior)
    model = tmp_path / "p.csv"
    model.write_text("id,extid,email,n\n1,E1,a@x.com,A\n")
    assert run(tmp_path, fake, "sync", "p.csv", *flags).returncode == 0
    model.write_text("id,extid,email,n\n1,E2,A@x.com,B\n")
    planned = run(tmp_path, fake, "sync", "p.csv", "--plan", "--json", *flags)
    assert planned.returncode == 0, planned.stderr
    entries = _lines(tmp_path / str(_summary(planned.stdout)["plan"]))
    assert [(e["user"], e["action"], e.get("renamed_from")) for e in entries] == [
        ("E2", "update", "E1")]
    synced = run(tmp_path, fake, "sync", "p.csv", "--json", *flags)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert _counts(synced.stdout) == _counts(planned.stdout) == {"updated": 1}
    [user] = fake.users.values()
    assert (user["keys"]["extid"], user["keys"]["email"], user["vars"]) == (
        "E2", "a@x.com", {"n": "B"})
    again = run(tmp_path, fake, "sync", "p.csv", "--json", *flags)
    assert _counts(again.stdout) == {"unchanged": 1}
    assert run(tmp_path, fake, "audit", "p.csv", *flags).returncode == 0
