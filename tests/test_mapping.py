"""Property→vars mapping, list names, prices and reminder times (spec sections 3, 4, 5)."""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any

import pytest

from sailthru_destination.shaping.mapping import (
    MAX_DEPTH,
    MAX_STRING_BYTES,
    InvalidValue,
    audience_list_name,
    cents,
    changed_vars,
    clear_vars,
    flatten_vars,
    list_name,
    reminder_time,
    var_name_problem,
    vars_for_change,
)


class Colour(str, Enum):
    RED = "red"


class Level(IntEnum):
    GOLD = 3


def _nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"n": value}
    return value  # type: ignore[no-any-return]


UTC = timezone.utc
PLUS2 = timezone(timedelta(hours=2))

FLATTEN_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("spec example", {"a": {"b": 1}, "c": [5, 6]}, {"a_b": 1, "c_0": 5, "c_1": 6}),
    ("spaces and case kept", {"First Name": "Ann", "LTV": 3}, {"First Name": "Ann", "LTV": 3}),
    ("numbers stay numbers", {"n": 3, "x": 2.5, "neg": -1}, {"n": 3, "x": 2.5, "neg": -1}),
    ("booleans stay booleans", {"t": True, "f": False}, {"t": True, "f": False}),
    ("None stays None", {"gone": None}, {"gone": None}),
    ("zero and empty string kept", {"z": 0, "e": ""}, {"z": 0, "e": ""}),
    ("empty dict yields nothing", {"a": {}, "b": 1}, {"b": 1}),
    ("empty list yields nothing", {"a": [], "b": 1}, {"b": 1}),
    ("tuple like list", {"t": (1, "x")}, {"t_0": 1, "t_1": "x"}),
    ("list of dicts", {"o": [{"id": 1}, {"id": 2}]}, {"o_0_id": 1, "o_1_id": 2}),
    ("deep path", {"a": {"b": {"c": [True]}}}, {"a_b_c_0": True}),
    ("nested digit keys are fine", {"a": {"1": "x"}}, {"a_1": "x"}),
    ("decimal integral to int", {"d": Decimal("42.00")}, {"d": 42}),
    ("decimal fraction to float", {"d": Decimal("1.25")}, {"d": 1.25}),
    ("str enum as its value", {"c": Colour.RED}, {"c": "red"}),
    ("int enum as its value", {"l": Level.GOLD}, {"l": 3}),
    ("other mappings flatten", {"m": OrderedDict(x=1)}, {"m_x": 1}),
    ("date ISO", {"birthday": date(1990, 5, 17)}, {"birthday": "1990-05-17"}),
    (
        "aware datetime ISO",
        {"seen": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)},
        {"seen": "2024-01-02T03:04:05+00:00"},
    ),
    (
        "naive datetime ISO in UTC",
        {"seen": datetime(2024, 1, 2, 3, 4, 5)},
        {"seen": "2024-01-02T03:04:05+00:00"},
    ),
    (
        "_time gives Unix seconds",
        {"signup_time": datetime(2024, 1, 1, tzinfo=UTC)},
        {"signup_time": 1704067200},
    ),
    ("_time floors", {"a_time": datetime(1970, 1, 1, 0, 0, 1, 900000, tzinfo=UTC)}, {"a_time": 1}),
    ("_time of a date is midnight", {"d_time": date(2024, 1, 1)}, {"d_time": 1704067200}),
    (
        "_date from datetime",
        {"x_date": datetime(2024, 2, 29, 12, tzinfo=UTC)},
        {"x_date": "2024-02-29"},
    ),
    ("_date from date", {"x_date": date(2024, 2, 29)}, {"x_date": "2024-02-29"}),
    (
        "_time suffix on flattened name",
        {"signup": {"first_time": datetime(2024, 1, 1, tzinfo=UTC)}},
        {"signup_first_time": 1704067200},
    ),
    ("strings in _time are not parsed", {"x_time": "soon"}, {"x_time": "soon"}),
    ("injection-looking strings are values", {"q": "'; DROP TABLE x"}, {"q": "'; DROP TABLE x"}),
    (
        "64-bit int bounds",
        {"big": 2**63 - 1, "small": -(2**63)},
        {"big": 2**63 - 1, "small": -(2**63)},
    ),
]


@pytest.mark.parametrize(
    ("properties", "expected"), [c[1:] for c in FLATTEN_CASES], ids=[c[0] for c in FLATTEN_CASES]
)
def test_flatten_maps_each_type_and_shape(
    properties: dict[str, Any], expected: dict[str, Any]
) -> None:
    result = flatten_vars(properties)
    assert result == expected
    assert {k: type(v) for k, v in result.items()} == {k: type(v) for k, v in expected.items()}


def test_naive_datetimes_are_read_in_the_given_timezone() -> None:
    props = {"seen": datetime(2024, 7, 1, 12), "seen_time": datetime(2024, 7, 1, 12)}
    result = flatten_vars(props, timezone="Europe/Paris")
    assert result["seen"] == "2024-07-01T12:00:00+02:00"
    assert result["seen_time"] == 1719828000  # 10:00 UTC


def test_date_vars_use_the_calendar_date_in_the_timezone() -> None:
    late = datetime(2024, 1, 1, 23, 30, tzinfo=UTC)
    assert flatten_vars({"x_date": late}, timezone="Europe/Paris") == {"x_date": "2024-01-02"}
    assert flatten_vars({"x_date": late}) == {"x_date": "2024-01-01"}


def test_aware_datetimes_keep_their_own_offset_in_iso() -> None:
    moment = datetime(2024, 1, 1, 10, tzinfo=PLUS2)
    assert flatten_vars({"at": moment}, timezone="America/New_York") == {
        "at": "2024-01-01T10:00:00+02:00"
    }


def test_var_names_rename_top_level_properties_before_flattening() -> None:
    props = {"fname": "Ann", "addr": {"city": "Oslo"}}
    renames = {"fname": "first_name", "addr": "address"}
    assert flatten_vars(props, var_names=renames) == {"first_name": "Ann", "address_city": "Oslo"}


def test_excluded_properties_are_not_vars() -> None:
    assert flatten_vars({"email": "a@b.co", "n": 1}, exclude={"email"}) == {"n": 1}


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert flatten_vars({"x": _nested(MAX_DEPTH - 1)}) == {"x" + "_n" * (MAX_DEPTH - 1): 1}


# ---- vars_for_change -------------------------------------------------------------------

CHANGE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # (id, old, new, all vars, only changed)
    ("first export", {}, {"a": 1}, {"a": 1}, {"a": 1}),
    ("unchanged profile", {"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {}),
    ("removed property cleared", {"a": 1, "b": 2}, {"a": 1}, {"a": 1, "b": ""}, {"b": ""}),
    (
        "removed nested object cleared",
        {"a": {"b": 1, "c": 2}},
        {},
        {"a_b": "", "a_c": ""},
        {"a_b": "", "a_c": ""},
    ),
    ("emptied nested object cleared", {"a": {"b": 1}}, {"a": {}}, {"a_b": ""}, {"a_b": ""}),
    (
        "shorter list clears tail",
        {"c": [5, 6, 7]},
        {"c": [5]},
        {"c_0": 5, "c_1": "", "c_2": ""},
        {"c_1": "", "c_2": ""},
    ),
    ("zero is a value", {"a": 5}, {"a": 0}, {"a": 0}, {"a": 0}),
    ("False is a value", {"a": True}, {"a": False}, {"a": False}, {"a": False}),
    ("empty string is a value", {"a": "x"}, {"a": ""}, {"a": ""}, {"a": ""}),
    ("None kept as clear", {"a": "x"}, {"a": None}, {"a": None}, {"a": None}),
    ("1 to True is a change", {"a": 1}, {"a": True}, {"a": True}, {"a": True}),
    ("1 to 1.0 is a change", {"a": 1}, {"a": 1.0}, {"a": 1.0}, {"a": 1.0}),
    ("added property", {"a": 1}, {"a": 1, "b": 2}, {"a": 1, "b": 2}, {"b": 2}),
    ("bad old value still cleared", {"a": float("nan")}, {}, {"a": ""}, {"a": ""}),
    (
        "bad old value replaced",
        {"a": {1, 2}},
        {"a": [1, 2]},
        {"a_0": 1, "a_1": 2, "a": ""},
        {"a_0": 1, "a_1": 2, "a": ""},
    ),
    ("bad old name ignored", {"1bad": 1}, {"ok": 1}, {"ok": 1}, {"ok": 1}),
]


@pytest.mark.parametrize(
    ("old", "new", "everything", "changed"),
    [c[1:] for c in CHANGE_CASES],
    ids=[c[0] for c in CHANGE_CASES],
)
def test_vars_for_change_sends_new_values_and_clears_removed_ones(
    old: dict[str, Any], new: dict[str, Any], everything: dict[str, Any], changed: dict[str, Any]
) -> None:
    assert vars_for_change(old, new) == everything
    assert changed_vars(old, new) == changed
    assert vars_for_change(old, new, only_changed=True) == changed


def test_unchanged_profile_has_no_changed_vars() -> None:
    profile = {"a": {"b": [1, 2]}, "when_time": datetime(2024, 1, 1, tzinfo=UTC), "s": "x"}
    assert changed_vars(dict(profile), dict(profile)) == {}


def test_old_properties_may_be_none() -> None:
    assert vars_for_change(None, {"a": 1}) == {"a": 1}


def test_renamed_vars_are_cleared_under_their_var_name() -> None:
    assert vars_for_change({"fname": "Ann"}, {}, var_names={"fname": "first_name"}) == {
        "first_name": ""
    }


def test_clear_vars_empties_every_old_var() -> None:
    old = {"a": {"b": 1}, "c": [1, 2], "d": None}
    assert clear_vars(old) == {"a_b": "", "c_0": "", "c_1": "", "d": ""}
    assert clear_vars({}) == {}
    assert clear_vars({"email": "a@b.co", "x": 1}, exclude={"email"}) == {"x": ""}


def test_bad_new_values_raise_even_when_old_was_fine() -> None:
    with pytest.raises(InvalidValue) as info:
        vars_for_change({"a": 1}, {"a": math.inf})
    assert info.value.field == "a"


# ---- bad input -------------------------------------------------------------------------


class _Thing:
    pass


BAD_CASES: list[tuple[str, Any, str, str]] = [
    # (id, properties, field, words expected in the reason)
    ("NaN", {"score": float("nan")}, "score", "NaN"),
    ("infinity", {"score": math.inf}, "score", "NaN and infinities"),
    ("minus infinity", {"score": -math.inf}, "score", "infinities"),
    ("NaN nested", {"a": {"b": [float("nan")]}}, "a_b_0", "NaN"),
    ("Decimal NaN", {"d": Decimal("NaN")}, "d", "NaN"),
    ("Decimal infinity", {"d": Decimal("-Infinity")}, "d", "infinities"),
    ("Decimal too large", {"d": Decimal("1e30")}, "d", "64 bits"),
    ("int too large", {"n": 2**63}, "n", "64 bits"),
    ("int too small", {"n": -(2**63) - 1}, "n", "64 bits"),
    ("bytes", {"raw": b"abc"}, "raw", "bytes"),
    ("bytearray", {"raw": bytearray(b"abc")}, "raw", "bytes"),
    ("set", {"tags": {"a", "b"}}, "tags", "sets have no order; send a list"),
    ("frozenset", {"tags": frozenset()}, "tags", "sets have no order"),
    ("object", {"o": _Thing()}, "o", "_Thing"),
    ("function", {"f": len}, "f", "builtin_function_or_method"),
    ("complex", {"c": 1j}, "c", "complex"),
    ("time of day", {"t": datetime(2024, 1, 1).time()}, "t", "time"),
    ("non-string key top", {1: "x"}, "properties", "must be strings, got int"),
    ("non-string key nested", {"a": {None: 1}}, "a", "got NoneType"),
    ("tuple key", {"a": {(1, 2): 1}}, "a", "got tuple"),
    ("empty key top", {"": 1}, "", "empty"),
    ("empty key nested", {"a": {"": 1}}, "a", "empty"),
    ("too deep", {"x": _nested(MAX_DEPTH)}, "x" + "_n" * (MAX_DEPTH - 1), "nesting"),
    ("too deep list", {"x": [[[[[[[[[[1]]]]]]]]]]}, "x" + "_0" * (MAX_DEPTH - 1), "nesting"),
    ("huge string", {"bio": "x" * (MAX_STRING_BYTES + 1)}, "bio", "UTF-8 bytes"),
    ("huge multibyte string", {"bio": "é" * (MAX_STRING_BYTES // 2 + 1)}, "bio", "UTF-8 bytes"),
    ("name starts with digit", {"1st": 1}, "1st", "start with a digit"),
    ("name only digits", {"123": 1}, "123", "digit"),
    ("name with hyphen", {"first-name": 1}, "first-name", "scrubs"),
    ("name with dot", {"a.b": 1}, "a.b", "scrubs"),
    ("name with dollar", {"$price": 1}, "$price", "scrubs"),
    ("name with percent", {"pct%": 1}, "pct%", "scrubs"),
    ("name with quote", {"a'b": 1}, "a'b", "ASCII letters"),
    ("name with newline", {"a\nb": 1}, "a\nb", "ASCII letters"),
    ("name with accent", {"prénom": 1}, "prénom", "ASCII letters"),
    ("nested name with bad char", {"a": {"b-c": 1}}, "a_b-c", "scrubs"),
    ("leading space", {" a": 1}, " a", "space"),
    ("trailing space", {"a ": 1}, "a ", "space"),
    ("name too long", {"a" * 256: 1}, "a" * 256, "255"),
    ("reserved email", {"email": "a@b.co"}, "email", "reserved"),
    ("reserved sid", {"sid": "x"}, "sid", "reserved"),
    ("reserved extid", {"extid": "x"}, "extid", "reserved"),
    ("reserved lists", {"lists": ["a"]}, "lists_0", "nothing"),
    ("reserved optout_email", {"optout_email": "all"}, "optout_email", "reserved"),
    ("reserved beacon", {"beacon": 1}, "beacon", "reserved"),
    ("renamed to reserved", {"mail": "x"}, "email", "reserved"),
    ("flatten collision", {"a": {"b": 1}, "a_b": 2}, "a_b", "same var name"),
    ("not a mapping", ["a", 1], "properties", "expected a mapping"),
]


@pytest.mark.parametrize(
    ("properties", "field", "words"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_raises_invalid_value_naming_the_field(
    properties: Any, field: str, words: str
) -> None:
    if words == "nothing":  # "lists" flattens to lists_0, which is a fine var name
        assert flatten_vars(properties) == {"lists_0": "a"}
        return
    with pytest.raises(InvalidValue) as info:
        flatten_vars(properties, var_names={"mail": "email"})
    error = info.value
    assert isinstance(error, ValueError)
    assert error.field == field
    assert words in error.reason
    assert repr(field[:50])[1:-1][:20] in str(error)


def test_error_messages_never_carry_the_value() -> None:
    secret_value = "x" * (MAX_STRING_BYTES + 1)
    with pytest.raises(InvalidValue) as info:
        flatten_vars({"bio": secret_value})
    assert "xxxx" not in str(info.value)


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(InvalidValue) as info:
        flatten_vars({"a": 1}, timezone="Mars/Olympus")
    assert info.value.field == "timezone"


def test_var_name_rule_accepts_plain_names() -> None:
    for name in ("first_name", "First Name", "_private", "a1", "LTV 2024"):
        assert var_name_problem(name) is None, name
    assert var_name_problem("") is not None


# ---- lists -----------------------------------------------------------------------------

LIST_NAMES = [
    ("plain", "High LTV", "", "High LTV"),
    ("prefix", "VIP", "acme: ", "acme: VIP"),
    ("stripped", "  Newsletter \t", "", "Newsletter"),
    ("injection-looking is a name", "a'; DROP TABLE users; --", "", "a'; DROP TABLE users; --"),
    ("unicode", "Café ☕", "", "Café ☕"),
    ("symbols", '<b>&"%$#@!', "", '<b>&"%$#@!'),
]


@pytest.mark.parametrize(
    ("group", "prefix", "expected"), [c[1:] for c in LIST_NAMES], ids=[c[0] for c in LIST_NAMES]
)
def test_list_name_keeps_printable_names(group: str, prefix: str, expected: str) -> None:
    assert list_name(group, prefix) == expected


BAD_LIST_NAMES = [
    ("empty", ""),
    ("blank", "   "),
    ("tab inside", "a\tb"),
    ("newline", "a\nb"),
    ("NUL", "a\x00b"),
    ("escape", "a\x1b[31m"),
    ("DEL", "a\x7f"),
    ("bidi override", "abc\u202e"),
    ("zero width space", "a\u200bb"),
    ("line separator", "a\u2028b"),
    ("no-break space", "a\u00a0b"),
    ("too long", "x" * 256),
    ("not a string", 5),
    ("None", None),
]


@pytest.mark.parametrize(
    "group", [c[1] for c in BAD_LIST_NAMES], ids=[c[0] for c in BAD_LIST_NAMES]
)
def test_list_name_refuses_unprintable_or_empty_names(group: Any) -> None:
    with pytest.raises(InvalidValue) as info:
        list_name(group)
    assert info.value.field == "lists"


def test_list_prefix_is_validated_too() -> None:
    with pytest.raises(InvalidValue):
        list_name("ok", prefix="\n")


def test_audience_keys_are_kept_as_list_names() -> None:
    assert audience_list_name("high_ltv_users") == "high_ltv_users"
    assert audience_list_name("high_ltv_users", prefix="seg_") == "seg_high_ltv_users"
    with pytest.raises(InvalidValue):
        audience_list_name("")


# ---- prices ----------------------------------------------------------------------------

CENTS_CASES: list[tuple[str, Any, str, int]] = [
    ("float dollars", 19.99, "dollars", 1999),
    ("float sum", 0.1 + 0.2, "dollars", 30),
    ("string dollars", "19.99", "dollars", 1999),
    ("string with spaces", " 5 ", "dollars", 500),
    ("int dollars", 20, "dollars", 2000),
    ("decimal dollars", Decimal("1.005"), "dollars", 101),
    ("tenth of a cent rounds down", 1e-3, "dollars", 0),
    ("half a cent rounds up", 0.005, "dollars", 1),
    ("negative half rounds away", -0.005, "dollars", -1),
    ("discount", -5.25, "dollars", -525),
    ("zero", 0, "dollars", 0),
    ("cents int", 1999, "cents", 1999),
    ("cents string", "1999", "cents", 1999),
    ("cents fraction rounds", 1999.5, "cents", 2000),
    ("large float", 12345678.91, "dollars", 1234567891),
    ("exponent string", "1E2", "dollars", 10000),
]


@pytest.mark.parametrize(
    ("amount", "unit", "expected"), [c[1:] for c in CENTS_CASES], ids=[c[0] for c in CENTS_CASES]
)
def test_cents_converts_prices_exactly(amount: Any, unit: Any, expected: int) -> None:
    result = cents(amount, unit)
    assert result == expected
    assert type(result) is int


BAD_PRICES = [
    ("None", None),
    ("True", True),
    ("False", False),
    ("NaN", float("nan")),
    ("inf", math.inf),
    ("decimal NaN", Decimal("NaN")),
    ("string NaN", "nan"),
    ("string inf", "Infinity"),
    ("words", "nineteen"),
    ("currency sign", "$19.99"),
    ("thousands separator", "1,000"),
    ("empty", ""),
    ("list", [1]),
    ("huge", "1e30"),
    ("absurd exponent", "1e999999999"),
]


@pytest.mark.parametrize("amount", [c[1] for c in BAD_PRICES], ids=[c[0] for c in BAD_PRICES])
def test_cents_refuses_non_numbers(amount: Any) -> None:
    with pytest.raises(InvalidValue) as info:
        cents(amount, "dollars")
    assert info.value.field == "price"


def test_cents_refuses_an_unknown_unit() -> None:
    with pytest.raises(InvalidValue) as info:
        cents(1, "euros")  # type: ignore[arg-type]
    assert "dollars" in info.value.reason


# ---- reminder time ---------------------------------------------------------------------

REMINDERS = [
    ("spec example", "+20 minutes", "+20 minutes"),
    ("missing plus added", "20 minutes", "+20 minutes"),
    ("singular accepted", "+2 hour", "+2 hours"),
    ("one is singular", "1 days", "+1 day"),
    ("case and spaces", "  +3   WEEKS ", "+3 weeks"),
    ("no space", "+5days", "+5 days"),
    ("int is minutes", 45, "+45 minutes"),
    ("int one", 1, "+1 minute"),
    ("leading zeros", "007 hours", "+7 hours"),
]


@pytest.mark.parametrize(
    ("value", "expected"), [c[1:] for c in REMINDERS], ids=[c[0] for c in REMINDERS]
)
def test_reminder_time_normalises_to_plus_n_unit(value: Any, expected: str) -> None:
    assert reminder_time(value) == expected


BAD_REMINDERS = [
    ("seconds", "30 seconds"),
    ("months", "+1 month"),
    ("negative", "-5 minutes"),
    ("zero", "+0 minutes"),
    ("no number", "minutes"),
    ("no unit", "+20"),
    ("fraction", "+1.5 hours"),
    ("words", "tomorrow"),
    ("too large", "+10000000 minutes"),
    ("bool", True),
    ("float", 20.0),
    ("None", None),
    ("int zero", 0),
    ("empty", ""),
]


@pytest.mark.parametrize("value", [c[1] for c in BAD_REMINDERS], ids=[c[0] for c in BAD_REMINDERS])
def test_reminder_time_refuses_other_shapes_listing_units(value: Any) -> None:
    with pytest.raises(InvalidValue) as info:
        reminder_time(value)
    assert info.value.field == "reminder_time"
    if value not in ("+0 minutes", "+10000000 minutes", 0):
        assert "minutes, hours, days, weeks" in info.value.reason
