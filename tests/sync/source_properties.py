"""Properties of the CSV and JSON-lines sources, shared by the CI tests (small budget) and
``bench/fuzz_sources.py`` (large budget).

1. Arbitrary bytes (invalid UTF-8, NULs, stray quotes, huge cells, duplicate headers, ragged
   rows): opening fails only with a :class:`SourceError` about the CSV header; reading never
   raises; every row is named by a line, in order; a row without a problem holds only text
   that can be stored (valid UTF-8).
2. Rows written with ``csv.writer`` or ``json.dumps`` read back unchanged.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sailthru_destination.sync.warehouse.sources import SourceError, open_source

__all__ = ["arbitrary_bytes", "csv_round_trip", "jsonl_round_trip"]

_PIECES = [b",", b'"', b'""', b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf",
           b"{", b"}", b"[", b"]", b":", b'"id"', b"id,email\n", b"id,id\n", b"1,a@example.com\n",
           b'{"id": 1, "email": "a@example.com"}\n', b"\\", b"\xed\xa0\x80"]


def _messy_bytes() -> st.SearchStrategy[bytes]:
    huge = st.builds(lambda piece, n: piece * n, st.sampled_from([b"x", b'"', b",", b"["]),
                     st.integers(min_value=0, max_value=300_000))
    part = st.one_of(st.binary(max_size=24), st.sampled_from(_PIECES), huge)
    return st.lists(part, max_size=24).map(b"".join)


def _check_arbitrary_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{suffix}"
        path.write_bytes(data)
        try:
            rows = open_source(str(path))
        except SourceError as exc:
            refused = str(exc)
        else:
            refused = ""
        if refused:
            assert suffix == ".csv", refused
            assert "header" in refused, refused
            return
        lines = []
        for row in rows:
            found = re.fullmatch(r"line ([1-9][0-9]*)", row.where)
            assert found, row.where
            lines.append(int(found.group(1)))
            problem = row.data.get("__problem__")
            if problem is None:
                json.dumps(row.data, ensure_ascii=False).encode("utf-8")  # storable as it is
            else:
                assert isinstance(problem, str)
                assert problem
        assert lines == sorted(set(lines))


def arbitrary_bytes(budget: settings) -> Callable[[], None]:
    """Property 1 under ``budget``."""

    @budget
    @given(data=_messy_bytes(), suffix=st.sampled_from([".csv", ".jsonl"]))
    def prop(data: bytes, suffix: str) -> None:
        _check_arbitrary_bytes(data, suffix)

    return prop


# Any character a UTF-8 file can hold; a byte-order mark would be taken for the file's own.
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\ufeff"), max_size=12)


@st.composite
def _table(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = draw(st.lists(_TEXT.filter(lambda s: s != "__problem__"), min_size=1, max_size=5,
                           unique=True))
    width = len(header)
    rows = draw(st.lists(st.lists(_TEXT, min_size=width, max_size=width), max_size=6))
    return header, rows


def csv_round_trip(budget: settings) -> Callable[[], None]:
    """Property 2 for CSV under ``budget``."""

    @budget
    @given(table=_table())
    def prop(table: tuple[list[str], list[list[str]]]) -> None:
        header, rows = table
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.csv"
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(rows)
            read = [row.data for row in open_source(str(path))]
        assert read == [dict(zip(header, row, strict=True)) for row in rows]

    return prop


_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


def jsonl_round_trip(budget: settings) -> Callable[[], None]:
    """Property 2 for JSON lines under ``budget``."""

    @budget
    @given(objects=st.lists(st.dictionaries(_TEXT.filter(lambda s: s != "__problem__"), _JSON,
                                            max_size=5), max_size=6),
           ascii_only=st.booleans())
    def prop(objects: list[dict[str, Any]], ascii_only: bool) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.jsonl"
            path.write_text("".join(json.dumps(o, ensure_ascii=ascii_only) + "\n"
                                    for o in objects), encoding="utf-8")
            read = [row.data for row in open_source(str(path))]
        assert read == objects

    return prop
