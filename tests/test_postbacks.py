"""Postbacks from Sailthru: signature checks, typed parsing and the WSGI app (spec section 7)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import requests
from sailthru.sailthru_client import get_signature_hash

from sailthru_destination.features.postbacks import (
    MAX_BODY_BYTES,
    HardBounce,
    OptoutChange,
    Postback,
    PostbackError,
    UserUpdate,
    Verify,
    make_postback_app,
    parse_postback,
    sign_postback,
    verify_postback,
)
from sailthru_destination.transport._protocol import sign

SECRET = "test-secret-do-not-show"


def signed(params: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    return {**params, "sig": sign(params, secret)}


def signed_by_official_client(params: dict[str, str]) -> dict[str, str]:
    return {**params, "sig": get_signature_hash(dict(params), SECRET)}


OPTOUT = {
    "action": "optout",
    "email": "ann@example.com",
    "optout": "1",
    "mode": "all",
    "api_key": "k",
}


# ---- verify_postback -------------------------------------------------------------------


@pytest.mark.parametrize("signer", [signed, signed_by_official_client], ids=["ours", "official"])
def test_postbacks_signed_by_either_signer_verify(signer: Any) -> None:
    assert verify_postback(signer(OPTOUT), SECRET)


def test_uppercase_hex_signature_verifies() -> None:
    params = signed(OPTOUT)
    params["sig"] = params["sig"].upper()
    assert verify_postback(params, SECRET)


def _tampered_value() -> dict[str, str]:
    return {**signed(OPTOUT), "email": "eve@example.com"}


def _tampered_sig() -> dict[str, str]:
    params = signed(OPTOUT)
    params["sig"] = ("0" if params["sig"][0] != "0" else "1") + params["sig"][1:]
    return params


TAMPERED = [
    ("value changed", _tampered_value),
    ("sig changed", _tampered_sig),
    ("field added", lambda: {**signed(OPTOUT), "mode": "all", "extra": "1"}),
    ("field removed", lambda: {k: v for k, v in signed(OPTOUT).items() if k != "mode"}),
    ("sig missing", lambda: dict(OPTOUT)),
    ("sig empty", lambda: {**OPTOUT, "sig": ""}),
    ("wrong secret", lambda: signed(OPTOUT, secret="other")),
    ("sig of nothing", lambda: {**OPTOUT, "sig": sign({}, SECRET)}),
]


@pytest.mark.parametrize("make", [c[1] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
def test_tampered_postbacks_fail_verification_and_are_refused_with_403(make: Any) -> None:
    params = make()
    assert not verify_postback(params, SECRET)
    with pytest.raises(PostbackError) as info:
        parse_postback(params, SECRET)
    assert info.value.http_status == 403
    assert SECRET not in str(info.value)
    if params.get("sig"):
        assert params["sig"] not in str(info.value)


def test_an_empty_secret_never_verifies() -> None:
    params = signed(OPTOUT, secret="")
    assert not verify_postback(params, "")


# ---- parse_postback --------------------------------------------------------------------

PARSED: list[tuple[str, dict[str, str], Postback]] = [
    ("optout all", OPTOUT, OptoutChange("ann@example.com", True, "all")),
    (
        "optout template",
        {"action": "optout", "email": "a@b.co", "optout": "1", "mode": "template"},
        OptoutChange("a@b.co", True, "template"),
    ),
    (
        "opt back in",
        {"action": "optout", "email": "a@b.co", "optout": "0"},
        OptoutChange("a@b.co", False),
    ),
    ("optout flag absent", {"action": "optout", "email": "a@b.co"}, OptoutChange("a@b.co", True)),
    (
        "hardbounce of a send",
        {"action": "hardbounce", "email": "a@b.co", "send_id": "S1"},
        HardBounce("a@b.co", send_id="S1"),
    ),
    (
        "hardbounce of a blast",
        {"action": "hardbounce", "email": "a@b.co", "blast_id": "77"},
        HardBounce("a@b.co", blast_id="77"),
    ),
    ("verify", {"action": "verify", "email": "a@b.co", "send_id": "S9"}, Verify("a@b.co", "S9")),
    (
        "update with bracket form",
        {
            "action": "update",
            "email": "a@b.co",
            "sid": "5f0c1a2b3c4d5e6f7a8b9c0d",
            "optout_email": "none",
            "lists[Newsletter]": "1",
            "lists[Old List]": "0",
            "vars[first_name]": "Ann",
            "vars[address][city]": "Oslo",
        },
        UserUpdate(
            "a@b.co",
            sid="5f0c1a2b3c4d5e6f7a8b9c0d",
            optout_email="none",
            lists={"Newsletter": True, "Old List": False},
            vars={"first_name": "Ann", "address": {"city": "Oslo"}},
        ),
    ),
    (
        "update with JSON strings",
        {
            "action": "update",
            "email": "a@b.co",
            "lists": json.dumps(
                {"Newsletter": 1, "Gone": 0, "VIP": "Mon, 01 Jan 2024 00:00:00 -0000"}
            ),
            "vars": json.dumps({"ltv": 12.5, "tags": ["a"]}),
        },
        UserUpdate(
            "a@b.co",
            lists={"Newsletter": True, "Gone": False, "VIP": True},
            vars={"ltv": 12.5, "tags": ["a"]},
        ),
    ),
    (
        "update with JSON list array",
        {"action": "update", "email": "a@b.co", "lists": '["A", "B"]'},
        UserUpdate("a@b.co", lists={"A": True, "B": True}),
    ),
    ("update bare", {"action": "update", "email": "a@b.co"}, UserUpdate("a@b.co")),
    ("action case", {"action": "HardBounce", "email": "a@b.co"}, HardBounce("a@b.co")),
]


@pytest.mark.parametrize(
    ("params", "expected"), [c[1:] for c in PARSED], ids=[c[0] for c in PARSED]
)
def test_each_action_parses_into_its_typed_change(
    params: dict[str, str], expected: Postback
) -> None:
    assert parse_postback(signed(params), SECRET) == expected
    assert parse_postback(signed_by_official_client(params), SECRET) == expected


@pytest.mark.parametrize(
    ("mode", "optout", "level"),
    [
        ("all", True, "all"),
        ("blast", True, "blast"),
        ("basic", True, "basic"),
        ("template", True, None),
        (None, True, "all"),
        ("all", False, "none"),
    ],
)
def test_optout_changes_tell_the_profile_level(
    mode: str | None, optout: bool, level: str | None
) -> None:
    assert OptoutChange("a@b.co", optout, mode).level == level


BAD = [
    ("no action", {"email": "a@b.co"}, "no 'action'"),
    (
        "unknown action",
        {"action": "explode", "email": "a@b.co"},
        "unknown postback action 'explode'",
    ),
    ("optout without email", {"action": "optout", "optout": "1"}, "'email'"),
    ("blank email", {"action": "optout", "email": "  "}, "'email'"),
    ("hardbounce without email", {"action": "hardbounce", "send_id": "S"}, "'email'"),
    ("update without email", {"action": "update", "sid": "x"}, "'email'"),
    ("verify without send_id", {"action": "verify", "email": "a@b.co"}, "'send_id'"),
    ("bad optout flag", {"action": "optout", "email": "a@b.co", "optout": "maybe"}, "'optout'"),
    ("lists not JSON", {"action": "update", "email": "a@b.co", "lists": "{oops"}, "'lists'"),
    ("lists wrong type", {"action": "update", "email": "a@b.co", "lists": "5"}, "'lists'"),
    ("vars not an object", {"action": "update", "email": "a@b.co", "vars": "[1]"}, "'vars'"),
    (
        "vars mixed shapes",
        {"action": "update", "email": "a@b.co", "vars[a]": "1", "vars[a][b]": "2"},
        "mixes",
    ),
]


@pytest.mark.parametrize(("params", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_malformed_signed_postbacks_are_refused_with_400(
    params: dict[str, str], words: str
) -> None:
    with pytest.raises(PostbackError) as info:
        parse_postback(signed(params), SECRET)
    assert info.value.http_status == 400
    assert isinstance(info.value, ValueError)
    assert words in str(info.value)


def test_signature_is_checked_before_the_action() -> None:
    with pytest.raises(PostbackError) as info:
        parse_postback({"action": "explode", "sig": "0" * 32}, SECRET)
    assert info.value.http_status == 403


# ---- the WSGI app through a real server -------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server:
    def __init__(self, url: str, received: list[Postback]) -> None:
        self.url = url
        self.received = received
        self.fail = False


@pytest.fixture
def server() -> Iterator[_Server]:
    received: list[Postback] = []
    state = _Server("", received)

    def handler(postback: Postback) -> None:
        if state.fail:
            raise RuntimeError("host database is down")
        received.append(postback)

    httpd = make_server(
        "127.0.0.1", 0, make_postback_app(SECRET, handler), handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_port}/postback"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_app_applies_a_signed_postback_and_answers_ok(server: _Server) -> None:
    reply = requests.post(server.url, data=signed(OPTOUT), timeout=5)
    assert (reply.status_code, reply.text.strip()) == (200, "ok")
    assert server.received == [OptoutChange("ann@example.com", True, "all")]


def test_app_accepts_the_official_clients_signature_and_bracket_fields(server: _Server) -> None:
    params = {"action": "update", "email": "a@b.co", "lists[VIP]": "1", "vars[plan]": "gold"}
    reply = requests.post(server.url, data=signed_by_official_client(params), timeout=5)
    assert reply.status_code == 200
    assert server.received == [UserUpdate("a@b.co", lists={"VIP": True}, vars={"plan": "gold"})]


@pytest.mark.parametrize("make", [c[1] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
def test_app_refuses_tampered_postbacks_with_403(
    server: _Server, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    params = make()
    with caplog.at_level(logging.DEBUG, logger="sailthru_destination"):
        reply = requests.post(server.url, data=params, timeout=5)
    assert reply.status_code == 403
    assert server.received == []
    for text in (reply.text, caplog.text):
        assert SECRET not in text
        if params.get("sig"):
            assert params["sig"] not in text


def test_app_refuses_malformed_postbacks_with_400(server: _Server) -> None:
    reply = requests.post(server.url, data=signed({"action": "explode"}), timeout=5)
    assert reply.status_code == 400
    assert "unknown postback action" in reply.text


def test_app_refuses_duplicate_fields_with_400(server: _Server) -> None:
    body = "action=optout&email=a%40b.co&email=b%40c.co&sig=" + sign(
        {"action": "optout", "email": "a@b.co"}, SECRET
    )
    reply = requests.post(
        server.url,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert reply.status_code == 400
    assert "more than once" in reply.text


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_app_refuses_other_methods_with_405(server: _Server, method: str) -> None:
    reply = requests.request(method, server.url, params=signed(OPTOUT), timeout=5)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "POST"
    assert server.received == []


def test_app_refuses_oversized_bodies_with_413(server: _Server) -> None:
    data = {**signed(OPTOUT), "padding": "x" * MAX_BODY_BYTES}
    reply = requests.post(server.url, data=data, timeout=10)
    assert reply.status_code == 413


def test_app_refuses_json_bodies_with_415(server: _Server) -> None:
    reply = requests.post(server.url, json=signed(OPTOUT), timeout=5)
    assert reply.status_code == 415


def test_app_refuses_non_utf8_bodies_with_400(server: _Server) -> None:
    reply = requests.post(
        server.url,
        data=b"action=optout&email=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert reply.status_code == 400


def test_app_answers_500_and_logs_without_secrets_when_the_handler_fails(
    server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail = True
    params = signed(OPTOUT)
    with caplog.at_level(logging.ERROR, logger="sailthru_destination"):
        reply = requests.post(server.url, data=params, timeout=5)
    assert reply.status_code == 500
    assert "host database is down" not in reply.text
    assert "OptoutChange" in caplog.text
    assert SECRET not in caplog.text
    assert params["sig"] not in caplog.text


def test_app_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        make_postback_app("", lambda postback: None)


def test_app_refuses_a_body_without_content_length() -> None:
    app = make_postback_app(SECRET, lambda postback: None)
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/x-www-form-urlencoded"}
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["411 Length Required"]
    assert b"Content-Length" in body


def test_sign_postback_signs_as_sailthru_does_and_verifies() -> None:
    params = {"action": "hardbounce", "email": "x@example.com", "blast_id": "7"}
    signed = sign_postback(params, "the-secret")
    assert signed["sig"] == get_signature_hash(params, "the-secret")
    assert verify_postback(signed, "the-secret")
    assert "sig" not in params
