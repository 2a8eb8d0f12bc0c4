"""The published JSON Schema of ``--config``: complete, true to SyncConfig, the same verdicts as
the reference validator, and a clear error naming the setting."""

from __future__ import annotations

import configparser
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sailthru_destination.sync.config import ConfigError, SyncConfig, load_config, table_config
from sailthru_destination.sync.config_schema import CONFIG_SCHEMA, check_settings

ROOT = Path(__file__).resolve().parents[2]
PROPERTIES: dict[str, Any] = CONFIG_SCHEMA["properties"]


def test_the_schema_is_valid_json_schema_and_the_published_copy_is_current() -> None:
    jsonschema.Draft202012Validator.check_schema(CONFIG_SCHEMA)
    published = json.loads((ROOT / "schemas" / "sync-config.schema.json").read_text())
    assert published == CONFIG_SCHEMA, "regenerate: sailthru-destination sync --config-schema"


def test_every_setting_is_in_the_schema_with_a_description_and_its_default() -> None:
    fields = {f.name: f for f in dataclasses.fields(SyncConfig)}
    assert set(PROPERTIES) == set(fields)
    for name, rule in PROPERTIES.items():
        assert rule["description"], name
        if "default" in rule:
            assert rule["default"] == fields[name].default, name
    # the settings the issue found undocumented
    for name in ("event_column", "order_column", "items_column", "price_unit",
                 "deleted_column"):
        assert name in PROPERTIES


def test_the_schema_defaults_make_a_valid_config() -> None:
    defaults = {k: v["default"] for k, v in PROPERTIES.items() if "default" in v}
    assert check_settings(defaults) == []
    load_config(None, **defaults)


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2000), st.floats(-2, 2000, allow_nan=False),
    st.sampled_from(["", "users", "events", "cents", "email", "delete", "auto", "none", "x"]),
    st.lists(st.one_of(st.text(max_size=3), st.integers(0, 3)), max_size=3),
    st.dictionaries(st.sampled_from(["user", "list"]),
                    st.one_of(st.integers(-1, 300), st.text(max_size=2)), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(PROPERTIES)), _values, max_size=5))
def test_the_check_agrees_with_the_reference_validator(config: dict[str, Any]) -> None:
    expected = jsonschema.Draft202012Validator(CONFIG_SCHEMA).is_valid(config)
    assert (check_settings(config) == []) == expected, check_settings(config)


def _config_file(tmp_path: Path, settings: dict[str, Any]) -> str:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(settings), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("settings", "message"), [
    ({"bulk_threshold": "10"}, "bulk_threshold must be a whole number (got '10')"),
    ({"price_unit": "euros"}, "price_unit must be one of 'dollars', 'cents' (got 'euros')"),
    ({"allow_empty": "yes"}, "allow_empty must be true or false (got 'yes')"),
    ({"columns": ["a", 3]}, "columns item 2 must be text"),
    ({"rate_limits": {"user": 0}}, "rate_limits value of 'user' must be more than 0"),
    ({"order_column": ""}, "order_column must not be empty"),
    ({"concurrency": 0}, "concurrency must be 1 or more"),
])
def test_a_bad_value_in_a_config_file_names_the_setting(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    path = _config_file(tmp_path, settings)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert message in str(raised.value)
    assert path in str(raised.value)
    assert "--config-schema" in str(raised.value)


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(_config_file(tmp_path, {"bulk": "sometimes", "event_column": 5}))
    assert "bulk must be one of" in str(raised.value)
    assert "event_column must be text" in str(raised.value)


def test_a_host_table_mapping_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"table 'people'.*allow_empty must be true or false"):
        table_config("people", {"allow_empty": "no"}, None)


def test_tomli_is_declared_for_python_before_3_11() -> None:
    """Without it a .toml --config fails on 3.10 (issue 17, item 12)."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    requires = [r.strip() for r in setup["options"]["install_requires"].splitlines()]
    assert any(r.startswith("tomli") and r.endswith('; python_version < "3.11"')
               for r in requires)


def test_a_toml_config_file_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('object = "purchases"\norder_column = "order"\nprice_unit = "cents"\n',
                    encoding="utf-8")
    config = load_config(str(good))
    assert (config.object, config.order_column, config.price_unit) == (
        "purchases", "order", "cents")
    bad = tmp_path / "bad.toml"
    bad.write_text("bulk_threshold = 1.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bulk_threshold must be a whole number"):
        load_config(str(bad))
