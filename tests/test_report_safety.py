"""report.html tells the truth (issue 23): a delete's verifying "User not found" is no
failure, no "the first 0 failed calls", the same calls per changed row as the console, and a
malformed ``#status=%`` address does not break the page (in headless Chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from browser import load
from test_cli import FAST, people, run, write_csv
from test_report_html import call, write_folder

from sailthru_destination.sync.reporting.report_html import CALLS_SHOWN, build_report_html
from sailthru_destination.testing import FakeSailthru


def _deleting_run(tmp_path: Path) -> Path:
    """A real sync that deletes 3 users: its report folder."""
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST) as fake:
        model = write_csv(tmp_path / "people.csv", people(12))
        assert run(tmp_path, fake, "sync", str(model)).returncode == 0
        write_csv(model, people(9))
        done = run(tmp_path, fake, "sync", str(model), "--delete-behavior", "delete",
                   "--report-dir", "rep")
        assert done.returncode == 0, done.stderr
        assert "deleted                  3" in done.stdout
        per_row = re.search(r"\((\d+\.\d\d) per changed row", done.stdout)
        assert per_row
        (tmp_path / "console.txt").write_text(per_row.group(1))
    return tmp_path / "rep"


def test_a_delete_run_s_page_shows_no_failed_call_and_the_console_s_figures(
    tmp_path: Path
) -> None:
    folder = _deleting_run(tmp_path)
    calls = [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]
    assert any(c["code"] == 99 for c in calls)  # the verifying look found the user gone
    page = load(folder / "report.html", tmp_path / "profile")
    assert page.console == []
    body = re.search(r'<table id="calls">.*?<tbody>(.*?)</tbody>', page.dom, re.S)
    assert body
    assert 'class="bad"' not in body.group(1)
    assert "User not found" in body.group(1)
    per_changed = re.search(r'data-count="calls_per_changed"><div class="n">([^<]*)<',
                            page.dom)
    assert per_changed
    assert per_changed.group(1) == (tmp_path / "console.txt").read_text()
    failed_filter = load(folder / "report.html", tmp_path / "profile2", "#status=failed")
    assert "0 shown" in failed_filter.dom


def test_a_malformed_status_address_still_draws_the_page(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "r", {"rows": 1, "counts": {"created": 1}}, [],
                          [call(1.0), call(2.0, 429)])
    (folder / "report.html").write_text(build_report_html(folder), encoding="utf-8")
    page = load(folder / "report.html", tmp_path / "profile", "#status=%")
    assert page.console == []
    assert 'data-ready="1"' in page.dom
    assert "2 shown" in page.dom


def test_a_sampled_call_log_without_failures_never_says_the_first_0_failed_calls(
    tmp_path: Path
) -> None:
    folder = write_folder(tmp_path / "r", {"rows": 1}, [],
                          [call(float(n)) for n in range(CALLS_SHOWN + 50)])
    page = build_report_html(folder)
    assert "the first 0" not in page
    assert "the first 200 calls and a random sample" in page
