"""Deep JSON from a model file is one bad row, never a RecursionError that stops the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sailthru_destination.shaping._json import MAX_JSON_DEPTH, loads_bounded, too_deep_at
from sailthru_destination.sync.model import RowProblem, parse_groups
from sailthru_destination.sync.warehouse.sources import open_source

DEEP = "[" * 5000 + "]" * 5000


def test_a_5000_deep_jsonl_line_is_a_row_problem_and_the_other_lines_are_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "people.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "x": ' + DEEP + '}\n{"id": 3}\n', encoding="utf-8")
    rows = list(open_source(str(path)))
    assert [row.data.get("id") for row in rows] == [1, None, 3]
    assert "deeper than" in rows[1].data["__problem__"]


def test_a_5000_deep_groups_cell_is_a_row_problem() -> None:
    with pytest.raises(RowProblem, match="deeper than"):
        parse_groups(DEEP, "groups")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"note": "[" * 500, "tags": ["a", "b"]})
    assert too_deep_at(text) is None
    assert loads_bounded(text)["tags"] == ["a", "b"]


def test_the_bound_is_exact() -> None:
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_bounded(at_limit) is not None
    with pytest.raises(json.JSONDecodeError, match="deeper than"):
        loads_bounded("[" + at_limit + "]")


def test_escaped_quotes_keep_the_string_open() -> None:
    text = '["a\\"[[[[", ' + "[" * 3 + "]" * 3 + "]"
    assert too_deep_at(text, max_depth=4) is None
    assert too_deep_at(text, max_depth=3) is not None
