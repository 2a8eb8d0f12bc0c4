"""The column check and the mass-delete guard on the host paths: a real dlt pipeline and the
installed ``target-sailthru``, against the fake (issue 23)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.pipeline.exceptions import PipelineStepFailed
from test_dlt_destination import _people, _pipeline, creds
from test_singer_target import USERS_SCHEMA, _config, _run, _user, _write

from sailthru_destination.testing import FakeSailthru

__all__ = ["creds"]  # the dlt tests' fixture, used here too


def test_a_dlt_mapping_naming_no_column_stops_the_load_before_any_call(
    fake: FakeSailthru, creds: Path
) -> None:
    pipeline = _pipeline(creds, tables={"users": {"columns": ["first_nmae"]}})
    with pytest.raises(PipelineStepFailed, match=r"no column 'first_nmae'.*did you mean "
                       r"'first_name'"):
        pipeline.run(_people(3), table_name="users")
    assert fake.calls == {}


def test_a_dlt_batch_deleting_most_users_stops_before_any_delete(
    fake: FakeSailthru, creds: Path
) -> None:
    pipeline = _pipeline(creds, mapping={"delete_behavior": "delete"})
    people = _people(30)
    pipeline.run(people, table_name="users")
    gone: list[dict[str, Any]] = [{**row, "_deleted": True} for row in people[:20]]
    with pytest.raises(PipelineStepFailed) as caught:
        pipeline.run(gone, table_name="users")
    assert isinstance(caught.value.exception, DestinationTerminalException)  # no retry
    assert "would delete 20 of the 30 users" in str(caught.value)
    assert len(fake.users) == 30
    allowed = _pipeline(creds, "crm2", mapping={"delete_behavior": "delete",
                                                "max_delete": "100%"})
    allowed.run(people, table_name="users")
    allowed.run(gone, table_name="users")
    assert len(fake.users) == 10


def test_a_singer_stream_setting_naming_no_property_stops_the_target(
    fake: FakeSailthru, host_home: Path
) -> None:
    config = _config(host_home, fake, streams={"users": {"groups_column": "grups"}})
    messages = _write(host_home / "in.singer", [USERS_SCHEMA, _user(1), _user(2)])
    result = _run(config, messages)
    assert result.returncode != 0
    assert "no column 'grups'" in result.stderr
    assert not fake.users
