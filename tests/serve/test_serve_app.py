"""The ``serve`` front and its configuration, in process (the end-to-end run is beside it)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from helpers import KEY, SECRET

from sailthru_destination.cli import main
from sailthru_destination.serve import MessageQueue, QueueLimits, SegmentIngest
from sailthru_destination.testing import FakeSailthru

WRITE_KEY = "wk-app-secret"


def call(app: SegmentIngest, path: str, body: bytes = b"", **headers: str) -> tuple[str, Any]:
    status, answer, _ = call_with_headers(app, path, body, **headers)
    return status, answer


def auth(key: str = WRITE_KEY) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_messages_are_queued_with_their_type_and_an_id_only_after_auth(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY)
    body = json.dumps({"userId": "u-1", "event": "Clicked"}).encode()
    assert call(app, "/v1/track", body)[0].startswith("401")
    assert call(app, "/v1/track", body, authorization=auth("wk-app-secreT"))[0].startswith("401")
    status, answer = call(app, "/v1/track", gzip.compress(body), authorization=auth(),
                          content_encoding="gzip")  # fmt: skip
    assert (status, answer) == ("200 OK", {"success": True})
    [(_, message)] = queue.take(10)
    assert message["type"] == "track"
    assert message["messageId"].startswith("serve-")
    status, health = call(app, "/health")
    assert (status, health["queue_depth"], health["intake"]) == ("200 OK", 1, "open")
    assert call(app, "/v1/nothing", body, authorization=auth())[0].startswith("404")


def test_hostile_bodies_are_refused_and_nothing_is_queued(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY)
    nested = b'{"batch": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    for body in (nested, b"\xff\xfe", b"[]", b'{"batch": [1]}', b'{"batch": {}}'):
        status, answer = call(app, "/v1/batch", body, authorization=auth())
        assert status.startswith("400"), (body[:20], status)
        assert answer["success"] is False
    garbage = call(app, "/v1/batch", b"not gzip", authorization=auth(), content_encoding="gzip")
    assert garbage[0].startswith("400")
    assert queue.depth() == 0


def test_the_write_key_never_shows_in_the_repr() -> None:
    app = SegmentIngest(MessageQueue(":memory:"), WRITE_KEY)
    assert WRITE_KEY not in repr(app)


def _argv(folder: Path, fake: FakeSailthru, *extra: str) -> list[str]:
    # A reachable API URL: serve checks that something listens there before anything else.
    return ["serve", "--data-dir", str(folder), "--api-key", KEY, "--api-secret", SECRET,
            "--api-url", fake.url, *extra]  # fmt: skip


def test_serve_without_a_write_key_stops_with_exit_2_naming_it(
    fake: FakeSailthru,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SEGMENT_WRITE_KEY", raising=False)
    assert main(_argv(tmp_path, fake)) == 2
    assert "SEGMENT_WRITE_KEY" in capsys.readouterr().err


def test_a_second_serve_on_the_same_data_dir_stops_with_exit_2(
    fake: FakeSailthru, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FileLock(str(tmp_path / "serve.lock")):
        assert main(_argv(tmp_path, fake, "--write-key", WRITE_KEY)) == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err
    assert WRITE_KEY not in err


def test_bad_settings_stop_with_exit_2_naming_the_setting(
    fake: FakeSailthru, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"product_url_template": "shop/{id}"}))
    argv = _argv(tmp_path / "d", fake, "--write-key", WRITE_KEY, "--settings", str(settings))
    assert main(argv) == 2
    assert "product_url_template" in capsys.readouterr().err


def test_a_port_in_use_stops_with_exit_2_naming_the_setting(
    fake: FakeSailthru, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(_argv(tmp_path, fake, "--write-key", WRITE_KEY, "--port", port)) == 2
    assert "--port" in capsys.readouterr().err


def test_a_write_key_no_sender_can_present_stops_serve_with_exit_2(
    fake: FakeSailthru, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # HTTP Basic sends "user:password": a key holding ':' is cut there and never matches.
    assert main(_argv(tmp_path, fake, "--write-key", "wk:with-colon")) == 2
    err = capsys.readouterr().err
    assert "--write-key" in err
    assert "':'" in err
    assert "wk:with-colon" not in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--max-queue-messages", "0"], "--max-queue-messages"),
        (["--max-connections-per-client", "0"], "--max-connections-per-client"),
        (["--header-timeout", "0"], "--header-timeout"),
        (["--product-url-template", "shop/{id}"], "product_url_template"),
        (["--tracking-url", "ftp://x"], "--tracking-url"),
    ],
)
def test_impossible_limits_and_adapter_flags_stop_with_exit_2_naming_them(
    fake: FakeSailthru,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    named: str,
) -> None:
    assert main(_argv(tmp_path, fake, "--write-key", WRITE_KEY, *flags)) == 2
    assert named in capsys.readouterr().err


def test_a_full_queue_answers_429_with_retry_after_and_health_says_so(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY, limits=QueueLimits(max_messages=2, retry_after=3))
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{n}"}
                       for n in range(2)]}  # fmt: skip
    assert call(app, "/v1/batch", json.dumps(batch).encode(), authorization=auth())[0] == "200 OK"
    one = json.dumps({"userId": "u", "event": "E", "messageId": "m3"}).encode()
    status, answer, headers = call_with_headers(app, "/v1/track", one, authorization=auth())
    assert status.startswith("429")
    assert headers["Retry-After"] == "3"
    assert answer["code"] == "too_many_requests"
    health = call(app, "/health")[1]
    assert (health["intake"], health["queue_depth"]) == ("full", 2)
    assert health["queue_bytes"] == sum(len(b) for b in _bodies(queue))
    assert health["oldest_age_seconds"] >= 0
    # The worker sends one: there is room again.
    [(seq, _)] = queue.take(1)
    queue.done(seq, "sent", "")
    assert call(app, "/v1/track", one, authorization=auth())[0] == "200 OK"
    assert queue.depth() == 2


def test_a_full_disk_answers_503_and_loses_nothing_queued(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY)
    first = json.dumps({"userId": "u", "event": "Kept", "messageId": "kept"}).encode()
    assert call(app, "/v1/track", first, authorization=auth())[0] == "200 OK"
    # SQLite's own page cap gives the same SQLITE_FULL as a full disk, without filling one.
    pages = queue._db.execute("PRAGMA page_count").fetchone()[0]
    queue._db.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = {"batch": [{"userId": "u", "event": "Big", "type": "track", "messageId": f"b{n}",
                      "properties": {"p": "x" * 20_000}} for n in range(10)]}  # fmt: skip
    status, answer, headers = call_with_headers(
        app, "/v1/batch", json.dumps(big).encode(), authorization=auth()
    )
    assert status.startswith("503"), answer
    assert int(headers["Retry-After"]) > 0
    # /health tells the truth (red team t20: it said ok, intake open, while answering 503).
    assert (app.health()["ok"], app.health()["intake"]) == (False, "disk_full")
    assert queue.depth() == 1
    [(_, message)] = queue.take(10)
    assert message["event"] == "Kept"
    assert [row[1] for row in queue.results()] == [None]  # nothing half-written


def test_intake_answers_503_once_closed_for_the_stop(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY)
    app.close_intake()
    one = json.dumps({"userId": "u", "event": "Late"}).encode()
    status, _, headers = call_with_headers(app, "/v1/track", one, authorization=auth())
    assert status.startswith("503")
    assert "Retry-After" in headers
    assert call(app, "/health")[0].startswith("503")
    assert queue.depth() == 0


def _bodies(queue: MessageQueue) -> list[bytes]:
    return [row[0].encode() for row in queue._db.execute("SELECT body FROM messages")]


def call_with_headers(
    app: SegmentIngest, path: str, body: bytes, **headers: str
) -> tuple[str, Any, dict[str, str]]:
    environ: dict[str, Any] = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "GET" if path in ("/health", "/metrics") else "POST",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    answer: dict[str, Any] = {}

    def start(status: str, sent: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = status, dict(sent)

    data = b"".join(app(environ, start))
    return answer["status"], json.loads(data), answer["headers"]
