"""``DestinationOptions(null_values=...)`` in the export API: what a ``None`` property does."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import destination_for

from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import DestinationOptions
from sailthru_destination.results import Status
from sailthru_destination.shaping.nulls import settle_nulls
from sailthru_destination.testing import FakeSailthru


def _vars(fake: FakeSailthru) -> dict[str, object]:
    user = fake.find_user(email="ann@example.com")
    assert user is not None
    return dict(user["vars"])


def test_keep_leaves_the_var_and_makes_no_call(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(ProfileChange(key="ann@example.com",
                                          new_properties={"nick": "Al", "plan": "gold"}))
        posts = fake.calls[("POST", "user")]
        result = dest.export_profile(ProfileChange(
            key="ann@example.com", old_properties={"nick": "Al", "plan": "gold"},
            new_properties={"nick": None, "plan": "gold"}))
    assert result.status is Status.SKIPPED
    assert fake.calls[("POST", "user")] == posts
    assert _vars(fake) == {"nick": "Al", "plan": "gold"}


def test_keep_sends_nothing_for_a_null_with_no_old_value(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(ProfileChange(key="ann@example.com", new_properties={"plan": "x"}))
        dest.export_profile(ProfileChange(key="ann@example.com", old_properties={"plan": "x"},
                                          new_properties={"plan": "y", "nick": None}))
    assert _vars(fake) == {"plan": "y"}


def test_clear_empties_the_var_even_without_an_old_value(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path, null_values="clear") as dest:
        dest.export_profile(ProfileChange(key="ann@example.com",
                                          new_properties={"nick": "Al", "plan": "gold"}))
        # Another tool's value, unknown to the host: clear still empties it.
        dest.export_profile(ProfileChange(key="ann@example.com",
                                          new_properties={"nick": None, "plan": "gold"}))
    assert _vars(fake) == {"plan": "gold"}


def test_an_unknown_policy_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="null_values"):
        DestinationOptions(null_values="drop")  # type: ignore[arg-type]


@pytest.mark.parametrize(("old", "new", "policy", "settled"), [
    (None, {"a": None}, "keep", {}),  # only NULLs, nothing known before: nothing to send
    ({"b": 1}, {"a": None, "b": 2}, "keep", {"b": 2}),  # a NULL the old values never had
    ({"a": 1}, {"a": None, "b": 2}, "keep", {"a": 1, "b": 2}),
    ({"a": 1}, {"a": None}, "clear", {"a": ""}),  # "" is how Sailthru empties a var
])
def test_each_null_is_settled_by_the_policy(
    old: dict[str, object] | None, new: dict[str, object], policy: str,
    settled: dict[str, object],
) -> None:
    assert settle_nulls(old, new, policy) == settled
