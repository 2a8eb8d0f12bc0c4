"""/send and /blast: enough of Sailthru's sending endpoints for hard-bounce postbacks.

The official client's ``receive_hardbounce_post`` looks the bounced send up (GET /send
``{send_id}``, needing an ``email`` in the answer) or the blast (GET /blast ``{blast_id}``).
POST creates one so a test can bounce it; nothing is ever mailed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...transport._protocol import ErrorCode
from .._errors import ApiError, invalid_parameter
from .._state import State, rfc2822_now
from ._users import Reply

__all__ = ["get_blast", "get_send", "post_blast", "post_send"]


def post_send(state: State, payload: Mapping[str, Any]) -> Reply:
    """POST /send ``{template, email, vars?, schedule_time?}``: one transactional send."""
    template = payload.get("template")
    email = str(payload.get("email") or "").strip()
    if not template or not isinstance(template, str):
        raise invalid_parameter("Missing required parameter: template")
    if "@" not in email:
        raise ApiError(400, ErrorCode.INVALID_EMAIL, f"Invalid email: {email}")
    send = {
        "send_id": state.new_id(),
        "email": email.lower(),
        "template": template,
        # (inferred) the fake "sends" at once; Sailthru answers its own delivery status.
        "status": "sent",
        "send_time": rfc2822_now(),
    }
    with state.lock:
        state.sends[send["send_id"]] = send
    return 200, dict(send)


def get_send(state: State, payload: Mapping[str, Any]) -> Reply:
    """GET /send ``{send_id}``: the send, with the email it went to."""
    return _one(state, state.sends, payload, "send")


def post_blast(state: State, payload: Mapping[str, Any]) -> Reply:
    """POST /blast ``{name, list, schedule_time, ...}``: a campaign to a list."""
    name = payload.get("name")
    if not name or not isinstance(name, str):
        raise invalid_parameter("Missing required parameter: name")
    blast: dict[str, Any] = {
        "blast_id": state.new_id(),
        "name": name,
        "list": payload.get("list"),
        "subject": payload.get("subject"),
        "schedule_time": payload.get("schedule_time"),
        # (inferred) status of a blast that was scheduled and not yet sent.
        "status": "scheduled",
        "create_time": rfc2822_now(),
    }
    with state.lock:
        state.blasts[blast["blast_id"]] = blast
    return 200, dict(blast)


def get_blast(state: State, payload: Mapping[str, Any]) -> Reply:
    """GET /blast ``{blast_id}``: the blast."""
    return _one(state, state.blasts, payload, "blast")


def _one(
    state: State, table: Mapping[str, dict[str, Any]], payload: Mapping[str, Any], kind: str
) -> Reply:
    """The ``kind`` (send or blast) that ``payload["<kind>_id"]`` names, from ``table``."""
    wanted = str(payload.get(f"{kind}_id") or "")
    if not wanted:
        raise invalid_parameter(f"Missing required parameter: {kind}_id")
    with state.lock:
        found = table.get(wanted)
        if found is None:
            # (inferred) Sailthru's status, code and text for an unknown send or blast id.
            raise ApiError(400, ErrorCode.OTHER, f"{kind.title()} not found: {wanted}")
        return 200, dict(found)
