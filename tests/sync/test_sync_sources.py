"""Sources: CSV, JSON lines and SQLite rows stream with where they came from."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sailthru_destination.sync.sources import SourceError, open_source


def test_csv_rows_carry_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,email\n1,a@example.com\n2,b@example.com\n", encoding="utf-8")
    rows = list(open_source(str(path)))
    assert [(r.where, r.data["email"]) for r in rows] == [
        ("line 2", "a@example.com"), ("line 3", "b@example.com")]


def test_csv_row_with_too_many_values_is_flagged_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,email\n1,a@example.com,extra\n", encoding="utf-8")
    (row,) = open_source(str(path))
    assert "more value(s) than columns" in row.data["__problem__"]


def test_jsonl_bad_line_becomes_a_row_problem(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    path.write_text('{"id": 1}\nnot json\n[1]\n\n', encoding="utf-8")
    rows = list(open_source(str(path)))
    assert rows[0].data == {"id": 1}
    assert "not valid JSON" in rows[1].data["__problem__"]
    assert "JSON object" in rows[2].data["__problem__"]


def test_sqlite_query_rows_by_path_or_url(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE p (id INTEGER, email TEXT)")
        connection.execute("INSERT INTO p VALUES (1, 'a@example.com')")
    for where in (str(db), f"sqlite:///{db}"):
        (row,) = open_source(sql="SELECT id, email FROM p", db=where)
        assert row.data == {"id": 1, "email": "a@example.com"}


def test_other_databases_go_through_sqlalchemy_urls(tmp_path: Path) -> None:
    # "sqlite+pysqlite://" is not the built-in sqlite3 shortcut: it takes the SQLAlchemy path.
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE p (id INTEGER, email TEXT, score REAL)")
        connection.executemany(
            "INSERT INTO p VALUES (?, ?, ?)", [(1, "a@example.com", 1.5), (2, "b@example.com", 2)]
        )
    rows = list(open_source(sql="SELECT * FROM p ORDER BY id", db=f"sqlite+pysqlite:///{db}"))
    assert [row.data for row in rows] == [
        {"id": 1, "email": "a@example.com", "score": 1.5},
        {"id": 2, "email": "b@example.com", "score": 2.0},
    ]
    assert [row.where for row in rows] == ["row 1", "row 2"]
    with pytest.raises(SourceError, match="query failed"):
        open_source(sql="SELECT * FROM nowhere", db=f"sqlite+pysqlite:///{db}")


def test_unusable_sources_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "m.xlsx").write_text("x", encoding="utf-8")
    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "missing.csv"))
    with pytest.raises(SourceError, match="cannot tell the format"):
        open_source(str(tmp_path / "m.xlsx"))
    with pytest.raises(SourceError, match="needs --db"):
        open_source(sql="SELECT 1")
    db = tmp_path / "e.db"
    sqlite3.connect(db).close()
    with pytest.raises(SourceError, match="query failed"):
        open_source(sql="SELECT * FROM nowhere", db=str(db))
