"""The report page as a person sees it: a real sync run's report.html opened in headless
Chromium (Debian's package; CI installs it). See ``tests/browser.py`` for the opt-out."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import browser
import pytest
from browser import load, screenshot
from test_cli import FAST, run, write_csv

from sailthru_destination.testing import FakeSailthru, Faults


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSailthru]:
    """The CLI tests' fake, answering some calls within the limit with a 429."""
    with FakeSailthru(api_key="cli-key", api_secret="cli-secret", rate_limits=FAST, seed=3,
                      faults=Faults(rate_limit_burst=0.15)) as running:
        yield running


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, fake: FakeSailthru) -> Path:
    """One real run's page, shared by the tests (each opens it in its own browser profile)."""
    tmp_path = tmp_path_factory.mktemp("run")
    rows = [{"id": str(i), "email": f"user{i}@example.com", "name": f"User {i}"}
            for i in range(40)]
    rows[5]["email"] = "not-an-email"
    rows[6]["name"] = "<script>document.title='owned'</script>"
    write_csv(tmp_path / "people.csv", rows)
    done = run(tmp_path, fake, "sync", "people.csv", "--report-dir", "rep", "--no-progress")
    assert done.returncode == 1, done.stderr
    return tmp_path / "rep" / "report.html"


def count(dom: str, key: str) -> str:
    found = re.search(rf'data-count="{key}"><div class="n">([^<]*)</div>', dom)
    assert found, f"no {key} count on the page"
    return found.group(1)


def test_a_person_sees_counts_failures_chart_and_calls(report: Path, tmp_path: Path) -> None:
    page = load(report, tmp_path / "profile")
    dom = page.dom
    assert page.console == []  # no script error, no CSP complaint, nothing logged
    assert 'data-ready="1"' in dom
    assert 'data-error="1"' not in dom

    assert count(dom, "rows") == "40"
    assert count(dom, "created") == "39"
    assert count(dom, "failed") == "1"

    failures = re.findall(r'<tr class="failure"><td>([^<]*)</td><td>([^<]*)</td>'
                          r'<td>[^<]*</td><td>([^<]*)</td>', dom)
    assert failures == [("5", "line 7", "'not-an-email' is not a valid email address")]
    assert "Invalid email: 1 record(s)" in dom
    assert re.search(r'<td>Invalid email</td><td>1</td><td class="fix">Correct the address', dom)

    timeline = re.search(r'<svg id="timeline".*?</svg>', dom, re.S)
    assert timeline, "no timeline chart"
    assert len(re.findall(r'<rect class="ok"', timeline.group(0))) >= 1
    assert re.search(r'<rect class="r429"', timeline.group(0)), "429s not marked"

    # The call log rows are drawn by the page's script; every call of this small run is there.
    calls = (report.parent / "calls.jsonl").read_text(encoding="utf-8").count("\n")
    body = re.search(r'<table id="calls">.*?<tbody>(.*?)</tbody>', dom, re.S)
    assert body
    assert body.group(1).count("<tr") == calls
    assert f"{calls:,} shown" in dom
    assert "429" in body.group(1)

    # The hostile value is text in the call log, never markup that ran.
    assert html.escape("<script>document.title='owned'</script>", quote=False) in dom
    assert "<title>owned" not in dom
    assert "<script>document.title" not in dom


def test_the_page_draws_on_screen(report: Path, tmp_path: Path) -> None:
    """A screenshot is made and is not blank (a human looked at one while writing this)."""
    shot = screenshot(report, tmp_path / "profile", tmp_path / "report.png")
    assert shot.stat().st_size > 20_000


def test_the_call_log_filters_by_status(report: Path, tmp_path: Path) -> None:
    """The filter a person picks is kept in the address (report.html#status=429), so the
    filtered view can be linked to, and is what the browser test can ask for."""
    page = load(report, tmp_path / "profile", "#status=429")
    assert page.console == []
    body = re.search(r'<table id="calls">.*?<tbody>(.*?)</tbody>', page.dom, re.S)
    assert body
    statuses = re.findall(r"<tr[^>]*><td>[^<]*</td><td>[^<]*</td><td>\d+</td><td>([^<]*)</td>",
                          body.group(1))
    assert statuses
    assert set(statuses) == {"429"}
    calls = (report.parent / "calls.jsonl").read_text(encoding="utf-8")
    assert len(statuses) == calls.count('"status": 429')


def test_a_missing_browser_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium on it
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        browser.chromium()
