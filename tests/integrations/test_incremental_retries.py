"""dlt and Singer hand a row over once: what failed retryably is tried again on later loads.

Issue 22, defect 3: a ``_deleted`` row failed with ``retryable: true``; the next loads,
with the faults off, made no DELETE call and the user stayed in Sailthru. Each load below
runs the real framework (a ``dlt.pipeline``, the singer-sdk target) against the fake.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import pytest
from helpers import KEY, SECRET

from sailthru_destination.integrations.dlt import sailthru
from sailthru_destination.integrations.singer import TargetSailthru
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport import api as api_module
from sailthru_destination.transport.retries import RetryPolicy

DOWN = Faults(server_error_rate=1.0)


@pytest.fixture(autouse=True)
def _one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing call fails at once (the retry loop's waits are tested elsewhere)."""
    monkeypatch.setattr(api_module, "RetryPolicy", functools.partial(RetryPolicy,
                                                                     max_attempts=1))


def _user(n: int, **changes: Any) -> dict[str, Any]:
    return {"id": n, "email": f"u{n}@example.com", "plan": "free", **changes}


def _dlt_load(home: Path, fake: FakeSailthru, monkeypatch: pytest.MonkeyPatch
              ) -> Callable[[list[dict[str, Any]]], None]:
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_KEY", KEY)
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_SECRET", SECRET)
    monkeypatch.setenv("DESTINATION__SAILTHRU__API_URL", fake.url)
    pipeline = dlt.pipeline(
        pipeline_name="crm",
        destination=sailthru(state_dir=str(home / "state"),
                             mapping={"delete_behavior": "delete"}),
        pipelines_dir=str(home / "pipelines"),
    )
    return lambda rows: pipeline.run(rows, table_name="users")


def _singer_load(home: Path, fake: FakeSailthru, monkeypatch: pytest.MonkeyPatch
                 ) -> Callable[[list[dict[str, Any]]], None]:
    config = {"api_key": KEY, "api_secret": SECRET, "api_url": fake.url,
              "state_dir": str(home / "state"), "mapping": {"delete_behavior": "delete"}}
    schema = {"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {
        "properties": {"id": {"type": "integer"}, "email": {"type": "string"},
                       "plan": {"type": ["string", "null"]},
                       "_deleted": {"type": ["boolean", "null"]}}}}

    def load(rows: list[dict[str, Any]]) -> None:
        messages = [schema, *({"type": "RECORD", "stream": "users", "record": r} for r in rows)]
        feed = io.StringIO("".join(json.dumps(m) + "\n" for m in messages))
        with contextlib.redirect_stdout(io.StringIO()):
            TargetSailthru(config=config).listen(file_input=feed)

    return load


@pytest.mark.parametrize("host", [_dlt_load, _singer_load], ids=["dlt", "singer"])
def test_a_failed_delete_and_a_failed_update_are_retried_until_they_land(
    fake: FakeSailthru, host_home: Path, monkeypatch: pytest.MonkeyPatch,
    host: Callable[..., Callable[[list[dict[str, Any]]], None]],
) -> None:
    load = host(host_home, fake, monkeypatch)
    load([_user(1), _user(2), _user(3)])
    fake.faults = DOWN
    load([_user(1, _deleted=True), _user(2, plan="pro")])  # both fail, retryably
    assert fake.find_user(email="u1@example.com") is not None
    fake.faults = Faults()
    load([_user(4)])  # the host hands over only the new row
    assert fake.find_user(email="u1@example.com") is None  # asked to be deleted: gone
    assert fake.find_user(email="u2@example.com")["vars"]["plan"] == "pro"
    assert fake.find_user(email="u4@example.com") is not None
    before = fake.calls.copy()
    load([_user(5)])  # nothing is left to retry
    assert fake.calls - before == {("POST", "user"): 1}


@pytest.mark.parametrize(("newer", "plan"), [
    (_user(1, plan="max"), "max"),  # the host's newer row wins over the remembered one
    (_user(1, email="not-an-email"), "free"),  # a bad value: failed for good, not retried
], ids=["replaced", "failed-for-good"])
def test_a_row_to_retry_leaves_the_memory_with_the_newer_row_of_its_key(
    fake: FakeSailthru, host_home: Path, monkeypatch: pytest.MonkeyPatch,
    newer: dict[str, Any], plan: str,
) -> None:
    load = _dlt_load(host_home, fake, monkeypatch)
    load([_user(1)])
    fake.faults = DOWN
    load([_user(1, plan="pro")])  # fails, retryably: remembered
    fake.faults = Faults()
    load([newer])
    before = fake.calls.copy()
    load([_user(2)])  # the remembered row is gone: no stale "pro" sent later
    assert fake.calls - before == {("POST", "user"): 1}
    assert fake.find_user(email="u1@example.com")["vars"]["plan"] == plan
