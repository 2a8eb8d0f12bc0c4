"""Messages stored as received (issue 24, faster at the door): the fast road of the intake
stores each message of a plain ``/v1/batch`` as the sender's own text, and must decide exactly
as the general road (decode the body, encode each message anew) does, for any body."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sailthru_destination.serve import intake
from sailthru_destination.serve.as_received import lone_surrogate
from sailthru_destination.serve.intake import MAX_MESSAGE_BYTES, Parsed, Refused, messages_of


def outcome(read: Any, body: bytes) -> tuple[Any, ...]:
    """What a reader makes of ``body``: the refusal, or each message's id, decoded value and
    refusal (the stored text may differ: the fast road keeps the sender's spelling)."""
    try:
        parsed: Parsed = read("batch", body)
    except Refused as refused:
        return ("refused", refused.status, refused.reason)
    # Ids the server makes up are random: compare that there is one, not which.
    stored = [
        (m.message_id if not m.message_id.startswith("serve-") else "serve-*",
         {**json.loads(m.body), "messageId": None})
        for m in parsed.accepted
    ]  # fmt: skip
    return ("parsed", stored, parsed.refused)


def test_a_plain_batch_is_stored_byte_for_byte_as_sent() -> None:
    # analytics-python's json.dumps: ", " separators and \u escapes. The general road stored
    # a compact re-encoding instead, at ~10 µs of CPU per message.
    messages = [{"type": "track", "messageId": f"m{n}", "userId": "u",
                 "event": "Caf\u00e9 \U0001f600", "properties": {"revenue": 1.5e3, "n": n}}
                for n in range(3)]  # fmt: skip
    texts = [json.dumps(m) for m in messages]
    body = ('{"batch": [' + ", ".join(texts) + '], "sentAt": "2026-12-06T20:00:00Z"}').encode()
    parsed = messages_of("batch", body)
    assert [m.body for m in parsed.accepted] == texts
    assert [m.message_id for m in parsed.accepted] == ["m0", "m1", "m2"]
    assert outcome(messages_of, body) == outcome(intake._decoded, body)


def test_a_merged_context_or_a_given_id_is_encoded_anew() -> None:
    body = json.dumps({"context": {"ip": "1.2.3.4"}, "batch": [
        {"type": "track", "messageId": "a", "event": "E"},
        {"type": "track", "messageId": "b", "event": "E", "context": "not an object"},
        {"type": "track", "event": "E", "context": {"ip": "5.6.7.8"}},
        {"type": "track", "messageId": 7, "event": "E"},
    ]}).encode()  # fmt: skip
    stored = [json.loads(m.body) for m in messages_of("batch", body).accepted]
    assert stored[0]["context"] == {"ip": "1.2.3.4"}
    assert stored[1]["context"] == "not an object"  # kept: only an object merges
    assert stored[2]["context"] == {"ip": "5.6.7.8"}
    assert stored[2]["messageId"].startswith("serve-")
    assert stored[3]["messageId"] == "serve-number-7"  # not the string "7": another id


def test_a_lone_surrogate_escape_is_still_refused_by_name() -> None:
    body = (b'{"batch":[{"messageId":"bad","event":"\\ud800"},'
            b'{"messageId":"ok","event":"\\ud83d\\ude00"}]}')
    parsed = messages_of("batch", body)
    assert [r["messageId"] for r in parsed.refused] == ["bad"]
    assert [json.loads(m.body)["event"] for m in parsed.accepted] == ["\U0001f600"]


def test_a_pretty_message_near_the_limit_is_judged_by_its_compact_form() -> None:
    # Its received text passes 32 KB only by its indentation: the general road's compact
    # form is what the limit has always measured.
    message = {"messageId": "big", "properties": {f"k{n}": "v" * 60 for n in range(400)}}
    compact = json.dumps(message, separators=(",", ":"))
    assert len(compact) <= MAX_MESSAGE_BYTES < len(json.dumps(message, indent=8))
    body = ('{"batch":[' + json.dumps(message, indent=8) + "]}").encode()
    assert [m.body for m in messages_of("batch", body).accepted] == [compact]


_TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from("\ud800\udfff\"\\/\u00e9"),
                max_size=6)  # fmt: skip
_SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT
_VALUE = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=8)  # fmt: skip
_ID = st.none() | st.just("") | _TEXT | st.integers() | st.booleans() | st.just(["x"])
_MESSAGE = st.builds(
    lambda fields, mid, context: {**fields, **({"messageId": mid} if mid is not None else {}),
                                  **({"context": context} if context is not None else {})},
    st.dictionaries(_TEXT, _VALUE, max_size=3), _ID,
    st.none() | st.dictionaries(_TEXT, _VALUE, max_size=2) | _SCALAR,
) | _VALUE | st.fixed_dictionaries(  # the common message, which the fast road stores
    {"type": st.just("track"), "messageId": _TEXT.filter(bool),
     "event": _TEXT | st.sampled_from(["\ud800", "x\udfff", "\U0001f600", "\\ud800"])}
)  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """``/v1/batch`` bodies as any sender might spell them, now and then damaged."""
    document: dict[str, Any] = {"batch": draw(st.lists(_MESSAGE, max_size=5))}
    if draw(st.booleans()):
        document["context"] = draw(st.dictionaries(_TEXT, _VALUE, max_size=2) | _SCALAR)
    if draw(st.booleans()):
        document["sentAt"] = "2026-12-06T20:00:00Z"
    spelled = json.dumps(
        document,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.none() | st.integers(0, 2)),
        separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])),
    )
    if draw(st.booleans()):  # a key given twice: the last one counts
        spelled = '{"batch": "first", ' + spelled[1:]
    body = spelled.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "cut", "extra", "byte"]))
    if damage == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "extra":
        body += draw(st.sampled_from([b" ", b"\n", b"x", b"{}", b"\t\r\n"]))
    elif damage == "byte":
        at = draw(st.integers(0, max(0, len(body) - 1)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=1)) + body[at + 1 :]
    return body


@settings(max_examples=300, deadline=None)
@given(body=bodies())
def test_the_fast_road_decides_as_the_general_road(body: bytes) -> None:
    assert outcome(messages_of, body) == outcome(intake._decoded, body)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\U0001f600", "\\",
                                "u", "d", "8", "0", "c", "\u00e9", '"']), max_size=10),
       st.booleans())  # fmt: skip
def test_a_lone_surrogate_is_told_from_a_pair_and_from_an_escaped_backslash(
    value: str, ascii_only: bool
) -> None:
    text = json.dumps({"s": value}, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")  # what the fast road sees is UTF-8 clean
    except UnicodeEncodeError:
        return
    try:
        json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")
        lone = False
    except UnicodeEncodeError:
        lone = True
    assert lone_surrogate(text) is lone
