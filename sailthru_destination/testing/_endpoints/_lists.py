"""The /list endpoint: lists addressed by name, counts that never go down, duplicates on races."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ...transport._protocol import ErrorCode
from .._errors import ApiError, invalid_parameter
from .._state import State

__all__ = ["delete_list", "get_list", "post_list"]

Reply = tuple[int, dict[str, Any]]


def unknown_list(name: str) -> ApiError:
    """HTTP 404, error 15, as recorded from the live API."""
    return ApiError(404, ErrorCode.UNKNOWN_LIST, f"Unknown list: {name}")


def get_list(state: State, payload: Mapping[str, Any]) -> Reply:
    """GET /list: every list (``{}``) or one by name."""
    name = payload.get("list")
    with state.lock:
        if not name:
            views = [state.list_view(record) for record in state.lists]
            return 200, {
                "lists": [
                    {
                        key: view[key]
                        for key in (
                            "list_id",
                            "name",
                            "email_count",
                            "valid_count",
                            "create_time",
                            "type",
                        )
                    }
                    for view in views
                ]
            }
        record = state.find_list(str(name))
        if record is None:
            raise unknown_list(str(name))
        view = state.list_view(record)
        return 200, {
            "list_id": view["list_id"],
            "list": view["name"],
            "create_time": view["create_time"],
            "send_time": view["send_time"],
            "count": view["email_count"],
            "type": view["type"],
            "primary": view["primary"],
        }


def post_list(state: State, payload: Mapping[str, Any]) -> Reply:
    """POST /list: create or modify; answers ``type: "natural"`` for a normal list (recorded)."""
    name = str(payload.get("list") or "")
    if not name:
        raise invalid_parameter("Missing required parameter: list")
    list_type = "smart" if payload.get("type") == "smart" else "normal"
    with state.lock:
        missing = state.find_list(name) is None
    window = state.faults.list_race_window
    if missing and window > 0:
        time.sleep(window)  # concurrent first uses each create their own list
    emails = payload.get("emails")
    with state.lock:
        record = state.find_list(name)
        if record is None or (missing and window > 0):
            record = state.create_list(name, list_type)
        if "primary" in payload:
            record["primary"] = bool(payload["primary"])
        if isinstance(payload.get("vars"), Mapping):
            record["vars"].update(payload["vars"])
        if payload.get("query") is not None:
            record["query"] = payload["query"]
        if emails:
            add_emails(state, record, _split_emails(emails))
        return 200, {
            "list": name,
            "list_id": record["list_id"],
            "type": "natural" if record["type"] == "normal" else record["type"],
        }


def delete_list(state: State, payload: Mapping[str, Any]) -> Reply:
    """DELETE /list: removes the first list of that name; unknown is 404 / error 15."""
    name = str(payload.get("list") or "")
    if not name:
        raise invalid_parameter("Missing required parameter: list")
    with state.lock:
        record = state.find_list(name)
        if record is None:
            raise unknown_list(name)
        state.delete_list(record)
    return 200, {"list": name, "ok": True}


def add_emails(state: State, record: dict[str, Any], emails: list[str]) -> int:
    """Put each email on the list, creating missing users; the number added."""
    added = 0
    for email in emails:
        if "@" not in email:
            continue
        sid = state.find_sid("email", email)
        user = state.users[sid] if sid is not None else None
        if user is None:
            user = state.create_user()
            state.set_key(user, "email", email)
        state.join_list(user, record)
        added += 1
    return added


def _split_emails(emails: object) -> list[str]:
    if isinstance(emails, list):
        return [str(e).strip() for e in emails if str(e).strip()]
    return [e.strip() for e in str(emails).replace("\n", ",").split(",") if e.strip()]
