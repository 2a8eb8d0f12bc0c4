"""A Redis password in the coordination URL never shows: not in errors, logs or reprs.

Every credential form redis-py accepts is covered: ``user:pass@`` and ``:pass@`` userinfo,
the ``password`` query parameter (``redis://``, ``rediss://`` and ``unix://``), percent-encoded
passwords, and URLs too broken to parse (a ``/`` or ``#`` in an unencoded password).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from test_coordination import RedisServer

from sailthru_destination.coordination import CoordinationError, RedisCoordination
from sailthru_destination.coordination._url import redact_url, url_secrets

PASSWORD = "s3cr3t-Pa55"


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _urls(port: int) -> list[str]:
    return [
        f"redis://127.0.0.1:{port}/0?password={PASSWORD}",
        f"redis://127.0.0.1:{port}/0?db=0&password={PASSWORD}&socket_timeout=1",
        f"redis://worker:{PASSWORD}@127.0.0.1:{port}/0",
        f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        f"rediss://:{PASSWORD}@127.0.0.1:{port}/0",
        f"rediss://127.0.0.1:{port}/0?password={PASSWORD}",
        f"redis://127.0.0.1:{port}/0?username=worker&password={PASSWORD}",
        f"unix:///tmp/no-such-redis-{port}.sock?password={PASSWORD}",
        f"unix://worker:{PASSWORD}@/tmp/no-such-redis-{port}.sock?db=0",
    ]


def _assert_hidden(text: str) -> None:
    assert PASSWORD not in text
    assert PASSWORD.replace("-", "%2D") not in text


@pytest.mark.parametrize("index", range(9))
def test_no_form_of_password_shows_in_the_error_or_the_log(
    index: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = _urls(_dead_port())[index]
    with caplog.at_level(logging.DEBUG), pytest.raises(CoordinationError) as caught:
        RedisCoordination(url, socket_timeout=0.5)
    _assert_hidden(str(caught.value))
    _assert_hidden(repr(caught.value))
    _assert_hidden(caplog.text)
    assert "***" in str(caught.value)
    assert caplog.records, "the failure was not logged"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://u:pw@h:1/0", "redis://u:***@h:1/0"),
        ("redis://u@h:1/0", "redis://u@h:1/0"),
        ("redis://h:1/0?db=2&password=pw", "redis://h:1/0?db=2&password=***"),
        ("rediss://h/0?PASSWORD=pw", "rediss://h/0?PASSWORD=***"),
        ("unix:///r.sock?password=pw&db=1", "unix:///r.sock?password=***&db=1"),
        ("redis://h:1/0#pw", "redis://h:1/0"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("redis://[::1]:6379/0?password=pw", "redis://[::1]:6379/0?password=***"),
    ],
)
def test_the_shown_url_keeps_what_helps_and_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "pw" not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "pieces"),
    [
        # An unencoded "/" ends the host early.
        ("redis://:Qx7k/Zr9w@127.0.0.1:1/0", ("Qx7k", "Zr9w")),
        # An unencoded "#" starts a fragment, "?" a query.
        ("redis://:Qx7k#Zr9w@127.0.0.1:1/0", ("Qx7k", "Zr9w")),
        ("redis://:Qx7k?Zr9w@127.0.0.1:1/0", ("Qx7k", "Zr9w")),
        # A password that starts like a port.
        ("redis://:4242/Zr9w@127.0.0.1:1/0", ("4242", "Zr9w")),
        # An unencoded "@": the last one ends the userinfo.
        ("redis://:Qx7k@Zr9w@127.0.0.1:1/0", ("Qx7k", "Zr9w")),
        # Unbalanced brackets around the host.
        ("redis://[::1:6379/0?password=Qx7kZr9w", ("Qx7kZr9w",)),
    ],
)
def test_a_url_too_broken_to_parse_is_refused_without_its_password(
    url: str, pieces: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    assert any(all(piece in secret for piece in pieces) for secret in url_secrets(url))
    with caplog.at_level(logging.DEBUG), pytest.raises((ValueError, CoordinationError)) as caught:
        RedisCoordination(url, socket_timeout=0.2)
    for piece in pieces:
        assert piece not in str(caught.value)
        assert piece not in caplog.text
    assert "redis" in str(caught.value).lower()


def test_percent_encoded_passwords_are_hidden_in_both_spellings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:p%40ss%2Fw0rd@127.0.0.1:{_dead_port()}/0"
    with caplog.at_level(logging.DEBUG), pytest.raises(CoordinationError) as caught:
        RedisCoordination(url, socket_timeout=0.5)
    for spelling in ("p%40ss%2Fw0rd", "p@ss/w0rd"):
        assert spelling not in str(caught.value)
        assert spelling not in caplog.text


@pytest.fixture(scope="module")
def guarded_server() -> Iterator[RedisServer]:
    server = RedisServer("--requirepass", PASSWORD)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "form", ["query", "userinfo"], ids=["?password=", ":password@"]
)
def test_a_live_coordination_shows_no_password_in_reprs_or_failures(
    guarded_server: RedisServer, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"127.0.0.1:{guarded_server.port}/0"
    url = f"redis://{base}?password={PASSWORD}" if form == "query" else f"redis://:{PASSWORD}@{base}"
    coordination = RedisCoordination(url, prefix=f"redaction-{form}", socket_timeout=0.5)
    try:
        pieces = [
            coordination,
            coordination.redis,  # redis-py's own repr redacts too
            coordination.lock("acct"),
            coordination.known_lists("acct"),
            coordination.limiters(),
            coordination.limiters().get("POST", "user"),
        ]
        for piece in pieces:
            _assert_hidden(repr(piece))
        assert coordination.known_lists("acct").contains("x") is False
        wrong = url.replace(PASSWORD, PASSWORD + "-wrong")
        with caplog.at_level(logging.DEBUG), pytest.raises(CoordinationError) as caught:
            RedisCoordination(wrong, socket_timeout=0.5)
        _assert_hidden(str(caught.value))
        assert PASSWORD + "-wrong" not in str(caught.value)
        _assert_hidden(caplog.text)
    finally:
        coordination.close()
