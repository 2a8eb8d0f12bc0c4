"""A column whose values change type, through a real ``dlt.pipeline`` and the singer-sdk target.

Issue 22, defect 4: ``plan: 5`` then ``plan: "pro"`` reached the destination as the dlt
variant column ``plan▶v_text`` and failed with a var-name error about a column the source
never had; ``plan`` stayed 5. Every change below goes both ways.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
from pathlib import Path
from typing import Any

import dlt
import pytest
from helpers import KEY, SECRET

from sailthru_destination.integrations.dlt import sailthru
from sailthru_destination.integrations.singer import TargetSailthru
from sailthru_destination.testing import FakeSailthru

DAY = datetime.date(2024, 1, 2)
# (first value, its JSON schema type, then value, its type, the var Sailthru ends with,
# and the var through dlt, which coerces a value that fits the column's type into it: a
# number into a text column arrives as text, not as a variant)
CHANGES = [
    (5, "integer", "pro", "string", "pro", "pro"),
    ("pro", "string", 5, "integer", 5, "5"),
    (1.5, "number", "half", "string", "half", "half"),
    ("half", "string", 1.5, "number", 1.5, "1.5"),
    (True, "boolean", "maybe", "string", "maybe", "maybe"),
    ("maybe", "string", True, "boolean", True, "True"),
    (DAY, "date", "soon", "string", "soon", "soon"),
    ("soon", "string", DAY, "date", "2024-01-02", "2024-01-02"),
]
IDS = [f"{type(c[0]).__name__}-to-{type(c[2]).__name__}" for c in CHANGES]


def _var(fake: FakeSailthru) -> Any:
    user = fake.find_user(email="u1@example.com")
    assert user is not None
    return user["vars"].get("plan")


@pytest.mark.parametrize(("before", "_t1", "after", "_t2", "_singer", "var"), CHANGES, ids=IDS)
def test_dlt_folds_a_variant_column_back_into_its_column(
    fake: FakeSailthru, host_home: Path, monkeypatch: pytest.MonkeyPatch,
    before: Any, _t1: str, after: Any, _t2: str, _singer: Any, var: Any,
) -> None:
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_KEY", KEY)
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_SECRET", SECRET)
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_URL", fake.url)
    pipeline = dlt.pipeline(pipeline_name="crm",
                            destination=sailthru(state_dir=str(host_home / "state")),
                            pipelines_dir=str(host_home / "pipelines"))
    pipeline.run([{"id": 1, "email": "u1@example.com", "plan": before}], table_name="users")
    pipeline.run([{"id": 1, "email": "u1@example.com", "plan": after}], table_name="users")
    assert _var(fake) == var
    errors = (host_home / "state" / "reports").glob("*/errors.jsonl")
    assert all(not path.read_text() for path in errors)
    assert set(fake.find_user(email="u1@example.com")["vars"]) == {"plan"}


def _schema(kind: str) -> dict[str, Any]:
    plan = {"type": ["string", "null"], "format": "date"} if kind == "date" else {
        "type": [kind, "null"]}
    return {"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {
        "properties": {"id": {"type": "integer"}, "email": {"type": "string"}, "plan": plan}}}


@pytest.mark.parametrize(("before", "t1", "after", "t2", "var", "_dlt"), CHANGES, ids=IDS)
def test_singer_takes_a_property_whose_type_changes_between_schemas(
    fake: FakeSailthru, host_home: Path, before: Any, t1: str, after: Any, t2: str, var: Any,
    _dlt: Any,
) -> None:
    config = {"api_key": KEY, "api_secret": SECRET, "api_url": fake.url,
              "state_dir": str(host_home / "state")}

    def record(value: Any) -> dict[str, Any]:
        plain = value.isoformat() if isinstance(value, datetime.date) else value
        return {"type": "RECORD", "stream": "users",
                "record": {"id": 1, "email": "u1@example.com", "plan": plain}}

    messages = [_schema(t1), record(before), _schema(t2), record(after)]
    feed = io.StringIO("".join(json.dumps(m) + "\n" for m in messages))
    with contextlib.redirect_stdout(io.StringIO()):
        TargetSailthru(config=config).listen(file_input=feed)
    assert _var(fake) == var
