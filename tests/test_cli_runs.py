"""How a sync run starts, stops and reports, run as a user runs it against the fake: the
credentials checked once before any work, --max-errors and the stop on a systematic failure,
an interrupted run's summary, what an events model sent, and --json for schedulers."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import test_cli
from test_cli import COMMAND, FAST, _env, people, report_of, run, write_csv

from sailthru_destination.testing import FakeSailthru

fake = test_cli.fake  # the CLI tests' fake (their credentials) is a fixture here too


def _summary(result: subprocess.CompletedProcess[str], cwd: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((report_of(result, cwd) / "summary.json").read_text())
    return loaded


# -- 1. a wrong key or secret is a configuration error ------------------------------------------


def test_a_wrong_secret_stops_at_once_naming_the_secret(fake: FakeSailthru, tmp_path: Path) -> None:
    model = write_csv(tmp_path / "people.csv", people(50))
    result = run(tmp_path, fake, "sync", str(model), "--api-secret", "wrong-secret")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--api-secret" in result.stderr
    assert "secret does not match" in result.stderr
    assert "wrong-secret" not in result.stdout + result.stderr
    # The fake counts the calls it let in: none (the check was refused, and nothing followed).
    assert sum(fake.calls.values()) == 0
    assert not (tmp_path / ".sailthru-sync").exists()  # no state, no report: nothing ran


def test_a_wrong_key_from_the_environment_is_named_as_that_variable(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(5))
    result = run(tmp_path, fake, "sync", str(model), env={"SAILTHRU_API_KEY": "no-such-key"})
    assert result.returncode == 2
    assert "SAILTHRU_API_KEY" in result.stderr
    assert "does not know this API key" in result.stderr
    assert "SAILTHRU_API_SECRET" not in result.stderr


def test_on_an_unchanged_model_a_wrong_secret_is_still_exit_2(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(5))
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    again = run(tmp_path, fake, "sync", str(model), env={"SAILTHRU_API_SECRET": "bad"})
    assert again.returncode == 2, again.stdout
    assert "SAILTHRU_API_SECRET" in again.stderr
    assert "Synced" not in again.stdout


def test_import_checks_the_credentials_first(fake: FakeSailthru, tmp_path: Path) -> None:
    result = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", "m.csv",
                 "--api-key", "bad-key")
    assert result.returncode == 2
    assert "--api-key" in result.stderr
    assert not (tmp_path / "m.csv").exists()


def test_test_connection_says_which_credential_once(fake: FakeSailthru, tmp_path: Path) -> None:
    # Refused credentials exit 2 (a configuration error), as sync and import do.
    secret = run(tmp_path, fake, "test-connection", "--api-secret", "wrong")
    assert secret.returncode == 2
    assert secret.stderr.count("API secret does not match") == 1, secret.stderr
    key = run(tmp_path, fake, "test-connection", "--api-key", "wrong")
    assert key.returncode == 2
    assert key.stderr.count("does not know this API key") == 1, key.stderr
    assert "secret" not in key.stderr


# -- 2. --max-errors and the stop on a systematic failure ---------------------------------------


def test_max_errors_stops_the_run_with_the_state_saved(fake: FakeSailthru, tmp_path: Path) -> None:
    rows = people(10) + [{"id": 100 + n, "email": f"bad{n}"} for n in range(20)]
    model = write_csv(tmp_path / "people.csv", rows)
    stopped = run(tmp_path, fake, "sync", str(model), "--max-errors", "5", "--bulk", "never")
    assert stopped.returncode == 1, stopped.stderr
    assert "stopped after 5 failed record(s) (--max-errors 5)" in stopped.stderr
    summary = _summary(stopped, tmp_path)
    assert summary["status"] == "stopped"
    assert summary["failed"] == 5
    errors = (report_of(stopped, tmp_path) / "errors.jsonl").read_text().splitlines()
    assert len(errors) == 5
    # The bad rows fixed, the next run syncs every row.
    write_csv(model, people(10))
    again = run(tmp_path, fake, "sync", str(model))
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(fake.users) == 10


def test_the_first_100_records_failing_alike_stop_the_run(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [{"id": n, "email": f"not-an-email-{n}", "first_name": "X"} for n in range(150)]
    model = write_csv(tmp_path / "people.csv", rows)
    result = run(tmp_path, fake, "sync", str(model))
    assert result.returncode == 1
    assert "the first 100 records all failed for the same reason" in result.stderr
    assert "Stopped" in result.stdout
    summary = _summary(result, tmp_path)
    assert summary["status"] == "stopped"
    assert summary["failed"] == 100
    assert fake.calls[("POST", "user")] == 0  # Sailthru never saw the doomed records


def test_failures_of_different_kinds_do_not_stop_the_run(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [{"id": n, "email": f"bad{n}"} for n in range(60)]
    rows += [{"id": 100 + n, "email": ""} for n in range(60)]
    result = run(tmp_path, fake, "sync", str(write_csv(tmp_path / "p.csv", rows)))
    assert result.returncode == 1
    summary = _summary(result, tmp_path)
    assert summary["status"] == "completed"
    assert summary["failed"] == 120


# -- 3. an interrupted run writes its summary ---------------------------------------------------


def test_a_terminated_run_writes_an_interrupted_summary(tmp_path: Path) -> None:
    model = write_csv(tmp_path / "people.csv", people(300))
    with FakeSailthru(
        api_key="cli-key", api_secret="cli-secret", rate_limits=FAST, latency=0.02
    ) as slow:
        process = subprocess.Popen(
            [*COMMAND, "sync", str(model), "--concurrency", "2", "--bulk", "never"],
            cwd=tmp_path, env=_env(slow), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while slow.calls[("POST", "user")] < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stderr  # 128 + SIGTERM, as a shell reports it
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    [folder] = (tmp_path / ".sailthru-sync" / "reports").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert 0 < summary["counts"]["created"] < 300


# -- 4. what an events model sent; 5. --json ----------------------------------------------------


def test_an_events_run_says_what_it_sent_and_calls_per_changed_row(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [{"id": n, "email": f"p{n}@example.com", "event": "signup"} for n in range(4)]
    model = write_csv(tmp_path / "events.csv", rows)
    first = run(tmp_path, fake, "sync", str(model), "--object", "events")
    assert first.returncode == 0, first.stderr
    assert "  sent                     4" in first.stdout
    assert "created" not in first.stdout
    # 4 events and the credentials check before them: every call is counted.
    assert "(1.25 per changed row" in first.stdout
    write_csv(model, [*rows, {"id": 9, "email": "p9@example.com", "event": "signup"}])
    second = run(tmp_path, fake, "sync", str(model), "--object", "events")
    assert "  sent                     1" in second.stdout
    assert "  unchanged                4" in second.stdout
    assert "(2.00 per changed row" in second.stdout


def test_json_prints_the_summary_alone_on_stdout(fake: FakeSailthru, tmp_path: Path) -> None:
    model = write_csv(tmp_path / "people.csv", people(3))
    result = run(tmp_path, fake, "sync", str(model), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # the whole of stdout is one document
    assert summary["status"] == "completed"
    # Every outcome is counted, zeros included (a scheduler never guesses a missing key).
    assert {k: v for k, v in summary["counts"].items() if v} == {"created": 3}
    assert summary["counts"]["failed"] == 0
    assert "Synced" in result.stderr
    assert "Report:" in result.stderr


# -- 6. per-object defaults and errors.jsonl ----------------------------------------------------


def _errors(result: subprocess.CompletedProcess[str], cwd: Path) -> list[dict[str, object]]:
    text = (report_of(result, cwd) / "errors.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_errors_name_the_record_and_its_column_in_input_order(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [{"id": 1, "email": "bad1"}, {"id": 2, "email": "b@example.com"},
            {"id": 3, "email": ""}, {"id": 4, "email": "bad4"}]
    result = run(tmp_path, fake, "sync", str(write_csv(tmp_path / "p.csv", rows)))
    assert result.returncode == 1
    errors = _errors(result, tmp_path)
    # Row 3 fails while reading, rows 1 and 4 while exporting: the file is in row order.
    assert [(e["record"], e["where"], e["field"]) for e in errors] == [
        ("1", "line 2", "email"), ("3", "line 4", "email"), ("4", "line 5", "email")]


def test_purchases_are_keyed_by_order_id_and_named_by_it(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    items = json.dumps([{"id": "s1", "title": "Shirt", "qty": 1, "price": 5,
                         "url": "https://shop.example.com/s1"}])
    rows = [{"id": 1, "order_id": "o-1", "email": "a@example.com", "items": items},
            {"id": 1, "order_id": "o-2", "email": "a@example.com", "items": items},
            {"id": 2, "order_id": "o-3", "email": "b@example.com", "items": "[]"}]
    model = write_csv(tmp_path / "orders.csv", rows)
    result = run(tmp_path, fake, "sync", str(model), "--object", "purchases")
    # Two orders share id 1: keyed by id, the second would be a duplicate key.
    assert "  sent                     2" in result.stdout, result.stdout + result.stderr
    [error] = _errors(result, tmp_path)
    assert (error["record"], error["where"], error["field"]) == ("o-3", "line 4", "items")
    # Without an order_id column, the primary key is id as for any model.
    plain = [{"id": 7, "email": "c@example.com", "items": items}]
    other = run(tmp_path, fake, "sync", str(write_csv(tmp_path / "p2.csv", plain)),
                "--object", "purchases")
    assert other.returncode == 0, other.stdout + other.stderr


# -- 7. column problems said once, --map and --types --------------------------------------------


def test_a_column_that_cannot_be_a_var_is_said_once_with_the_fix(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(30, **{"last-name": "X"}))
    result = run(tmp_path, fake, "sync", str(model))
    assert result.returncode == 2
    assert result.stderr.count("column 'last-name' is not a valid var name") == 1
    assert "--map last-name=last_name" in result.stderr
    assert sum(fake.calls.values()) == 0
    fixed = run(tmp_path, fake, "sync", str(model), "--map", "last-name=last_name")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fake.find_user(email="p1@example.com")["vars"]["last_name"] == "X"


def test_types_read_csv_text_as_numbers_booleans_and_json(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [{"id": 1, "email": "a@example.com", "age": "30", "vip": "yes", "score": "2.5",
             "prefs": '{"news": true}', "zip": "02139"},
            {"id": 2, "email": "b@example.com", "age": "thirty", "vip": "no", "score": "1",
             "prefs": "[]", "zip": "10001"}]
    model = write_csv(tmp_path / "people.csv", rows)
    result = run(tmp_path, fake, "sync", str(model), "--types", "age=int,vip=bool",
                 "--types", "score=float,prefs=json")
    assert result.returncode == 1
    assert fake.find_user(email="a@example.com")["vars"] == {
        # a JSON object is flattened into vars as every nested property is
        "age": 30, "vip": True, "score": 2.5, "prefs_news": True, "zip": "02139"}
    [error] = _errors(result, tmp_path)
    assert error["record"] == "2"
    assert "column 'age': 'thirty' is not a whole number" in str(error["reason"])
    assert fake.find_user(email="b@example.com") is None


def test_map_and_types_in_the_config_file(fake: FakeSailthru, tmp_path: Path) -> None:
    config = tmp_path / "mapping.json"
    config.write_text(json.dumps({"map": {"Last Name!": "last_name"}, "types": {"n": "int"}}))
    model = write_csv(tmp_path / "people.csv",
                      [{"id": 1, "email": "a@example.com", "Last Name!": "Lee", "n": "7"}])
    result = run(tmp_path, fake, "sync", str(model), "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.find_user(email="a@example.com")["vars"] == {"last_name": "Lee", "n": 7}
    config.write_text(json.dumps({"types": {"n": "integer"}}))
    bad = run(tmp_path, fake, "sync", str(model), "--config", str(config))
    assert bad.returncode == 2
    assert "types" in bad.stderr


def test_types_leave_json_lines_values_as_they_are(fake: FakeSailthru, tmp_path: Path) -> None:
    model = tmp_path / "people.jsonl"
    model.write_text(json.dumps({"id": 1, "email": "a@example.com", "age": 30, "zip": "02139",
                                 "vip": "yes"}) + "\n")
    result = run(tmp_path, fake, "sync", str(model), "--types", "age=int,vip=bool")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.find_user(email="a@example.com")["vars"] == {"age": 30, "zip": "02139",
                                                             "vip": True}


def test_a_rename_onto_an_existing_column_is_refused(fake: FakeSailthru, tmp_path: Path) -> None:
    model = write_csv(tmp_path / "people.csv",
                      [{"id": 1, "email": "a@example.com", "name": "A", "full": "Ann A"}])
    result = run(tmp_path, fake, "sync", str(model), "--map", "full=name")
    assert result.returncode == 2
    assert "map renames column 'full' to 'name', but the model has a column 'name'" in (
        result.stderr)
    assert sum(fake.calls.values()) == 0
    # Both renamed (a swap) loses nothing.
    swapped = run(tmp_path, fake, "sync", str(model), "--map", "full=name", "--map", "name=short")
    assert swapped.returncode == 0, swapped.stdout + swapped.stderr
    assert fake.find_user(email="a@example.com")["vars"] == {"name": "Ann A", "short": "A"}


def test_the_credentials_check_is_logged_and_counted_like_every_other_call(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    """Red team: an unchanged re-run said 0 API calls and logged none, while the fake got one
    (the signed check before any work). Every call the run makes is in its numbers."""
    model = write_csv(tmp_path / "people.csv", people(3))
    for unchanged in (False, True):
        before = sum(fake.calls.values())
        result = run(tmp_path, fake, "sync", str(model), "--json", "--no-progress")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        folder = tmp_path / str(summary["report"])
        logged = (folder / "calls.jsonl").read_text().splitlines()
        received = sum(fake.calls.values()) - before
        assert summary["api_calls"] == len(logged) == received
        assert (received == test_cli.AUTH_CHECK) is unchanged  # one check, no call per row
        assert json.loads(logged[0])["endpoint"] == "user"  # the check comes first
        assert summary["calls_by_endpoint"]["GET user"] == test_cli.AUTH_CHECK
