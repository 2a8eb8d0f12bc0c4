"""What a postback sender reads back: each refusal's status and exact message (issue 18).

The messages are what the operator sees in Sailthru's postback log and in ours, so a change to
one is a change users notice. The app is driven as WSGI directly, the way every server calls it.
"""

from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import urlencode

import pytest

from sailthru_destination.features.postbacks import (
    Postback,
    PostbackError,
    UserUpdate,
    make_postback_app,
    parse_postback,
    sign_postback,
)
from sailthru_destination.shaping._json import MAX_JSON_DEPTH
from sailthru_destination.transport._protocol import sign

SECRET = "test-secret-do-not-show"
FORM = "application/x-www-form-urlencoded"


def signed(params: dict[str, str]) -> dict[str, str]:
    return {**params, "sig": sign(params, SECRET)}


def call(
    body: bytes,
    *,
    content_type: str = FORM,
    length: str | None = None,
    handler: Any = None,
) -> tuple[str, dict[str, str], str, list[Postback]]:
    """POST ``body`` to the app: (status line, headers, body text, postbacks handled)."""
    received: list[Postback] = []
    app = make_postback_app(SECRET, handler or received.append)
    replies: list[tuple[str, list[tuple[str, str]]]] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
        "wsgi.input": io.BytesIO(body),
    }
    text = b"".join(app(environ, lambda s, h: replies.append((s, h)))).decode("utf-8")
    status, headers = replies[0]
    return status, dict(headers), text.strip(), received


def form(params: dict[str, str]) -> bytes:
    return urlencode(params).encode("ascii")


OPTOUT = {"action": "optout", "email": "ann@example.com", "optout": "1"}


def test_a_form_with_a_charset_parameter_is_accepted() -> None:
    status, _, text, received = call(
        form(signed(OPTOUT)), content_type="application/x-www-form-urlencoded; charset=UTF-8"
    )
    assert (status, text) == ("200 OK", "ok")
    assert len(received) == 1


def test_a_reply_is_plain_text_with_its_length() -> None:
    status, headers, text, _ = call(form(signed(OPTOUT)))
    assert status == "200 OK"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Length"] == str(len(text) + 1)


@pytest.mark.parametrize("length", ["-1", "-5000"])
def test_a_negative_content_length_is_refused_with_411(length: str) -> None:
    status, _, text, received = call(form(signed(OPTOUT)), length=length)
    assert status == "411 Length Required"
    assert text == "the request needs a valid Content-Length"
    assert received == []


@pytest.mark.parametrize("length", ["", "ten", "1.5"])
def test_a_missing_or_unreadable_content_length_is_refused_with_411(length: str) -> None:
    status, _, text, received = call(form(signed(OPTOUT)), length=length)
    assert (status, text) == ("411 Length Required", "the request needs a Content-Length")
    assert received == []


def test_a_body_that_is_not_utf8_is_refused_with_its_reason() -> None:
    status, _, text, _ = call(b"action=optout&email=\xff\xfe")
    assert (status, text) == ("400 Bad Request", "the postback body is not UTF-8")


def test_a_failing_handler_gets_500_and_a_message_without_its_error() -> None:
    def broken(postback: Postback) -> None:
        raise RuntimeError("host database is down")

    status, _, text, _ = call(form(signed(OPTOUT)), handler=broken)
    assert (status, text) == ("500 Internal Server Error", "the postback could not be applied")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"action": "optout", "email": "ann@example.com"},
            "postback refused: it carries no signature",
        ),
        (
            {**OPTOUT, "sig": "0" * 32},
            "postback refused: its signature does not match",
        ),
    ],
    ids=["unsigned", "wrong signature"],
)
def test_a_refused_signature_says_which_fault_it_is(params: dict[str, str], message: str) -> None:
    status, _, text, _ = call(form(params))
    assert (status, text) == ("403 Forbidden", message)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"email": "a@b.co"}, "postback has no 'action'"),
        (
            {"action": "optout", "email": "nope"},
            "field 'email' of the optout postback is not an email address",
        ),
        (
            {"action": "update", "email": "nope"},
            "field 'email' of the update postback is not an email address",
        ),
        (
            {"action": "verify", "email": "nope", "send_id": "S"},
            "field 'email' of the verify postback is not an email address",
        ),
        (
            {"action": "hardbounce", "email": "nope"},
            "field 'email' of the hardbounce postback is not an email address",
        ),
        ({"action": "update"}, "update postback is missing the required field 'email'"),
        (
            {"action": "verify", "email": "a@b.co"},
            "verify postback is missing the required field 'send_id'",
        ),
    ],
)
def test_a_malformed_postback_is_refused_naming_the_action_and_field(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(PostbackError) as info:
        parse_postback(signed(params), SECRET)
    assert (info.value.http_status, str(info.value)) == (400, message)


def test_a_long_field_name_is_shown_in_full_up_to_40_characters() -> None:
    for name, shown in [("f" * 40, "f" * 40), ("f" * 41, "f" * 37 + "...")]:
        body = f"{name}=1&{name}=2&sig=x".encode("ascii")
        status, _, text, _ = call(body)
        assert (status, text) == ("400 Bad Request", f"field {shown!r} is given more than once")


def test_bracket_fields_may_nest_as_deep_as_json_and_no_deeper() -> None:
    deepest = "vars" + "[k]" * MAX_JSON_DEPTH
    parsed = parse_postback(signed({"action": "update", "email": "a@b.co", deepest: "1"}), SECRET)
    assert isinstance(parsed, UserUpdate)
    node: Any = parsed.vars
    for _ in range(MAX_JSON_DEPTH - 1):
        node = node["k"]
    assert node == {"k": "1"}
    too_deep = deepest + "[k]"
    with pytest.raises(PostbackError) as info:
        parse_postback(signed({"action": "update", "email": "a@b.co", too_deep: "1"}), SECRET)
    assert str(info.value) == f"field 'vars' is nested too deep (over {MAX_JSON_DEPTH})"


def test_the_secret_is_required_and_the_refusal_says_so() -> None:
    app_message = "make_postback_app needs the API secret to verify postbacks"
    with pytest.raises(ValueError, match=f"^{re.escape(app_message)}$"):
        make_postback_app("", lambda postback: None)
    sign_message = "a postback is signed with the API secret; it is empty"
    with pytest.raises(ValueError, match=f"^{re.escape(sign_message)}$"):
        sign_postback(OPTOUT, "")
