"""An event in flight when the run is stopped (Ctrl-C, SIGTERM) is never sent again.

The fake applies the event's POST and holds its reply back; while it does, the CLI run is
stopped with a real signal. The claim on the event's key must stay (``unknown``), so the
next run reports the event for reconciliation instead of posting it a second time.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_cli
from test_cli import COMMAND, _env, run, write_csv

from sailthru_destination.testing import FakeSailthru
from sailthru_destination.testing import _app as fake_app

fake = test_cli.fake  # the CLI tests' fake (their credentials) is a fixture here too

_HOLD = 20.0  # seconds the applied event's reply is held back: the signal comes first


@contextlib.contextmanager
def reply_held_after_applying(applied: threading.Event) -> Iterator[None]:
    """POST /event is applied at once and answered only after :data:`_HOLD` seconds."""
    route = ("POST", "event")
    original = fake_app.ROUTES[route]
    released = threading.Event()

    def held(state: Any, payload: Any, form: Any) -> tuple[int, dict[str, Any]]:
        reply = original(state, payload, form)
        applied.set()
        released.wait(_HOLD)
        return reply

    fake_app.ROUTES[route] = held
    try:
        yield
    finally:
        released.set()
        fake_app.ROUTES[route] = original


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_event_interrupted_mid_post_is_not_sent_again(
    fake: FakeSailthru, tmp_path: Path, stop: signal.Signals
) -> None:
    model = write_csv(tmp_path / "events.csv",
                      [{"id": "e1", "email": "ann@example.com", "event": "signup"}])
    args = [*COMMAND, "sync", str(model), "--object", "events", "--concurrency", "1"]
    applied = threading.Event()
    with reply_held_after_applying(applied):
        child = subprocess.Popen(args, cwd=tmp_path, env=_env(fake), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            assert applied.wait(60), "the event's POST never reached the fake"
            time.sleep(0.2)  # the child is now blocked reading the reply
            child.send_signal(stop)
            _, stderr = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 128 + stop, stderr  # 130 for Ctrl-C, 143 for SIGTERM
    assert len(fake.events) == 1
    state = tmp_path / ".sailthru-sync" / "events.db"
    with contextlib.closing(sqlite3.connect(state)) as db:
        assert db.execute("SELECT state FROM sent").fetchall() == [("unknown",)]
    # The next run must not post it again: it reports it for reconciliation.
    again = run(tmp_path, fake, "sync", str(model), "--object", "events")
    assert len(fake.events) == 1, "the interrupted event was sent a second time"
    assert again.returncode == 1, again.stdout + again.stderr
    assert "unknown" in again.stdout + again.stderr or "unknown" in _errors(tmp_path)


def _errors(cwd: Path) -> str:
    return "".join(p.read_text() for p in cwd.glob(".sailthru-sync/reports/*/errors.jsonl"))
