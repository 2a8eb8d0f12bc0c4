"""The JSON Schema of a ``sync --config`` file, and the check of a file against it.

:data:`CONFIG_SCHEMA` is published (``sailthru-destination sync --config-schema`` prints it;
``schemas/sync-config.schema.json`` is a copy for editors) and drives :func:`check_settings`,
which names the setting and says what it must be. The check is a few lines over the handful of
keywords the schema uses (type, enum, minimum, minLength, items, additionalProperties) rather
than the ``jsonschema`` package: the core's dependencies stay four, and the tests hold the two
to the same verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CONFIG_SCHEMA", "check_settings"]

_NAME = {"type": "string", "minLength": 1}
_OPTIONAL_NAME = {"type": ["string", "null"]}
_COLUMN_LIST = {"type": ["array", "string"], "items": {"type": "string"}}


def _setting(base: Mapping[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {**base, "description": description, **extra}


CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sailthru-destination sync --config file",
    "description": "How rows of a model become Sailthru users, events, purchases or returns. "
                   "A JSON object or a TOML table; flags given on the command line win.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "object": _setting({"enum": ["users", "events", "purchases", "returns"]},
                           "What rows are.", default="users"),
        "name": _setting({"type": "string"}, "Model name for the state file and the report "
                         "folder: a plain name, not a path (default: the file name)."),
        "primary_key": _setting(_NAME, "Column that identifies a row from run to run.",
                                default="id"),
        "match_column": _setting(_NAME, "Column Sailthru matches users on.", default="email"),
        "match_key": _setting({"enum": ["email", "sid", "extid"]},
                              "What the match column holds.", default="email"),
        "groups_column": _setting({"type": "string"}, "Column of list memberships: a JSON "
                                  "array or ';'-separated list names.", default="groups"),
        "optout_column": _setting(_OPTIONAL_NAME, "Column of an optout_email level per row."),
        "deleted_column": _setting(_OPTIONAL_NAME, "Column that marks a row deleted, read "
                                   "strictly: true/1/yes or a date-time delete, false/0/no or "
                                   "empty keep, anything else fails the row."),
        "columns": _setting(_COLUMN_LIST, "The var columns (a list, or comma-separated); "
                            "default: every column not otherwise used."),
        "ignore": _setting(_COLUMN_LIST, "Columns to leave out (a list, or comma-separated)."),
        "delete_behavior": _setting({"enum": ["nothing", "clear", "delete"]},
                                    "For rows gone from the model.", default="nothing"),
        "sync_mode": _setting({"enum": ["upsert", "update"]},
                              "update: never create a user.", default="upsert"),
        "default_list": _setting(_OPTIONAL_NAME, "A list every exported user joins."),
        "list_prefix": _setting({"type": "string"}, "Put in front of every list name from a "
                                "group.", default=""),
        "optout": _setting({"enum": ["none", "all", "basic", "blast", None]},
                           "optout_email level sent with every user."),
        "concurrency": _setting({"type": ["integer", "null"], "minimum": 1},
                                "Records in flight (default: adapts to rate limit and "
                                "latency)."),
        "bulk": _setting({"enum": ["auto", "always", "never"]}, "Use the job API for many "
                         "changed users.", default="auto"),
        "bulk_threshold": _setting({"type": ["integer", "null"], "minimum": 1}, "Changed rows "
                                   "from which bulk auto uses a job (default: the cost model "
                                   "decides)."),
        "state": _setting(_OPTIONAL_NAME, "State file (default: <home>/<name>.db)."),
        "report_dir": _setting(_OPTIONAL_NAME, "Folder for the run's report (default: "
                               "<home>/reports/<name>-<time>)."),
        "allow_empty": _setting({"type": "boolean"}, "Accept an empty model (every remembered "
                                "row is then gone).", default=False),
        "lock_wait": _setting({"type": "number", "minimum": 0, "maximum": 86400}, "Seconds a "
                              "sync waits for another run of the same model to finish before "
                              "it exits 2.", default=2.0),
        "max_errors": _setting({"type": ["integer", "null"], "minimum": 1}, "Stop the run "
                               "cleanly (state saved, exit 1) after this many failed records. "
                               "Unset, a run still stops when its first 100 records all fail "
                               "for the same reason."),
        "null_values": _setting({"enum": ["keep", "clear"]}, "What a NULL does to its var: "
                                "keep (never changes Sailthru: the var keeps the value it "
                                "has) or clear (empties the var).", default="keep"),
        "empty_as_null": _setting({"type": "boolean"}, "Read the empty cells of a CSV model "
                                  "as NULLs (else an empty string is a value).",
                                  default=False),
        "max_delete": _setting({"type": ["string", "integer", "null"]}, "Stop a run (exit 2, "
                               "before any call) that would delete or clear more than this "
                               "share of the remembered users ('20%') or this count (60000); "
                               "'100%' never stops. Runs removing at most 10 users are never "
                               "stopped.", default="20%"),
        "map": _setting({"type": "object", "additionalProperties": _NAME}, "Column renames, "
                        "each column name to its new name, applied to every row first, e.g. "
                        "{\"last-name\": \"last_name\"}."),
        "types": _setting({"type": "object", "additionalProperties": {
                              "enum": ["int", "float", "bool", "json", "str", "date",
                                       "datetime"]}},
                          "How to read text columns (CSV gives only text): int, float, bool "
                          "(true/false, yes/no, 1/0), json, str, date or datetime (ISO 8601); "
                          "e.g. {\"age\": \"int\"}."),
        "rate_limits": _setting(
            {"type": "object", "additionalProperties": {"type": "number",
                                                        "exclusiveMinimum": 0}},
            "Starting requests per second per endpoint, e.g. {\"user\": 300}."),
        "event_column": _setting(_NAME, "events: column of the event name.", default="event"),
        "schedule_time_column": _setting(_OPTIONAL_NAME, "events: column of the time to send "
                                         "the event at."),
        "order_column": _setting(_NAME, "purchases and returns: column of the order id.",
                                 default="order_id"),
        "items_column": _setting(_NAME, "purchases and returns: column of the items (a JSON "
                                 "array).", default="items"),
        "date_column": _setting(_OPTIONAL_NAME, "purchases and returns: column of the order "
                                "date."),
        "price_unit": _setting({"enum": ["dollars", "cents"]}, "purchases and returns: the "
                               "unit of item prices in the model.", default="dollars"),
    },
}
"""The JSON Schema of a ``--config`` file (printed by ``sync --config-schema``)."""

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),), "array": (list, tuple), "object": (dict,),
}
_WORDS = {"string": "text", "integer": "a whole number", "number": "a number",
          "boolean": "true or false", "null": "null", "array": "a list", "object": "a table"}


def _is(value: object, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False  # JSON's true is no number, though Python's bool is an int
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _problem(value: object, rule: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` under ``rule`` (one schema), or None."""
    if "enum" in rule and value not in rule["enum"]:
        allowed = ", ".join("null" if v is None else repr(v) for v in rule["enum"])
        return f"must be one of {allowed}"
    if "type" in rule:
        names = [rule["type"]] if isinstance(rule["type"], str) else list(rule["type"])
        if not any(_is(value, name) for name in names):
            return "must be " + " or ".join(_WORDS[name] for name in names)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in rule and value < rule["minimum"]:
            return f"must be {rule['minimum']} or more"
        if "exclusiveMinimum" in rule and value <= rule["exclusiveMinimum"]:
            return f"must be more than {rule['exclusiveMinimum']}"
    if isinstance(value, str) and len(value) < rule.get("minLength", 0):
        return "must not be empty"
    if isinstance(value, (list, tuple)) and "items" in rule:
        for index, item in enumerate(value):
            problem = _problem(item, rule["items"])
            if problem:
                return f"item {index + 1} {problem}"
    if isinstance(value, dict) and isinstance(rule.get("additionalProperties"), Mapping):
        for key, item in value.items():
            problem = _problem(item, rule["additionalProperties"])
            if problem:
                return f"value of {key!r} {problem}"
    return None


def check_settings(settings: Mapping[str, Any]) -> list[str]:
    """Every problem of ``settings`` (a config file's object) under :data:`CONFIG_SCHEMA`,
    each naming its setting, e.g. ``bulk_threshold must be a whole number or null (got "10")``."""
    known = CONFIG_SCHEMA["properties"]
    problems = []
    for key, value in settings.items():
        if key not in known:
            problems.append(f"{key} is not a setting")
            continue
        problem = _problem(value, known[key])
        if problem:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            problems.append(f"{key} {problem} (got {shown})")
    return problems
