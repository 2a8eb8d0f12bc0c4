"""The call log's JSON-lines sink: buffered for speed, yet nothing is lost at close or flush."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sailthru_destination.transport.calllog import CallRecord, JsonLinesSink


def _record(n: int) -> CallRecord:
    return CallRecord(
        time=1.0 + n, method="POST", endpoint="user", api_key="****abcd",
        payload={"id": f"u{n}@example.com", "vars": {"nested": {"a": [1, 2]}}},
        attempt=1, duration=0.01, status=200,
    )


def test_record_dict_is_the_whole_record() -> None:
    record = _record(1)
    assert record.to_dict() == asdict(record)


def test_buffered_lines_reach_the_file_on_flush_and_close(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    sink = JsonLinesSink(path, flush_every=3600.0)
    for n in range(3):
        sink(_record(n))
    assert path.read_text() == ""  # buffered: no write per record
    sink.flush()
    assert len(path.read_text().splitlines()) == 3
    sink(_record(3))
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["payload"]["id"] for line in lines] == [f"u{n}@example.com" for n in range(4)]


def test_lines_are_flushed_as_they_come_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    with JsonLinesSink(path, flush_every=0.0) as sink:
        sink(_record(0))
        assert json.loads(path.read_text())["endpoint"] == "user"
