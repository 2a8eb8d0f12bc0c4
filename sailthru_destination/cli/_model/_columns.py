"""``--map`` and ``--types``, and the check of the model's columns before any row is sent.

Every column a setting names must exist (:mod:`..sync.column_check`): the first rows are
read ahead (:data:`LOOK_AHEAD`, so a JSON-lines model whose first line lacks an optional key
is not refused) and their columns are the model's header.

A column Sailthru would refuse as a var name (``last-name``) fails every row of a run, one
identical error per row; it is a problem of the model's header, so it is said once, before
any work, with the fix (exit 2), as a CSV header naming a column twice is.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence

from ...shaping.varnames import var_name_problem
from ...sync.config import SyncConfig
from ...sync.model import RowProblem, read_user_row
from ...sync.warehouse.column_check import column_problems
from ...sync.warehouse.columns import collision
from ...sync.warehouse.sources import Row
from .._common import UsageError

__all__ = ["LOOK_AHEAD", "check_columns", "parse_map", "parse_types"]

LOOK_AHEAD = 1000
"""Rows whose columns make the header (a CSV or SQL row has them all; JSON lines may not)."""
_DELIMITERS = (";", "\t", "|")

# Sent as the user's key, never as a var (see profiles._KEY_PROPERTIES).
_KEYS = frozenset({"email"})


def _pairs(values: Sequence[str] | None, flag: str, example: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or ():
        for item in value.split(","):
            name, sep, target = (part.strip() for part in item.partition("="))
            if not sep or not name or not target:
                raise UsageError(f"{flag} wants COLUMN={example}, got {item.strip()!r}")
            if name in pairs:
                raise UsageError(f"{flag} names column {name!r} twice")
            pairs[name] = target
    return pairs


def parse_map(values: Sequence[str] | None) -> dict[str, str] | None:
    """``--map old=new`` values (repeatable, or comma-separated) as a mapping (None: none)."""
    return _pairs(values, "--map", "NEW_NAME (e.g. last-name=last_name)") or None


def parse_types(values: Sequence[str] | None) -> dict[str, str] | None:
    """``--types age=int,vip=bool`` values as a mapping (None: none given)."""
    return _pairs(values, "--types", "TYPE (e.g. age=int,vip=bool)") or None


def _suggestion(name: str) -> str | None:
    """A var name Sailthru accepts for column ``name``, when one is plain to see."""
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    if cleaned[:1].isdigit():
        cleaned = "v_" + cleaned
    if not cleaned or var_name_problem(cleaned) is not None:
        return None
    return cleaned


def _var_columns(config: SyncConfig, columns: Iterable[str]) -> list[str]:
    """The columns of a users model that become vars, as the run picks them."""
    data = {name: "x" for name in columns if name != "__problem__"}
    data[config.match_column] = "someone@example.com"
    data.pop(config.groups_column, None)
    try:
        user = read_user_row(Row("header", data), config, "header")
    except RowProblem:
        return []
    return [name for name in user.properties if name not in _KEYS]


def check_columns(config: SyncConfig, rows: Iterable[Row]) -> Iterable[Row]:
    """The same ``rows``, once the first rows' columns are checked: a column a setting names
    that the model lacks, or a column that cannot be a var name, is a :class:`UsageError`
    naming it and the fix."""
    iterator = iter(rows)
    ahead = list(itertools.islice(iterator, LOOK_AHEAD))
    if not ahead:
        return ()
    header = list(dict.fromkeys(name for row in ahead for name in row.data))
    problems = column_problems(config, header)
    if problems:
        raise UsageError("; ".join(problems) + _delimiter_hint(header) + " (nothing was sent)")
    if config.object == "users":
        _check_var_names(config, ahead[0])
    return itertools.chain(ahead, iterator)


def _delimiter_hint(header: list[str]) -> str:
    """A hint when the whole header is one column holding another delimiter."""
    real = [name for name in header if name != "__problem__"]
    if len(real) != 1:
        return ""
    for delimiter in _DELIMITERS:
        if delimiter in real[0]:
            return (f"; the header is one column holding {delimiter!r}: the file looks "
                    f"{delimiter!r}-separated, pass --delimiter {delimiter!r}")
    return ""


def _check_var_names(config: SyncConfig, first: Row) -> None:
    clash = collision(first.data, config.map)
    if clash:
        raise UsageError(f"{clash} (nothing was sent)")
    columns = [config.map.get(name, name) for name in first.data]
    problems = []
    for name in _var_columns(config, columns):
        problem = var_name_problem(name)
        if problem is None:
            continue
        fix = _suggestion(name)
        rename = f"rename it with --map {name}={fix} or " if fix else ""
        problems.append(f"column {name!r} is not a valid var name ({problem}): {rename}leave "
                        f"it out with --ignore {name}")
    if problems:
        raise UsageError("; ".join(problems) + " (nothing was sent)")
