"""report.html built from a report folder: escaping, redaction, grouping, sampling, size."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, app_for, make_fake

from sailthru_destination.sync.config import load_config
from sailthru_destination.sync.reporting.report_html import (
    CALLS_SHOWN,
    build_report_html,
    write_report_html,
)
from sailthru_destination.sync.reporting.report_reasons import KNOWN_REASONS, classify
from sailthru_destination.sync.reporting.report_timeline import MAX_BARS, Timeline
from sailthru_destination.sync.run import run_sync
from sailthru_destination.sync.warehouse.sources import Row

HOSTILE = "<script>alert(1)</script>"


def write_folder(folder: Path, summary: dict[str, Any] | None, errors: list[dict[str, Any]],
                 calls: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (folder / "errors.jsonl").write_text("".join(json.dumps(e) + "\n" for e in errors),
                                         encoding="utf-8")
    (folder / "calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls),
                                        encoding="utf-8")
    return folder


def call(t: float, status: int | None = 200, *, attempt: int = 1, code: int | None = None,
         payload: dict[str, Any] | None = None, api_key: str = "****-key") -> dict[str, Any]:
    return {"time": t, "method": "POST", "endpoint": "user", "api_key": api_key,
            "payload": payload if payload is not None else {"id": f"u{t}@example.com"},
            "attempt": attempt, "duration": 0.01, "status": status, "code": code,
            "message": None, "error": None, "file": None}


def script_tags(page: str) -> int:
    return len(re.findall(r"<script\b", page, re.IGNORECASE))


def test_every_value_from_the_folder_is_shown_as_text(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "r",
        {"model": HOSTILE, "object": "users", "rows": 1, "counts": {"failed": 1},
         "api_url": "http://x/<b>", "status": HOSTILE},
        [{"record": HOSTILE, "where": "line 2", "field": "<img src=x onerror=alert(1)>",
          "reason": f"'{HOSTILE}' is not a valid email address"}],
        [call(1.0, payload={"vars": {"name": "</script><script>alert(2)</script>",
                                     "x": "<!--", "y": "\u2028"}})],
    )
    page = build_report_html(folder)
    # Only the page's own two script elements: the call data and the filter code.
    assert script_tags(page) == 2
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "</script><script>alert(2)" not in page
    assert "<!--" not in page


def test_no_secret_signature_or_full_key_reaches_the_page(tmp_path: Path) -> None:
    """A real run against the fake, plus a foreign call log that was never redacted."""
    rows = [Row("line 2", {"id": "1", "email": "a@example.com", "name": "Ann", "groups": "News"}),
            Row("line 3", {"id": "2", "email": "bad", "name": "Bob"})]
    with make_fake(rate_limits={"default": 100_000}) as fake:
        config = load_config(None, name="people", report_dir=str(tmp_path / "run"),
                             state=str(tmp_path / "s.db"))
        outcome = run_sync(app_for(fake), config, rows, home=tmp_path)
    page = (outcome.report / "report.html").read_text(encoding="utf-8")
    assert "a@example.com" in page
    assert "not a valid email" in page
    assert SECRET not in page
    assert KEY not in page

    foreign = write_folder(
        tmp_path / "foreign",
        {"api_url": "https://user:hunter2@api.example.com/", "api_key": "0123456789abcdef"},
        [], [call(1.0, api_key="0123456789abcdef",
                  payload={"sig": "d41d8cd98f00b204e9800998ecf8427e",
                           "api_secret": "s3cr3t-value", "json": "{}"})])
    page = build_report_html(foreign)
    for secret in ("hunter2", "0123456789abcdef", "d41d8cd98f00b204e9800998ecf8427e",
                   "s3cr3t-value"):
        assert secret not in page
    odd = write_folder(tmp_path / "odd", {"api_url": "https://u:hunter2@h:99999x/"}, [], [])
    odd_page = build_report_html(odd)
    assert "hunter2" not in odd_page
    assert "an unreadable URL" in odd_page
    assert "cdef" in page
    assert "api.example.com" in page


@pytest.mark.parametrize(("reason", "title"), [
    ("'x' is not a valid email address", "Invalid email"),
    ("POST /user failed (HTTP 404, Sailthru error 15): Unknown list: VIP", "Unknown list"),
    ("GET /list failed (HTTP 401, Sailthru error 5): Authentication failed.",
     "Authentication failed"),
    ("POST /user failed (HTTP 401, Sailthru error 3): Invalid API key", "Authentication failed"),
    ("POST /user failed (HTTP 429, Sailthru error 43): Too many POST requests this minute",
     "Rate limited (429)"),
    ("var names may hold only ASCII letters, digits, '_' and spaces", "Invalid var name"),
    ("the call was sent but no reply came (timed out); whether the record reached Sailthru is "
     "unknown", "Outcome unknown"),
    ("the order 'o1' is marked 'pending' and is not in Sailthru", "Outcome unknown"),
    ("POST /user failed (HTTP 500, Sailthru error 9): internal", "Sailthru server error"),
    ("something nobody expected", "Other"),
])
def test_known_reasons_get_their_fix(reason: str, title: str) -> None:
    assert classify(reason).title == title
    assert classify(reason).fix


def test_failures_are_grouped_by_reason_with_the_fix(tmp_path: Path) -> None:
    errors = [{"record": str(i), "where": f"line {i + 2}", "field": "key",
               "reason": f"'x{i}' is not a valid email address"} for i in range(60)]
    errors.append({"record": "u", "reason": "POST /user failed (HTTP 404, Sailthru error 15): "
                   "Unknown list: VIP"})
    page = build_report_html(write_folder(tmp_path / "r", {"rows": 61}, errors, []))
    fixes = {r.title: r.fix for r in KNOWN_REASONS}
    assert "Invalid email: 60 record(s)" in page
    assert "Unknown list: 1 record(s)" in page
    assert page.index("Invalid email: 60") < page.index("Unknown list: 1")  # biggest first
    assert f"<td>Unknown list</td><td>1</td><td class='fix'>{fixes['Unknown list']}</td>" in page
    assert "<details class='group'><summary>Invalid email" in page  # 60: folded
    assert "<details class='group' open><summary>Unknown list" in page
    assert "… and 10 more with this reason" in page
    assert "No API call was made" in page


def test_a_100000_call_run_gives_a_small_page(tmp_path: Path) -> None:
    """Sampled call log and merged timeline; the figures go to the note (not asserted on
    wall-clock time)."""
    calls = []
    for i in range(100_000):
        t = 1_700_000_000 + i / 200  # 500 seconds at 200 calls/s
        if i % 1000 == 7:
            calls.append(call(t, 429, code=43))
        elif i % 1000 == 8:
            calls.append(call(t, 200, attempt=2))
        else:
            calls.append(call(t, payload={"id": f"user{i}@example.com", "key": "email",
                                          "vars": {"name": f"Name {i}", "score": i}}))
    folder = write_folder(tmp_path / "big", {"rows": 100_000, "api_calls": 100_000,
                                             "counts": {"created": 100_000}}, [], calls)
    started = time.perf_counter()
    path = write_report_html(folder)
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    print(f"100,000 calls: calls.jsonl {(folder / 'calls.jsonl').stat().st_size:,} bytes, "
          f"report.html {size:,} bytes, built in {seconds:.2f} s")
    page = path.read_text(encoding="utf-8")
    assert size < 600_000
    assert f"Showing {CALLS_SHOWN:,} of 100,000 calls" in page
    data = json.loads(re.search(r'id="calls-data">(.*?)</script>', page, re.S)
                      .group(1))  # type: ignore[union-attr]
    assert len(data) == CALLS_SHOWN
    assert sum(1 for c in data if c["s"] == 429) == 100  # every failed call kept
    assert "calls per 3 seconds" in page
    assert page.count("class='mark'") <= MAX_BARS


def test_timeline_marks_429s_and_retries_and_merges_long_runs() -> None:
    timeline = Timeline()
    for second in range(0, 1000):
        timeline.add(call(float(second)))
    timeline.add(call(10.5, 429, code=43))
    timeline.add(call(11.2, 200, attempt=2))
    timeline.add(call(float("nan")))
    width, bars = timeline.bars()
    assert width == 5
    assert len(bars) <= MAX_BARS
    assert sum(sum(b.values()) for b in bars) == 1002
    section = timeline.section()
    assert "class='r429'" in section
    assert "class='retry'" in section
    assert "429 rate limited (1)" in section
    assert "retry (attempt 2+) (1)" in section


def test_a_folder_without_summary_still_gives_a_page(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "r", None, [{"record": "1", "reason": "boom"}], [])
    (folder / "calls.jsonl").write_text('{"time": 1, "status": null}\nnot json\n{"tor',
                                        encoding="utf-8")
    page = build_report_html(folder)
    assert "<option value='null'>no reply (1)</option>" in page
    assert "summary.json is missing" in page
    assert "boom" in page
    assert "All 1 calls" in page
