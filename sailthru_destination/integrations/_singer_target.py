"""Sailthru as a Singer target on singer-sdk (imported through :mod:`.singer`).

It reads SCHEMA, RECORD and STATE messages on stdin, as Meltano and any Singer tap
send them. Each stream becomes Sailthru users by default; ``streams`` in the config says
otherwise per stream (``{"orders": {"object": "purchases"}}``), and ``mapping`` holds
settings for every stream (any setting of :class:`~sailthru_destination.sync.SyncConfig`).

Taps send whole records, without old values, and send them again after a failure: each
batch is diffed against a SQLite state per stream (the same state the CLI keeps), so an
unchanged record costs no call, and events and orders are sent at most once. A batch
flushes through the destination's profile export; the SDK writes a STATE message only
after every record before it was applied or reported. A bad record (one that does not
fit its schema, or that Sailthru refuses) goes to the run report and never stops the
target; refused credentials and wrong settings do, with no STATE written for the batch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from singer_sdk import BatchSink, Sink, Target
from singer_sdk import typing as th
from singer_sdk.exceptions import InvalidRecord

from ..options import DEFAULT_API_URL, AppOptions
from ..sync.config import ConfigError, table_config
from ..sync.run import DEFAULT_HOME, file_safe, run_sync
from ..sync.warehouse.column_check import check_host_columns
from ..sync.warehouse.sources import Row, plain

__all__ = ["CredentialsRefused", "SailthruSink", "TargetSailthru"]


class CredentialsRefused(RuntimeError):
    """Sailthru refused the API key or secret: nothing more can be loaded."""


class SailthruSink(BatchSink):
    """Applies one stream's records to Sailthru, a batch at a time."""

    MAX_SIZE_DEFAULT = 1000

    def __init__(self, target: Target, stream_name: str, schema: dict[str, Any],
                 key_properties: list[str] | None) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        # The SDK's own schema check, run by process_record so that a record that does not
        # fit is reported like any bad record instead of stopping the target.
        self._schema_check = super().get_validator()
        config = self.config
        hints: dict[str, Any] = {}
        if key_properties and len(key_properties) == 1:
            hints["primary_key"] = key_properties[0]
        home = Path(config.get("state_dir") or DEFAULT_HOME)
        name = file_safe(stream_name)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(target.initialized_at / 1000))
        try:
            self._app = AppOptions(config["api_key"], config["api_secret"],
                                   config.get("api_url") or DEFAULT_API_URL)
            self._sync = table_config(
                stream_name, config.get("mapping"), config.get("streams"), **hints,
                host_columns=list((schema or {}).get("properties") or {}),
                state=str(home / "singer" / f"{name}.db"),
                report_dir=str(home / "reports" / f"singer-{name}-{stamp}"),
            )
            deleted = self._sync.deleted_column
            if deleted and deleted.startswith("_sdc_") and not config.get("add_record_metadata"):
                # The SDK strips its _sdc_* metadata unless asked to keep it: without this,
                # the tap's deletes would arrive as plain updates.
                raise ConfigError(
                    f"deleted_column {deleted!r} is Singer metadata, which the SDK passes on "
                    "only with add_record_metadata: true in the target's config")
            check_host_columns(self._sync, (schema or {}).get("properties") or {},
                               stream_name, config.get("mapping"), config.get("streams"))
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"target-sailthru: {exc}") from None
        self._home = home

    def get_validator(self) -> None:
        """No validation before :meth:`process_record`: it checks, and reports, itself."""
        return None

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Queue the record, marked with its schema problem if it has one.

        The SDK's ``_sdc_*`` metadata (with ``add_record_metadata``) changes on every run:
        it is dropped, unless ``deleted_column`` names one (``_sdc_deleted_at``).
        """
        record = {key: value for key, value in record.items()
                  if not key.startswith("_sdc_") or key == self._sync.deleted_column}
        checked = plain(record)  # the SDK has parsed date-times: its check wants the text
        # Users are typed by the one rule (values.py) under each column's name, so a date-time
        # in a *_time column becomes Unix seconds as from any source; activity takes the text.
        record = record if self._sync.object == "users" else checked
        if self._schema_check is not None:
            try:
                self._schema_check.validate(checked)
            except InvalidRecord as exc:
                path = getattr(exc.__cause__, "path", None)
                where = f"field {'.'.join(map(str, path))!r} " if path else ""
                record = {**record,
                          "__problem__": f"{where}does not fit the stream's schema: {exc}"}
        context.setdefault("records", []).append(record)

    def process_batch(self, context: dict[str, Any]) -> None:
        """Apply the batch; raises only when Sailthru refused the credentials."""
        records = context.get("records", [])
        rows = (Row(f"{self.stream_name} record {number}", record)
                for number, record in enumerate(records, 1))
        outcome = run_sync(self._app, self._sync, rows, home=self._home, incremental=True)
        if outcome.summary.refused_calls:
            raise CredentialsRefused(
                "Sailthru refused the API key or secret (api_key / api_secret); "
                "no STATE was written for this batch")
        log = self.logger.warning if outcome.summary.failed else self.logger.info
        log("%s", outcome.describe(f"stream {self.stream_name}"))

class TargetSailthru(Target):
    """``target-sailthru``: Singer streams to Sailthru users, events, purchases or returns."""

    name = "target-sailthru"
    default_sink_class = SailthruSink
    config_jsonschema = th.PropertiesList(
        th.Property("api_key", th.StringType, required=True, secret=True,
                    description="Sailthru API key"),
        th.Property("api_secret", th.StringType, required=True, secret=True,
                    description="Sailthru API secret"),
        th.Property("api_url", th.StringType, default=DEFAULT_API_URL,
                    description="Sailthru's API (a test server in tests)"),
        th.Property("state_dir", th.StringType, default=DEFAULT_HOME,
                    description="where the per-stream sync state and run reports are kept"),
        th.Property("mapping", th.ObjectType(additional_properties=True),
                    description="sync settings for every stream (match_key, "
                                "delete_behavior, list_prefix, ...)"),
        th.Property("streams", th.ObjectType(additional_properties=True),
                    description='per-stream settings, e.g. {"orders": {"object": "purchases"}}'),
    ).to_dict()

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """Every stream goes through :class:`SailthruSink`."""
        return SailthruSink
