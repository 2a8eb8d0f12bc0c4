"""Sailthru as a dlt destination: ``dlt.pipeline(destination=sailthru()).run(rows, ...)``.

Made with ``@dlt.destination`` (dlt's reverse-ETL sink). Credentials come from dlt's
config and secrets, never from code: ``[destination.sailthru]`` ``api_key``,
``api_secret`` (and ``api_url`` for a test server) in ``.dlt/secrets.toml``, or the
``DESTINATION__SAILTHRU__API_KEY`` style environment variables.

A table becomes Sailthru users by default; ``tables={"orders": {"object": "purchases"}}``
says otherwise per table, and ``mapping`` holds settings for every table (any setting of
:class:`~sailthru_destination.sync.SyncConfig`: ``match_key``, ``groups_column``,
``delete_behavior``, ...). Column names are kept as they are (``naming_convention="direct"``)
and nested objects arrive whole (``max_table_nesting=0``), to be flattened by the mapping.

dlt hands over only new rows and hands a whole batch over again after a failure, so each
batch is diffed against a SQLite state per pipeline and table (the same state the CLI
keeps): unchanged rows cost no call, and events and orders are sent at most once. A bad
record is written to the run report and counted in dlt's log; it never fails the load.
Only what must stop the load raises :class:`DestinationTerminalException`, which dlt does
not retry: refused credentials, a wrong setting, an unusable state file.

A column whose values change type (``plan: 5``, then ``plan: "pro"``) reaches a destination
as a *variant* column, ``plan▶v_text``: it is folded back into ``plan``, its value read by
the same rule as every host value (:func:`~sailthru_destination.sync.warehouse.sources.plain`), so
the source's column is what is synced, whatever type its value has today.
"""

import logging
from pathlib import Path
from typing import Any

try:
    import dlt
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the dlt destination needs dlt: pip install 'sailthru-destination[dlt]'") from exc
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.common.normalizers.naming.direct import NamingConvention as _Direct
from dlt.common.schema import TTableSchema
from dlt.common.typing import VARIANT_FIELD_FORMAT, TDataItems

from ..options import DEFAULT_API_URL, AppOptions
from ..sync.config import ConfigError, table_config
from ..sync.memory.state import StateError
from ..sync.run import DEFAULT_HOME, file_safe, run_sync
from ..sync.runner import RunAborted
from ..sync.warehouse.column_check import check_host_columns
from ..sync.warehouse.sources import Row, plain

__all__ = ["sailthru"]

log = logging.getLogger(__name__)

# dlt reads these annotations at run time to build its config spec: no postponed annotations.


@dlt.destination(
    name="sailthru",
    batch_size=1000,
    naming_convention="direct",
    max_table_nesting=0,
    skip_dlt_columns_and_tables=True,
    # One batch of a table at a time: two batches of a table share its state file.
    loader_parallelism_strategy="table-sequential",
)
def sailthru(
    items: TDataItems,
    table: TTableSchema,
    api_key: str = dlt.secrets.value,
    api_secret: str = dlt.secrets.value,
    api_url: str = DEFAULT_API_URL,
    mapping: dict[str, Any] | None = None,
    tables: dict[str, dict[str, Any]] | None = None,
    state_dir: str = DEFAULT_HOME,
) -> None:
    """Apply one batch of one table's rows to Sailthru (called by dlt's load step)."""
    name = str(table["name"])
    pipeline = dlt.current.pipeline().pipeline_name
    load_id = str(dlt.current.load_package_state()["load_id"])
    base = Path(state_dir)
    try:
        app = AppOptions(api_key, api_secret, api_url)
        config = table_config(
            name, mapping, tables, host_columns=_columns(table), **_hints(table),
            state=str(base / "dlt" / file_safe(pipeline) / f"{file_safe(name)}.db"),
            report_dir=str(base / "reports" / file_safe(f"dlt-{pipeline}-{name}-{load_id}")),
        )
        check_host_columns(config, table.get("columns", {}), name, mapping, tables)
        # Users are typed by the one rule (values.py) under each column's name; activity
        # (events, orders) takes dates as ISO text and decimals as numbers.
        typed = dict if config.object == "users" else plain
        # dlt leaves a NULL out of its item: a column of the table that an item lacks is a
        # NULL there (the nulls policy decides), not a column gone from the model.
        nulls = dict.fromkeys(_columns(table)) if config.object == "users" else {}
        rows = (Row(f"load {load_id} item {number}", typed(folded({**nulls, **item})))
                for number, item in enumerate(items, 1))
        outcome = run_sync(app, config, rows, home=base, incremental=True)
    except (ConfigError, ValueError, StateError, RunAborted) as exc:
        # RunAborted: the mass-delete guard (sync.guard) stopped the batch before any call.
        raise DestinationTerminalException(f"sailthru destination: {exc}") from None
    if outcome.summary.refused_calls:
        raise DestinationTerminalException(
            "sailthru destination: Sailthru refused the API key or secret "
            "([destination.sailthru] api_key / api_secret); nothing more is loaded")
    message = outcome.describe(f"sailthru: table {name}")
    if outcome.summary.failed:
        dlt.common.logger.warning(message)
    else:
        dlt.common.logger.info(message)
    log.info(message)

def _columns(table: TTableSchema) -> list[str]:
    """The table's own columns (not dlt's ``_dlt_*`` bookkeeping)."""
    return [name for name in table.get("columns", {}) if not name.startswith("_dlt_")]


# What dlt (with the "direct" naming this destination asks for) puts between a column's
# name and the type of a value that did not fit it: "plan" + "▶v_" + "text".
_VARIANT = _Direct.PATH_SEPARATOR + VARIANT_FIELD_FORMAT % ""


def folded(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` with each variant column (``<name>▶v_<type>``) folded back into ``<name>``:
    a variant holding a value replaces the column's (then empty) value."""
    if not any(_VARIANT in key for key in item):
        return item
    out = {key: value for key, value in item.items() if _VARIANT not in key}
    for key, value in item.items():
        if _VARIANT in key:
            name = key.split(_VARIANT, 1)[0]
            if value is not None or name not in out:
                out[name] = value
    return out


def _hints(table: TTableSchema) -> dict[str, Any]:
    """Settings the table's dlt schema gives: its primary key and hard-delete column."""
    columns = table.get("columns", {})
    hints: dict[str, Any] = {}
    keys = [name for name, column in columns.items()
            if column.get("primary_key") and _VARIANT not in name]
    if len(keys) == 1:
        hints["primary_key"] = keys[0]
    deleted = [name for name, column in columns.items() if column.get("hard_delete")]
    if deleted:
        hints["deleted_column"] = deleted[0]
    return hints
