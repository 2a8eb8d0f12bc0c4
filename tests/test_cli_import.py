"""``sailthru-destination import``, run as a user runs it: the previous export survives a failure,
and spreadsheet formulas in Sailthru data are escaped in CSV output."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import test_cli
from test_cli import COMMAND, _env, people, run, write_csv

from sailthru_destination.testing import FakeSailthru

fake = test_cli.fake  # the CLI tests' fake (their credentials) is a fixture here too

PREVIOUS = "sid,email\nold,kept@example.com\n"


@pytest.fixture(autouse=True)
def _jobs_done_at_once(fake: FakeSailthru) -> None:
    fake.job_polls = 0  # no poll to wait for: these tests are about the file, not the job


def _leftovers(folder: Path, out: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != out and out in p.name)


def test_an_unknown_list_leaves_the_previous_export_whole_and_exits_2(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    out = tmp_path / "members.csv"
    out.write_text(PREVIOUS, encoding="utf-8")
    result = run(tmp_path, fake, "import", "--list", "Nope", "--out", "members.csv")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "Nope" in result.stderr
    assert "members.csv" in result.stderr  # says the old file was left as it was
    assert out.read_text(encoding="utf-8") == PREVIOUS
    assert _leftovers(tmp_path, "members.csv") == []


def test_a_failed_job_leaves_the_previous_export_whole_and_exits_1(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "p.csv", people(2))
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    out = tmp_path / "members.jsonl"
    out.write_text('{"sid": "old"}\n', encoding="utf-8")
    fake.job_fails = True
    result = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", "members.jsonl")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Import of list 'Newsletter'" in result.stderr
    assert out.read_text(encoding="utf-8") == '{"sid": "old"}\n'
    assert _leftovers(tmp_path, "members.jsonl") == []


def test_a_successful_import_replaces_the_file_and_keeps_its_mode(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "p.csv", people(3))
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    out = tmp_path / "members.csv"
    out.write_text(PREVIOUS, encoding="utf-8")
    out.chmod(0o640)
    result = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", "members.csv")
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8", newline="") as handle:
        assert sorted(r["email"] for r in csv.DictReader(handle)) == [
            "p1@example.com",
            "p2@example.com",
            "p3@example.com",
        ]
    assert out.stat().st_mode & 0o777 == 0o640
    assert _leftovers(tmp_path, "members.csv") == []


def test_csv_cells_that_spreadsheets_run_as_formulas_are_escaped_unless_raw_csv(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    hostile = {
        "formula": '=HYPERLINK("http://x.test","click")',
        "plus": "+1 555 0100",
        "minus": "-2+3+cmd|' /C calc'!A0",
        "at": "@SUM(A1)",
        "tab": "\tindented",
        "cr": "\rreturn",
        "safe": "plain text",
        "negative": "-12.5",
    }
    rows = [{"id": 1, "email": "p1@example.com", "groups": "Newsletter", **hostile}]
    assert run(tmp_path, fake, "sync", str(write_csv(tmp_path / "p.csv", rows))).returncode == 0
    escaped = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", "safe.csv")
    assert escaped.returncode == 0, escaped.stderr
    raw = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", "raw.csv", "--raw-csv")
    assert raw.returncode == 0, raw.stderr
    lines = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", "m.jsonl")
    assert lines.returncode == 0, lines.stderr

    def read(name: str) -> dict[str, str]:
        with (tmp_path / name).open(encoding="utf-8", newline="") as handle:
            (row,) = list(csv.DictReader(handle))
        return row

    safe = read("safe.csv")
    for name in ("formula", "plus", "minus", "at", "tab", "cr"):
        assert safe[name] == "'" + hostile[name], name
    assert safe["safe"] == "plain text"
    assert safe["negative"] == "-12.5"  # a plain number is no formula: left as it is
    assert {k: v for k, v in read("raw.csv").items() if k in hostile} == hostile
    (member,) = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert {k: v for k, v in member["vars"].items() if k in hostile} == hostile


def test_an_out_that_is_a_folder_or_cannot_be_written_is_a_clear_error(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    (tmp_path / "folder.csv").mkdir()
    result = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", "folder.csv")
    assert result.returncode == 2, result.stderr
    assert "is a folder" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv"]
    too_long = "x" * 300 + ".csv"  # refused by the file system, even for root
    result = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", too_long)
    assert result.returncode == 2, result.stderr
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv"]


def test_ctrl_c_during_an_import_leaves_the_previous_export_and_no_temporary_file(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    model = write_csv(tmp_path / "p.csv", people(2))
    assert run(tmp_path, fake, "sync", str(model)).returncode == 0
    fake.job_polls = None  # the job never ends: the import waits until interrupted
    out = tmp_path / "members.csv"
    out.write_text(PREVIOUS, encoding="utf-8")
    process = subprocess.Popen(
        [*COMMAND, "import", "--list", "Newsletter", "--out", "members.csv"],
        cwd=tmp_path, env=_env(fake), stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (fake.jobs and _leftovers(tmp_path, "members.csv")):
            assert time.monotonic() < deadline, "the import never started its job"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "output file was left as it was" in stderr
    assert out.read_text(encoding="utf-8") == PREVIOUS
    assert _leftovers(tmp_path, "members.csv") == []
