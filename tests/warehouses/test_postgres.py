"""A real PostgreSQL 15 through psycopg 3 and SQLAlchemy: every common type reaches the fake
as its Sailthru type, the result streams through a server-side cursor, and a bad query, a
missing table or a refused password is a clear exit 2 that never shows the password."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest
from models import ANN_VARS, BO_VARS, count, postgres_model, unique_table, vars_of
from pg_cluster import PASSWORD, PostgresCluster
from test_cli import COMMAND, _env, run

from sailthru_destination.sync.warehouse.sources import SourceError, open_source
from sailthru_destination.testing import FakeSailthru


def _sync(tmp_path: Path, fake: FakeSailthru, sql: str, db: str, *flags: str):  # type: ignore[no-untyped-def]
    return run(tmp_path, fake, "sync", "--sql", sql, "--db", db, "--name", "pg", *flags)


def test_every_common_type_reaches_sailthru_as_its_sailthru_type(
    postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    table = unique_table()
    postgres.execute(*postgres_model(table))
    done = _sync(tmp_path, fake, f"SELECT * FROM {table} ORDER BY id", postgres.url())
    assert done.returncode == 0, done.stderr + done.stdout
    assert vars_of(fake, "ann@example.com") == {k: v for k, v in ANN_VARS.items() if v != ""}
    assert vars_of(fake, "bo@example.com") == BO_VARS
    ann = fake.find_user(email="ann@example.com")
    assert ann is not None
    assert set(ann["lists"]) == {"Newsletter", "VIP"}
    again = _sync(tmp_path, fake, f"SELECT * FROM {table} ORDER BY id", postgres.url())
    assert again.returncode == 0, again.stderr
    # Unchanged rows cost no call: the one call is the credentials check before the run.
    assert (count(again.stdout, "unchanged"), count(again.stdout, "API calls")) == (2, 1)


def test_a_null_keeps_the_var_by_default_and_clears_it_with_nulls_clear(
    postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    table = unique_table()
    postgres.execute(*postgres_model(table))
    sql, db = f"SELECT id, email, nickname FROM {table}", postgres.url()
    assert _sync(tmp_path, fake, sql, db).returncode == 0
    postgres.execute(f"UPDATE {table} SET nickname = NULL")
    kept = _sync(tmp_path, fake, sql, db)
    assert kept.returncode == 0, kept.stderr
    assert vars_of(fake, "ann@example.com") == {"nickname": "Al"}
    # A NULL costs no call (the one call is the credentials check before the run).
    assert (count(kept.stdout, "updated"), count(kept.stdout, "API calls")) == (0, 1)
    cleared = _sync(tmp_path, fake, sql, db, "--nulls", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert vars_of(fake, "ann@example.com") == {}


def test_the_result_streams_through_a_server_side_cursor(postgres: PostgresCluster) -> None:
    rows = open_source(sql="SELECT n AS id FROM generate_series(1, 5000) AS n",
                       db=postgres.url())
    first = next(iter(rows))
    assert first.data == {"id": 1}
    # While the first row is read, the server is still fetching the rest in batches: a
    # buffered result would have run the whole SELECT and left the connection idle.
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="postgres",
                         password=PASSWORD, dbname="postgres") as watcher:
        queries = [q for (q,) in watcher.execute(
            "SELECT query FROM pg_stat_activity WHERE query LIKE 'FETCH FORWARD%'")]
    assert queries, "no server-side cursor was open"
    assert sum(1 for _ in rows) == 4999


def test_a_sigterm_while_the_query_runs_is_an_interrupt(
    postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    # Regression (issue 25): SIGTERM was turned into an interrupt only around the sending;
    # during the query (before any row is read) the process died of the signal.
    sql = "SELECT 1 AS id, 'ann@example.com' AS email, pg_sleep(30)::text AS s"
    process = subprocess.Popen(
        [*COMMAND, "sync", "--sql", sql, "--db", postgres.url(), "--name", "slow"],
        cwd=tmp_path, env=_env(fake), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with psycopg.connect(host="127.0.0.1", port=postgres.port, user="postgres",
                             password=PASSWORD, dbname="postgres", autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not watcher.execute("SELECT 1 FROM pg_stat_activity "
                                      "WHERE wait_event = 'PgSleep'").fetchone():
                assert time.monotonic() < deadline, "the query never started"
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    # 130 as for Ctrl-C (143 once SIGTERM gets its own exit code): never -SIGTERM.
    assert process.returncode in (130, 143), stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert fake.users == {}


def test_bad_sql_is_exit_2_naming_the_error(
    postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    done = _sync(tmp_path, fake, "SELEC id FROM nowhere", postgres.url())
    assert done.returncode == 2, done.stdout + done.stderr
    assert 'syntax error at or near "SELEC"' in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_table_is_exit_2_naming_the_table(
    postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    done = _sync(tmp_path, fake, "SELECT * FROM no_such_table", postgres.url())
    assert done.returncode == 2, done.stdout + done.stderr
    assert 'relation "no_such_table" does not exist' in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


def test_a_refused_password_is_exit_2_and_the_password_is_never_shown(
    postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    wrong = "Wrong-Pass-9981"
    done = _sync(tmp_path, fake, "SELECT 1 AS id", postgres.url(password=wrong))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "password authentication failed" in done.stderr
    assert "postgres:***@127.0.0.1" in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert fake.users == {}  # stopped before anything was sent


@pytest.mark.parametrize("query", ["user=postgres&password={}",
                                   "sslmode=require&sslpassword={}&password=" + PASSWORD])
def test_a_secret_in_the_query_string_is_never_shown(
    query: str, postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    # Regression (issue 25): only the user:password@ part was hidden; a password given as a
    # query parameter was printed in clear in the error and under --json.
    secret = "Query-Secret-4242"
    db = f"postgresql+psycopg://127.0.0.1:{postgres.port}/postgres?" + query.format(secret)
    for flags in ((), ("--json",)):
        done = _sync(tmp_path, fake, "SELECT 1 AS id", db, *flags)
        assert done.returncode == 2, done.stdout + done.stderr
        assert secret not in done.stdout + done.stderr
        assert PASSWORD not in done.stdout + done.stderr
        assert "password=***" in done.stdout + done.stderr


_AS_WRITTEN = ("""SELECT 1 AS id, 'ann@example.com' AS email, '{"p":1}'::jsonb AS j, """
               """'ratio :high' AS note, '10:30' AS t, '50%' AS pct, '%s %(x)s' AS fmt""")


def test_a_query_runs_as_written_colons_and_percents_included(
    postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    # Regression (issue 25): SQLAlchemy's text() read ":1", ":high" and ":30" as bind
    # parameters and refused valid SQL ("A value is required for bind parameter").
    done = _sync(tmp_path, fake, _AS_WRITTEN, postgres.url())
    assert done.returncode == 0, done.stdout + done.stderr
    assert vars_of(fake, "ann@example.com") == {
        "j_p": 1, "note": "ratio :high", "t": "10:30", "pct": "50%", "fmt": "%s %(x)s"}
    duckdb_rows = open_source(sql="""SELECT 1 AS id, '{"p":1}'::json AS j, 'a :tag' AS note""",
                              db=f"duckdb:///{tmp_path / 'as_written.duckdb'}")
    assert [row.data for row in duckdb_rows] == [{"id": 1, "j": {"p": 1}, "note": "a :tag"}]


def test_a_date_python_cannot_hold_fails_its_row_naming_the_column(
    postgres: PostgresCluster, fake: FakeSailthru, tmp_path: Path
) -> None:
    # Regression (issue 25): psycopg raised DataError for 'infinity' (or a year past 9999)
    # while fetching: a traceback, exit 1, and nothing sent.
    table = unique_table()
    postgres.execute(f"CREATE TABLE {table} (id int, email text, seen timestamptz, born date)",
                     f"INSERT INTO {table} VALUES (1, 'ann@example.com', '2024-01-01', "
                     "'2000-01-01'), (2, 'bo@example.com', 'infinity', '2000-01-01'), "
                     "(3, 'cy@example.com', '2024-01-01', '12000-01-01')")
    done = _sync(tmp_path, fake, f"SELECT * FROM {table} ORDER BY id", postgres.url())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert vars_of(fake, "ann@example.com") == {"seen": "2024-01-01T00:00:00+00:00",
                                                "born": "2000-01-01"}
    assert fake.find_user(email="bo@example.com") is None
    errors = [json.loads(line) for path in tmp_path.rglob("errors.jsonl")
              for line in path.read_text().splitlines()]
    assert sorted((e["record"], e["field"]) for e in errors) == [("2", "seen"), ("3", "born")]
    assert all("9999" in e["reason"] for e in errors), errors


def test_a_query_killed_midway_is_not_a_silent_short_model(postgres: PostgresCluster) -> None:
    # The stream must end loudly, never as if the model had ended: a short model would make
    # the remaining users look gone.
    rows = iter(open_source(sql="SELECT n AS id FROM generate_series(1, 200000) AS n",
                            db=postgres.url()))
    next(rows)
    killer = threading.Thread(target=postgres.execute, args=(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE query LIKE 'FETCH FORWARD%'",))
    killer.start()
    killer.join()
    # Regression (issue 25): the driver's AdminShutdown escaped as a traceback (exit 1); it is
    # a SourceError, which the CLI shows in one line with exit 2.
    with pytest.raises(SourceError, match="terminating connection") as info:
        for _ in rows:
            pass
    assert PASSWORD not in str(info.value)
    assert "\n" not in str(info.value)
