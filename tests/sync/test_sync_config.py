"""Config: conventions by default, settings from JSON/TOML files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sailthru_destination.sync.config import ConfigError, load_config


def test_defaults_follow_the_id_email_groups_convention() -> None:
    config = load_config()
    assert (config.primary_key, config.match_column, config.groups_column) == (
        "id", "email", "groups")
    assert config.match_key == "email"


def test_an_extid_match_column_implies_the_extid_match_key() -> None:
    assert load_config(match_column="extid").match_key == "extid"


def test_toml_and_json_files_then_flags_win(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('primary_key = "user_id"\nlist_prefix = "crm-"\n', encoding="utf-8")
    config = load_config(str(toml), list_prefix="x-", ignore="a, b")
    assert (config.primary_key, config.list_prefix, config.ignore) == ("user_id", "x-", ("a", "b"))
    json_file = tmp_path / "c.json"
    json_file.write_text('{"delete_behavior": "delete"}', encoding="utf-8")
    assert load_config(str(json_file)).delete_behavior == "delete"


def test_unknown_settings_and_bad_values_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"primay_key": "id"}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown setting.*primay_key"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="delete_behavior must be one of"):
        load_config(delete_behavior="erase")
    with pytest.raises(ConfigError, match="bulk must be one of"):
        load_config(bulk="sometimes")
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(str(path))


@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\b", "..", ".", " people", "a\nb"])
def test_a_model_name_that_is_a_path_or_unprintable_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="name "):
        load_config(name=name)


@pytest.mark.parametrize("name", ["people", "people.2024", "crm-export_v2", "Kunden äöü"])
def test_plain_model_names_are_accepted(name: str) -> None:
    assert load_config(name=name).name == name
