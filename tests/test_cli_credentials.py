"""The CLI's check that something listens at the API URL, before any API call."""

from __future__ import annotations

import socket

import pytest

from sailthru_destination.cli._credentials import _unreachable
from sailthru_destination.testing import FakeSailthru


def test_a_listening_server_is_reachable(fake: FakeSailthru) -> None:
    assert _unreachable(fake.url) is None


def test_a_closed_port_and_a_host_that_does_not_exist_are_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert "connection refused" in str(_unreachable(f"http://127.0.0.1:{port}"))
    # .invalid never resolves (RFC 2606)
    assert "does not exist" in str(_unreachable("https://no-such-host.invalid"))


def test_behind_a_proxy_the_target_is_not_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert _unreachable("https://no-such-host.invalid") is None
