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
from sailthru_destination.serve import MessageQueue, SegmentIngest
from sailthru_destination.testing import FakeSailthru

WRITE_KEY = "wk-app-secret"


def call(app: SegmentIngest, path: str, body: bytes = b"", **headers: str) -> tuple[str, Any]:
    environ: dict[str, Any] = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "POST" if path != "/health" else "GET",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    answer: dict[str, str] = {}

    def start(status: str, _: list[tuple[str, str]]) -> None:
        answer["status"] = status

    data = b"".join(app(environ, start))
    return answer["status"], json.loads(data)


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
