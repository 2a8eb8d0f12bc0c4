"""Ctrl-C and SIGTERM during a sync, run as a user runs it: nothing confirmed is lost.

Issue 21, defect 3: a delete run interrupted by Ctrl-C had 174 DELETEs verified in
``calls.jsonl`` but 113 in the state and the summary; the full model put back re-created
the 113 and never the others. Here in small: the fake's users, the state and the summary
must agree after the interrupt, and the full model put back brings every user back.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from test_cli import COMMAND, FAST, _env, people, run, write_csv

from sailthru_destination.testing import FakeSailthru, Faults

USERS = 200


def _state_keys(folder: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(folder / ".sailthru-sync" / "people.db")) as db:
        return {str(key) for (key,) in db.execute("SELECT key FROM records")}


def _interrupt_when(fake: FakeSailthru, process: subprocess.Popen[str], method: str,
                    calls: int, signum: int, endpoint: str = "user") -> tuple[str, str]:
    """Send ``signum`` once the fake has seen ``calls`` calls of ``method`` ``endpoint``."""
    deadline = time.monotonic() + 60
    while fake.calls[(method, endpoint)] < calls and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    process.send_signal(signum)
    return process.communicate(timeout=60)


def test_ctrl_c_during_a_delete_run_keeps_every_confirmed_delete(tmp_path: Path) -> None:
    everyone = people(USERS)
    model = write_csv(tmp_path / "people.csv", everyone)
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST,
                      latency=0.005) as fake:
        assert run(tmp_path, fake, "sync", str(model)).returncode == 0
        assert len(fake.users) == USERS
        write_csv(model, everyone[:5])  # a tiny model: 195 users are gone
        process = subprocess.Popen(
            [*COMMAND, "sync", str(model), "--delete-behavior", "delete", "--max-delete", "100%",
             "--concurrency", "4", "--no-progress"],
            cwd=tmp_path, env=_env(fake), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        _, stderr = _interrupt_when(fake, process, "DELETE", 12, signal.SIGINT)
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr
        remaining = {u["keys"]["email"] for u in fake.users.values()}
        deleted = USERS - len(remaining)
        assert 0 < deleted < USERS - 5, "interrupted mid-way"
        # The state knows exactly the users Sailthru still has: none deleted and forgotten
        # only by Sailthru, none recorded deleted that is still there.
        assert _state_keys(tmp_path) == remaining
        [*_, folder] = sorted((tmp_path / ".sailthru-sync" / "reports").iterdir())
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        assert summary["counts"].get("deleted", 0) == deleted
        assert re.search(rf"^\s+deleted\s+{deleted:,}$", stderr, re.M), stderr
        assert str(folder.relative_to(tmp_path)) in stderr  # the console names the report
        # The full model back: every user comes back, and the plan then has nothing to do.
        write_csv(model, everyone)
        again = run(tmp_path, fake, "sync", str(model), "--delete-behavior", "delete")
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(fake.users) == USERS
        plan = run(tmp_path, fake, "sync", str(model), "--delete-behavior", "delete", "--plan",
                   "--json")
        counts = json.loads(plan.stdout)["counts"]
        assert {name: n for name, n in counts.items() if n} == {"unchanged": USERS}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_reports_what_sailthru_confirmed(
    tmp_path: Path, signum: int, code: int
) -> None:
    model = write_csv(tmp_path / "people.csv", people(USERS))
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST,
                      latency=0.01) as fake:
        process = subprocess.Popen(
            [*COMMAND, "sync", str(model), "--concurrency", "4", "--bulk", "never"],
            cwd=tmp_path, env=_env(fake), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        _, stderr = _interrupt_when(fake, process, "POST", 20, signum)
        created = len(fake.users)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    [folder] = (tmp_path / ".sailthru-sync" / "reports").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    # Every user Sailthru created is counted and in the state; nothing was sent after the stop.
    assert summary["counts"]["created"] == created
    assert len(_state_keys(tmp_path)) == created
    assert f"Report: {folder.relative_to(tmp_path)}" in stderr
    assert "SIGTERM" in stderr if signum == signal.SIGTERM else "Ctrl-C" in stderr


def _activity_model(folder: Path, object: str, count: int) -> Path:
    """A model of ``count`` events (CSV) or orders (JSON lines)."""
    if object == "events":
        return write_csv(folder / "clicks.csv", [
            {"id": f"e{n}", "email": f"v{n}@example.com", "event": "clicked"}
            for n in range(count)])
    item = {"id": "s", "title": "Mug", "price": 9.99, "qty": 1, "url": "https://example.com/m"}
    path = folder / "orders.jsonl"
    path.write_text("".join(json.dumps({"order_id": f"o-{n}", "email": f"b{n}@example.com",
                                        "items": [item]}) + "\n" for n in range(count)))
    return path


@pytest.mark.parametrize("object", ["events", "purchases"])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_activity_run_prints_and_counts_every_confirmed_send(
    tmp_path: Path, object: str, signum: int, code: int
) -> None:
    """Red team: an interrupted events or purchases run printed nothing with ``--json`` and
    counted none of the sends Sailthru had confirmed (they were counted at the batch's end)."""
    model = _activity_model(tmp_path, object, 150)
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST,
                      latency=0.01) as fake:
        process = subprocess.Popen(
            [*COMMAND, "sync", str(model), "--object", object, "--concurrency", "4", "--json",
             "--no-progress"],
            cwd=tmp_path, env=_env(fake), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        stdout, stderr = _interrupt_when(fake, process, "POST", 20, signum,
                                         endpoint=object[:-1])
        sent = len(fake.events if object == "events" else fake.purchases)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    document = json.loads(stdout)  # the summary document is the only thing on stdout
    assert document["status"] == "interrupted"
    assert document["exit_code"] == code
    assert "interrupted" in document["exit_meaning"]
    assert 0 < sent < 150, "interrupted mid-way"
    assert document["counts"]["sent"] == sent
    summary = json.loads((tmp_path / document["report"] / "summary.json").read_text())
    assert summary["counts"]["sent"] == sent


def test_an_activity_run_that_stops_itself_counts_every_confirmed_send(tmp_path: Path) -> None:
    """Red team: an events run stopped by ``--max-errors`` counted none of the sends of the
    batch it stopped in, though Sailthru had them (and the state too)."""
    rows = [{"id": f"e{n}", "email": "" if 10 <= n < 13 else f"v{n}@example.com",
             "event": "clicked"} for n in range(60)]
    model = write_csv(tmp_path / "clicks.csv", rows)
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST,
                      latency=0.005) as fake:
        result = run(tmp_path, fake, "sync", str(model), "--object", "events", "--json",
                     "--max-errors", "2")
        sent = len(fake.events)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "stopped"
    assert document["counts"]["sent"] == sent


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_run_stopped_during_retries_starts_no_new_call(
    tmp_path: Path, signum: int, code: int
) -> None:
    """Every user write answers 5xx, so each record is backing off to retry when the signal
    comes: no retry and no unstarted record is sent after it, and the records cut short are
    not failed for good (the next run creates everyone)."""
    count, concurrency = 60, 4
    model = write_csv(tmp_path / "people.csv", people(count))
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST) as fake:
        process = subprocess.Popen(
            [*COMMAND, "sync", str(model), "--concurrency", str(concurrency), "--bulk", "never",
             "--no-progress", "--json"],
            cwd=tmp_path, env=_env(fake), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        deadline = time.monotonic() + 60
        # The run's own checks pass; then every user write fails, and is retried.
        while not fake.calls[("POST", "user")] and time.monotonic() < deadline:
            time.sleep(0.001)
        fake.faults = Faults(server_error_rate=1.0)
        failing = fake.calls[("POST", "user")]
        while (fake.calls[("POST", "user")] < failing + 2 * concurrency
               and time.monotonic() < deadline):
            assert process.poll() is None, process.communicate()
            time.sleep(0.005)
        process.send_signal(signum)
        at_stop = sum(fake.calls.values())
        stdout, stderr = process.communicate(timeout=60)
        # Only the calls in flight at the signal (one per worker at most) may still arrive.
        assert sum(fake.calls.values()) - at_stop <= concurrency, (at_stop, fake.calls)
        assert process.returncode == code, stderr
        assert "Traceback" not in stderr
        summary = json.loads(stdout)
        assert summary["status"] == "interrupted"
        # A call in flight that failed is reported (retryable) as before; no record whose
        # retries the stop cut short is failed for good.
        errors = tmp_path / summary["report"] / "errors.jsonl"
        failures = [json.loads(line) for line in
                    (errors.read_text().splitlines() if errors.exists() else [])]
        assert summary["counts"].get("failed", 0) == len(failures) <= concurrency, failures
        assert all(failure["retryable"] for failure in failures), failures
        fake.faults = Faults()
        again = run(tmp_path, fake, "sync", str(model), "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(fake.users) == count
        assert json.loads(again.stdout)["counts"]["failed"] == 0


def test_a_second_ctrl_c_while_stopping_still_counts_the_calls_in_flight(tmp_path: Path) -> None:
    model = write_csv(tmp_path / "people.csv", people(USERS))
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST,
                      latency=0.05) as fake:
        process = subprocess.Popen(
            [*COMMAND, "sync", str(model), "--concurrency", "8", "--bulk", "never", "--json"],
            cwd=tmp_path, env=_env(fake), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        deadline = time.monotonic() + 60
        while len(fake.users) < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        process.send_signal(signal.SIGINT)
        time.sleep(0.01)  # the calls in flight (50 ms each) are still out
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        created = len(fake.users)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "already stopping" in stderr
    summary = json.loads(stdout)
    assert summary["status"] == "interrupted"
    assert summary["counts"]["created"] == created
    assert len(_state_keys(tmp_path)) == created
