"""A deleted flag is read strictly: what means "no value" never deletes anyone.

Every way a warehouse or a file writes "nothing" (``NULL``, ``\\N``, ``None``, ``null``,
``nil``, ``NaN``, ``off``, ``0.0``...) fails its row, naming the row, the column and the
value; the user is neither deleted nor exported. Checked on every path that reads the
flag: the runner's whole-model run and its ``apply`` (dlt, Singer), and the CLI on CSV,
JSON lines and SQL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, make_fake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sync_deleted import _apply
from test_sync_runner import ANN, BOB, _rows

from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.model import RowProblem, is_deleted
from sailthru_destination.sync.runner import RecordFailure
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru

NOTHING = ("NULL", "\\N", "None", "null", "nil", "NaN", "off", "0.0", "1.0", "2", "-1",
           "N/A", "undefined", "on", "y", "t", "deleted")
ACCEPTED = {"true", "1", "yes", "false", "0", "no", ""}
CONFIG = SyncConfig(deleted_column="_deleted")


def _read(value: Any) -> bool:
    return is_deleted(Row("line 2", {"id": 1, "_deleted": value}), CONFIG)


@given(st.sampled_from(NOTHING).flatmap(
    lambda word: st.sampled_from((word, word.lower(), word.upper(), f" {word}\t"))))
def test_nothing_spellings_fail_the_row_naming_column_and_value(word: str) -> None:
    with pytest.raises(RowProblem) as caught:
        _read(word)
    assert caught.value.field == "_deleted"
    assert repr(word) in caught.value.reason


@given(st.text(max_size=12).filter(lambda t: t.strip().lower() not in ACCEPTED))
def test_any_other_text_fails_unless_it_is_a_date_time(text: str) -> None:
    if text.strip()[:4].isdigit() and len(text.strip()) >= 16:
        return  # may be a "deleted at" stamp: test_what_deletes_a_row has those
    with pytest.raises(RowProblem) as caught:
        _read(text)
    assert caught.value.field == "_deleted"


@given(st.one_of(st.floats(allow_nan=True), st.integers().filter(lambda n: n not in (0, 1)),
                 st.lists(st.booleans(), max_size=2), st.dictionaries(st.text(), st.booleans(),
                                                                      max_size=1)))
def test_values_of_other_types_fail(value: Any) -> None:
    with pytest.raises(RowProblem):
        _read(value)


NOT_DELETED: tuple[Any, ...] = (None, False, 0, "", "   ", "false", "0", "no", " No ", "FALSE")
DELETED: tuple[Any, ...] = (True, 1, "true", "1", "yes", " YES ", "2026-01-02T00:00:00Z")


@pytest.mark.parametrize("value", NOT_DELETED)
def test_what_keeps_a_row(value: Any) -> None:
    assert _read(value) is False


@pytest.mark.parametrize("value", DELETED)
def test_what_deletes_a_row(value: Any) -> None:
    assert _read(value) is True


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(word=st.sampled_from(NOTHING), whole=st.booleans())
def test_a_row_with_a_nothing_flag_is_a_failed_record_and_its_user_is_untouched(
    tmp_path_factory: pytest.TempPathFactory, word: str, whole: bool
) -> None:
    folder = tmp_path_factory.mktemp("flag")
    with make_fake(rate_limits={"default": 10000.0}) as fake:
        _apply(fake, folder, _rows(ANN, BOB), whole=True, delete_behavior="delete")
        before = fake.find_user(email=BOB["email"])
        failures: list[RecordFailure] = []
        # Bob's row changes its plan and carries a flag that is neither yes nor no.
        summary = _apply(fake, folder, _rows(ANN, {**BOB, "plan": "gold", "_deleted": word}),
                         whole=whole, delete_behavior="delete", failures=failures)
        after = fake.find_user(email=BOB["email"])
        assert after is not None, f"{word!r} deleted the user"
        assert after["vars"] == before["vars"], "a row with a bad flag was exported"
        assert [(f.record, f.field) for f in failures] == [("2", "_deleted")]
        assert repr(word) in failures[0].reason
        assert summary.counts["failed"] == 1
        assert "deleted" not in summary.counts
        # Fixed in the model, the row applies as usual.
        fixed = _apply(fake, folder, _rows(ANN, {**BOB, "plan": "gold", "_deleted": "no"}),
                       whole=whole, delete_behavior="delete")
        assert fixed.counts["updated"] == 1
        assert fake.find_user(email=BOB["email"])["vars"]["plan"] == "gold"


def _cli(fake: FakeSailthru, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from test_cli import COMMAND

    config = cwd / "mapping.json"
    config.write_text(json.dumps({"deleted_column": "_deleted", "delete_behavior": "delete"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
    env.update(SAILTHRU_API_KEY=KEY, SAILTHRU_API_SECRET=SECRET, SAILTHRU_API_URL=fake.url)
    return subprocess.run([*COMMAND, "sync", *args, "--config", str(config)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def _errors(cwd: Path) -> list[dict[str, Any]]:
    found = sorted(cwd.glob(".sailthru-sync/reports/*/errors.jsonl"))
    return [json.loads(line) for line in found[-1].read_text().splitlines()]


@pytest.mark.parametrize("source", ["csv", "jsonl", "sql"])
def test_the_cli_never_deletes_on_a_nothing_flag(
    fake: FakeSailthru, tmp_path: Path, source: str
) -> None:
    rows = [("1", "a@example.com", ""), ("2", "b@example.com", "")]
    marked = [("1", "a@example.com", "NULL"), ("2", "b@example.com", "\\N")]
    for model in (rows, marked):
        if source == "csv":
            path = tmp_path / "people.csv"
            path.write_text("id,email,_deleted\n" + "".join(f"{i},{e},{d}\n" for i, e, d in model))
            args = [str(path)]
        elif source == "jsonl":
            path = tmp_path / "people.jsonl"
            path.write_text("".join(json.dumps({"id": i, "email": e, "_deleted": d}) + "\n"
                                    for i, e, d in model))
            args = [str(path)]
        else:
            path = tmp_path / "model.db"
            path.unlink(missing_ok=True)
            with sqlite3.connect(path) as db:
                db.execute("CREATE TABLE people (id TEXT, email TEXT, _deleted TEXT)")
                db.executemany("INSERT INTO people VALUES (?, ?, ?)", model)
            db.close()
            args = ["--sql", "SELECT * FROM people", "--db", str(path), "--name", "people"]
        done = _cli(fake, tmp_path, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert fake.find_user(email="a@example.com") is not None
    assert fake.find_user(email="b@example.com") is not None
    errors = _errors(tmp_path)
    assert sorted(e["record"] for e in errors) == ["1", "2"], errors
    assert all(e["field"] == "_deleted" for e in errors), errors
