"""The check that every column a setting names exists in the model, before any row is sent.

A typo in a column setting used to pass in silence and do damage: ``columns: first_nmae``
cleared ``first_name`` on every user, ``groups_column: grups`` sent the real ``groups``
column as a var, ``ignore: nothing_here`` re-exported every row. So each column named by a
flag, a config file, ``map`` or ``types`` must be a column of the model's header (or of a
host's schema); if one is not, the run stops (exit 2 on the command line) with the columns
the model has and the closest name (``did you mean 'first_name'?``).

Which settings are checked: the primary key and the match column of a users model always
(a model without them cannot be synced at all); every other column setting when it is set
to something other than its default (a default such as ``groups`` may be absent); ``columns``,
``ignore`` and ``types`` entries (after renames); ``map``'s old names (before renames).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import fields
from typing import Any

from ..config import ConfigError, SyncConfig

__all__ = ["check_host_columns", "column_problems", "named_columns"]

# Settings naming one column, with the flag that sets each on the command line.
_SINGLE = {
    "primary_key": "--primary-key",
    "match_column": "--match-column",
    "groups_column": "--groups-column",
    "optout_column": "--optout-column",
    "deleted_column": "deleted_column",
    "event_column": "event_column",
    "schedule_time_column": "schedule_time_column",
    "order_column": "order_column",
    "items_column": "items_column",
    "date_column": "date_column",
}
_REQUIRED = {"users": ("primary_key", "match_column")}
# The settings each kind of model reads (a host's shared settings may name the others).
_USED = {
    "users": {"primary_key", "match_column", "groups_column", "optout_column",
              "deleted_column", "columns", "ignore", "types"},
    "events": {"primary_key", "match_column", "event_column", "schedule_time_column",
               "ignore", "types"},
    "purchases": {"primary_key", "match_column", "order_column", "items_column",
                  "date_column", "types"},
}
_USED["returns"] = _USED["purchases"]
_SHOWN = 20  # columns listed in a message at most


def _defaults() -> dict[str, object]:
    return {f.name: f.default for f in fields(SyncConfig)}


def _label(setting: str) -> str:
    flag = _SINGLE.get(setting, f"--{setting}")
    return setting if flag == setting else f"{flag} ({setting})"


def named_columns(
    config: SyncConfig, *, given: Collection[str] | None = None
) -> list[tuple[str, str]]:
    """``(setting, column)`` for each column ``config`` names after renames (``map`` aside).

    ``given``: only these settings (a host's mapping, whose defaults may not apply);
    else the required ones and every one set to other than its default.
    """
    defaults = _defaults()
    required = _REQUIRED.get(config.object, ())
    used = _USED[config.object]
    named: list[tuple[str, str]] = []
    for setting in _SINGLE:
        value = getattr(config, setting)
        if not value or setting not in used:
            continue
        if given is not None:
            wanted = setting in given
        else:
            wanted = setting in required or value != defaults[setting]
        if wanted:
            named.append((setting, value))
    for setting in ("columns", "ignore"):
        if setting in used and (given is None or setting in given):
            named += [(setting, name) for name in getattr(config, setting)]
    if given is None or "types" in given:
        named += [("types", name) for name in config.types]
    return named


def _listed(columns: Iterable[str]) -> str:
    names = list(columns)
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN else "")


def _problem(setting: str, column: str, present: list[str]) -> str:
    close = difflib.get_close_matches(column, present, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{_label(setting)}: no column {column!r} (columns: {_listed(present)}{hint})"


def column_problems(
    config: SyncConfig, header: Iterable[str], *, given: Collection[str] | None = None
) -> list[str]:
    """What is wrong with the columns ``config`` names, given the model's ``header`` (its
    columns before ``map``); empty when every named column exists."""
    raw = [name for name in header if name != "__problem__"]
    problems = [_problem("map", old, raw) for old in config.map
                if old not in raw and (given is None or "map" in given)]
    present = list(dict.fromkeys(config.map.get(name, name) for name in raw))
    seen: set[tuple[str, str]] = set()
    for setting, column in named_columns(config, given=given):
        if column not in present and (setting, column) not in seen:
            seen.add((setting, column))
            problems.append(_problem(setting, column, present))
    return problems


def check_host_columns(
    config: SyncConfig, columns: Iterable[str], table: str,
    mapping: Mapping[str, Any] | None, tables: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    """For a host (dlt, Singer) that knows a table's ``columns`` from its schema: a
    :class:`ConfigError` when a setting of ``mapping`` or of ``tables[table]`` names a column
    the table lacks (the host's own defaults and hints are not checked)."""
    given = {*(mapping or {}), *((tables or {}).get(table) or {})}
    problems = column_problems(config, columns, given=given)
    if problems:
        raise ConfigError(f"the settings of table {table!r}: {'; '.join(problems)}")
