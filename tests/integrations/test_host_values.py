"""dlt and Singer, run by their real frameworks against the fake: columns typed by the one rule
(``sailthru_destination.shaping.values``) and the nulls policy (``null_values`` in ``mapping``)."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import io
import json
import uuid
from pathlib import Path
from typing import Any

import dlt
import pytest
from helpers import KEY, SECRET

from sailthru_destination.integrations.dlt import sailthru
from sailthru_destination.integrations.singer import TargetSailthru
from sailthru_destination.testing import FakeSailthru

_WHEN = datetime.datetime(2024, 1, 1, 1, 17, tzinfo=datetime.timezone.utc)


@pytest.fixture
def creds(fake: FakeSailthru, monkeypatch: pytest.MonkeyPatch, host_home: Path) -> Path:
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_KEY", KEY)
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_SECRET", SECRET)
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_URL", fake.url)
    return host_home


def _load(home: Path, rows: list[dict[str, Any]], **mapping: Any) -> None:
    pipeline = dlt.pipeline(pipeline_name="crm", pipelines_dir=str(home / "pipelines"),
                            destination=sailthru(state_dir=str(home / "state"),
                                                 mapping=mapping or None))
    pipeline.run(rows, table_name="users")


def _vars(fake: FakeSailthru, email: str) -> dict[str, Any]:
    user = fake.find_user(email=email)
    assert user is not None
    return dict(user["vars"])


def test_dlt_columns_are_typed_by_the_rule(fake: FakeSailthru, creds: Path) -> None:
    _load(creds, [{"id": 1, "email": "ann@example.com", "score": decimal.Decimal("96.25"),
                   "signup_time": _WHEN, "seen_at": _WHEN, "birthday": datetime.date(1990, 5, 4),
                   "ref": uuid.UUID(int=7), "tags": ["a", "b"]}])
    assert _vars(fake, "ann@example.com") == {
        "score": 96.25, "signup_time": 1_704_071_820, "seen_at": "2024-01-01T01:17:00+00:00",
        "birthday": "1990-05-04", "ref": "00000000-0000-0000-0000-000000000007",
        "tags_0": "a", "tags_1": "b"}


@pytest.mark.parametrize(("policy", "left"), [(None, {"nickname": "Al"}), ("clear", {})])
def test_dlt_nulls_keep_by_default_and_clear_when_asked(
    fake: FakeSailthru, creds: Path, policy: str | None, left: dict[str, Any]
) -> None:
    mapping = {"null_values": policy} if policy else {}
    _load(creds, [{"id": 1, "email": "ann@example.com", "nickname": "Al"}], **mapping)
    _load(creds, [{"id": 1, "email": "ann@example.com", "nickname": None}], **mapping)
    assert _vars(fake, "ann@example.com") == left


_SCHEMA = {"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {
    "properties": {"id": {"type": "integer"}, "email": {"type": "string"},
                   "nickname": {"type": ["string", "null"]},
                   "signup_time": {"type": ["string", "null"], "format": "date-time"},
                   "seen_at": {"type": ["string", "null"], "format": "date-time"},
                   "score": {"type": ["number", "null"]}}}}


def _listen(home: Path, fake: FakeSailthru, records: list[dict[str, Any]],
            **mapping: Any) -> None:
    config = {"api_key": KEY, "api_secret": SECRET, "api_url": fake.url,
              "state_dir": str(home / "state"), "mapping": mapping or None}
    messages = [_SCHEMA, *({"type": "RECORD", "stream": "users", "record": r} for r in records)]
    feed = io.StringIO("".join(json.dumps(m) + "\n" for m in messages))
    with contextlib.redirect_stdout(io.StringIO()):
        TargetSailthru(config=config).listen(file_input=feed)


def test_singer_date_times_and_numbers_are_typed_by_the_rule(
    fake: FakeSailthru, host_home: Path
) -> None:
    _listen(host_home, fake, [{"id": 1, "email": "ann@example.com", "score": 96.25,
                               "signup_time": "2024-01-01T01:17:00Z",
                               "seen_at": "2024-01-01T01:17:00+00:00"}])
    assert _vars(fake, "ann@example.com") == {
        "score": 96.25, "signup_time": 1_704_071_820, "seen_at": "2024-01-01T01:17:00+00:00"}


@pytest.mark.parametrize(("policy", "left"), [(None, {"nickname": "Al"}), ("clear", {})])
def test_singer_nulls_keep_by_default_and_clear_when_asked(
    fake: FakeSailthru, host_home: Path, policy: str | None, left: dict[str, Any]
) -> None:
    mapping = {"null_values": policy} if policy else {}
    _listen(host_home, fake, [{"id": 1, "email": "ann@example.com", "nickname": "Al"}],
            **mapping)
    _listen(host_home, fake, [{"id": 1, "email": "ann@example.com", "nickname": None}],
            **mapping)
    assert _vars(fake, "ann@example.com") == left
