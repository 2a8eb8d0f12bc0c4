"""The command line, run as a user runs it: the installed console script against the fake."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.testing import FakeSailthru

FAST = {"default": 10000.0}
AUTH_CHECK = 1  # every sync and import first makes one signed call to check the credentials
SCRIPT = Path(sys.executable).with_name("sailthru-destination")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sailthru_destination"]


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST) as running:
        yield running


def _env(fake: FakeSailthru | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
    if fake is not None:
        env.update(
            SAILTHRU_API_KEY="cli-key", SAILTHRU_API_SECRET="cli-secret", SAILTHRU_API_URL=fake.url
        )
    return env


def run(
    cwd: Path, fake: FakeSailthru | None, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI's result; ``env`` adds to (or overrides) the fake's credentials."""
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        env=_env(fake) | dict(env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    names = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path


def people(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": n,
            "email": f"p{n}@example.com",
            "first_name": f"P{n}",
            "groups": "Newsletter;VIP" if n % 2 else "Newsletter",
            **extra,
        }
        for n in range(1, count + 1)
    ]


def snapshot(fake: FakeSailthru) -> dict[str, Any]:
    return {u["keys"]["email"]: (u["vars"], sorted(u["lists"])) for u in fake.users.values()}


def report_of(result: subprocess.CompletedProcess[str], cwd: Path) -> Path:
    line = next(x for x in result.stdout.splitlines() if x.startswith("Report: "))
    return cwd / line.removeprefix("Report: ")


def test_demo_runs_end_to_end_and_prints_what_happened(tmp_path: Path) -> None:
    result = run(tmp_path, None, "demo", "--rows", "60")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "First sync" in out
    assert "Second sync" in out
    assert "created                 60" in out
    assert "A third sync with no change made 0 API calls" in out
    assert "sending the events and orders again made 0" in out
    assert "duplicate lists: 0" in out


def test_sync_twice_makes_zero_calls_the_second_time(fake: FakeSailthru, tmp_path: Path) -> None:
    model = write_csv(tmp_path / "people.csv", people(20))
    first = run(tmp_path, fake, "sync", str(model))
    assert first.returncode == 0, first.stderr
    assert fake.calls[("POST", "user")] == 20
    assert len(fake.users) == 20
    calls = sum(fake.calls.values())
    second = run(tmp_path, fake, "sync", str(model))
    assert second.returncode == 0, second.stderr
    # One call only: the authentication check made before any work (GET of no such user).
    assert sum(fake.calls.values()) == calls + AUTH_CHECK
    assert "unchanged               20" in second.stdout
    assert (tmp_path / ".sailthru-sync" / "people.db").is_file()
    summary = json.loads((report_of(first, tmp_path) / "summary.json").read_text())
    assert summary["counts"] == {"created": 20}
    calls_log = (report_of(first, tmp_path) / "calls.jsonl").read_text()
    assert calls_log.count("\n") == summary["api_calls"]
    assert "cli-secret" not in calls_log
    assert "cli-secret" not in first.stdout + first.stderr
    assert '"sig"' not in calls_log


def test_changed_and_removed_rows_cost_exactly_their_calls(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = people(10)
    model = write_csv(tmp_path / "people.csv", rows)
    assert run(tmp_path, fake, "sync", str(model), "--delete-behavior", "delete").returncode == 0
    before = fake.calls.copy()
    rows[0]["first_name"] = "Changed"
    rows[1]["groups"] = "VIP"
    write_csv(model, rows[:9])  # p10 removed
    result = run(tmp_path, fake, "sync", str(model), "--delete-behavior", "delete")
    assert result.returncode == 0, result.stderr
    made = fake.calls - before
    assert made[("POST", "user")] == 2
    assert made[("DELETE", "user")] == 1
    # the delete is verified (gone, and still gone 1 s later), after the authentication check
    assert made[("GET", "user")] == 2 + AUTH_CHECK
    assert made[("POST", "list")] == 0
    assert fake.find_user(email="p10@example.com") is None
    assert fake.find_user(email="p1@example.com")["vars"]["first_name"] == "Changed"
    assert sorted(fake.find_user(email="p2@example.com")["lists"]) == ["VIP"]


def test_killed_run_resumes_to_the_same_state_as_a_clean_run(tmp_path: Path) -> None:
    rows = people(150)
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST) as clean:
        model = write_csv(tmp_path / "clean.csv", rows)
        assert run(tmp_path, clean, "sync", str(model), "--name", "clean").returncode == 0
        expected = snapshot(clean)
    with FakeSailthru(
        api_key="cli-key", api_secret="cli-secret", rate_limits=FAST, latency=0.01
    ) as fake:
        model = write_csv(tmp_path / "people.csv", rows)
        process = subprocess.Popen(
            [*COMMAND, "sync", str(model), "--concurrency", "2", "--bulk", "never"],
            cwd=tmp_path,
            env=_env(fake),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while fake.calls[("POST", "user")] < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        first_posts = fake.calls[("POST", "user")]
        assert 50 <= first_posts < 150
        with sqlite3.connect(tmp_path / ".sailthru-sync" / "people.db") as state:
            confirmed = {f"p{pk}@example.com" for (pk,) in state.execute("SELECT pk FROM records")}
        result = run(tmp_path, fake, "sync", str(model))
        assert result.returncode == 0, result.stderr
        assert snapshot(fake) == expected
        # exactly the records the killed run had not confirmed are sent again (each once,
        # retries of one record aside), read from the resumed run's own call log
        reports = (tmp_path / ".sailthru-sync" / "reports").glob("people-*")
        report = max(reports, key=lambda folder: folder.stat().st_mtime)
        calls = [json.loads(line) for line in (report / "calls.jsonl").read_text().splitlines()]
        posts = [c for c in calls if (c["method"], c["endpoint"]) == ("POST", "user")]
        resent = {c["payload"]["id"] for c in posts}
        assert resent == {row["email"] for row in rows} - confirmed
        assert len({item["name"] for item in fake.lists}) == len(fake.lists)


def test_bulk_path_uses_a_job_and_ends_in_the_per_user_state(tmp_path: Path) -> None:
    rows = people(40)
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST) as per_user:
        model = write_csv(tmp_path / "a.csv", rows)
        assert run(tmp_path, per_user, "sync", str(model), "--bulk", "never").returncode == 0
        expected = snapshot(per_user)
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST) as bulk:
        model = write_csv(tmp_path / "b.csv", rows)
        result = run(tmp_path, bulk, "sync", str(model), "--bulk", "auto", "--bulk-threshold", "30")
        assert result.returncode == 0, result.stderr
        assert "bulk, 1 job(s)" in result.stdout
        assert bulk.calls[("POST", "user")] == 0
        assert [job["name"] for job in bulk.jobs] == ["Bulk Update"]
        assert snapshot(bulk) == expected


def test_bad_config_is_a_usage_error_with_a_clear_message(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(2))
    config = tmp_path / "sync.json"
    config.write_text('{"primary_column": "id"}', encoding="utf-8")
    result = run(tmp_path, fake, "sync", str(model), "--config", str(config))
    assert result.returncode == 2
    assert "unknown setting(s)" in result.stderr
    assert "primary_column" in result.stderr
    missing = run(tmp_path, None, "sync", str(model))
    assert missing.returncode == 2
    assert "missing API key and API secret" in missing.stderr
    no_file = run(tmp_path, fake, "sync", "nowhere.csv")
    assert (no_file.returncode, "source file not found" in no_file.stderr) == (2, True)
    plain = subprocess.run(
        [*COMMAND, "sync", str(model)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=_env(fake) | {"SAILTHRU_API_URL": "http://example.com"},
    )
    assert plain.returncode == 2
    assert "plain http" in plain.stderr
    assert fake.calls[("POST", "user")] == 0


def test_bad_rows_are_reported_one_by_one_with_exit_code_1(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [
        *people(3),
        {"id": "", "email": "x@example.com"},
        {"id": 5, "email": "not an email"},
        {"id": 1, "email": "dup@example.com"},
    ]
    model = write_csv(tmp_path / "people.csv", rows)
    result = run(tmp_path, fake, "sync", str(model))
    assert result.returncode == 1
    assert "3 record(s) failed" in result.stdout
    lines = (report_of(result, tmp_path) / "errors.jsonl").read_text().splitlines()
    errors = [json.loads(line) for line in lines]
    by_line = {e["where"]: e for e in errors}
    assert by_line["line 5"]["field"] == "id"
    assert "not a valid email" in by_line["line 6"]["reason"]
    assert "duplicate primary key" in by_line["line 7"]["reason"]
    assert len(fake.users) == 3


def test_sql_source_reads_a_sqlite_query(fake: FakeSailthru, tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE users (user_id INTEGER, mail TEXT, ltv REAL)")
        connection.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            [(1, "a@example.com", 10.5), (2, "b@example.com", 0.0)],
        )
    result = run(
        tmp_path,
        fake,
        "sync",
        "--sql",
        "SELECT user_id AS id, mail AS email, ltv FROM users",
        "--db",
        str(db),
    )
    assert result.returncode == 0, result.stderr
    assert fake.find_user(email="a@example.com")["vars"] == {"ltv": 10.5}
    assert (tmp_path / ".sailthru-sync" / "sql.db").is_file()


def test_test_connection_prints_each_check_and_exits_by_outcome(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    good = run(tmp_path, fake, "test-connection")
    assert good.returncode == 0, good.stderr
    assert "[ok] this key may use the job endpoint" in good.stdout
    bad = run(tmp_path, fake, "test-connection", "--api-secret", "wrong-secret")
    assert bad.returncode == 2  # refused credentials: a configuration error, as for sync
    assert "the API secret does not match the API key" in bad.stderr
    assert "wrong-secret" not in bad.stdout + bad.stderr


def test_fake_server_prints_its_url_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*COMMAND, "fake-server", "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("Fake Sailthru listening on http://127.0.0.1:")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


def test_every_subcommand_has_help_and_no_command_is_a_usage_error(tmp_path: Path) -> None:
    for command in ("demo", "test-connection", "sync", "fake-server"):
        assert run(tmp_path, None, command, "--help").returncode == 0
    assert run(tmp_path, None).returncode == 2


def test_events_and_purchases_are_sent_once_even_across_runs(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    users = write_csv(tmp_path / "people.csv", people(3))
    assert run(tmp_path, fake, "sync", str(users)).returncode == 0
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps({"id": f"e{n}", "email": f"p{n}@example.com", "event": "viewed", "page": n})
            + "\n"
            for n in (1, 2, 3)
        ),
        encoding="utf-8",
    )
    orders = tmp_path / "orders.jsonl"
    item = {"id": "sku1", "title": "Shoe", "qty": 1, "price": 9.99, "url": "https://x.test/s"}
    orders.write_text(
        "".join(
            json.dumps(
                {"id": f"o{n}", "order_id": f"o{n}", "email": f"p{n}@example.com", "items": [item]}
            )
            + "\n"
            for n in (1, 2)
        ),
        encoding="utf-8",
    )
    for _ in range(2):
        sent = run(tmp_path, fake, "sync", str(events), "--object", "events")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        bought = run(tmp_path, fake, "sync", str(orders), "--object", "purchases")
        assert bought.returncode == 0, bought.stdout + bought.stderr
    assert len(fake.events) == 3
    assert len(fake.purchases) == 2
    assert "unchanged                2" in bought.stdout


def test_returns_are_recorded_once_each_even_across_runs(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    item = {"id": "sku1", "title": "Shoe", "qty": 1, "price": "9.99", "url": "https://x.test/s"}
    returns = tmp_path / "returns.jsonl"
    returns.write_text(
        "".join(
            json.dumps(
                {"id": f"r{n}", "order_id": "o1", "email": "p1@example.com", "items": [item]}
            )
            + "\n"
            for n in (1, 2)
        )
        + json.dumps({"id": "r3", "email": "p1@example.com", "items": [item]})
        + "\n",
        encoding="utf-8",
    )
    for _ in range(2):
        result = run(tmp_path, fake, "sync", str(returns), "--object", "returns")
        assert result.returncode == 1, result.stdout + result.stderr  # r3 has no order id
    # two partial returns of one order, each recorded once; the bad row named with its field
    assert [(r["order_id"], r["items"][0]["price"]) for r in fake.returns] == [("o1", 999)] * 2
    assert "unchanged                2" in result.stdout
    errors = sorted((tmp_path / ".sailthru-sync" / "reports").glob("returns-*"))[-1]
    assert "order_id" in (errors / "errors.jsonl").read_text()


def test_an_event_row_the_source_could_not_read_whole_fails_alone(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        "id,email,event\n"
        "e1,p1@example.com,viewed\n"
        "e2,p2@example.com,viewed,one too many\n"
        "e3,p3@example.com,viewed\n",
        encoding="utf-8",
    )
    result = run(tmp_path, fake, "sync", str(events), "--object", "events")
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(e["id"] for e in fake.events) == ["p1@example.com", "p3@example.com"]
    assert all("__problem__" not in e.get("vars", {}) for e in fake.events)
    report = max((tmp_path / ".sailthru-sync" / "reports").glob("events-*"))
    assert "more value(s) than columns" in (report / "errors.jsonl").read_text()


def test_import_writes_list_members_to_csv(fake: FakeSailthru, tmp_path: Path) -> None:
    users = write_csv(tmp_path / "people.csv", people(4))
    assert run(tmp_path, fake, "sync", str(users)).returncode == 0
    result = run(tmp_path, fake, "import", "--list", "VIP", "--out", "vip.csv")
    assert result.returncode == 0, result.stderr
    with (tmp_path / "vip.csv").open(encoding="utf-8") as handle:
        emails = sorted(row["email"] for row in csv.DictReader(handle))
    assert emails == ["p1@example.com", "p3@example.com"]
