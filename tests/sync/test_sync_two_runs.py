"""Two runs of one model: the second waits for the first or exits 2 naming it; no lock-ups.

The two-process cases run two real ``sailthru-destination sync`` processes against a fake
started here; its latency is raised while the first run is under way, so the second
surely starts while the first one holds the model.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.runlock import RunLock, RunLocked
from sailthru_destination.sync.memory.state import StateError, SyncState
from sailthru_destination.sync.runner import SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog, CallRecord

FAST = {"default": 10000.0}
SCRIPT = Path(sys.executable).with_name("sailthru-destination")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sailthru_destination"]


def _env(fake: FakeSailthru) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
    env.update(SAILTHRU_API_KEY="k", SAILTHRU_API_SECRET="s", SAILTHRU_API_URL=fake.url)
    return env


def _model(tmp_path: Path, kind: str, count: int) -> list[str]:
    """The arguments of a sync of ``count`` users or purchases, one call per row."""
    item = {"id": "sku1", "title": "Shoe", "qty": 1, "price": 9.99, "url": "https://x.test/s"}
    rows: list[dict[str, Any]] = [
        {"id": f"o{n}", "order_id": f"o{n}", "email": f"p{n}@example.com", "items": [item]}
        if kind == "purchases" else {"id": n, "email": f"p{n}@example.com", "n": n}
        for n in range(count)
    ]
    path = tmp_path / "model.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return ["sync", str(path), "--object", kind, "--concurrency", "1", "--bulk", "never",
            "--no-progress"]


def _config(tmp_path: Path, wait: float) -> list[str]:
    path = tmp_path / f"wait-{wait}.json"
    path.write_text(json.dumps({"lock_wait": wait}), encoding="utf-8")
    return ["--config", str(path)]


def _start_slow_first_run(
    fake: FakeSailthru, tmp_path: Path, args: list[str], endpoint: str
) -> subprocess.Popen[str]:
    fake.latency = 0.3
    first = subprocess.Popen([*COMMAND, *args], cwd=tmp_path, env=_env(fake), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while fake.calls[("POST", endpoint)] < 1 and first.poll() is None:
        assert time.monotonic() < deadline, "the first run never called Sailthru"
        time.sleep(0.02)
    assert first.poll() is None, first.communicate()
    return first


def _run(fake: FakeSailthru, tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], cwd=tmp_path, env=_env(fake), text=True,
                          capture_output=True, timeout=120, check=False)


def test_a_second_sync_of_a_running_model_exits_2_naming_the_first(tmp_path: Path) -> None:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as fake:
        args = _model(tmp_path, "users", 40)
        first = _start_slow_first_run(fake, tmp_path, [*args, *_config(tmp_path, 0)], "user")
        try:
            second = _run(fake, tmp_path, [*args, *_config(tmp_path, 0)])
        finally:
            fake.latency = 0.0
            out, err = first.communicate(timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"another sync of model is running (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.returncode == 0, out + err
        assert fake.calls[("POST", "user")] == 40
        assert len(fake.users) == 40


@pytest.mark.parametrize("kind", ["users", "purchases"])
def test_a_second_sync_waits_for_the_first_and_sends_nothing_twice(
    tmp_path: Path, kind: str
) -> None:
    endpoint = "user" if kind == "users" else "purchase"
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as fake:
        args = [*_model(tmp_path, kind, 30), *_config(tmp_path, 120)]
        first = _start_slow_first_run(fake, tmp_path, args, endpoint)
        second = subprocess.Popen([*COMMAND, *args], cwd=tmp_path, env=_env(fake), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)  # let the second run reach the lock (it passes either way)
        finally:
            fake.latency = 0.0
            first_out, first_err = first.communicate(timeout=120)
            second_out, second_err = second.communicate(timeout=120)
        assert first.returncode == 0, first_out + first_err
        assert second.returncode == 0, second_out + second_err
        assert "database is locked" not in first_err + second_err
        assert fake.calls[("POST", endpoint)] == 30
        assert re.search(r"unchanged\s+30\n", second_out), second_out
        sent = fake.users if kind == "users" else fake.purchases
        assert len(sent) == 30


def test_the_run_lock_waits_then_names_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "home" / "m.db"
    with RunLock(state, "m"):
        with pytest.raises(RunLocked, match=rf"another sync of m is running \(pid {os.getpid()}\)"):
            RunLock(state, "m", wait=0.05).acquire()
        assert issubclass(RunLocked, StateError)  # the command line exits 2 for it
    holder = RunLock(state, "m")
    holder.acquire()
    threading.Timer(0.2, holder.release).start()
    with RunLock(state, "m", wait=30):  # waits for the release, then runs
        assert RunLock(state, "m").holder() == os.getpid()


def test_no_write_transaction_is_open_while_sailthru_is_called(tmp_path: Path) -> None:
    """Another process can write the state file at every moment a call is made."""
    blocked: list[str] = []

    def probe(record: CallRecord) -> None:
        if blocked:
            return
        other = sqlite3.connect(tmp_path / "s.db", timeout=0.5, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            blocked.append(f"{record.method} {record.endpoint}: {exc}")
        finally:
            other.close()

    people = [{"id": n, "email": f"p{n}@example.com", "n": n} for n in range(12)]
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as fake:
        for model in (people, [dict(p, n=-1) for p in people[:8]]):
            config = SyncConfig(name="t", rate_limits=FAST, delete_behavior="delete",
                                bulk="never", concurrency=1)
            app = AppOptions("k", "s", fake.url)
            api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None,
                              call_log=CallLog(sink=probe))
            options = config.destination_options(lock_dir=str(tmp_path / "locks"))
            rows = [Row(f"line {n}", row) for n, row in enumerate(model)]
            with SailthruDestination(app, options, api=api) as dest, \
                    SyncState(tmp_path / "s.db") as state:
                summary = SyncRunner(dest, config, state).run(rows)
            assert summary.failed == 0
        assert fake.calls[("DELETE", "user")] == 4
    assert blocked == []


def test_a_state_folder_that_cannot_be_written_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be", encoding="utf-8")
    with pytest.raises(StateError, match="cannot take the run lock of m"):
        RunLock(blocker / "m.db", "m").acquire()
