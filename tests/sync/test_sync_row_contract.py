"""Every field of the row contract is sent when it is the only thing that changed.

The cases are keyed by the contract's sent fields: a field added to
:data:`~sailthru_destination.shaping.row_contract.ROW_CONTRACT` without a case here fails
``test_every_sent_field_has_a_case``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sync_runner import FAST, _rows, _sync

from sailthru_destination.shaping.row_contract import SENT_FIELDS
from sailthru_destination.testing import FakeSailthru

ANN = "ann@example.com"
LEVELS = ("none", "all", "basic", "blast")
BASE = {"id": 1, "email": "ann@example.com", "plan": "gold", "groups": ["VIP"],
        "optout": "none", "since": datetime.datetime(2026, 1, 2, 3, 4, 5)}


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    """A fake with the credentials ``_sync`` signs with."""
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as running:
        yield running


def _holds(fake: FakeSailthru, email: str) -> dict[str, Any]:
    user = fake.find_user(email=email)
    assert user is not None, f"no user {email}"
    return user


# Each case: the row with only that field changed, and what Sailthru must then hold.
ALONE: dict[str, tuple[dict[str, Any], Callable[[FakeSailthru], bool]]] = {
    "key": ({"email": "ann.new@example.com"},
            lambda server: server.find_user(email="ann.new@example.com") is not None),
    "vars": ({"since": datetime.datetime(2026, 5, 6, 7, 8, 9)},
             lambda server: "2026-05-06" in str(_holds(server, ANN)["vars"]["since"])),
    "lists": ({"groups": ["VIP", "News"]},
              lambda server: "News" in _holds(server, ANN)["lists"]),
    "optout": ({"optout": "all"},
               lambda server: _holds(server, ANN)["optout_email"] == "all"),
}


def test_every_sent_field_has_a_case() -> None:
    assert set(ALONE) == set(SENT_FIELDS)


@pytest.mark.parametrize("bulk", ["never", "always"])
@pytest.mark.parametrize("field", sorted(ALONE))
def test_a_field_that_changes_alone_is_sent(
    fake: FakeSailthru, tmp_path: Path, field: str, bulk: str
) -> None:
    change, holds = ALONE[field]
    first = _sync(fake, tmp_path, _rows(BASE), optout_column="optout", bulk=bulk)
    assert first.counts["created"] == 1
    summary = _sync(fake, tmp_path, _rows({**BASE, **change}), optout_column="optout",
                    bulk=bulk)
    assert dict(summary.counts) == {"updated": 1}, summary.counts
    assert holds(fake)
    # Applied once: the same row again costs nothing.
    again = _sync(fake, tmp_path, _rows({**BASE, **change}), optout_column="optout", bulk=bulk)
    assert dict(again.counts) == {"unchanged": 1}


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeSailthru]:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as running:
        yield running


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(levels=st.lists(st.sampled_from((*LEVELS, "", None)), min_size=2, max_size=4),
       bulk=st.sampled_from(("never", "always")))
def test_opt_out_transitions_end_as_the_last_level_given(
    shared_fake: FakeSailthru, tmp_path_factory: pytest.TempPathFactory,
    levels: list[str | None], bulk: str
) -> None:
    folder = tmp_path_factory.mktemp("optout")
    email = f"{folder.name}@example.com".lower()
    row = {"id": 1, "email": email, "plan": "gold"}
    wanted = "none"  # a new user's level in Sailthru
    for level in levels:
        summary = _sync(shared_fake, folder, _rows({**row, "optout": level}),
                        optout_column="optout", bulk=bulk)
        assert not summary.failed, summary.counts
        # An empty cell leaves Sailthru's level as it is: it never subscribes anyone again.
        wanted = level or wanted
        assert _holds(shared_fake, email)["optout_email"] == wanted, (levels, level)
