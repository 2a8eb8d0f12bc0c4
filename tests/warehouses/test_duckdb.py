"""DuckDB through duckdb-engine, the embedded analytic database marts are kept in: the same
typed model as PostgreSQL reaches the fake with the same Sailthru types."""

from __future__ import annotations

from pathlib import Path

import duckdb
from models import ANN_VARS, BO_VARS, count, duckdb_model, unique_table, vars_of
from test_cli import run

from sailthru_destination.testing import FakeSailthru


def _database(tmp_path: Path, table: str) -> str:
    path = tmp_path / "marts.duckdb"
    with duckdb.connect(str(path)) as connection:
        for statement in duckdb_model(table):
            connection.execute(statement)
    return f"duckdb:///{path}"


def test_every_common_type_reaches_sailthru_as_its_sailthru_type(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    table = unique_table()
    db = _database(tmp_path, table)
    sql = f"SELECT * FROM {table} ORDER BY id"
    # DuckDB hands a JSON column over as text: --types reads it as JSON (nested vars).
    done = run(tmp_path, fake, "sync", "--sql", sql, "--db", db, "--types", "prefs=json")
    assert done.returncode == 0, done.stderr + done.stdout
    assert vars_of(fake, "ann@example.com") == {k: v for k, v in ANN_VARS.items() if v != ""}
    assert vars_of(fake, "bo@example.com") == BO_VARS
    again = run(tmp_path, fake, "sync", "--sql", sql, "--db", db, "--types", "prefs=json")
    assert again.returncode == 0, again.stderr
    # Unchanged rows cost no call: the one call is the credentials check before the run.
    assert (count(again.stdout, "unchanged"), count(again.stdout, "API calls")) == (2, 1)


def test_a_missing_table_is_exit_2_naming_it(fake: FakeSailthru, tmp_path: Path) -> None:
    db = _database(tmp_path, unique_table())
    done = run(tmp_path, fake, "sync", "--sql", "SELECT * FROM nowhere", "--db", db)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nowhere" in done.stderr
    assert "Traceback" not in done.stderr
