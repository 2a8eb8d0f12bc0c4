"""A key the state file cannot store fails its own row; the run and the state go on.

Text decoded with ``surrogateescape`` (or built in Python) can hold lone surrogates, which
no UTF-8 encoder accepts: one such primary key, email or order id used to crash the whole
run with ``UnicodeEncodeError`` from SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.runner import RecordFailure, RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 10000.0}
ITEM = {"id": "sku1", "title": "Shoe", "qty": 1, "price": 9.99, "url": "https://x.test/s"}


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as running:
        yield running


def _sync(fake: FakeSailthru, tmp_path: Path, people: list[dict[str, Any]],
          failures: list[RecordFailure], **settings: Any) -> RunSummary:
    config = SyncConfig(name="t", rate_limits=FAST, bulk="never", **settings)
    app = AppOptions("k", "s", fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    rows = [Row(f"line {n}", dict(p)) for n, p in enumerate(people, start=2)]
    with SyncState(tmp_path / "s.db") as state, \
            SailthruDestination(app, options, api=api, sent_keys=state) as dest:
        return SyncRunner(dest, config, state, on_failure=failures.append).run(rows)


@pytest.mark.parametrize(("bad", "field"), [
    ({"id": "\udcff1", "email": "a@example.com"}, "id"),
    ({"id": 1, "email": "a\udcff@example.com"}, "email"),
])
def test_a_user_row_with_a_lone_surrogate_in_its_key_fails_alone(
    fake: FakeSailthru, tmp_path: Path, bad: dict[str, Any], field: str
) -> None:
    failures: list[RecordFailure] = []
    summary = _sync(fake, tmp_path, [bad, {"id": 2, "email": "b@example.com"}], failures,
                    delete_behavior="delete")
    [failure] = failures
    assert (failure.field, failure.where) == (field, "line 2")
    assert "lone surrogate" in failure.reason
    failure.reason.encode("utf-8")  # the report can write it
    assert summary.counts["created"] == 1
    assert fake.find_user(email="b@example.com") is not None
    again = _sync(fake, tmp_path, [{"id": 2, "email": "b@example.com"}], [],
                  delete_behavior="delete")
    assert again.total_calls == 0


@pytest.mark.parametrize("kind", ["events", "returns", "purchases"])
def test_an_activity_row_with_a_lone_surrogate_in_its_key_fails_alone(
    fake: FakeSailthru, tmp_path: Path, kind: str
) -> None:
    good = {"id": "k2", "order_id": "o2", "email": "b@example.com", "items": [ITEM],
            "event": "viewed"}
    bad = {**good, "id": "k\udcff1", "order_id": "o1"}
    failures: list[RecordFailure] = []
    summary = _sync(fake, tmp_path, [bad, good], failures, object=kind)
    [failure] = failures
    assert (failure.field, failure.where) == ("id", "line 2")
    assert "lone surrogate" in failure.reason
    assert summary.counts["sent"] == 1
    sent = {"events": fake.events, "returns": fake.returns, "purchases": fake.purchases}[kind]
    assert len(sent) == 1
