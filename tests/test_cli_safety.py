"""Safe by default (issue 23): ordinary mistakes at the keyboard stop before any damage.

Column names that do not exist, a truncated model, a state that belongs to another model,
a closed pipe, a scheduler reading ``--json``: each run as a user runs it, against the fake.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import test_cli
from test_cli import people, run, write_csv

from sailthru_destination.testing import FakeSailthru

fake = test_cli.fake  # the CLI tests' fake (their credentials) is a fixture here too


@pytest.mark.parametrize(
    ("flags", "wrong", "meant"),
    [
        (["--columns", "first_nmae"], "first_nmae", "first_name"),
        (["--groups-column", "grups"], "grups", "groups"),
        (["--map", "fist_name=fn"], "fist_name", "first_name"),
        (["--ignore", "nothing_here"], "nothing_here", None),
        (["--primary-key", "ids"], "ids", "id"),
        (["--match-column", "emial"], "emial", "email"),
        (["--optout-column", "optuot"], "optuot", None),
        (["--types", "frist_name=str"], "frist_name", "first_name"),
        (["--plan", "--columns", "first_nmae"], "first_nmae", "first_name"),
    ],
)
def test_a_column_flag_naming_no_column_stops_before_any_call(
    fake: FakeSailthru, tmp_path: Path, flags: list[str], wrong: str, meant: str | None
) -> None:
    model = write_csv(tmp_path / "people.csv", people(3))
    result = run(tmp_path, fake, "sync", str(model), *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no column {wrong!r} (columns: id, email, first_name, groups" in result.stderr
    if meant:
        assert f"did you mean {meant!r}?" in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(fake.calls.values()) == 0
    assert not fake.users


def test_a_config_file_naming_no_column_stops_before_any_call(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(3))
    config = tmp_path / "mapping.json"
    config.write_text(json.dumps({"columns": ["first_name", "emial"],
                                  "deleted_column": "gone"}))
    result = run(tmp_path, fake, "sync", str(model), "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no column 'emial'" in result.stderr
    assert "did you mean 'email'?" in result.stderr
    assert "no column 'gone'" in result.stderr
    assert sum(fake.calls.values()) == 0


def test_a_missing_primary_key_column_stops_before_any_call(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [{"email": r["email"], "first_name": r["first_name"]} for r in people(5)]
    model = write_csv(tmp_path / "people.csv", rows)
    result = run(tmp_path, fake, "sync", str(model))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--primary-key (primary_key): no column 'id' (columns: email, first_name)" in (
        result.stderr)
    assert sum(fake.calls.values()) == 0


def _sync(cwd: Path, fake: FakeSailthru, *args: str) -> subprocess.CompletedProcess[str]:
    return run(cwd, fake, "sync", *args)


def test_a_truncated_model_stops_before_any_delete(fake: FakeSailthru, tmp_path: Path) -> None:
    model = write_csv(tmp_path / "people.csv", people(60))
    first = _sync(tmp_path, fake, str(model))
    assert first.returncode == 0, first.stderr
    write_csv(model, people(10))
    calls = sum(fake.calls.values())
    plan = _sync(tmp_path, fake, str(model), "--delete-behavior", "delete", "--plan")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "REFUSED" in plan.stderr
    assert "would delete 50 of the 60 users" in plan.stderr
    result = _sync(tmp_path, fake, str(model), "--delete-behavior", "delete")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "would delete 50 of the 60 users the state remembers (83%)" in result.stderr
    assert "--max-delete 84%" in result.stderr
    assert "--max-delete 50" in result.stderr
    assert len(fake.users) == 60
    # Only the credential checks were spent.
    assert sum(fake.calls.values()) == calls + 2 * test_cli.AUTH_CHECK
    allowed = _sync(tmp_path, fake, str(model), "--delete-behavior", "delete",
                    "--max-delete", "84%")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert len(fake.users) == 10


def test_the_mass_delete_guard_reads_the_config_file_and_counts_clears(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(40))
    assert _sync(tmp_path, fake, str(model)).returncode == 0
    write_csv(model, people(20))
    config = tmp_path / "mapping.json"
    config.write_text(json.dumps({"delete_behavior": "clear", "max_delete": 15}))
    refused = _sync(tmp_path, fake, str(model), "--config", str(config))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "would clear 20 of the 40 users" in refused.stderr
    config.write_text(json.dumps({"delete_behavior": "clear", "max_delete": 20}))
    allowed = _sync(tmp_path, fake, str(model), "--config", str(config))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "cleared                 20" in allowed.stdout


def _sql_model(tmp_path: Path) -> Path:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER, email TEXT, name TEXT)")
        connection.execute("CREATE TABLE leads (id INTEGER, email TEXT, name TEXT)")
        connection.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                               [(n, f"c{n}@example.com", f"C{n}") for n in range(1, 31)])
        connection.executemany("INSERT INTO leads VALUES (?, ?, ?)",
                               [(n, f"l{n}@example.com", f"L{n}") for n in range(1, 6)])
    connection.close()
    return db


def test_two_sql_models_in_one_folder_never_share_a_state(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    db = _sql_model(tmp_path)
    first = _sync(tmp_path, fake, "--sql", "SELECT id, email, name FROM customers",
                  "--db", str(db))
    assert first.returncode == 0, first.stderr
    before = test_cli.snapshot(fake)
    for extra in ([], ["--plan"], ["--delete-behavior", "nothing"]):
        result = _sync(tmp_path, fake, "--sql", "SELECT * FROM leads", "--db", str(db),
                       *extra)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "belongs to another model" in result.stderr
        assert "FROM customers" in result.stderr
        assert "--name" in result.stderr
        assert "--same-model" in result.stderr
    assert test_cli.snapshot(fake) == before
    # Its own name gives the leads their own state; --same-model takes the state over.
    named = _sync(tmp_path, fake, "--sql", "SELECT * FROM leads", "--db", str(db),
                  "--name", "leads")
    assert named.returncode == 0, named.stderr
    edited = _sync(tmp_path, fake, "--sql", "SELECT id, email, name, 1 AS vip FROM customers",
                   "--db", str(db), "--same-model")
    assert edited.returncode == 0, edited.stderr
    assert "--same-model says" in edited.stderr


def test_a_file_model_moved_to_another_path_is_refused(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_csv(tmp_path / "a" / "people.csv", people(3))
    write_csv(tmp_path / "b" / "people.csv", people(2))
    assert _sync(tmp_path, fake, "a/people.csv").returncode == 0
    other = _sync(tmp_path, fake, "b/people.csv")
    assert other.returncode == 2, other.stdout + other.stderr
    assert "a/people.csv" in other.stderr


def test_a_state_from_an_older_version_adopts_the_model_and_says_so(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(3))
    assert _sync(tmp_path, fake, str(model)).returncode == 0
    state = tmp_path / ".sailthru-sync" / "people.db"
    with sqlite3.connect(state) as connection:
        connection.execute("DELETE FROM meta WHERE key = 'model_identity'")
    connection.close()
    again = _sync(tmp_path, fake, str(model))
    assert again.returncode == 0, again.stderr
    assert "does not say which model it is" in again.stderr
    assert "does not say" not in _sync(tmp_path, fake, str(model)).stderr


def _closed_stdout(cwd: Path, *args: str) -> tuple[int, str]:
    """Run the CLI with a stdout whose reader is gone (``| head`` that has read its lines):
    the exit status and stderr."""
    with subprocess.Popen([*test_cli.COMMAND, *args], cwd=cwd, env=_ENV, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None
        child.stdout.close()
        _, err = child.communicate(timeout=60)
    return child.returncode, err


_ENV: dict[str, str] = {}


@pytest.fixture
def cli_env(fake: FakeSailthru) -> dict[str, str]:
    _ENV.clear()
    _ENV.update(test_cli._env(fake))
    return _ENV


def test_a_closed_stdout_ends_quietly_with_the_run_status_and_the_state_saved(
    fake: FakeSailthru, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    model = write_csv(tmp_path / "people.csv", people(5))
    code, err = _closed_stdout(tmp_path, "sync", str(model))
    assert code == 0, err
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
    calls = sum(fake.calls.values())
    again = _sync(tmp_path, fake, str(model))
    assert again.returncode == 0, again.stderr
    assert sum(fake.calls.values()) == calls + test_cli.AUTH_CHECK  # nothing to send again
    code, err = _closed_stdout(tmp_path, "sync", str(model), "--json")
    assert code == 0, err
    assert "Traceback" not in err


def test_import_to_a_closed_stdout_ends_quietly_with_exit_0(
    fake: FakeSailthru, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    fake.job_polls = 0
    model = write_csv(tmp_path / "people.csv", people(5))
    assert _sync(tmp_path, fake, str(model)).returncode == 0
    code, err = _closed_stdout(tmp_path, "import", "--list", "Newsletter", "--out", "-")
    assert code == 0, err
    assert "nothing was written" not in err
    assert "Traceback" not in err


def test_json_gives_the_report_every_count_the_status_and_the_exit_meaning(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(4))
    result = _sync(tmp_path, fake, str(model), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (tmp_path / document["report"] / "report.html").is_file()
    assert document["status"] == "completed"
    assert document["exit_code"] == 0
    assert document["exit_meaning"] == "every record was done"
    assert document["counts"]["created"] == 4
    for outcome in ("updated", "unchanged", "deleted", "cleared", "kept", "skipped", "failed"):
        assert document["counts"][outcome] == 0
    bad = _sync(tmp_path, fake, str(model), "--json", "--columns", "first_nmae")
    assert bad.returncode == 2
    error = json.loads(bad.stdout)
    assert error["status"] == "error"
    assert error["exit_code"] == 2
    assert "no column 'first_nmae'" in error["error"]


def test_no_state_found_says_where_it_looked_and_how_to_point_at_it(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(4))
    assert _sync(tmp_path, fake, str(model)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for extra in (["--plan"], []):
        result = _sync(elsewhere, fake, str(model), *extra)
        assert result.returncode == 0, result.stderr
        assert "no state found for model 'people' at .sailthru-sync/people.db" in result.stderr
        assert "--home" in result.stderr
        assert "SAILTHRU_SYNC_HOME" in result.stderr
    home = run(elsewhere, fake, "sync", str(model), "--delete-behavior", "delete",
               env={"SAILTHRU_SYNC_HOME": str(tmp_path / ".sailthru-sync")})
    assert home.returncode == 0, home.stderr
    assert "no state found" not in home.stderr
    first = _sync(tmp_path / "elsewhere", fake, str(model), "--name", "fresh",
                  "--delete-behavior", "delete")
    assert "WARNING: --delete-behavior delete on a first run" in first.stderr


def test_a_semicolon_separated_file_is_sniffed_and_said(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = tmp_path / "people.csv"
    model.write_text("id;email;first_name\n1;a@example.com;Ann\n2;b@example.com;Bob\n")
    result = _sync(tmp_path, fake, str(model))
    assert result.returncode == 0, result.stderr
    assert "as ';'-separated" in result.stderr
    assert {u["vars"].get("first_name") for u in fake.users.values()} == {"Ann", "Bob"}
    forced = _sync(tmp_path, fake, str(model), "--delimiter", ",", "--name", "forced")
    assert forced.returncode == 2
    assert "--map" not in forced.stderr
    assert "--delimiter ';'" in forced.stderr


@pytest.mark.parametrize("words", [
    ["sync", "people.csv", "--json", "--delete-behaviour", "delete"],  # a typo in a flag
    ["sync", "people.csv", "--json", "--delimiter"],                   # a value missing
    ["sync", "people.csv", "--json", "--concurrency", "many"],         # a bad value
])
def test_a_flag_argparse_refuses_still_gives_json_its_error_document(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from sailthru_destination.cli import main

    assert main(words) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out)
    assert error["status"] == "error"
    assert error["command"] == "sync"
    assert error["exit_code"] == 2
    assert error["error"] in captured.err
    assert "usage:" in captured.err


def test_a_flag_argparse_refuses_without_json_keeps_stdout_empty(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from sailthru_destination.cli import main

    assert main(["sync", "people.csv", "--delete-behaviour", "delete"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unrecognized arguments: --delete-behaviour" in captured.err
