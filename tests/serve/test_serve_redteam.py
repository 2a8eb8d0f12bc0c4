"""Regression tests of the outside red team's findings against ``serve`` (issue 24).

Each starts a real ``serve`` process on loopback against the fake Sailthru: a wrong secret
or a refused permission must not lose messages, ``--data-dir`` naming a file is a config
error, and a disk that cannot be written answers 503 with ``Retry-After`` and says so on
``/health``; a stop that cannot write its summary still exits 0.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import KEY, SECRET, make_fake
from hypothesis import given, settings
from hypothesis import strategies as st
from serving import WRITE_KEY, Serve

from sailthru_destination.errors import RecordError
from sailthru_destination.serve.intake import Refused, messages_of
from sailthru_destination.serve.worker import refuses_credentials
from sailthru_destination.testing import FakeSailthru

AUTH = (WRITE_KEY, "")


def track(prefix: str, count: int, pad: int = 0) -> dict[str, object]:
    """A /v1/batch body of ``count`` track calls (``pad`` characters of padding each)."""
    return {"batch": [{"type": "track", "messageId": f"{prefix}-{n}", "userId": f"u{n}",
                       "event": "Bought", "properties": {"pad": "p" * pad}}
                      for n in range(count)]}  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "SEGMENT_WRITE_KEY": WRITE_KEY}


def queued_ids(folder: Path) -> set[str]:
    """The message ids stored in the queue of ``folder`` (serve stopped)."""
    with sqlite3.connect(folder / "data" / "queue.sqlite") as db:
        return {str(row[0]) for row in db.execute("SELECT message_id FROM messages")}


def test_a_wrong_api_secret_stops_serve_at_start_naming_the_setting(tmp_path: Path) -> None:
    # Red team t19: with a wrong secret serve answered 200, then failed every message for good.
    with FakeSailthru(api_key=KEY, api_secret="not-" + SECRET) as fake:
        serve = Serve(fake, tmp_path)
        done = subprocess.run(serve.argv(), env=env(), capture_output=True, text=True,
                              timeout=30)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--api-secret" in done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stderr


@pytest.fixture
def refusing(tmp_path: Path) -> Iterator[Serve]:
    """A serve whose key authenticates but may not use Sailthru's event API (HTTP 403)."""
    with make_fake(forbidden_endpoints={"event"}) as fake:
        serve = Serve(fake, tmp_path, "--retry-after", "7")
        serve.start()
        try:
            yield serve
        finally:
            serve.stop()


def test_a_refusal_of_the_credentials_keeps_messages_replayable_and_closes_intake(
    refusing: Serve,
) -> None:
    answer = requests.post(f"{refusing.url}/v1/batch", json=track("perm", 3), auth=AUTH,
                           timeout=5)  # fmt: skip
    assert answer.status_code == 200, answer.text
    health = refusing.wait(lambda h: h["intake"] == "refused", timeout=15)
    assert health["ok"] is False
    assert "HTTP 403" in health["sailthru"]
    assert requests.get(f"{refusing.url}/health", timeout=2).status_code == 503
    # While Sailthru refuses, senders keep their messages: 503 and Retry-After, not 200.
    again = requests.post(f"{refusing.url}/v1/batch", json=track("later", 1), auth=AUTH,
                          timeout=5)  # fmt: skip
    assert again.status_code == 503, again.text
    assert again.headers["Retry-After"] == "7"
    refusing.drained()
    assert refusing.stop() == 0
    assert {e["record"] for e in refusing.errors()} == {f"perm-{n}" for n in range(3)}
    assert all(e["retryable"] for e in refusing.errors())
    replay = subprocess.run(
        [sys.executable, "-m", "sailthru_destination", "serve", "replay",
         "--data-dir", str(refusing.folder / "data")],
        env=env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert "queued again 3 message(s)" in replay.stdout


@pytest.mark.parametrize("replay", [False, True])
def test_a_data_dir_naming_a_file_is_a_one_line_config_error(
    tmp_path: Path, replay: bool
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with make_fake() as fake:
        serve = Serve(fake, tmp_path)
        argv = serve.argv("--data-dir", str(afile))
        if replay:
            argv = [sys.executable, "-m", "sailthru_destination", "serve", "replay",
                    "--data-dir", str(afile)]  # fmt: skip
        done = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "--data-dir" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_queue_that_cannot_be_written_answers_503_and_health_says_so(tmp_path: Path) -> None:
    # Red team t20: a file-size limit made SQLite fail with an I/O error: 500, a traceback,
    # no Retry-After; /health still said ok. RLIMIT_FSIZE makes every write beyond fail.
    with make_fake(latency=5.0) as fake:  # the worker sends slowly: the queue grows
        serve = Serve(fake, tmp_path, "--concurrency", "1", "--retry-after", "3")
        serve.start(file_size_limit=300_000)
        accepted: set[str] = set()
        answer = None
        try:
            for batch in range(60):
                body = track(f"df{batch}", 30, pad=300)
                answer = requests.post(f"{serve.url}/v1/batch", json=body, auth=AUTH, timeout=10)
                if answer.status_code != 200:
                    break
                accepted |= {f"df{batch}-{n}" for n in range(30)}
            assert answer is not None
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "3"
            health = serve.health()
            assert (health["ok"], health["intake"]) == (False, "disk_full")
            fake.latency = 0.0
        finally:
            assert serve.stop() == 0, serve.log()
    assert accepted
    assert accepted <= queued_ids(tmp_path)
    assert "Traceback" not in serve.log()


def test_a_stop_that_cannot_write_its_summary_exits_0_saying_so(tmp_path: Path) -> None:
    # Red team t21: SIGTERM on a full disk: summary.json raised ENOSPC, a traceback, exit 1.
    with make_fake() as fake:
        serve = Serve(fake, tmp_path)
        serve.start()
        try:
            folders = list((tmp_path / "data" / "reports").glob("serve-*"))
            assert len(folders) == 1
            summary = folders[0] / "summary.json"
            summary.unlink(missing_ok=True)  # made (private, empty) with the report folder
            summary.mkdir()  # writing it fails (an OSError), as ENOSPC
        finally:
            code = serve.stop()
    assert code == 0, serve.log()
    assert "could not write the run's summary" in serve.log()
    assert "Traceback" not in serve.log()


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=400),
    context=st.integers(min_value=0, max_value=3_000),
    own=st.booleans(),
)
def test_a_request_never_stores_more_than_four_times_its_size(
    count: int, context: int, own: bool
) -> None:
    # Red team t6: a 1 KB batch-level context on small messages stored 13.6 times the body.
    message: dict[str, object] = {"type": "track", "userId": "u", "event": "Ctx"}
    if own:
        message["context"] = {"ip": "1.2.3.4"}
    body = json.dumps({"batch": [{**message, "messageId": f"c{n}"} for n in range(count)],
                       "context": {"big": "c" * context}}).encode()  # fmt: skip
    try:
        parsed = messages_of("batch", body)
    except Refused as refused:
        outcome = (refused.status, refused.reason)
        assert outcome == ("413 Payload Too Large", "amplification")
        return
    stored = sum(len(m.body.encode("utf-8")) for m in parsed.accepted)
    # The documented bound: 4 times the request, or 4 KB for a smaller one.
    assert stored <= max(4 * 1024, 4 * len(body))
    assert len(parsed.accepted) == count


def test_a_single_small_message_is_still_taken() -> None:
    parsed = messages_of("track", b'{"event":"E"}')
    assert [json.loads(m.body)["type"] for m in parsed.accepted] == ["track"]


def test_only_refused_credentials_or_permissions_count_as_refusals() -> None:
    def error(reason: str, code: int | None) -> RecordError:
        return RecordError("m1", reason, code=code)

    assert refuses_credentials(error("POST /event failed (HTTP 401, Sailthru error 5): x", 5))
    assert refuses_credentials(error("POST /user failed (HTTP 401, Sailthru error 3): x", 3))
    assert refuses_credentials(error("POST /event failed (HTTP 403, Sailthru error 99): x", 99))
    assert not refuses_credentials(error("POST /user failed (HTTP 400, Sailthru error 11): x", 11))
    assert not refuses_credentials(error("POST /event failed (HTTP 500): x", None))
