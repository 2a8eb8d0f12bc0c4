"""The fields of a postback, read strictly: each refusal is a :class:`PostbackError`.

A field the parser reads that is present but empty, a repeated or malformed ``[...]`` entry,
JSON nested too deep, a name that is not text: none of these can be trusted, since Sailthru's
signature covers only the sorted values (see :mod:`sailthru_destination.features.postbacks`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..options import MatchKey
from ..shaping._json import MAX_JSON_DEPTH, JsonTooDeep, loads_bounded
from ..shaping.mapping import InvalidValue
from .profiles import valid_key

__all__ = [
    "PostbackError",
    "check_read_fields",
    "check_text",
    "email_field",
    "flag",
    "lists_field",
    "optional",
    "required",
    "shown",
    "vars_field",
]


class PostbackError(ValueError):
    """A postback that must be refused; ``http_status`` is 403 (signature) or 400."""

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status


# The parameters a parser reads: present but empty, each is refused (see the module docs).
_READ_FIELDS = frozenset(
    {"action", "email", "optout", "mode", "send_id", "blast_id", "sid", "optout_email"}
)
_STRUCTURED = ("lists", "vars")
_BRACKETS = re.compile(r"(?:\[([^\[\]]+)\])+")
_SEGMENT = re.compile(r"\[([^\[\]]+)\]")


def shown(name: str) -> str:
    """A field name as errors quote it (long names cut)."""
    return repr(name if len(name) <= 40 else name[:37] + "...")


def check_text(params: Mapping[str, str]) -> None:
    """Every name and value is text Sailthru could have signed (UTF-8 strings)."""
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise PostbackError("postback parameters must be strings")
        for text in (key, value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise PostbackError(f"field {shown(key)} is not valid text") from None


def _structured_name(key: str) -> str | None:
    """``lists`` or ``vars`` when ``key`` is one of them or one of their ``[...]`` entries."""
    for name in _STRUCTURED:
        if key == name or key.startswith(name + "["):
            return name
    return None


def check_read_fields(params: Mapping[str, str]) -> None:
    """No field the parser reads is present but empty: the signature cannot see one."""
    for key, value in params.items():
        if (key in _READ_FIELDS or _structured_name(key)) and not value.strip():
            raise PostbackError(
                f"field {shown(key)} is empty: an empty parameter leaves the signature "
                "unchanged, so it cannot be trusted"
            )


def required(params: Mapping[str, str], name: str, action: str) -> str:
    value = params.get(name)
    if value is None:
        raise PostbackError(f"{action} postback is missing the required field {name!r}")
    return value.strip()


def optional(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    return None if value is None else value.strip()


def email_field(params: Mapping[str, str], action: str) -> str:
    email = required(params, "email", action)
    try:
        valid_key(MatchKey.EMAIL, email, "email")
    except InvalidValue:
        raise PostbackError(
            f"field 'email' of the {action} postback is not an email address"
        ) from None
    return email


def flag(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise PostbackError(f"field {name!r} must be 1 or 0")


def _bracket_fields(params: Mapping[str, str], name: str) -> dict[str, Any]:
    """``name[a]=1&name[b][c]=2`` as ``{"a": "1", "b": {"c": "2"}}``."""
    result: dict[str, Any] = {}
    opening = name + "["
    for key, value in params.items():
        if not key.startswith(opening):
            continue
        rest = key[len(name) :]
        if not _BRACKETS.fullmatch(rest):
            raise PostbackError(f"field {shown(key)} is not of the form {name}[a][b]")
        path = _SEGMENT.findall(rest)
        if len(path) > MAX_JSON_DEPTH:
            raise PostbackError(f"field {name!r} is nested too deep (over {MAX_JSON_DEPTH})")
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PostbackError(f"field {name!r} mixes a value and nested values")
            node = child
        if isinstance(node.get(path[-1]), dict):
            raise PostbackError(f"field {name!r} mixes a value and nested values")
        node[path[-1]] = value
    return result


def _structured(params: Mapping[str, str], name: str) -> Any:
    """A nested field sent as a JSON string (``lists={"A":1}``) or in bracket form."""
    raw = params.get(name)
    brackets = _bracket_fields(params, name)
    if raw is None:
        return brackets
    if brackets:
        raise PostbackError(f"field {name!r} is given both as JSON and in bracket form")
    try:
        return loads_bounded(raw, strict=True)
    except JsonTooDeep as exc:
        raise PostbackError(f"field {name!r} is nested too deep ({exc.msg})") from None
    except json.JSONDecodeError:
        raise PostbackError(f"field {name!r} is neither JSON nor bracket form") from None


def _member(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false")
    return value not in (None, 0, False)


def _list_name(name: str) -> str:
    if not name.strip():
        raise PostbackError("field 'lists' names a list with an empty name")
    return name


def lists_field(params: Mapping[str, str]) -> dict[str, bool]:
    value = _structured(params, "lists")
    if isinstance(value, list):  # ["A", "B"]: the lists the user is on
        if not all(isinstance(item, str) for item in value):
            raise PostbackError("field 'lists' must name lists with strings")
        return dict.fromkeys((_list_name(item) for item in value), True)
    if isinstance(value, dict):
        # {name: 1|0} or, like GET /user, {name: "<signup date>"}: present and truthy is on.
        return {_list_name(str(k)): _member(v) for k, v in value.items()}
    raise PostbackError("field 'lists' must be an object or an array")


def vars_field(params: Mapping[str, str]) -> dict[str, Any]:
    value = _structured(params, "vars")
    if not isinstance(value, dict):
        raise PostbackError("field 'vars' must be an object")
    return value
