"""Sources: CSV, JSON lines and SQLite rows stream with where they came from."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from sailthru_destination.sync.warehouse import sources
from sailthru_destination.sync.warehouse.sources import SourceError, open_source


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


def test_a_csv_cell_over_the_csv_module_limit_is_read_and_the_next_rows_too(
    tmp_path: Path,
) -> None:
    path = tmp_path / "people.csv"
    big = "x" * 200_000
    path.write_text(
        f'id,email,bio\n1,a@example.com,"{big}\nsecond line"\n2,b@example.com,short\n',
        encoding="utf-8",
    )
    rows = list(open_source(str(path)))
    assert [(r.where, r.data["id"]) for r in rows] == [("line 2", "1"), ("line 4", "2")]
    assert rows[0].data["bio"] == big + "\nsecond line"  # the value rule refuses it later
    assert "__problem__" not in rows[0].data


def test_a_cell_beyond_even_the_raised_limit_fails_its_row_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = csv.field_size_limit()
    monkeypatch.setattr(sources, "MAX_LINE_CHARS", 1000)
    csv.field_size_limit(1000)
    try:
        path = tmp_path / "people.csv"
        path.write_text(
            f"id,email,bio\n1,a@example.com,{'x' * 5000}\n2,b@example.com,short\n",
            encoding="utf-8",
        )
        rows = list(open_source(str(path)))
    finally:
        csv.field_size_limit(previous)
    assert [r.where for r in rows] == ["line 2", "line 3"]
    assert "field larger than field limit" in rows[0].data["__problem__"]
    assert rows[1].data == {"id": "2", "email": "b@example.com", "bio": "short"}


def test_a_csv_header_naming_a_column_twice_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,email,plan,plan\n1,a@example.com,gold,free\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"duplicate column 'plan' \(columns 3 and 4\)"):
        open_source(str(path))


def test_a_csv_row_starting_on_one_line_is_named_by_that_line(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text('id,email,note\n\n1,a@example.com,"two\nlines"\n2,b@example.com,x\n',
                    encoding="utf-8")
    rows = list(open_source(str(path)))
    assert [(r.where, r.data["id"]) for r in rows] == [("line 3", "1"), ("line 5", "2")]


def test_jsonl_lines_too_deep_too_long_or_with_a_repeated_key_fail_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MAX_LINE_CHARS", 150_000)
    path = tmp_path / "people.jsonl"
    lines = [
        "[" * 100_000,
        json.dumps({"id": 2, "bio": "x" * 200_000}),
        '{"id": 3, "email": "a@example.com", "email": "b@example.com"}',
        "1" * 5000,
        json.dumps({"id": 5}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = list(open_source(str(path)))
    assert [r.where for r in rows] == [f"line {n}" for n in range(1, 6)]
    assert "nested too deeply" in rows[0].data["__problem__"]
    assert "longer than 150,000 characters" in rows[1].data["__problem__"]
    assert "'email' appears twice" in rows[2].data["__problem__"]
    assert rows[2].data["id"] == 3  # kept, so the row's key still counts as seen
    assert "not valid JSON" in rows[3].data["__problem__"]
    assert rows[4].data == {"id": 5}


@pytest.mark.parametrize("name", ["prod#2024.db", "a?b.db", "100%.db", "x y.db", "a?mode=rwc.db"])
def test_a_sqlite_path_is_read_as_given_and_read_only(tmp_path: Path, name: str) -> None:
    db = tmp_path / name
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE p (id INTEGER, email TEXT)")
        connection.execute("INSERT INTO p VALUES (1, 'a@example.com')")
    connection.close()
    (row,) = open_source(sql="SELECT id, email FROM p", db=str(db))
    assert row.data == {"id": 1, "email": "a@example.com"}
    with pytest.raises(SourceError, match="readonly"):
        list(open_source(sql="DELETE FROM p RETURNING id", db=str(db)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
