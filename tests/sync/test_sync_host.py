"""The pieces the host integrations share: per-table settings, file names, plain values."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest

from sailthru_destination.sync.config import ConfigError, table_config
from sailthru_destination.sync.run import file_safe
from sailthru_destination.sync.warehouse.sources import plain


def test_table_settings_layer_defaults_mapping_and_the_table() -> None:
    mapping = {"match_key": "email", "delete_behavior": "clear", "list_prefix": "crm "}
    tables = {"orders": {"object": "purchases"}, "vips": {"delete_behavior": "delete"}}
    users = table_config("users", mapping, tables, primary_key="uid")
    assert (users.object, users.primary_key, users.delete_behavior) == ("users", "uid", "clear")
    assert users.deleted_column == "_deleted"
    assert table_config("vips", mapping, tables).delete_behavior == "delete"
    orders = table_config("orders", mapping, tables)
    assert orders.object == "purchases"
    assert orders.deleted_column is None  # facts are never deleted
    assert table_config("users", {"deleted_column": "gone"}, None).deleted_column == "gone"


@pytest.mark.parametrize(("mapping", "tables", "message"), [
    ({"match_kye": "email"}, None, "unknown setting(s) in the settings of table 'users'"),
    (None, {"users": {"delete_behavior": "shred"}}, "table 'users': delete_behavior"),
    (["not", "a", "table"], None, "mapping must be a table of settings"),
    (None, {"users": "purchases"}, "tables maps each table name to a table of its settings"),
])
def test_a_wrong_setting_names_the_table_and_the_setting(
    mapping: Any, tables: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        table_config("users", mapping, tables)


@pytest.mark.parametrize(("name", "safe"), [
    ("users", "users"), ("my table", "my_table"), ("../etc", "_.._etc"), ("a/b", "a_b"),
    ("", "_"), ("public-Users.v2", "public-Users.v2"),
])
def test_file_safe(name: str, safe: str) -> None:
    assert file_safe(name) == safe


def test_plain_values_are_what_json_has() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    value = {"when": when, "on": datetime.date(2024, 1, 2), "n": decimal.Decimal("3"),
             "x": decimal.Decimal("1.5"), "nested": [{"at": when}], "s": "text", "none": None}
    assert plain(value) == {"when": "2024-01-02T03:04:05+00:00", "on": "2024-01-02", "n": 3,
                            "x": 1.5, "nested": [{"at": "2024-01-02T03:04:05+00:00"}],
                            "s": "text", "none": None}
