"""Postbacks under attack: what Sailthru's signature cannot see must never change a meaning.

Sailthru signs the sorted concatenation of the parameter values, so an added empty parameter,
a repeated one, or a value too deep to parse leaves the signature intact. Each such postback
is refused with a 400; every tampering the signature does see is refused with a 403.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from helpers import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sailthru_destination.features.postbacks import (
    HardBounce,
    OptoutChange,
    Postback,
    PostbackError,
    UserUpdate,
    Verify,
    make_postback_app,
    parse_postback,
)
from sailthru_destination.transport._protocol import sign

SECRET = "tamper-secret-never-shown"
OPTOUT = {"action": "optout", "email": "ann@example.com", "optout": "1", "mode": "all"}


def signed(params: dict[str, str]) -> dict[str, str]:
    return {**params, "sig": sign(params, SECRET)}


def post(body: str) -> tuple[int, str, list[Postback]]:
    """POST ``body`` to the WSGI app in-process; (status, reply text, postbacks applied)."""
    applied: list[Postback] = []
    app = make_postback_app(SECRET, applied.append)
    raw = body.encode("utf-8")
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
    }
    statuses: list[str] = []
    reply = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return int(statuses[0].split()[0]), reply.decode("utf-8"), applied


# ---- defect 3: an empty or repeated parameter -------------------------------------------------


def test_an_appended_empty_optout_flag_does_not_turn_an_opt_out_into_an_opt_in() -> None:
    genuine = signed({"action": "optout", "email": "ann@example.com", "mode": "all"})
    assert parse_postback(genuine, SECRET) == OptoutChange("ann@example.com", True, "all")
    status, text, applied = post(urlencode(genuine) + "&optout=")
    assert status == 400
    assert "'optout'" in text
    assert "empty" in text
    assert applied == []


@pytest.mark.parametrize(
    "field",
    ["optout", "mode", "email", "action", "lists", "vars", "lists[Newsletter]", "vars[name]"],
)
def test_any_empty_field_the_parser_reads_is_refused(field: str) -> None:
    params = {"action": "update", "email": "ann@example.com", "sid": "s1", field: ""}
    with pytest.raises(PostbackError) as info:
        parse_postback(signed(params), SECRET)
    assert info.value.http_status == 400
    assert repr(field) in str(info.value)


def test_an_empty_list_entry_cannot_take_a_user_off_a_list() -> None:
    genuine = {"action": "update", "email": "ann@example.com", "lists[VIP]": "1"}
    tampered = {**signed(genuine), "lists[Newsletter]": ""}
    with pytest.raises(PostbackError) as info:
        parse_postback(tampered, SECRET)
    assert info.value.http_status == 400


def test_a_repeated_flag_is_refused_not_last_wins() -> None:
    genuine = signed(OPTOUT)
    body = urlencode(genuine) + "&optout=0"
    status, text, applied = post(body)
    assert status == 400
    assert "more than once" in text
    assert applied == []


def test_json_and_bracket_forms_of_one_field_together_are_refused() -> None:
    params = {"action": "update", "email": "a@b.co", "vars": '{"a": 1}', "vars[b]": "2"}
    with pytest.raises(PostbackError, match="both"):
        parse_postback(signed(params), SECRET)


@pytest.mark.parametrize("key", ["lists[]", "vars[a][]", "vars[a", "vars[a]b]", "lists[[a]]"])
def test_malformed_bracket_names_are_refused(key: str) -> None:
    params = {"action": "update", "email": "a@b.co", key: "1"}
    with pytest.raises(PostbackError) as info:
        parse_postback(signed(params), SECRET)
    assert info.value.http_status == 400


# ---- defect 10: deep JSON -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["vars", "lists"])
def test_a_signed_postback_with_5000_deep_json_is_a_400_not_a_crash(field: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    value = '{"a": ' + deep + "}" if field == "vars" else deep
    params = signed({"action": "update", "email": "ann@example.com", field: value})
    status, text, applied = post(urlencode(params))
    assert status == 400
    assert "deep" in text
    assert applied == []


def test_deep_bracket_fields_are_refused() -> None:
    key = "vars" + "[a]" * 200
    with pytest.raises(PostbackError, match="deep"):
        parse_postback(signed({"action": "update", "email": "a@b.co", key: "1"}), SECRET)


def test_json_within_the_depth_bound_still_parses() -> None:
    nested: Any = "x"
    for _ in range(20):
        nested = {"n": nested}
    params = {"action": "update", "email": "a@b.co", "vars": json.dumps({"deep": nested})}
    assert parse_postback(signed(params), SECRET) == UserUpdate("a@b.co", vars={"deep": nested})


def test_nan_in_a_postback_is_refused() -> None:
    params = {"action": "update", "email": "a@b.co", "vars": '{"ltv": NaN}'}
    with pytest.raises(PostbackError, match="'vars'"):
        parse_postback(signed(params), SECRET)


# ---- defect 11: the email must be an email ---------------------------------------------------


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "a b@c.co", "ann@exa\u200bmple.com"])
def test_a_postback_whose_email_is_not_an_email_is_refused(email: str) -> None:
    with pytest.raises(PostbackError) as info:
        parse_postback(signed({**OPTOUT, "email": email}), SECRET)
    assert info.value.http_status == 400
    assert "'email'" in str(info.value)


def test_a_postback_email_with_a_lone_surrogate_is_refused_not_crashed_on() -> None:
    # No signature can be made over text that is not UTF-8: refused before it is checked.
    params = {**OPTOUT, "email": "ann@exa\ud800mple.com", "sig": "0" * 32}
    with pytest.raises(PostbackError) as info:
        parse_postback(params, SECRET)
    assert info.value.http_status == 400
    assert "'email'" in str(info.value)


def test_non_text_parameters_are_refused_not_crashed_on() -> None:
    params: dict[str, Any] = {**signed(OPTOUT), "extra": 5}
    with pytest.raises(PostbackError) as info:
        parse_postback(params, SECRET)
    assert info.value.http_status == 400


# ---- property: signed postbacks parse into what was signed; tampered ones never change meaning --

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda text: text.strip() == text and text != "")
_NAME = st.text(alphabet="abcdefghij_XYZ 0123", min_size=1, max_size=6).filter(
    lambda text: text.strip() == text
)
_EMAILS = st.builds(
    "{}@{}.{}".format,
    st.text(alphabet="abcxyz019._+-'", min_size=1, max_size=8),
    st.text(alphabet="abcxyz019-", min_size=1, max_size=8),
    st.sampled_from(["com", "co", "org", "museum"]),
)
_UNREAD = st.dictionaries(
    st.sampled_from(["api_key", "profile_id", "signup", "source", "x"]),
    st.one_of(st.just(""), _TEXT),
    max_size=2,
)
_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), _TEXT)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_NAME, inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _postbacks(draw: st.DrawFn) -> tuple[dict[str, str], Postback]:
    """A postback as Sailthru would send it (before signing) and what it must parse into."""
    email = draw(_EMAILS)
    action = draw(st.sampled_from(["optout", "hardbounce", "verify", "update"]))
    params: dict[str, str] = {"action": draw(st.sampled_from([action, action.upper()]))}
    params["email"] = email
    expected: Postback
    if action == "optout":
        flag = draw(st.sampled_from([None, "1", "0", "true", "false", "yes", "no"]))
        mode = draw(st.sampled_from([None, "all", "basic", "blast", "template"]))
        if flag is not None:
            params["optout"] = flag
        if mode is not None:
            params["mode"] = mode
        expected = OptoutChange(email, flag in (None, "1", "true", "yes"), mode)
    elif action == "hardbounce":
        send_id, blast_id = draw(st.none() | _TEXT), draw(st.none() | _TEXT)
        params.update({k: v for k, v in (("send_id", send_id), ("blast_id", blast_id)) if v})
        expected = HardBounce(email, send_id, blast_id)
    elif action == "verify":
        send_id = draw(_TEXT)
        params["send_id"] = send_id
        expected = Verify(email, send_id)
    else:
        sid, optout_email = draw(st.none() | _TEXT), draw(st.none() | _TEXT)
        params.update({k: v for k, v in (("sid", sid), ("optout_email", optout_email)) if v})
        members = draw(st.dictionaries(_NAME, st.booleans(), max_size=3))
        if members and draw(st.booleans()):
            params.update({f"lists[{name}]": "1" if on else "0" for name, on in members.items()})
        elif members:
            params["lists"] = json.dumps({name: int(on) for name, on in members.items()})
        variables = draw(st.dictionaries(_NAME, _JSON, max_size=3))
        flat = {name: value for name, value in variables.items() if isinstance(value, str)}
        if flat and draw(st.booleans()):
            variables = flat
            params.update({f"vars[{name}]": value for name, value in flat.items()})
        elif variables:
            params["vars"] = json.dumps(variables)
        else:
            variables = {}
        expected = UserUpdate(email, sid, optout_email, members, variables)
    params.update({k: v for k, v in draw(_UNREAD).items() if k not in params})
    return params, expected


def _outcome(parse: Callable[[], Postback]) -> Postback | PostbackError:
    try:
        return parse()
    except PostbackError as exc:
        refused = exc
    assert refused.http_status in (400, 403)
    assert SECRET not in str(refused)
    return refused


_BUDGET = settings(
    max_examples=fuzz_examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_BUDGET
@given(_postbacks())
def test_a_signed_postback_parses_into_exactly_what_was_signed(
    case: tuple[dict[str, str], Postback],
) -> None:
    params, expected = case
    assert parse_postback(signed(params), SECRET) == expected
    status, _, applied = post(urlencode(signed(params)))
    assert (status, applied) == (200, [expected])


@_BUDGET
@given(_postbacks(), st.data())
def test_a_tampered_postback_is_refused_or_means_exactly_what_was_signed(
    case: tuple[dict[str, str], Postback], data: st.DataObject
) -> None:
    params, expected = case
    genuine = signed(params)
    tampered = dict(genuine)
    how = data.draw(st.sampled_from(["change", "add empty", "empty a value", "sig"]))
    if how == "change":
        key = data.draw(st.sampled_from(sorted(params)))
        tampered[key] = data.draw(st.text(max_size=12).filter(lambda t: t != params[key]))
    elif how == "add empty":
        read = ["optout", "mode", "send_id", "blast_id", "sid", "optout_email", "lists", "vars"]
        name = data.draw(
            st.sampled_from([*read, "lists[New]", "vars[new]", "vars[a][b]", "extra"])
        )
        if name in tampered:
            return  # a repeat, not an addition: the WSGI test below covers it
        tampered[name] = ""
    elif how == "empty a value":
        key = data.draw(st.sampled_from(sorted(params)))
        tampered[key] = ""
    else:
        tampered["sig"] = data.draw(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32))
    outcome = _outcome(lambda: parse_postback(tampered, SECRET))
    if not isinstance(outcome, PostbackError):
        assert outcome == expected, f"{how}: a tampered postback was accepted with a new meaning"


@_BUDGET
@given(_postbacks(), st.data())
def test_a_repeated_parameter_is_always_refused_by_the_app(
    case: tuple[dict[str, str], Postback], data: st.DataObject
) -> None:
    params, _ = case
    pairs = list(signed(params).items())
    key = data.draw(st.sampled_from([k for k, _ in pairs]))
    value = data.draw(st.sampled_from(["", "0", "1", dict(pairs)[key]]))
    pairs.insert(data.draw(st.integers(0, len(pairs))), (key, value))
    status, text, applied = post(urlencode(pairs))
    assert (status, applied) == (400, [])
    assert "more than once" in text


_ANY_NAME = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        ["action", "email", "optout", "mode", "send_id", "blast_id", "sid", "optout_email",
         "lists", "vars", "lists[A]", "lists[]", "vars[a][b]", "vars[a]", "vars[", "lists[a]]"]
    ),
)
_ANY_VALUE = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        ["optout", "update", "hardbounce", "verify", "a@b.co", "1", "0", "", " ", "{", "[",
         '{"A": 1}', '["A", 5]', "null", "NaN", '{"a": {"b": [1, {"c": null}]}}']
    ),
)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(st.dictionaries(_ANY_NAME, _ANY_VALUE, max_size=8), st.booleans())
def test_any_parameter_set_is_parsed_or_refused_never_crashed_on(
    params: dict[str, str], sign_it: bool
) -> None:
    candidate = signed({k: v for k, v in params.items() if k != "sig"}) if sign_it else params
    try:
        outcome = _outcome(lambda: parse_postback(candidate, SECRET))
    except UnicodeEncodeError:
        pytest.fail("a postback that is not UTF-8 escaped the parser")
    if not sign_it and not isinstance(outcome, PostbackError):
        pytest.fail("an unsigned postback was accepted")
    status, _, _ = post(urlencode(candidate, encoding="utf-8", errors="surrogatepass"))
    assert status in (200, 400, 403)


class _MultiValueForm(dict[str, str]):
    """A form as Flask's ``request.form`` and Django's ``request.POST`` hold one: a mapping that
    shows one value per name, with every value behind ``getlist``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._pairs = pairs

    def getlist(self, key: str) -> list[str]:
        return [value for name, value in self._pairs if name == key]


def test_parse_postback_refuses_a_repeat_in_pairs_or_in_a_frameworks_form() -> None:
    pairs = [*signed(OPTOUT).items(), ("optout", "0")]
    for form in (pairs, _MultiValueForm(pairs)):
        with pytest.raises(PostbackError, match="more than once") as info:
            parse_postback(form, SECRET)
        assert info.value.http_status == 400


def test_parse_postback_takes_the_pairs_as_sent() -> None:
    pairs = list(signed(OPTOUT).items())
    expected = OptoutChange("ann@example.com", True, "all")
    assert parse_postback(pairs, SECRET) == expected
    assert parse_postback(_MultiValueForm(pairs), SECRET) == expected
