"""The list registry against the fake: what a list check costs and what it answers (issue 18).

An initial sync into existing lists costs one GET /list for all of them; a list made after
that (by another process) is found by name and then remembered; a missing list is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sailthru_destination.once.lists import ListRegistry
from sailthru_destination.once.locks import LocalLock
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi


def registry(api: SailthruApi, tmp_path: Path, shared: object = None) -> ListRegistry:
    return ListRegistry(api, LocalLock(tmp_path), shared)  # type: ignore[arg-type]


class CountingKnownLists:
    """A shared cache of known list names that counts how often it is asked."""

    def __init__(self, names: set[str]) -> None:
        self.names = set(names)
        self.asked = 0

    def contains(self, name: str) -> bool:
        self.asked += 1
        return name in self.names

    def add(self, name: str) -> None:
        self.names.add(name)


def test_lists_that_already_exist_cost_one_call_for_all(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path
) -> None:
    for name in ("VIP", "News", "Beta"):
        api.post("list", {"list": name})
    before = sum(fake.calls.values())
    lists = registry(api, tmp_path)
    lists.ensure_all(["VIP", "News", "Beta"])
    assert all(lists.exists(name) for name in ("VIP", "News", "Beta"))
    assert sum(fake.calls.values()) - before == 1
    assert len(fake.lists) == 3


def test_a_list_made_after_loading_is_found_by_name_once(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path
) -> None:
    lists = registry(api, tmp_path)
    assert not lists.exists("Late")
    api.post("list", {"list": "Late"})  # another process made it
    before = sum(fake.calls.values())
    assert lists.exists("Late")
    assert lists.exists("Late")
    assert sum(fake.calls.values()) - before == 1


def test_a_missing_list_is_missing_and_ensure_creates_it_once(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api.post("list", {"list": "Other"})
    lists = registry(api, tmp_path)
    assert not lists.exists("New One")
    with caplog.at_level(logging.INFO, logger="sailthru_destination.once.lists"):
        lists.ensure("New One")
        lists.ensure("New One")
    assert lists.exists("New One")
    assert sorted(lst["name"] for lst in fake.lists) == ["New One", "Other"]
    assert fake.calls[("POST", "list")] == 2
    assert [r.getMessage() for r in caplog.records] == ["creating Sailthru list 'New One'"]


def test_a_list_another_worker_knows_is_asked_of_the_shared_cache_once(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path
) -> None:
    shared = CountingKnownLists({"Known"})
    lists = registry(api, tmp_path, shared)
    assert lists.exists("Known")
    assert lists.exists("Known")
    assert shared.asked == 1
    assert fake.calls[("GET", "list")] == 1  # the initial load only
