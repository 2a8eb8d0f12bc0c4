"""Which column of the model means what, from flags or a small JSON/TOML config file.

With no mapping at all, a model with columns ``id``, ``email``, ``groups`` and others
just works: ``id`` is the primary key, ``email`` the match key, ``groups`` the list
memberships (a JSON array or ``;``-separated names), every other column a var.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..options import DeleteBehavior, DestinationOptions, MatchKey, OptoutLevel, SyncMode
from ..shaping.nulls import NULL_VALUES
from .config_schema import check_settings

__all__ = [
    "OBJECTS", "BulkMode", "ConfigError", "SyncConfig", "file_settings", "keyed_by_order",
    "load_config",
    "name_problem", "table_config",
]

OBJECTS = ("users", "events", "purchases", "returns")
"""What a model's rows can be: the values of ``SyncConfig.object``."""
BulkMode = str
"""The type of ``SyncConfig.bulk``: ``"auto"``, ``"always"`` or ``"never"``."""
_BULK_MODES = ("auto", "always", "never")


class ConfigError(ValueError):
    """The mapping or a setting is wrong; the message says which and how to fix it."""


_MAX_NAME_BYTES = 200  # room for "-<date>-<time>-<n>" within a 255-byte file name


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a model's state file and report folder, or None.

    The name becomes ``<home>/<name>.db`` and ``<home>/reports/<name>-<time>``: a path
    separator or ``..`` would put them outside their folder or nest them.
    """
    if not name.strip():
        return "is empty"
    if name != name.strip():
        return "has spaces at its start or end"
    if name in (".", "..") or "/" in name or "\\" in name:
        return "must be a plain name, not a path (no '/', '\\', '.' or '..')"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
        return f"is longer than {_MAX_NAME_BYTES} bytes"
    return None


@dataclass(frozen=True)
class SyncConfig:
    """How rows of a model become Sailthru users, events, purchases or returns.

    The settings of ``sync``'s flags and ``--config`` file, by the same names; a wrong value
    raises :class:`ConfigError` naming the setting.
    ``max_delete`` stops a run before it deletes or clears more than that share (``"20%"``, the
    default) or count of the remembered users (:mod:`.guard`).
    """

    object: str = "users"
    """What the rows are: ``"users"``, ``"events"``, ``"purchases"`` or ``"returns"``."""
    name: str = ""
    """The model's name for the state file and the report folder: a plain name, not a path
    (empty: the model file's name)."""
    primary_key: str = "id"
    """The column that identifies a row from run to run."""
    match_column: str = "email"
    """The column holding the value Sailthru matches users on."""
    match_key: str = "email"
    """What the match column holds: ``"email"``, ``"sid"`` or ``"extid"``."""
    groups_column: str = "groups"
    """The column of list memberships: a JSON array or ``;``-separated list names."""
    optout_column: str | None = None
    """A column of an ``optout_email`` level per row."""
    deleted_column: str | None = None
    """A column that marks a row deleted (true, 1, yes): the row gets the delete behaviour."""
    columns: tuple[str, ...] = ()
    """The var columns; empty: every column not otherwise used."""
    ignore: tuple[str, ...] = ()
    """Columns to leave out."""
    delete_behavior: str = "nothing"
    """What rows gone from the model do in Sailthru: ``"nothing"``, ``"clear"`` or
    ``"delete"``."""
    sync_mode: str = "upsert"
    """``"upsert"``, or ``"update"``: never create a user."""
    default_list: str | None = None
    """A list every exported user joins."""
    list_prefix: str = ""
    """Put in front of every list name made from a group."""
    optout: str | None = None
    """The ``optout_email`` level sent with every user."""
    concurrency: int | None = None
    """Records in flight at once; None adapts it to the rate limit and the latency."""
    bulk: BulkMode = "auto"
    """``"auto"`` (the job API when the cost model of :mod:`.bulk_choice` says it is faster,
    or from ``bulk_threshold`` changed rows on when that is set), ``"always"`` or
    ``"never"``."""
    bulk_threshold: int | None = None
    """Changed rows from which ``bulk="auto"`` uses a job (None: the cost model decides)."""
    state: str | None = None
    """The state file (None: ``<home>/<name>.db``)."""
    report_dir: str | None = None
    """The folder for the run's report (None: ``<home>/reports/<name>-<time>``)."""
    allow_empty: bool = False
    """Accept an empty model (every remembered row is then gone)."""
    lock_wait: float = 2.0
    """Seconds a run waits for another run of the same model to finish before it gives up
    (exit 2)."""
    max_errors: int | None = None
    """Stops a run cleanly (state saved, exit 1) after this many failed records."""
    null_values: str = "keep"
    """What a NULL cell does to its var: ``"keep"`` (the default) leaves Sailthru's value,
    ``"clear"`` empties the var."""
    empty_as_null: bool = False
    """CSV only: read an empty cell as NULL (else an empty cell is the empty string)."""
    max_delete: str | int | None = "20%"
    """Stops a run (exit 2, before any call) that would delete or clear more than this share
    (``"20%"``, the default) or count of the remembered users; ``"100%"`` never stops
    (:mod:`.guard`; None: the default)."""
    map: Mapping[str, str] = field(default_factory=dict)  # column renames, old -> new
    """Column renames (old name -> new name), applied to every row before anything else reads
    it (:mod:`.columns`)."""
    types: Mapping[str, str] = field(default_factory=dict)  # column -> int/float/bool/json/str
    """How to read text columns: ``int``, ``float``, ``bool``, ``json`` or ``str`` per column
    (:mod:`.columns`)."""
    rate_limits: Mapping[str, float] = field(default_factory=dict)
    """Starting requests per second per endpoint, e.g. ``{"user": 300}``."""
    # events
    event_column: str = "event"
    """Events: the column of the event name."""
    schedule_time_column: str | None = None
    """Events: the column of the time to send the event at."""
    # purchases and returns
    order_column: str = "order_id"
    """Purchases and returns: the column of the order id."""
    items_column: str = "items"
    """Purchases and returns: the column of the items (a JSON array)."""
    date_column: str | None = None
    """Purchases and returns: the column of the order date."""
    price_unit: str = "dollars"
    """Purchases and returns: the unit of item prices in the model, ``"dollars"`` or
    ``"cents"``."""

    def __post_init__(self) -> None:
        if self.object not in OBJECTS:
            raise ConfigError(f"object must be one of {', '.join(OBJECTS)}; got {self.object!r}")
        if self.bulk not in _BULK_MODES:
            raise ConfigError(f"bulk must be one of {', '.join(_BULK_MODES)}; got {self.bulk!r}")
        if self.price_unit not in ("dollars", "cents"):
            raise ConfigError(f"price_unit must be 'dollars' or 'cents'; got {self.price_unit!r}")
        if self.bulk_threshold is not None and (
            isinstance(self.bulk_threshold, bool) or not isinstance(self.bulk_threshold, int)
            or self.bulk_threshold < 1
        ):
            raise ConfigError(f"bulk_threshold must be a whole number >= 1; got "
                              f"{self.bulk_threshold!r}")
        problem = name_problem(self.name) if self.name else None
        if problem:
            raise ConfigError(f"name {problem}; got {self.name!r}")
        if isinstance(self.lock_wait, bool) or not isinstance(self.lock_wait, (int, float)) or (
            not 0 <= self.lock_wait <= 86_400
        ):
            raise ConfigError(f"lock_wait must be a number of seconds from 0 to 86400; got "
                              f"{self.lock_wait!r}")
        if self.max_errors is not None and (
            isinstance(self.max_errors, bool) or not isinstance(self.max_errors, int)
            or self.max_errors < 1
        ):
            raise ConfigError(f"max_errors must be a whole number >= 1; got {self.max_errors!r}")
        _check_columns(self.map, self.types)
        if self.null_values not in NULL_VALUES:
            raise ConfigError(f"null_values must be one of {', '.join(NULL_VALUES)}; got "
                              f"{self.null_values!r}")
        _check_max_delete(self.max_delete)
        for name in ("primary_key", "match_column"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"{name} must name a column of the model")
        try:
            MatchKey.parse(self.match_key, "match_key")
            SyncMode.parse(self.sync_mode, "sync_mode")
            DeleteBehavior.parse(self.delete_behavior, "delete_behavior")
            if self.optout is not None:
                OptoutLevel.parse(self.optout, "optout")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not isinstance(self.rate_limits, Mapping) or not all(
            isinstance(v, (int, float)) and v > 0 for v in self.rate_limits.values()
        ):
            raise ConfigError("rate_limits maps endpoints to positive requests per second")
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        self.destination_options()  # validate concurrency, lists and the rest now

    def destination_options(self, *, lock_dir: str | None = None) -> DestinationOptions:
        """The destination's options for this mapping."""
        try:
            return DestinationOptions(
                match_key=MatchKey.parse(self.match_key, "match_key"),
                sync_mode=SyncMode.parse(self.sync_mode, "sync_mode"),
                delete_behavior=DeleteBehavior.parse(self.delete_behavior, "delete_behavior"),
                default_list=self.default_list,
                list_prefix=self.list_prefix,
                optout=None if self.optout is None else OptoutLevel.parse(self.optout, "optout"),
                concurrency=self.concurrency,
                lock_dir=lock_dir,
                null_values="clear" if self.null_values == "clear" else "keep",
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def fingerprint(self) -> str:
        """The settings that change what a row becomes: a change re-exports every row."""
        keys = ("object", "match_key", "match_column", "groups_column", "optout_column",
                "columns", "ignore", "default_list", "list_prefix", "optout")
        settings = {k: getattr(self, k) for k in keys}
        if self.deleted_column:  # only when set, so older state files keep their fingerprint
            settings["deleted_column"] = self.deleted_column
        # A policy change re-exports every row: "clear" then empties the vars "keep" left.
        if self.null_values != "keep":
            settings["null_values"] = self.null_values
        if self.empty_as_null:
            settings["empty_as_null"] = True
        return json.dumps(settings, sort_keys=True)

    def only_nulls_differ(self, stored: str) -> bool:
        """Whether the ``stored`` :meth:`fingerprint` differs from this mapping's only in the
        nulls policy (``null_values``, ``empty_as_null``): the lists are then named as before,
        and the re-export keeps the old ones known so that a list left in the same run is left.
        """
        try:
            old = json.loads(stored)
        except ValueError:
            return False
        if not isinstance(old, dict):
            return False
        new = json.loads(self.fingerprint())
        for settings in (old, new):
            settings.pop("null_values", None)
            settings.pop("empty_as_null", None)
        return bool(old == new)

    def replace(self, **changes: Any) -> SyncConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def _check_columns(renames: Any, types: Any) -> None:
    from .warehouse.columns import TYPES

    if not isinstance(renames, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v.strip()
        for k, v in renames.items()
    ):
        raise ConfigError("map renames columns: it maps each column name to its new name")
    if len(set(renames.values())) != len(renames):
        raise ConfigError("map gives two columns the same new name")
    if not isinstance(types, Mapping) or not all(
        isinstance(k, str) and k and v in TYPES for k, v in types.items()
    ):
        raise ConfigError(f"types maps columns to one of {', '.join(TYPES)}; got {types!r}")


def _check_max_delete(value: object) -> None:
    from .guard import DeleteLimit

    if value is not None:
        try:
            DeleteLimit.parse(value)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _field_names() -> set[str]:
    return {f.name for f in fields(SyncConfig)}


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib

        loader: Any = tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            loader = importlib.import_module("tomli")
        except ImportError:
            raise ConfigError(
                f"{path}: TOML config files need Python 3.11+ or the tomli package; "
                "use a JSON config file instead"
            ) from None
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = loader.load(handle)
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return data


def _read_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {path}")
    if file.suffix.lower() == ".toml":
        data = _read_toml(file)
    else:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold one object of settings")
    return data


def file_settings(path: str | None) -> dict[str, Any]:
    """The settings a JSON or TOML config file gives, as written (none without a file)."""
    return _read_file(path) if path else {}


def load_config(path: str | None = None, **overrides: Any) -> SyncConfig:
    """A config from a JSON or TOML file (when given), then ``overrides`` (None = not set)."""
    settings: dict[str, Any] = _read_file(path) if path else {}
    known = _field_names()
    unknown = sorted(set(settings) - known)
    if unknown:
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"unknown setting(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    _check(settings, path)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if "match_key" not in settings and settings.get("match_column") in ("sid", "extid"):
        settings["match_key"] = settings["match_column"]
    for name in ("columns", "ignore"):
        value = settings.get(name)
        if isinstance(value, str):
            settings[name] = tuple(c.strip() for c in value.split(",") if c.strip())
    try:
        return SyncConfig(**settings)
    except TypeError as exc:
        raise ConfigError(f"bad setting: {exc}") from None


def _check(settings: Mapping[str, Any], where: str | None) -> None:
    """Stop with every problem of ``settings`` under the published schema, each named."""
    problems = check_settings({k: v for k, v in settings.items() if k in _field_names()})
    if problems:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{'; '.join(problems)} (sailthru-destination sync "
                          "--config-schema prints every setting)")


def table_config(
    table: str,
    mapping: Mapping[str, Any] | None,
    tables: Mapping[str, Mapping[str, Any]] | None,
    *,
    host_columns: Collection[str] = (),
    **defaults: Any,
) -> SyncConfig:
    """The config of one table (or stream) of a host: ``defaults``, then ``mapping`` (every
    table), then ``tables[table]``. Users tables default to a ``_deleted`` column; a
    purchases table with no primary key set is keyed by its order column when
    ``host_columns`` (the table's declared columns) has it, as the CLI keys a model."""
    if mapping is not None and not isinstance(mapping, Mapping):
        raise ConfigError("mapping must be a table of settings applied to every table")
    if tables is not None and not (
        isinstance(tables, Mapping) and all(isinstance(v, Mapping) for v in tables.values())
    ):
        raise ConfigError("tables maps each table name to a table of its settings")
    settings = {**defaults, **(mapping or {}), **((tables or {}).get(table) or {})}
    if settings.get("object", "users") == "users":
        settings.setdefault("deleted_column", "_deleted")
    where = f"the settings of table {table!r}"
    _check({**(mapping or {}), **((tables or {}).get(table) or {})}, where)
    unknown = sorted(set(settings) - _field_names())
    if unknown:
        raise ConfigError(f"unknown setting(s) in {where}: {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(_field_names()))}")
    try:
        config = load_config(None, **{**settings, "name": table})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return keyed_by_order(config, host_columns, primary_key_given="primary_key" in settings)


def keyed_by_order(config: SyncConfig, columns: Collection[str], *,
                   primary_key_given: bool) -> SyncConfig:
    """``config`` with a purchases model's primary key defaulted to its order column
    (``order_id``) when ``columns`` has it: an order is bought once, and its rows rarely
    carry an ``id`` of their own. Any other model, or a key that was set, is left alone."""
    if config.object != "purchases" or primary_key_given or config.order_column not in columns:
        return config
    return config.replace(primary_key=config.order_column)
