"""``sync --config-schema`` and a bad ``--config`` file, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import fake, run, write_csv  # noqa: F401 (the fixture)

from sailthru_destination.sync.config_schema import CONFIG_SCHEMA
from sailthru_destination.testing import FakeSailthru


def test_config_schema_is_printed_and_a_bad_config_stops_before_any_call(
    tmp_path: Path, fake: FakeSailthru  # noqa: F811
) -> None:
    printed = run(tmp_path, None, "sync", "--config-schema")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == CONFIG_SCHEMA

    write_csv(tmp_path / "people.csv", [{"id": "1", "email": "a@example.com"}])
    (tmp_path / "mapping.json").write_text('{"delete_behavior": "purge"}', encoding="utf-8")
    bad = run(tmp_path, fake, "sync", "people.csv", "--config", "mapping.json")
    assert bad.returncode == 2
    assert "delete_behavior must be one of 'nothing', 'clear', 'delete'" in bad.stderr
    assert fake.calls == {}
