"""The CLI's check that something listens at the API URL, before any API call."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import people, run, write_csv

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


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A loopback listener that accepts connections and never answers (red team: a host
    that does not answer ran on for two minutes and exited 1 with a retryable failure)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # the kernel accepts; nobody reads or replies
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("command", ["sync", "import"])
def test_a_host_that_never_answers_is_a_configuration_error(
    command: str, silent_host: str, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(2))
    out = str(tmp_path / "m.csv")
    args = [str(model)] if command == "sync" else ["--list", "Everyone", "--out", out]
    result = run(tmp_path, None, command, *args, env={
        "SAILTHRU_API_URL": silent_host, "SAILTHRU_API_KEY": "k", "SAILTHRU_API_SECRET": "s",
        "SAILTHRU_API_TIMEOUT": "0.3"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SAILTHRU_API_URL" in result.stderr
    assert "no answer within 0.3 s" in result.stderr
    assert not (tmp_path / ".sailthru-sync").exists()  # nothing ran
    assert not (tmp_path / "m.csv").exists()


def test_the_flag_names_itself_and_a_bad_timeout_is_refused(
    silent_host: str, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "people.csv", people(1))
    env = {"SAILTHRU_API_KEY": "k", "SAILTHRU_API_SECRET": "s"}
    result = run(tmp_path, None, "sync", str(model), "--api-url", silent_host,
                 "--api-timeout", "0.3", env=env)
    assert result.returncode == 2
    assert "--api-url" in result.stderr
    for bad in ("0", "-1", "soon", "nan", "inf"):
        refused = run(tmp_path, None, "sync", str(model), "--api-url", silent_host,
                      env=env | {"SAILTHRU_API_TIMEOUT": bad})
        assert refused.returncode == 2
        assert "SAILTHRU_API_TIMEOUT must be a positive number" in refused.stderr
