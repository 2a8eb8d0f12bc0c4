"""The one typing rule (``sailthru_destination.shaping.values``), property-wise: whatever a source
hands over, Sailthru gets plain JSON typed by the rule, and never a Python ``repr``.

Each example goes through a real sync run (SyncRunner over real HTTP to the fake) from each
kind of source: SQL (typed Python values, as SQLAlchemy, dlt and Singer hand them over),
JSON lines (a file) and CSV (a file, read with ``--types``).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import tempfile
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import AppOptions
from sailthru_destination.shaping.mapping import InvalidValue, flatten_vars
from sailthru_destination.shaping.values import OutOfRange, sailthru_value
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.runner import SyncRunner
from sailthru_destination.sync.warehouse.columns import TYPES, shaped
from sailthru_destination.sync.warehouse.sources import Row, open_source
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 100_000.0}
_REPR = re.compile(r"(Decimal|datetime|date|UUID|time|tzinfo|ZoneInfo)\(|^b'|<.* object at ")
_EMAILS = itertools.count()

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_names = st.sampled_from(["score", "seen_at", "signup_time", "renewal_date", "tags", "prefs",
                          "ref", "note"])
_moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                        timezones=st.one_of(st.none(), st.just(timezone.utc),
                                            st.builds(lambda m: timezone(timedelta(minutes=m)),
                                                      st.integers(-720, 720))))
_scalars = st.one_of(
    _text, st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=4,
                min_value=Decimal("-1e12"), max_value=Decimal("1e12")),
    _moments, st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 1, 1)),
    st.uuids(),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "x_time", "y_date"]), inner, max_size=3)),
    max_leaves=6)
_json_values = st.recursive(
    st.one_of(_text, st.integers(-(2**53), 2**53), st.booleans(), st.none(),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=3)),
    max_leaves=6)


def _plain_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@given(value=_values, name=_names)
def test_the_rule_gives_plain_json_agrees_with_the_mapping_and_is_idempotent(
    value: Any, name: str
) -> None:
    typed = sailthru_value(value, name)
    assert _plain_json(typed)
    assert sailthru_value(typed, name) == typed
    # The mapping flattens by the same rule: typing first changes nothing it sends.
    assert flatten_vars({name: typed}) == flatten_vars({name: value})
    originals = set(_strings(value))
    for text in _strings(typed):
        assert text in originals or not _REPR.search(text), text


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSailthru]:
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as running:
        yield running


def _run(fake: FakeSailthru, rows: list[Row], **settings: Any) -> None:
    config = SyncConfig(name="t", rate_limits=FAST, **settings)
    app = AppOptions("k", "s", fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
    with tempfile.TemporaryDirectory() as folder:
        options = config.destination_options(lock_dir=str(Path(folder) / "locks"))
        with SailthruDestination(app, options, api=api) as dest, \
                SyncState(Path(folder) / "s.db") as state:
            summary = SyncRunner(dest, config, state).run(
                shaped(rows, config.map, config.types))
    assert summary.counts["failed"] == 0


def _expected(values: dict[str, Any]) -> dict[str, Any]:
    typed = {k: sailthru_value(v, k) for k, v in values.items() if v is not None}
    return {k: v for k, v in flatten_vars(typed).items() if v not in ("", None)}


def _check(fake: FakeSailthru, email: str, values: dict[str, Any]) -> None:
    user = fake.find_user(email=email)
    assert user is not None
    held = dict(user["vars"])
    assert held == _expected(values)
    originals = set(_strings(values))
    for text in _strings(held):
        assert text in originals or not _REPR.search(text), text


_SOURCE_SETTINGS = settings(max_examples=15, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SOURCE_SETTINGS
@given(values=st.dictionaries(_names, _values, min_size=1, max_size=4))
def test_sql_rows_reach_sailthru_typed_by_the_rule(
    fake: FakeSailthru, values: dict[str, Any]
) -> None:
    email = f"sql{next(_EMAILS)}@example.com"
    _run(fake, [Row("row 1", {"id": 1, "email": email, **values})])
    _check(fake, email, values)


@_SOURCE_SETTINGS
@given(values=st.dictionaries(_names, _json_values, min_size=1, max_size=4))
def test_json_lines_reach_sailthru_typed_by_the_rule(
    fake: FakeSailthru, values: dict[str, Any]
) -> None:
    email = f"jsonl{next(_EMAILS)}@example.com"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.jsonl"
        path.write_text(json.dumps({"id": 1, "email": email, **values}) + "\n")
        _run(fake, list(open_source(str(path))))
    _check(fake, email, values)


_CSV_TYPES = {"score": st.integers(-(2**53), 2**53), "seen_at": st.booleans(),
              "prefs": _json_values, "note": _text,
              "signup_time": st.floats(allow_nan=False, allow_infinity=False),
              "renewal_date": st.dates(min_value=date(1900, 1, 1)), "last_time": _moments,
              "paid_at": _moments}


def _cell(name: str, value: Any) -> str:
    """``value`` as a CSV file would hold it."""
    if name == "prefs":
        return json.dumps(value)
    if name == "signup_time":
        return repr(value)
    if name == "seen_at":
        return str(value).lower()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@_SOURCE_SETTINGS
@given(values=st.fixed_dictionaries({}, optional=_CSV_TYPES))
def test_csv_cells_read_with_types_reach_sailthru_typed_by_the_rule(
    fake: FakeSailthru, values: dict[str, Any]
) -> None:
    email = f"csv{next(_EMAILS)}@example.com"
    types = {"score": "int", "seen_at": "bool", "prefs": "json", "note": "str",
             "signup_time": "float", "renewal_date": "date", "last_time": "datetime",
             "paid_at": "datetime"}
    cells = {k: _cell(k, v) for k, v in values.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "email", *cells])
            writer.writeheader()
            writer.writerow({"id": 1, "email": email, **cells})
        _run(fake, list(open_source(str(path))),
             types={k: v for k, v in types.items() if k in cells})
    _check(fake, email, {k: v for k, v in values.items()})


def test_a_value_without_a_sailthru_type_fails_its_row_naming_the_column(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    config = SyncConfig(name="t", rate_limits=FAST)
    app = AppOptions("k", "s", fake.url)
    api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
    failures: list[Any] = []
    rows = [Row("row 1", {"id": 1, "email": "span@example.com", "span": timedelta(days=2)}),
            Row("row 2", {"id": 2, "email": "blob@example.com", "blob": b"\x00\x01"}),
            Row("row 3", {"id": 3, "email": "fine@example.com", "ref": uuid.UUID(int=7)})]
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    with SailthruDestination(app, options, api=api) as dest, \
            SyncState(tmp_path / "s.db") as state:
        SyncRunner(dest, config, state, on_failure=failures.append).run(rows)
    assert [(f.record, f.field) for f in failures] == [("1", "span"), ("2", "blob")]
    assert "timedelta" in failures[0].reason
    assert fake.find_user(email="span@example.com") is None
    fine = fake.find_user(email="fine@example.com")
    assert fine is not None
    assert fine["vars"] == {"ref": "00000000-0000-0000-0000-000000000007"}


@settings(max_examples=30, deadline=None)
@given(cell=st.text(alphabet=" \t\u00a0\u2003", min_size=1, max_size=4),
       type_name=st.sampled_from([t for t in TYPES if t != "str"]))
def test_a_cell_of_only_spaces_in_a_typed_column_fails_its_row_naming_the_column(
    cell: str, type_name: str
) -> None:
    # Regression (issue 25): a whitespace-only cell skipped its type and reached Sailthru as
    # the text " " under --types age=int. It is no empty cell (--empty-as-null leaves it), so
    # it must read as its type: it fails its row, naming the column; --types age=str keeps it.
    rows = [Row("line 2", {"id": "1", "age": cell}), Row("line 3", {"id": "2", "age": ""})]
    [spaces, empty] = list(shaped(rows, {}, {"age": type_name}))
    assert "column 'age'" in spaces.data["__problem__"]
    assert f"--types age={type_name}" in spaces.data["__problem__"]
    assert empty.data == {"id": "2", "age": ""}  # an empty cell stays empty
    [kept] = list(shaped(rows[:1], {}, {"age": "str"}))
    assert kept.data == {"id": "1", "age": cell}


class _Amount(float):
    """A float subclass, as numpy's float64 is."""


class _Label(str):
    """A str subclass, as a str enum is."""


class _Count(int):
    """An int subclass, as an int enum is."""


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("signup_time", date(2024, 1, 1), 1704063600),  # midnight in Paris
    ("signup_date", date(2024, 1, 1), "2024-01-01"),
    ("label", _Label("gold"), "gold"),
    ("amount", _Amount(1.5), 1.5),
    ("count", _Count(3), 3),
])
def test_a_scalar_becomes_its_plain_sailthru_type(name: str, value: Any, expected: Any) -> None:
    typed = sailthru_value(value, name, timezone="Europe/Paris")
    assert (typed, type(typed)) == (expected, type(expected))


@pytest.mark.parametrize(("value", "reason"), [
    (float("nan"), "NaN and infinities are not numbers Sailthru can store"),
    (b"\x00", "bytes are not text: decode them to str first"),
    ({"a"}, "sets have no order; send a list"),
    (OutOfRange("year 10000 is out of range"), "year 10000 is out of range: Python's dates run "
     "from year 1 to 9999; cast the column to text or filter such rows out in the query"),
])
def test_a_value_sailthru_cannot_hold_is_refused_naming_its_field(value: Any, reason: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        sailthru_value({"nested": value}, "prefs")
    assert (caught.value.field, caught.value.reason) == ("prefs_nested", reason)
