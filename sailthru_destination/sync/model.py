"""One row of the model read the way the config says: primary key, match value, vars, groups.

A row that cannot be read raises :class:`RowProblem` naming the column and the reason.
Its hash is what the next run compares to decide whether the row changed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..options import OptoutLevel
from ..shaping._invalid import InvalidValue
from ..shaping._json import loads_bounded
from ..shaping.row_contract import HASHED_FIELDS
from ..shaping.values import sailthru_value
from .config import SyncConfig
from .warehouse.sources import Row

__all__ = [
    "RowProblem", "UserRow", "is_deleted", "kept_groups", "read_user_row",
    "row_key", "storable", "user_key",
]

# What json.dumps(sort_keys=True, default=str) does, without building an encoder per row.
_HASH_ENCODER = json.JSONEncoder(sort_keys=True, default=str)


class RowProblem(ValueError):
    """A row the config cannot read; ``field`` names the column."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class UserRow:
    """What one model row says a Sailthru user should be."""

    pk: str
    match: Any
    properties: dict[str, Any]
    groups: frozenset[str]
    optout: str | None
    hash: str


def _present(value: Any) -> bool:
    return value is not None and value != ""


_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no", ""})


def is_deleted(row: Row, config: SyncConfig) -> bool:
    """Whether the row's ``deleted_column`` marks it deleted, read strictly.

    Deleted: ``true``, ``1``, ``yes`` (any case, trimmed), a boolean true or the integer 1,
    or a date-time (a "deleted at" column such as Singer's ``_sdc_deleted_at``). Not
    deleted: ``false``, ``0``, ``no``, a boolean false, the integer 0, an empty or
    blank cell, or no value at all. Anything else (``NULL``, ``\\N``, ``None``, ``off``,
    ``0.0``, ``2``...) raises :class:`RowProblem` naming the column and the value: a flag
    that deletes people is never guessed.
    """
    column = config.deleted_column
    if not column:
        return False
    value = row.value(column)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, datetime.datetime):
        return True
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded in _TRUE_WORDS:
            return True
        if folded in _FALSE_WORDS:
            return False
        if _date_time(folded):
            return True
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    raise RowProblem(column, f"{shown} is not a deleted flag: use true/1/yes or a date-time "
                     "to delete the row, false/0/no or an empty cell to keep it; the row was "
                     "left as it is")


def _date_time(text: str) -> bool:
    """Whether ``text`` is an ISO 8601 date-time (a "deleted at" stamp)."""
    if len(text) < 16 or text[4:5] != "-" or text[10:11] not in ("t", " "):
        return False
    try:
        datetime.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def row_key(row: Row, config: SyncConfig) -> str:
    """The row's primary key as text; raises :class:`RowProblem` when it is missing."""
    value = row.value(config.primary_key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    # Stripped before the check: a key of only spaces would otherwise become "".
    key = "" if value is None else str(value).strip()
    if not key:
        problem = row.value("__problem__")
        if problem:
            raise RowProblem("row", str(problem))
        raise RowProblem(config.primary_key, f"the primary key column {config.primary_key!r} "
                         "is missing or empty")
    return key


def storable(value: str, field: str) -> str:
    """``value`` when it is valid Unicode; else :class:`RowProblem` naming ``field``.

    Text decoded with ``surrogateescape`` can hold lone surrogates: no UTF-8 encoder (the
    state file's, the HTTP body's) accepts them, so such a key fails its own row.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RowProblem(field, f"{value[:80]!r} is not valid Unicode text (it holds a lone "
                         "surrogate)") from None
    return value


def _match_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(int(value) if isinstance(value, float) and value.is_integer() else value)


def user_key(config: SyncConfig, match: Any) -> str | None:
    """The Sailthru user ``match`` names, as Sailthru compares it, or None when it has none.

    Sailthru lower-cases emails and we trim every key before sending it, so
    ``" Ann@Example.com"`` and ``"ann@example.com"`` are one user. Two rows with one user
    key are one Sailthru user.
    """
    if not _present(match):
        return None
    text = _match_text(match).strip()
    if not text:
        return None
    return text.lower() if config.match_key == "email" else text


def parse_groups(value: Any, column: str) -> frozenset[str]:
    """Group names from a JSON array, a list, or ``;``-separated text."""
    if not _present(value):
        return frozenset()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = loads_bounded(text)
            except json.JSONDecodeError as exc:
                raise RowProblem(column, f"looks like a JSON array but is not: {exc.msg}") from None
        else:
            return frozenset(part.strip() for part in text.split(";") if part.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(g, str) for g in value):
        return frozenset(g.strip() for g in value if g.strip())
    raise RowProblem(column, "groups must be a JSON array of names or ';'-separated names")


def _typed_properties(data: dict[str, Any], wanted: Iterable[str],
                      timezone: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name in wanted:
        if name in data:
            try:
                properties[name] = sailthru_value(data[name], name, timezone=timezone)
            except InvalidValue as exc:
                raise RowProblem(exc.field, exc.reason) from None
    return properties


def _optout_cell(data: Mapping[str, Any], config: SyncConfig) -> str | None:
    """The row's opt-out level (None: the cell is empty or blank, as a NULL is: no level of
    its own). A level Sailthru does not know fails the row, quoting the cell as it is."""
    if not config.optout_column:
        return None
    raw = data.get(config.optout_column)
    if not _present(raw) or not str(raw).strip():
        return None  # "  " is read like "": a blank cell says nothing
    level = str(raw).strip()
    if level not in _OPTOUT_LEVELS:
        valid = ", ".join(repr(name) for name in sorted(_OPTOUT_LEVELS))
        raise RowProblem(config.optout_column, f"{config.optout_column} must be one of "
                         f"{valid}; got {raw!r}")
    return level


_OPTOUT_LEVELS = frozenset(str(level) for level in OptoutLevel)


def read_user_row(row: Row, config: SyncConfig, pk: str, *, timezone: str = "UTC") -> UserRow:
    """The user a model row describes; raises :class:`RowProblem` for a bad row.

    Each var column is typed by the one rule
    (:func:`~sailthru_destination.shaping.values.sailthru_value`;
    ``timezone`` is the account's, for naive dates). A NULL stays ``None``, for the nulls
    policy to settle against the old values; ``""`` is a value.
    """
    data = row.data
    if data.get("__problem__"):
        raise RowProblem("row", str(data["__problem__"]))
    match = data.get(config.match_column)
    if not _present(match):
        raise RowProblem(config.match_column, f"the match column {config.match_column!r} "
                         "is missing or empty")
    match = _match_text(match)
    groups = parse_groups(data.get(config.groups_column), config.groups_column)
    optout = _optout_cell(data, config)
    skip = {config.primary_key, config.groups_column, *config.ignore}
    if config.deleted_column:
        skip.add(config.deleted_column)
    if config.optout_column:
        skip.add(config.optout_column)
    if config.match_column != "email":
        skip.add(config.match_column)
    wanted = config.columns or tuple(k for k in data if k not in skip)
    properties = _typed_properties(data, wanted, timezone)
    if config.columns and config.match_key == "email" and config.match_column == "email":
        properties.setdefault("email", match)
    carried = {"key": match, "vars": properties, "lists": sorted(groups), "optout": optout}
    digest = hashlib.sha256(_HASH_ENCODER.encode(
        [carried[name] for name in HASHED_FIELDS]).encode("utf-8")).hexdigest()
    return UserRow(pk, match, properties, groups, optout, digest)


def kept_groups(user: UserRow, row: Row, config: SyncConfig,
                old_groups: Callable[[], frozenset[str] | None]) -> UserRow:
    """``user`` with the groups the nulls policy gives a NULL ``groups`` value.

    Under ``keep`` (the default) a NULL in the groups column says nothing of the lists: the
    user stays on the lists last applied (``old_groups()``, asked only then; None: never
    synced, so none). Under
    ``clear`` a NULL is no groups: every list is left. A row without the column at all, an
    empty text or an empty array are values, read as no groups under either policy.
    """
    if (config.null_values != "keep" or config.groups_column not in row.data
            or row.data[config.groups_column] is not None):
        return user
    old = old_groups()
    return replace(user, groups=old) if old else user
