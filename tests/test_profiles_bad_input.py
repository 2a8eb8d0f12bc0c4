"""Bad input: each bad record gets a clear error naming it and the field; the rest go through."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from helpers import destination_for, make_fake

from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.results import Status
from sailthru_destination.testing import FakeSailthru


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for i in range(levels):
        value = {f"l{i}": value}
    return value


OK = "ok@example.com"

# (case id, ProfileChange keyword arguments, expected field, fragment of the reason)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("invalid email", {"key": "not-an-email"}, "key", "not a valid email"),
    ("email with space", {"key": "a b@example.com"}, "key", "not a valid email"),
    ("email without domain dot", {"key": "a@localhost"}, "key", "not a valid email"),
    ("two at signs", {"key": "a@b@example.com"}, "key", "not a valid email"),
    ("None key", {"key": None}, "key", "missing"),
    ("empty key", {"key": "  "}, "key", "missing"),
    ("number key", {"key": 42}, "key", "must be a string"),
    ("email with a lone surrogate", {"key": "ann@exa\ud800mple.com"}, "key", "not a valid email"),
    ("email with a zero-width space", {"key": "ann@exa\u200bmple.com"}, "key", "not a valid"),
    ("very long email", {"key": "a" * 300 + "@example.com"}, "key", "not a valid email"),
    ("NaN", {"new_properties": {"score": math.nan}}, "score", "NaN"),
    ("infinity", {"new_properties": {"score": math.inf}}, "score", "infinities"),
    ("minus infinity", {"new_properties": {"n": {"x": -math.inf}}}, "n_x", "infinities"),
    ("bytes", {"new_properties": {"blob": b"\x00\x01"}}, "blob", "bytes"),
    ("set", {"new_properties": {"tags": {"a", "b"}}}, "tags", "sets have no order"),
    ("non-string key", {"new_properties": {1: "x"}}, "properties", "must be strings"),
    (
        "nesting too deep",
        {"new_properties": _deep(12)},
        "l11_l10_l9_l8_l7_l6_l5_l4_l3_l2",
        "nesting is limited",
    ),
    ("1 MB string", {"new_properties": {"bio": "x" * 1_048_576}}, "bio", "limited to"),
    ("reserved var name", {"new_properties": {"sid": "x"}}, "sid", "reserved"),
    ("var name starting with a digit", {"new_properties": {"1st": 1}}, "1st", "digit"),
    ("var name with a dot", {"new_properties": {"a.b": 1}}, "a.b", "may hold only"),
    ("var name with percent", {"new_properties": {"50%": 1}}, "50%", "digit"),
    ("object value", {"new_properties": {"o": object()}}, "o", "cannot be sent"),
    ("complex number", {"new_properties": {"c": 1j}}, "c", "cannot be sent"),
    ("integer beyond 64 bits", {"new_properties": {"n": 2**70}}, "n", "64 bits"),
    ("empty nested key", {"new_properties": {"a": {"": 1}}}, "a", "cannot be empty"),
    ("bad opt-out level", {"optout": "sometimes"}, "optout", "'none', 'all', 'basic', 'blast'"),
    ("list name with newline", {"new_groups": {"VIP\nlist"}}, "lists", "control"),
    ("empty list name", {"new_groups": {"   "}}, "lists", "cannot be empty"),
    ("list name too long", {"new_groups": {"L" * 300}}, "lists", "limited to"),
    ("bidi override in list name", {"new_groups": {"evil\u202elist"}}, "lists", "format"),
    ("groups given as one string", {"new_groups": "VIP"}, "new_groups", "set of group names"),
]


@pytest.fixture(scope="module")
def fake() -> Any:
    with make_fake(seed=11, rate_limits={"default": 100_000}) as server:
        yield server


def test_the_table_has_at_least_twenty_five_cases() -> None:
    assert len(BAD) >= 25


@pytest.mark.parametrize(("case", "kwargs", "field", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_record_fails_alone_with_its_id_and_field(
    fake: FakeSailthru,
    tmp_path: Path,
    case: str,
    kwargs: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    good_before = ProfileChange(key=f"before-{len(case)}@example.com", new_properties={"a": 1})
    bad = ProfileChange(**{"key": OK, "record_id": case, **kwargs})
    good_after = ProfileChange(key=f"after-{len(case)}@example.com", new_properties={"a": 2})
    with destination_for(fake, tmp_path) as dest:
        batch = dest.export_profiles([good_before, bad, good_after])
    first, middle, last = batch.results
    assert first.status is not Status.FAILED
    assert last.status is not Status.FAILED
    assert middle.status is Status.FAILED
    assert middle.record_id == case
    assert middle.error is not None
    assert middle.error.record_id == case
    assert middle.error.field == field
    assert fragment in middle.error.reason
    assert not middle.error.retryable
