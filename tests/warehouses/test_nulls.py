"""The nulls policy through every source the CLI reads: a NULL keeps the var by default
(``null_values="keep"``: no call, the state goes on remembering the value) and clears it with
``"clear"``; an empty string is a value (it clears the var) unless a CSV is read with
``empty_as_null``. The sources are read as the CLI reads them (``open_source``) and synced in
process, so each case costs milliseconds; the flags themselves run through the CLI below and in
test_postgres.py; dlt and Singer have their own test (test_hosts_nulls.py)."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from models import vars_of
from test_cli import run

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.runner import RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.columns import empty_as_null
from sailthru_destination.sync.warehouse.sources import Row, open_source
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 100_000.0}
KEY, SECRET = "cli-key", "cli-secret"  # the fake of test_cli


def _write(kind: str, folder: Path, nickname: str | None) -> list[str]:
    """The model (Ann, with ``nickname``) in source ``kind``; the sync arguments to read it."""
    row = {"id": 1, "email": "ann@example.com", "nickname": nickname, "plan": "gold"}
    if kind == "csv":
        path = folder / "people.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            writer.writeheader()
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return [str(path), "--empty-as-null"]
    if kind == "jsonl":
        path = folder / "people.jsonl"
        path.write_text(json.dumps(row) + "\n")
        return [str(path)]
    if kind == "sqlite":
        path = folder / "people.sqlite"
        path.unlink(missing_ok=True)
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE people (id, email, nickname, plan)")
            connection.execute("INSERT INTO people VALUES (?, ?, ?, ?)", tuple(row.values()))
        connection.close()
        return ["--sql", "SELECT * FROM people", "--db", str(path)]
    path = folder / "people.duckdb"
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE TABLE people (id BIGINT, email VARCHAR, nickname VARCHAR, "
                           "plan VARCHAR)")
        connection.execute("INSERT INTO people VALUES (?, ?, ?, ?)", list(row.values()))
    return ["--sql", "SELECT * FROM people", "--db", f"duckdb:///{path}"]


def _sync(fake: FakeSailthru, folder: Path, args: list[str], **settings: Any) -> RunSummary:
    """One run of the model ``args`` name, as the CLI would read it, on the folder's state."""
    if args[0] == "--sql":
        rows: Iterable[Row] = open_source(sql=args[1], db=args[3])
    else:
        rows = open_source(args[0])
    config = SyncConfig(name="people", rate_limits=FAST,
                        empty_as_null="--empty-as-null" in args, **settings)
    if config.empty_as_null:
        rows = empty_as_null(rows)
    app = AppOptions(KEY, SECRET, fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
    options = config.destination_options(lock_dir=str(folder / "locks"))
    with SailthruDestination(app, options, api=api) as dest, \
            SyncState(folder / "state.db") as state:
        summary = SyncRunner(dest, config, state).run(rows)
    assert summary.counts["failed"] == 0
    return summary


KINDS = ["csv", "jsonl", "sqlite", "duckdb"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_null_keeps_the_var_and_costs_no_call_by_default(
    kind: str, fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, _write(kind, tmp_path, "Al"))
    kept = _sync(fake, tmp_path, _write(kind, tmp_path, None))
    assert vars_of(fake, "ann@example.com") == {"nickname": "Al", "plan": "gold"}
    assert kept.total_calls == 0
    # The state still knows Sailthru holds "Al": the value coming back costs nothing either.
    back = _sync(fake, tmp_path, _write(kind, tmp_path, "Al"))
    assert back.total_calls == 0
    # Switching the policy re-reads every row: the kept value is cleared then.
    _sync(fake, tmp_path, _write(kind, tmp_path, None), null_values="clear")
    assert vars_of(fake, "ann@example.com") == {"plan": "gold"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_null_clears_the_var_with_nulls_clear(
    kind: str, fake: FakeSailthru, tmp_path: Path
) -> None:
    _sync(fake, tmp_path, _write(kind, tmp_path, "Al"), null_values="clear")
    _sync(fake, tmp_path, _write(kind, tmp_path, None), null_values="clear")
    assert vars_of(fake, "ann@example.com") == {"plan": "gold"}


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_string_is_a_value_that_clears_the_var_under_keep(
    kind: str, fake: FakeSailthru, tmp_path: Path
) -> None:
    args = [a for a in _write(kind, tmp_path, "Al") if a != "--empty-as-null"]
    _sync(fake, tmp_path, args)
    args = [a for a in _write(kind, tmp_path, "") if a != "--empty-as-null"]
    _sync(fake, tmp_path, args)
    assert vars_of(fake, "ann@example.com") == {"plan": "gold"}


def test_the_flags_through_the_cli_on_a_csv_model(fake: FakeSailthru, tmp_path: Path) -> None:
    args = _write("csv", tmp_path, "Al")
    assert run(tmp_path, fake, "sync", *args).returncode == 0
    args = _write("csv", tmp_path, None)
    kept = run(tmp_path, fake, "sync", *args, "--nulls", "keep")
    assert kept.returncode == 0, kept.stderr
    assert vars_of(fake, "ann@example.com") == {"nickname": "Al", "plan": "gold"}
    cleared = run(tmp_path, fake, "sync", *args, "--nulls", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert vars_of(fake, "ann@example.com") == {"plan": "gold"}


def test_empty_as_null_is_refused_for_a_source_with_real_nulls(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    args = _write("jsonl", tmp_path, "Al")
    done = run(tmp_path, fake, "sync", *args, "--empty-as-null")
    assert done.returncode == 2
    assert "--empty-as-null" in done.stderr
    assert "CSV" in done.stderr



# Each run: the nulls policy and the CSV flags.
_KEEP, _CLEAR, _EMPTY = ("keep", []), ("clear", []), ("keep", ["--empty-as-null"])


@pytest.mark.parametrize(("first", "second"),
                         [(_KEEP, _CLEAR), (_CLEAR, _KEEP), (_KEEP, _EMPTY)])
def test_a_policy_switch_still_sends_a_list_left_in_the_same_run(
    first: tuple[str, list[str]], second: tuple[str, list[str]],
    fake: FakeSailthru, tmp_path: Path,
) -> None:
    # Regression (issue 25): the re-export a policy change causes forgot the old lists, so a
    # list left in that run was never left, and the state believed it done.
    path = tmp_path / "people.csv"
    for groups, (policy, flags) in (("A;B", first), ("A", second)):
        path.write_text(f"id,email,plan,groups\n1,ann@example.com,gold,{groups}\n")
        _sync(fake, tmp_path, [str(path), *flags], null_values=policy)
    user = fake.find_user(email="ann@example.com")
    assert user is not None
    assert sorted(user["lists"]) == ["A"]
    # Nothing is left to do: the next run with the same settings makes no call.
    again = _sync(fake, tmp_path, [str(path), *second[1]], null_values=second[0])
    assert again.total_calls == 0


@pytest.mark.parametrize(("policy", "lists"), [("keep", ["A", "B"]), ("clear", [])])
def test_a_null_groups_value_keeps_the_lists_under_keep_and_leaves_them_under_clear(
    policy: str, lists: list[str], fake: FakeSailthru, tmp_path: Path
) -> None:
    # Regression (issue 25): a NULL groups value was read as no groups under the default
    # keep, which left every list the user was on.
    path = tmp_path / "people.jsonl"
    path.write_text('{"id": 1, "email": "ann@example.com", "groups": ["A", "B"]}\n')
    _sync(fake, tmp_path, [str(path)], null_values=policy)
    path.write_text('{"id": 1, "email": "ann@example.com", "groups": null, "plan": "gold"}\n')
    _sync(fake, tmp_path, [str(path)], null_values=policy)
    user = fake.find_user(email="ann@example.com")
    assert user is not None
    assert sorted(user["lists"]) == lists
    assert user["vars"] == {"plan": "gold"}
    # The state knows what Sailthru holds: the same row again, or its lists back, cost no call.
    assert _sync(fake, tmp_path, [str(path)], null_values=policy).total_calls == 0
    if policy == "keep":
        path.write_text('{"id": 1, "email": "ann@example.com", "groups": ["A", "B"], '
                        '"plan": "gold"}\n')
        assert _sync(fake, tmp_path, [str(path)], null_values=policy).total_calls == 0
