"""``sync`` writes report.html; ``report <folder>`` writes it again."""

from __future__ import annotations

from pathlib import Path

from test_cli import fake, run, write_csv  # noqa: F401 (the fixture)

from sailthru_destination.testing import FakeSailthru


def test_sync_writes_the_page_and_report_rebuilds_it(tmp_path: Path, fake: FakeSailthru) -> None:  # noqa: F811
    write_csv(tmp_path / "people.csv", [{"id": "1", "email": "a@example.com"},
                                        {"id": "2", "email": "nope"}])
    done = run(tmp_path, fake, "sync", "people.csv", "--report-dir", "rep")
    page = tmp_path / "rep" / "report.html"
    assert done.returncode == 1
    assert page.is_file()
    assert "&#x27;nope&#x27; is not a valid email address" in page.read_text(encoding="utf-8")
    assert "report.html" in done.stdout

    page.unlink()
    again = run(tmp_path, None, "report", "rep")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"Report page: {Path('rep') / 'report.html'}"
    assert "&#x27;nope&#x27; is not a valid email address" in page.read_text(encoding="utf-8")


def test_report_of_a_folder_that_is_not_a_report(tmp_path: Path) -> None:
    missing = run(tmp_path, None, "report", "nowhere")
    assert missing.returncode == 2
    assert "nowhere is not a folder" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run(tmp_path, None, "report", "empty")
    assert empty.returncode == 2
    assert "not a report folder" in empty.stderr
    assert not (tmp_path / "empty" / "report.html").exists()

