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


def test_merge_gives_one_row_per_member_with_every_list(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    assert run(tmp_path, fake, "sync", str(write_csv(tmp_path / "p.csv", people(4)))
               ).returncode == 0
    args = ("import", "--list", "Newsletter", "--list", "VIP")
    split = run(tmp_path, fake, *args, "--out", "split.jsonl")
    merged = run(tmp_path, fake, *args, "--merge", "--out", "merged.csv")
    assert split.returncode == 0, split.stderr
    assert merged.returncode == 0, merged.stderr
    assert len((tmp_path / "split.jsonl").read_text(encoding="utf-8").splitlines()) == 6
    with (tmp_path / "merged.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["email"]: row["lists"] for row in csv.DictReader(handle)}
    assert rows == {"p1@example.com": "Newsletter;VIP", "p2@example.com": "Newsletter",
                    "p3@example.com": "Newsletter;VIP", "p4@example.com": "Newsletter"}
    assert "merged: one row per member" in merged.stdout


def test_out_dash_writes_to_stdout_only_when_the_import_succeeded(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    assert run(tmp_path, fake, "sync", str(write_csv(tmp_path / "p.csv", people(3)))
               ).returncode == 0
    done = run(tmp_path, fake, "import", "--list", "VIP", "--out", "-")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(m["email"] for m in lines) == ["p1@example.com", "p3@example.com"]
    assert "Wrote 2 member(s) of VIP to stdout" in done.stderr  # stdout is only the data

    as_csv = run(tmp_path, fake, "import", "--list", "VIP", "--out", "-", "--format", "csv",
                 "--merge")
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.splitlines()[0].startswith("sid,email,extid,source_list,lists")
    assert not list(tmp_path.glob("-*"))  # no file named "-"

    unknown = run(tmp_path, fake, "import", "--list", "VIP", "--list", "Nope", "--out", "-")
    assert unknown.returncode == 2
    assert unknown.stdout == ""  # the VIP members read before the failure are not printed
    assert "Nope" in unknown.stderr
    assert "nothing was written" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_a_file_without_a_known_suffix_needs_format(fake: FakeSailthru, tmp_path: Path) -> None:
    refused = run(tmp_path, fake, "import", "--list", "VIP", "--out", "members.txt")
    assert refused.returncode == 2
    assert "or give --format" in refused.stderr
    assert run(tmp_path, fake, "sync", str(write_csv(tmp_path / "p.csv", people(1)))
               ).returncode == 0
    done = run(tmp_path, fake, "import", "--list", "Newsletter", "--out", "members.txt",
               "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "members.txt").read_text(encoding="utf-8").startswith("sid,email")
