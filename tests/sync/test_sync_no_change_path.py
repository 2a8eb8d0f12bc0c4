"""The no-change path's shortcuts answer exactly what the long way would.

A no-change re-run reads each row's key columns and digest without shaping it (map and
types), takes a CSV row's digest from its header and cells, and reads the stored hashes
a window of keys at a time (issue 26, a million rows). Each shortcut is checked against
the long way: shaping every row, looking every hash up on its own.
"""

from __future__ import annotations

import csv
import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.digest import row_digest
from sailthru_destination.sync.memory.state import AppliedRecord, SyncState
from sailthru_destination.sync.run import run_sync
from sailthru_destination.sync.warehouse.columns import shaped
from sailthru_destination.sync.warehouse.sources import Row, open_source
from sailthru_destination.testing import FakeSailthru

_COLUMNS = ("id", "email", "n", "flag", "day", "id2")
_TYPES = {"n": "int", "flag": "bool", "day": "date", "id": "int"}
_CELLS = st.sampled_from(["", " ", "1", "007", "x", "yes", "no", "2024-01-31", "1_0", "a,b",
                          "'", '"q"', "\\", "é"])


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(st.sampled_from(_COLUMNS), _CELLS, min_size=1),
       renames=st.dictionaries(st.sampled_from(_COLUMNS), st.sampled_from(_COLUMNS), max_size=2),
       typed=st.lists(st.sampled_from(sorted(_TYPES)), unique=True, max_size=4),
       problem=st.booleans())
def test_a_lazily_shaped_row_reads_as_the_shaped_row(
    data: dict[str, str], renames: dict[str, str], typed: list[str], problem: bool,
) -> None:
    if problem:
        data = {**data, "__problem__": "cannot be read"}
    types = {column: _TYPES[column] for column in typed}
    source = Row("line 2", data, repr(sorted(data.items())))
    lazy, eager = (next(iter(shaped([source], renames, types))) for _ in range(2))
    # Each column read alone, before the row is shaped, is the shaped row's value.
    for column in (*_COLUMNS, "__problem__"):
        assert lazy.value(column) == eager.data.get(column), column
    assert lazy.data == eager.data
    assert lazy.where == "line 2"
    # Another map or types: another digest for the same text.
    other = next(iter(shaped([source], renames, {**types, "email": "str"})))
    assert row_digest(other) != row_digest(lazy)
    if not problem:
        assert next(iter(shaped([source], renames, types))).clean_when_unchanged()


def test_a_csv_rows_digest_tells_apart_cells_and_headers(tmp_path: Path) -> None:
    texts = {
        "a": 'id,name,city\n1,"a,b",c\n',
        "b": 'id,name,city\n1,a,"b,c"\n',  # the same characters, another cell boundary
        "c": 'id,city,name\n1,"a,b",c\n',  # the same cells under another header
        "d": 'id,name,city\n1,"a,b",c\n',  # the same row as "a"
    }
    digests = {}
    for name, text in texts.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text, encoding="utf-8")
        (row,) = open_source(str(path))
        assert row.raw is not None
        digests[name] = row_digest(row)
    assert digests["a"] == digests["d"]
    assert len({digests["a"], digests["b"], digests["c"]}) == 3


_CSV_CELLS = st.sampled_from(["", "a", "b", "a\x1fb", "\x1f", "['a']", "é", "a,b", '"'])


@settings(max_examples=150, deadline=None)
@given(header=st.lists(st.sampled_from(["id", "name", "__problem__", "x\x1f"]), min_size=1,
                       max_size=3, unique=True),
       rows=st.lists(st.lists(_CSV_CELLS, min_size=1, max_size=4), min_size=1, max_size=6))
def test_a_csv_row_reads_as_its_cells_and_its_raw_tells_rows_apart(
    header: list[str], rows: list[list[str]],
) -> None:
    # A CSV row builds its data only when read, and joins its cells for its raw: each is
    # what the cells say (short and long rows, separators and brackets in the cells).
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
        read = list(open_source(str(path)))
    assert len(read) == len(rows)
    raws: dict[str, list[str]] = {}
    for row, cells in zip(read, rows, strict=True):
        if len(cells) > len(header):
            assert "more value(s)" in row.data["__problem__"]
            continue
        expected = dict(zip(header, cells, strict=False))
        for column in (*header, "__problem__", "absent"):
            assert row.value(column) == expected.get(column), column
        assert row.data == expected
        assert row.clean_when_unchanged() == ("__problem__" not in expected)
        assert row.raw is not None
        assert raws.setdefault(row.raw, cells) == cells  # one raw, one list of cells


def test_a_renamed_csv_column_with_the_same_cells_is_exported_again(tmp_path: Path) -> None:
    model = tmp_path / "people.csv"
    config = SyncConfig(name="people", types={"age": "int"})
    with FakeSailthru(api_key="k", api_secret="s") as fake:
        app = AppOptions("k", "s", fake.url)
        model.write_text("id,email,age\n1,ann@example.com,30\n", encoding="utf-8")
        first = run_sync(app, config, open_source(str(model)), home=tmp_path)
        again = run_sync(app, config, open_source(str(model)), home=tmp_path)
        model.write_text("id,email,years\n1,ann@example.com,30\n", encoding="utf-8")
        renamed = run_sync(app, config, open_source(str(model)), home=tmp_path)
        user = fake.find_user(email="ann@example.com")
    assert first.summary.counts["created"] == 1
    assert again.summary.counts == {"unchanged": 1}
    assert renamed.summary.counts["updated"] == 1
    assert user is not None
    assert user["vars"].get("years") == "30"
    assert "age" not in user["vars"]


def _hashes(count: int, first: int = 0) -> dict[str, str]:
    return {str(n): f"c{n}:d{n}" for n in range(first, first + count)}


def _state_with(folder: str, hashes: dict[str, str]) -> SyncState:
    state = SyncState(Path(folder) / "s.db")
    for pk, digest in hashes.items():
        state.put(AppliedRecord(pk, digest, f"{pk}@example.com", {}, frozenset()))
    state.flush()
    return state


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_hashes_read_ahead_are_the_hashes_stored(data: st.DataObject) -> None:
    hashes = _hashes(data.draw(st.integers(0, 700), label="records"))
    keys = st.one_of(st.sampled_from(sorted(hashes) or ["0"]), st.text("0123456789x", max_size=4))
    with tempfile.TemporaryDirectory() as folder, _state_with(folder, hashes) as state:
        steps = st.sampled_from(["get", "put", "forget", "flush"])
        asked = data.draw(st.lists(st.tuples(steps, keys), max_size=400), label="steps")
        if data.draw(st.booleans(), label="in key order"):
            asked.sort(key=lambda step: step[1])
        for number, (step, pk) in enumerate(asked):
            if step == "put":
                hashes[pk] = f"new{number}"
                state.put(AppliedRecord(pk, hashes[pk], None, {}, frozenset()))
            elif step == "forget":
                hashes.pop(pk, None)
                state.forget(pk)
            elif step == "flush":
                state.flush()
            assert state.get_hash(pk) == hashes.get(pk)


def _queries(state: SyncState, order: list[str]) -> tuple[list[Any], int]:
    statements: list[str] = []
    state._db.set_trace_callback(statements.append)
    try:
        answers = [state.get_hash(pk) for pk in order]
    finally:
        state._db.set_trace_callback(None)
    return answers, len(statements)


def test_a_model_in_key_order_reads_its_hashes_in_few_queries_and_a_shuffled_one_in_no_more(
    tmp_path: Path,
) -> None:
    hashes = _hashes(5000, first=10_000)
    ordered = list(hashes)  # ids of one length: numeric order is the state's text order
    shuffled = ordered[:]
    random.Random(4).shuffle(shuffled)
    with _state_with(str(tmp_path), hashes) as state:
        answers, in_order = _queries(state, ordered)
        assert answers == [hashes[pk] for pk in ordered]
        answers, out_of_order = _queries(state, shuffled)
        assert answers == [hashes[pk] for pk in shuffled]
    assert in_order <= len(ordered) // 50
    # A window that serves too few rows is not read again at once: one query a key, about.
    assert out_of_order <= len(shuffled) * 1.05


def test_rows_seen_are_found_by_user_once_the_run_asks(tmp_path: Path) -> None:
    with SyncState(tmp_path / "s.db") as state:
        state.start_run()
        assert state.see("1", "ann@example.com")
        assert state.see("2", "ann@example.com")
        assert not state.see("1", "bob@example.com")
        assert [c.pk for c in state.contenders()] == ["1", "2"]
        assert state.claimant("ann@example.com", besides="1") == "2"
        indexes = {row[1] for row in state._db.execute("PRAGMA temp.index_list(seen)")}
        assert "seen_key" in indexes
        state.start_run()  # a second run in the process starts without it, and finds again
        assert state.see("3", "cy@example.com")
        assert state.see("4", "cy@example.com")
        assert [c.pk for c in state.contenders()] == ["3", "4"]



def test_a_hash_written_after_its_window_was_read_is_not_answered_from_the_window(
    tmp_path: Path,
) -> None:
    with _state_with(str(tmp_path), _hashes(10)) as state:
        state.put(AppliedRecord("5", "new", None, {}, frozenset()))  # buffered, not written
        assert state.get_hash("1") == "c1:d1"  # reads the window from "1": "5" as stored
        state.flush()  # "5" is written: the buffer no longer answers for it
        assert state.get_hash("5") == "new"
