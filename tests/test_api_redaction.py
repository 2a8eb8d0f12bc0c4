"""Redaction: the secret and the signatures never reach logs, errors, reprs or the call log."""

from __future__ import annotations

import json
import logging
import socket
import traceback
from pathlib import Path

import pytest
from pytest_mock import MockerFixture
from urllib3.exceptions import ReadTimeoutError

from sailthru_destination.errors import SailthruError
from sailthru_destination.options import AppOptions
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi
from sailthru_destination.transport.calllog import CallLog, JsonLinesSink

KEY, SECRET = "test-key", "test-secret-0123456789"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_secret_or_signature_anywhere_a_user_can_see(
    caplog: pytest.LogCaptureFixture, mocker: MockerFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = JsonLinesSink(tmp_path / "calls.jsonl")
    errors: list[SailthruError] = []
    texts: list[str] = []
    with FakeSailthru(api_key=KEY, api_secret=SECRET, latency=0.0) as fake:
        retry = RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=False)
        apps = {
            "good": AppOptions(KEY, SECRET, api_url=fake.url, read_timeout=0.15),
            "closed": AppOptions(KEY, SECRET, api_url=f"http://127.0.0.1:{_closed_port()}"),
            "wrong key": AppOptions("nope", SECRET, api_url=fake.url),
        }
        apis = {
            name: SailthruApi(app, retry=retry, call_log=CallLog(sink=sink))
            for name, app in apps.items()
        }
        spies = [mocker.spy(api._client, "_prepare_json_payload") for api in apis.values()]
        api = apis["good"]

        def attempt(call: object) -> None:
            try:
                call()  # type: ignore[operator]
            except SailthruError as error:
                errors.append(error)

        attempt(lambda: api.post("user", {"id": "a@example.com", "vars": {"x": 1}}))
        attempt(lambda: api.get("user", {"id": "a@example.com"}))
        attempt(lambda: api.get("user", {"id": "nobody@example.com"}))
        attempt(lambda: api.delete("user", {"id": "a@example.com"}))
        attempt(lambda: apis["wrong key"].get("user", {"id": "a@example.com"}))
        attempt(lambda: apis["closed"].get("user", {"id": "a@example.com"}))
        attempt(lambda: apis["closed"].post("event", {"id": "a@example.com", "event": "x"}))
        fake.faults = Faults(server_error_rate=1.0)
        attempt(lambda: api.get("list", {}))
        fake.faults = Faults(connection_error_rate=1.0)
        attempt(lambda: api.get("user", {"id": "a@example.com"}))
        attempt(lambda: api.post("purchase", {"email": "a@example.com", "items": []}))
        fake.faults = Faults()
        fake.latency = 0.3  # longer than the read timeout
        attempt(lambda: api.get("user", {"id": "a@example.com"}))
        fake.latency = 0.0
        send = mocker.patch(
            "urllib3.connectionpool.HTTPConnectionPool.urlopen",
            side_effect=ReadTimeoutError(None, "/event", "timed out"),  # type: ignore[arg-type]
        )
        attempt(lambda: api.post("event", {"id": "a@example.com", "event": "x"}))
        mocker.stop(send)
        for each in apis.values():
            texts.append(repr(each))
            each.close()
        texts.extend(json.dumps(r.to_dict()) for each in apis.values() for r in each.call_log)
    sink.close()

    sigs = {payload["sig"] for spy in spies for payload in spy.spy_return_list}
    assert len(sigs) >= 6  # identical payloads share a signature
    assert {type(e).__name__ for e in errors} >= {
        "NotFound",
        "AuthError",
        "TransientError",
        "OutcomeUnknown",
    }
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    for record in caplog.records:
        texts += [record.getMessage(), str(record.args), record.exc_text or ""]
    texts.append(caplog.text)
    texts.append((tmp_path / "calls.jsonl").read_text())
    texts.append(repr(apps["good"]))
    haystack = "\n".join(texts)
    assert "urllib3.connectionpool" in caplog.text  # the transport's own lines were scanned
    assert "Read timed out" in haystack
    assert SECRET not in haystack
    leaked = [sig for sig in sigs if sig in haystack]
    assert leaked == []
    assert "sig=" not in haystack
