"""The /user endpoint: profiles looked up by email, sid or extid; vars, lists, keys, opt-out."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from ...transport._protocol import ErrorCode
from .._errors import ApiError, invalid_parameter
from .._state import INDEXED_KEYS, State, User

__all__ = ["delete_user", "get_user", "post_user", "render_user", "resolve_lookup"]

_LOOKUP_KEYS = ("email", "sid", "extid", "cookie", "sms")
_SETTABLE_KEYS = ("email", "extid", "sms")
_OPTOUT_LEVELS = ("none", "all", "basic", "blast")
_DEFAULT_FIELDS = ("keys", "vars", "lists", "engagement", "optout_email")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")

Reply = tuple[int, dict[str, Any]]


def resolve_lookup(state: State, payload: Mapping[str, Any], required: bool) -> tuple[str, str]:
    """The (key, id) a request names; ``email`` by default, ``extid`` only if enabled."""
    key = str(payload.get("key") or "email")
    if key not in _LOOKUP_KEYS:
        raise invalid_parameter(f"Invalid key: {key}")
    if key == "extid" and not state.extid_lookup:
        raise invalid_parameter("extid lookup is not enabled")
    raw = payload.get("id")
    ident = "" if raw is None else str(raw).strip()
    if required and not ident:
        raise invalid_parameter("Missing required parameter: id")
    if key == "email" and ident:
        if not _EMAIL.match(ident):
            raise ApiError(400, ErrorCode.INVALID_EMAIL, f"Invalid email: {ident}")
        ident = ident.lower()
    return key, ident


def render_user(state: State, user: User, fields: object) -> dict[str, Any]:
    """The fields of a user a GET (or a POST with ``fields``) answers with."""
    if isinstance(fields, Mapping) and fields:
        wanted = [name for name, flag in fields.items() if _truthy(flag)]
    else:
        wanted = list(_DEFAULT_FIELDS)
    lifetime_cents = sum(p.get("total", 0) for p in user["purchases"])
    values: dict[str, Any] = {
        "keys": dict(user["keys"]),
        # (inferred) {} for a profile without vars; Inferred(empty_vars="null") answers null.
        "vars": dict(user["vars"]) or ({} if state.inferred.empty_vars == "empty" else None),
        "lists": dict(user["lists"]) or None,  # Sailthru answers null, not {}, when none
        "engagement": "engaged" if user["purchases"] else "new",
        "optout_email": user["optout_email"],
        "purchase_incomplete": user["purchase_incomplete"],
        "purchases": list(user["purchases"]),
        "activity": {"create_date": user["create_time"]},
        "device": {},
        "lifetime": {
            "lifetime_purchase_count": len(user["purchases"]),
            "lifetime_purchase_price": lifetime_cents,
        },
        "smart_lists": [],
    }
    return {name: values[name] for name in wanted if name in values}


def get_user(state: State, payload: Mapping[str, Any]) -> Reply:
    """GET /user: a missing user is HTTP 400 with error 99 (recorded from the live API)."""
    key, ident = resolve_lookup(state, payload, required=True)
    with state.lock:
        stale, user = state.stale_view(key, ident)
        if not stale:
            sid = state.find_sid(key, ident)
            user = state.users.get(sid) if sid is not None else None
        if user is None:
            raise ApiError(400, ErrorCode.OTHER, f"User not found with {key}: {ident}")
        return 200, render_user(state, user, payload.get("fields"))


def delete_user(state: State, payload: Mapping[str, Any]) -> Reply:
    """DELETE /user: a missing user is HTTP 404 with error 99; sometimes a false 200 (fault)."""
    key, ident = resolve_lookup(state, payload, required=True)
    if state.chance(state.faults.false_ok_delete_rate):
        return 200, {"ok": True}
    with state.lock:
        sid = state.find_sid(key, ident)
        if sid is None:
            raise ApiError(404, ErrorCode.OTHER, f"User not found with {key}: {ident}")
        state.delete_user(sid)
    return 200, {"ok": True}


def post_user(state: State, payload: Mapping[str, Any]) -> Reply:
    """POST /user: create or update; ``keysconflict: merge`` folds the other profile in."""
    key, ident = resolve_lookup(state, payload, required=False)
    new_keys = _mapping(payload, "keys")
    var_changes = _mapping(payload, "vars")
    list_changes = _mapping(payload, "lists")
    optout = payload.get("optout_email")
    if optout is not None and optout not in _OPTOUT_LEVELS:
        raise invalid_parameter(f"Invalid optout_email: {optout}")
    for name in new_keys:
        if name not in _SETTABLE_KEYS:
            raise invalid_parameter(f"Invalid key: {name}")
    email = new_keys.get("email")
    if email and not _EMAIL.match(str(email)):
        raise ApiError(400, ErrorCode.INVALID_EMAIL, f"Invalid email: {email}")
    joining = [str(name) for name, flag in list_changes.items() if _truthy(flag)]
    missing = _wait_for_new_lists(state, joining)
    with state.lock:
        sid = state.find_sid(key, ident) if ident else None
        if sid is None and ident and key in ("sid", "cookie", "sms"):
            raise ApiError(400, ErrorCode.OTHER, f"User not found with {key}: {ident}")
        others = _conflicting_users(state, sid, new_keys)
        merging = payload.get("keysconflict") == "merge" or state.inferred.key_conflict == "merge"
        if others and not merging:
            # (inferred) Sailthru refuses a key another profile owns unless asked to merge;
            # Inferred(key_conflict="merge") gives the other answer.
            name, value, _ = others[0]
            raise invalid_parameter(
                f"Key conflict: {name} {value} belongs to another user (use keysconflict merge)"
            )
        before = state.snapshot(sid)
        user = state.users[sid] if sid is not None else state.create_user()
        if sid is None and ident:
            state.set_key(user, key, ident)
        for _, _, other_sid in others:
            if other_sid in state.users and other_sid != user["keys"]["sid"]:
                _merge(state, user, other_sid)
        for name, value in new_keys.items():
            state.set_key(user, name, None if value is None else str(value))
        _apply_vars(user, var_changes)
        _apply_lists(state, user, list_changes, missing)
        if optout is not None:
            user["optout_email"] = optout
        state.remember_before_post(_lookups(key, ident, user), before)
        answer: dict[str, Any] = {"ok": True}
        fields = payload.get("fields")
        if isinstance(fields, Mapping) and fields:
            answer.update(render_user(state, user, fields))
        return 200, answer


def _wait_for_new_lists(state: State, names: list[str]) -> set[str]:
    """Names not yet existing; with a race window, wait it out so concurrent callers collide."""
    with state.lock:
        missing = {name for name in names if state.find_list(name) is None}
    window = state.faults.list_race_window
    if not missing or window <= 0:
        return set()
    time.sleep(window)
    return missing


def _conflicting_users(
    state: State, sid: str | None, new_keys: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    found = []
    for name, value in new_keys.items():
        if value is None or value == "":
            continue
        text = str(value).lower() if name == "email" else str(value)
        owner = state.index[name].get(text)
        if owner is not None and owner != sid:
            found.append((name, text, owner))
    return found


def _merge(state: State, user: User, other_sid: str) -> None:
    """Fold another profile into ``user``: its vars, lists and purchases join; it is deleted."""
    other = state.users[other_sid]
    for name, value in other["vars"].items():
        user["vars"].setdefault(name, value)
    user["purchases"].extend(other["purchases"])
    if user["purchase_incomplete"] is None:
        user["purchase_incomplete"] = other["purchase_incomplete"]
    other_keys = {k: v for k, v in other["keys"].items() if k in _SETTABLE_KEYS}
    other_lists = dict(other["lists"])
    state.delete_user(other_sid)
    for name, value in other_keys.items():
        if name not in user["keys"]:
            state.set_key(user, name, value)
    for name, signed_up in other_lists.items():
        record = state.find_list(name)
        if record is not None:
            user["lists"].setdefault(name, signed_up)
            state.join_list(user, record)


def _apply_vars(user: User, changes: Mapping[str, Any]) -> None:
    for name, value in changes.items():
        if value is None or value == "":
            user["vars"].pop(name, None)  # a blank value clears the var
        else:
            user["vars"][name] = value


def _apply_lists(state: State, user: User, changes: Mapping[str, Any], missing: set[str]) -> None:
    for raw_name, flag in changes.items():
        name = str(raw_name)
        if not _truthy(flag):
            state.leave_list(user, name)
            continue
        record = state.find_list(name)
        if record is None or name in missing:
            # The race: every request that saw the list missing creates its own.
            record = state.create_list(name)
            missing.discard(name)
        state.join_list(user, record)


def _lookups(key: str, ident: str, user: User) -> list[tuple[str, str]]:
    found = [(name, value) for name, value in user["keys"].items() if name in INDEXED_KEYS]
    found.append(("sid", user["keys"]["sid"]))
    if ident:
        found.append((key, ident))
    return found


def _mapping(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = payload.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid_parameter(f"Invalid parameter: {name} must be an object")
    return value


def _truthy(flag: object) -> bool:
    if isinstance(flag, str):
        return flag.strip() not in ("", "0", "false")
    return bool(flag)
