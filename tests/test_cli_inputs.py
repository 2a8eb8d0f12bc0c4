"""Inputs the command line must refuse or survive, run as a user runs it against the fake:
model names that are paths, credentials with stray whitespace, a bad or dead API URL, database
paths with URI characters, a huge cell, a duplicate header, a primary key of only spaces."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import test_cli
from test_cli import people, report_of, run, write_csv

from sailthru_destination.shaping.mapping import MAX_STRING_BYTES
from sailthru_destination.testing import FakeSailthru

fake = test_cli.fake  # the CLI tests' fake (their credentials) is a fixture here too


def _failed_rows(fake: FakeSailthru, cwd: Path, model: Path) -> list[dict[str, Any]]:
    """Sync ``model``, which has bad rows: the errors it reports, by line."""
    result = run(cwd, fake, "sync", str(model))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = (report_of(result, cwd) / "errors.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda e: str(e["where"]))


def _emails(fake: FakeSailthru) -> list[str]:
    return sorted(u["keys"]["email"] for u in fake.users.values())


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "a\\b", ""])
def test_a_name_that_is_a_path_is_refused_before_anything_is_written(
    fake: FakeSailthru, tmp_path: Path, name: str
) -> None:
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    model = write_csv(work / "people.csv", people(2))
    before = _tree(tmp_path)
    result = run(work, fake, "sync", str(model), "--name", name)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--name" in result.stderr
    assert _tree(tmp_path) == before
    assert sum(fake.calls.values()) == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SAILTHRU_API_KEY", " cli-key"),
        ("SAILTHRU_API_SECRET", "cli-secret\n"),
        ("SAILTHRU_API_URL", "{url} "),
    ],
)
def test_whitespace_around_a_credential_is_a_configuration_error_naming_it(
    fake: FakeSailthru, tmp_path: Path, variable: str, value: str
) -> None:
    model = write_csv(tmp_path / "people.csv", people(2))
    result = run(tmp_path, fake, "sync", str(model), env={variable: value.format(url=fake.url)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in result.stderr
    assert "whitespace" in result.stderr
    assert "cli-secret" not in result.stdout + result.stderr
    assert sum(fake.calls.values()) == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("command", ["sync", "import", "test-connection"])
def test_a_refused_connection_on_the_first_call_is_a_configuration_error(
    tmp_path: Path, command: str
) -> None:
    model = write_csv(tmp_path / "people.csv", people(2))
    args = {
        "sync": ["sync", str(model)],
        "import": ["import", "--list", "L", "--out", "m.csv"],
        "test-connection": ["test-connection"],
    }[command]
    url = f"http://127.0.0.1:{_closed_port()}"
    result = run(
        tmp_path,
        None,
        *args,
        env={"SAILTHRU_API_KEY": "k", "SAILTHRU_API_SECRET": "s", "SAILTHRU_API_URL": url},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SAILTHRU_API_URL" in result.stderr
    assert "retried" not in result.stderr
    flag = run(tmp_path, None, *args, "--api-key", "k", "--api-secret", "s", "--api-url", url)
    assert flag.returncode == 2, flag.stdout + flag.stderr
    assert "--api-url" in flag.stderr
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize(
    "url", ["https://exa mple.com", "https://api.sailthru.com:http", "https://[::1", "https://"]
)
def test_a_malformed_api_url_is_a_configuration_error(tmp_path: Path, url: str) -> None:
    model = write_csv(tmp_path / "people.csv", people(2))
    result = run(
        tmp_path,
        None,
        "sync",
        str(model),
        "--api-url",
        url,
        env={"SAILTHRU_API_KEY": "k", "SAILTHRU_API_SECRET": "s"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--api-url" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "file_name", ["prod#2024.sqlite", "a?b.sqlite", "100%.sqlite", "with space.sqlite"]
)
def test_a_database_path_with_uri_characters_is_opened_read_only_as_given(
    fake: FakeSailthru, tmp_path: Path, file_name: str
) -> None:
    db = tmp_path / file_name
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE users (id INTEGER, email TEXT)")
        connection.execute("INSERT INTO users VALUES (1, 'a@example.com')")
    connection.close()
    content = db.read_bytes()
    before = _tree(tmp_path)
    result = run(
        tmp_path,
        fake,
        "sync",
        "--sql",
        "SELECT id, email FROM users",
        "--db",
        file_name,
        "--home",
        "state",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.find_user(email="a@example.com") is not None
    # a write in the query is refused: the model database is only ever read
    write = run(
        tmp_path,
        fake,
        "sync",
        "--sql",
        "INSERT INTO users VALUES (2, 'b@example.com') RETURNING id, email",
        "--db",
        file_name,
        "--home",
        "state",
    )
    assert write.returncode == 2, write.stdout + write.stderr
    assert "readonly" in write.stderr
    assert db.read_bytes() == content
    assert {p for p in _tree(tmp_path) - before if not p.startswith("state")} == set()


def test_a_missing_database_is_never_created(fake: FakeSailthru, tmp_path: Path) -> None:
    result = run(
        tmp_path,
        fake,
        "sync",
        "--sql",
        "SELECT 1 AS id",
        "--db",
        "prod#1.sqlite",
        "--home",
        "state",
    )
    assert result.returncode == 2
    assert "not found" in result.stderr
    assert {p for p in _tree(tmp_path) if not p.startswith("state")} == set()


def test_a_huge_cell_fails_its_row_alone_and_the_other_rows_sync(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = people(3)
    rows[1]["bio"] = "x" * 140_000
    (error,) = _failed_rows(fake, tmp_path, write_csv(tmp_path / "people.csv", rows))
    assert _emails(fake) == ["p1@example.com", "p3@example.com"]
    assert error["where"] == "line 3"
    assert error["field"] == "bio"
    assert f"limited to {MAX_STRING_BYTES} UTF-8 bytes" in error["reason"]


def test_a_duplicate_header_is_a_source_error_naming_the_column(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = tmp_path / "people.csv"
    model.write_text("id,email,plan,plan\n1,a@example.com,gold,free\n", encoding="utf-8")
    result = run(tmp_path, fake, "sync", str(model))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "'plan'" in result.stderr
    assert "duplicate" in result.stderr
    assert sum(fake.calls.values()) == 0


def test_a_primary_key_of_only_spaces_fails_its_row_naming_the_column(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [*people(2), {"id": "   ", "email": "blank@example.com"}]
    (error,) = _failed_rows(fake, tmp_path, write_csv(tmp_path / "people.csv", rows))
    assert (error["where"], error["field"]) == ("line 4", "id")
    assert fake.find_user(email="blank@example.com") is None
    assert len(fake.users) == 2


def test_a_huge_or_deeply_nested_json_line_fails_alone_and_the_other_rows_sync(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = tmp_path / "people.jsonl"
    lines = [
        json.dumps({"id": 1, "email": "p1@example.com"}),
        json.dumps({"id": 2, "email": "p2@example.com", "bio": "x" * 300_000}),
        '{"id": 3, "email": "p3@example.com", "deep": ' + "[" * 50_000 + "]" * 50_000 + "}",
        json.dumps({"id": 4, "email": "p4@example.com"}),
    ]
    model.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = _failed_rows(fake, tmp_path, model)
    assert _emails(fake) == ["p1@example.com", "p4@example.com"]
    assert [(e["where"], e["field"]) for e in errors] == [("line 2", "bio"), ("line 3", "row")]
    assert "nested too deeply" in errors[1]["reason"]
