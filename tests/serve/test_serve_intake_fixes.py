"""Red-team findings on the intake: reused messageIds, messages Python cannot decode, bodies
that are not UTF-8, the stopping 503's Retry-After, and a single endpoint's type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_serve_app import WRITE_KEY, auth, call, call_with_headers

from sailthru_destination.serve import MessageQueue, QueueLimits, SegmentIngest

DUPLICATE = "another message with this messageId was already accepted"


class _Counts:
    """The metrics the app reports, counted (a stand-in for prometheus-client's registry)."""

    def __init__(self) -> None:
        self.accepted_total = 0
        self.refusals: dict[str, int] = {}

    def accepted(self, count: int) -> None:
        self.accepted_total += count

    def refused(self, reason: str, count: int = 1) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + count

    def exposition(self) -> tuple[bytes, str]:
        return b"", "text/plain"


def _batch(*messages: dict[str, Any]) -> bytes:
    return json.dumps({"batch": list(messages)}).encode()


def _track(message_id: Any, user: str, event: str) -> dict[str, Any]:
    return {"type": "track", "messageId": message_id, "userId": user, "event": event}


def test_a_different_message_reusing_a_message_id_is_refused_by_name(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    counts, notices = _Counts(), []
    app = SegmentIngest(queue, WRITE_KEY, metrics=counts,
                        on_duplicate=lambda *notice: notices.append(notice))  # fmt: skip
    alice, bob = _track("dup-1", "alice", "Order Shipped"), _track("dup-1", "bob", "Reset")
    status, answer = call(app, "/v1/batch", _batch(alice, bob), authorization=auth())
    assert status == "200 OK"
    assert answer["refused"] == [
        {"index": 1, "messageId": "dup-1", "reason": "duplicate", "message": DUPLICATE}
    ]
    assert notices == [("dup-1", f"track message of user bob: {DUPLICATE}", "/v1/batch message 1")]
    # The SDK's resend of the same message (sentAt stamped anew) stays silent.
    status, answer = call(app, "/v1/batch", _batch({**alice, "sentAt": "2026-01-01T00:00:00Z"}),
                          authorization=auth())  # fmt: skip
    assert (status, answer) == ("200 OK", {"success": True})
    assert len(notices) == 1
    assert (counts.accepted_total, counts.refusals) == (1, {"duplicate": 2})
    assert [m["userId"] for _, m in queue.take(10)] == ["alice"]


def test_a_number_message_id_is_not_the_string_of_its_digits(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY)
    for body in (_batch(_track(7, "carol", "N")), _batch(_track("7", "dave", "S")),
                 _batch(_track(7, "carol", "N"))):  # fmt: skip
        assert call(app, "/v1/batch", body, authorization=auth()) == ("200 OK", {"success": True})
    taken = [(m["messageId"], m["userId"]) for _, m in queue.take(10)]
    assert taken == [("serve-number-7", "carol"), ("7", "dave")]


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["9" * 5000, "[" * 5000 + "]" * 5000, "-" + "1" * 4400]))
def test_a_message_python_cannot_decode_is_refused_alone(tmp_path_factory: Any, bad: str) -> None:
    queue = MessageQueue(tmp_path_factory.mktemp("q") / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY)
    good = json.dumps(_track("good-1", "g1", "Good"))
    body = ('{"batch":[' + good + ',{"type":"track","messageId":"bad","userId":"g2",'
            '"event":"Bad","properties":{"n":' + bad + "}}]}").encode()  # fmt: skip
    status, answer = call(app, "/v1/batch", body, authorization=auth())
    assert status == "200 OK"
    [refused] = answer["refused"]
    assert (refused["index"], refused["messageId"], refused["reason"]) == (1, "bad", "bad_message")
    assert [m["messageId"] for _, m in queue.take(10)] == ["good-1"]


def test_a_single_message_python_cannot_decode_is_named_in_the_400(tmp_path: Path) -> None:
    app = SegmentIngest(MessageQueue(tmp_path / "q.sqlite"), WRITE_KEY)
    body = ('{"userId":"u","event":"E","properties":{"n":' + "9" * 5000 + "}}").encode()
    status, answer = call(app, "/v1/track", body, authorization=auth())
    assert status.startswith("400")
    assert "4300 digits" in answer["message"]


def test_utf16_and_utf32_bodies_are_refused_whole_and_a_utf8_bom_is_not(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY)
    text = json.dumps({"batch": [_track("m-1", "e", "Enc")]})
    for encoding in ("utf-16", "utf-32"):
        status, answer = call(app, "/v1/batch", text.encode(encoding), authorization=auth())
        assert (status, answer["message"]) == ("400 Bad Request", "the body is not UTF-8")
    status, _ = call(app, "/v1/batch", text.encode("utf-8-sig"), authorization=auth())
    assert status == "200 OK"
    assert queue.depth() == 1


def test_the_stopping_503_asks_for_the_configured_retry_after(tmp_path: Path) -> None:
    app = SegmentIngest(MessageQueue(tmp_path / "q.sqlite"), WRITE_KEY,
                        limits=QueueLimits(retry_after=7))  # fmt: skip
    app.close_intake()
    status, _, headers = call_with_headers(app, "/v1/batch", _batch(_track("m", "u", "E")),
                                           authorization=auth())  # fmt: skip
    assert status.startswith("503")
    assert dict(headers)["Retry-After"] == "7"


def test_a_single_message_endpoint_names_the_type(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    app = SegmentIngest(queue, WRITE_KEY)
    body = json.dumps({"type": "track", "userId": "u", "event": "E", "traits": {}}).encode()
    assert call(app, "/v1/identify", body, authorization=auth())[0] == "200 OK"
    [(_, message)] = queue.take(10)
    assert message["type"] == "identify"
