"""The mapping's limits exactly at their boundaries, and clears of old values it cannot map.

Pinned because the mutation run (issue 18) showed them free to move unnoticed: a string limit
counted in characters instead of UTF-8 bytes, a price past 64 bits, a var left stale because
its old value could not be mapped.
"""

from __future__ import annotations

from typing import Any

import pytest

from sailthru_destination.shaping.mapping import (
    MAX_STRING_BYTES,
    InvalidValue,
    cents,
    changed_vars,
    clear_vars,
    flatten_vars,
    list_name,
    reminder_time,
)
from sailthru_destination.shaping.varnames import VarProblem, var_name_problem

# Four UTF-8 bytes per character: 16,384 of them are exactly the 64 KiB limit.
EMOJI = "\U0001f600"


@pytest.mark.parametrize(
    "text",
    [
        "x" * MAX_STRING_BYTES,  # 65,536 characters, 65,536 bytes
        EMOJI * (MAX_STRING_BYTES // 4),  # 16,384 characters, 65,536 bytes
        "x" * (MAX_STRING_BYTES // 4 + 1),  # past 16 K characters, far under 64 KiB
        "é" * (MAX_STRING_BYTES // 2),  # 32,768 characters, 65,536 bytes
    ],
    ids=["64K ascii", "16K four-byte", "16K+1 ascii", "32K two-byte"],
)
def test_a_string_of_up_to_64_kib_in_utf8_is_sent(text: str) -> None:
    assert flatten_vars({"bio": text}) == {"bio": text}


@pytest.mark.parametrize(
    "text",
    [
        "x" * (MAX_STRING_BYTES + 1),
        EMOJI * (MAX_STRING_BYTES // 4 + 1),  # only 16,385 characters, but 65,540 bytes
        "x" * (MAX_STRING_BYTES - 1) + "é",  # 65,536 characters, 65,537 bytes
    ],
    ids=["64K+1 ascii", "16K+1 four-byte", "64K chars one two-byte"],
)
def test_a_string_over_64_kib_in_utf8_is_refused_naming_the_property(text: str) -> None:
    with pytest.raises(InvalidValue) as info:
        flatten_vars({"bio": text})
    assert info.value.field == "bio"
    assert info.value.reason == f"strings are limited to {MAX_STRING_BYTES} UTF-8 bytes"


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63)])
def test_a_var_at_the_64_bit_bounds_is_sent(value: int) -> None:
    assert flatten_vars({"n": value}) == {"n": value}


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_a_var_just_past_the_64_bit_bounds_is_refused(value: int) -> None:
    with pytest.raises(InvalidValue) as info:
        flatten_vars({"n": value})
    assert (info.value.field, info.value.reason) == ("n", "integers must fit in 64 bits")


@pytest.mark.parametrize("amount", [2**63 - 1, -(2**63), str(2**63 - 1)])
def test_a_price_at_the_64_bit_bounds_is_kept_exactly(amount: Any) -> None:
    assert cents(amount, "cents") == int(amount)


@pytest.mark.parametrize(
    ("amount", "unit"),
    [(2**63, "cents"), (-(2**63) - 1, "cents"), ("92233720368547758.08", "dollars")],
)
def test_a_price_just_past_the_64_bit_bounds_is_refused(amount: Any, unit: Any) -> None:
    with pytest.raises(InvalidValue) as info:
        cents(amount, unit)
    assert (info.value.field, info.value.reason) == ("price", "the price is too large")


UNMAPPABLE = [
    ("NaN", float("nan")),
    ("too big", 2**63),
    ("set", {1, 2}),
    ("bytes", b"raw"),
    ("huge string", "x" * (MAX_STRING_BYTES + 1)),
    ("object", object()),
]


@pytest.mark.parametrize("value", [c[1] for c in UNMAPPABLE], ids=[c[0] for c in UNMAPPABLE])
def test_an_old_value_that_cannot_be_mapped_is_still_cleared_when_removed(value: Any) -> None:
    # The var may hold something from before the limit; removing the property clears it.
    assert changed_vars({"a": value, "b": 1}, {"b": 1}) == {"a": ""}
    assert clear_vars({"a": value, "b": 1}) == {"a": "", "b": ""}


@pytest.mark.parametrize("value", [c[1] for c in UNMAPPABLE], ids=[c[0] for c in UNMAPPABLE])
def test_an_old_value_that_cannot_be_mapped_never_counts_as_unchanged(value: Any) -> None:
    assert changed_vars({"a": value}, {"a": "fixed"}) == {"a": "fixed"}


def test_new_values_are_checked_strictly_while_old_ones_are_not() -> None:
    with pytest.raises(InvalidValue) as info:
        changed_vars({"a": 1}, {"a": float("nan")})
    assert info.value.field == "a"
    assert changed_vars({"a": float("nan")}, {"a": 1}) == {"a": 1}


def test_clears_reach_the_repaired_name_of_an_unmappable_old_value() -> None:
    # invalid_vars="drop" sent "a-b" as a_b; its clear must name a_b too. Without repair the
    # name was never sendable, so there is nothing to clear.
    assert clear_vars({"a-b": {1, 2}}, repair=True) == {"a_b": ""}
    assert clear_vars({"a-b": {1, 2}}) == {}


# ---- renames: var_names, and invalid_vars="drop" (the `dropped` list) -------------------


def test_var_names_rename_sends_changes_and_clears_alike() -> None:
    names = {"fn": "first_name"}
    assert changed_vars({"fn": "Ann"}, {"fn": "Bo"}, var_names=names) == {"first_name": "Bo"}
    assert changed_vars({"fn": "Ann"}, {}, var_names=names) == {"first_name": ""}
    assert clear_vars({"fn": "Ann"}, var_names=names) == {"first_name": ""}


def test_drop_mode_renames_a_bad_var_name_and_says_why() -> None:
    dropped: list[VarProblem] = []
    assert flatten_vars({"a-b": 1}, dropped=dropped) == {"a_b": 1}
    assert dropped == [VarProblem("a-b", var_name_problem("a-b") or "", "a_b")]


def test_drop_mode_leaves_out_a_bad_value_and_says_why() -> None:
    dropped: list[VarProblem] = []
    assert flatten_vars({"x": float("nan"), "y": 1}, dropped=dropped) == {"y": 1}
    assert dropped == [VarProblem("x", "NaN and infinities are not numbers Sailthru can store")]


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({"a-b": 1, "a_b": 2}, "its repaired name 'a_b' belongs to another property"),
        ({"a_b": 2, "a-b": 1}, var_name_problem("a-b")),
    ],
    ids=["bad first", "good first"],
)
def test_a_repaired_name_gives_way_to_the_property_really_called_so(
    properties: dict[str, Any], reason: str
) -> None:
    dropped: list[VarProblem] = []
    assert flatten_vars(properties, dropped=dropped) == {"a_b": 2}
    assert dropped == [VarProblem("a-b", reason)]


def test_two_properties_that_flatten_to_one_var_keep_the_first_and_name_the_second() -> None:
    dropped: list[VarProblem] = []
    assert flatten_vars({"a": {"b": 1}, "a_b": 2}, dropped=dropped) == {"a_b": 1}
    assert dropped == [VarProblem("a_b", "two properties flatten to this same var name")]


def test_in_drop_mode_a_removed_bad_name_is_cleared_under_its_repaired_name() -> None:
    assert changed_vars({"a-b": 1}, {}, dropped=[]) == {"a_b": ""}


def test_a_group_that_is_not_text_is_refused_as_a_list_name() -> None:
    with pytest.raises(InvalidValue) as info:
        list_name(5)  # type: ignore[arg-type]
    assert (info.value.field, info.value.reason) == ("lists", "list names must be strings")


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (None, "a price must be a number, got NoneType"),
        ([1], "a price must be a number, got list"),
        ("nineteen", "a price must be a number like 19.99"),
    ],
)
def test_a_price_that_is_not_a_number_says_what_it_got(amount: Any, reason: str) -> None:
    with pytest.raises(InvalidValue) as info:
        cents(amount, "dollars")
    assert (info.value.field, info.value.reason) == ("price", reason)


def test_a_reminder_delay_out_of_range_says_the_range() -> None:
    with pytest.raises(InvalidValue) as info:
        reminder_time("+0 minutes")
    assert (info.value.field, info.value.reason) == (
        "reminder_time", "the delay must be between 1 and 999999"
    )
