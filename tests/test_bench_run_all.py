"""bench/run_all.py: FIGURE lines collected into one Markdown table, on a stub benchmark (no
real benchmark runs here), and every registered script accepting the arguments it is given."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUB = "bench_stub.py"


def _run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


run_all = _run_all()


def test_figures_are_collected_into_one_table_beside_their_baselines(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    scripts = [(STUB, ["--size", "small"], ["--size", "full"]),
               (STUB, ["--size", "small", "--fail"], ["--size", "full", "--fail"])]
    outcomes = run_all.run(scripts, size="small", out=out, folder=Path(__file__).parent,
                           echo=False)
    assert [o.returncode for o in outcomes] == [0, 3]
    text = out.read_text(encoding="utf-8")
    assert re.search(r"^Measured by `python bench/run_all.py --size small` on "
                     r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, in one run; machine: \d+ cores", text)
    rows = [line for line in text.splitlines() if line.startswith("| `bench_stub.py` |")]
    # The small size's figure, its baseline (the | in its name escaped), ratio, goal, met.
    assert rows[0].startswith(
        "| `bench_stub.py` | stub pace (small) | 290 calls/s | ceiling \\| 300/s (300) | "
        "0.9667 | >= 0.95 | yes | ")
    assert rows[1].startswith("| `bench_stub.py` | stub CPU | 0.41 x |  |  |  |  | ")
    assert "| *line 3: not JSON (Expecting property name enclosed in double quotes)* |" in rows[2]
    # The failing run keeps the figure it printed and says how it ended.
    assert "stub pace (small)" in rows[3]
    assert any("*exit 3: stub: gave up*" in row for row in rows[4:])
    for row in rows:  # the load before → after each script, 1/5/15 minutes
        assert re.search(r"\| [\d.]+ [\d.]+ [\d.]+ → [\d.]+ [\d.]+ [\d.]+ \|$", row)
    assert "Seconds per script: `bench_stub.py`" in text


def test_a_script_that_prints_no_figure_is_reported(tmp_path: Path) -> None:
    silent = tmp_path / "silent.py"
    silent.write_text("print('no figures here')\n", encoding="utf-8")
    outcome = run_all.run_script(silent, [])
    assert outcome.figures == []
    assert outcome.problems == ["no FIGURE line printed"]


def test_the_readme_copy_goes_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{run_all.README_BEGIN}\nold\n{run_all.README_END}\n\nafter\n",
                      encoding="utf-8")
    run_all.write_readme(readme, "| new |\n")
    assert readme.read_text(encoding="utf-8") == (
        f"# x\n\n{run_all.README_BEGIN}\n| new |\n{run_all.README_END}\n\nafter\n")


def test_the_readme_and_the_docs_quote_the_results_table() -> None:
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    begin = readme.index(run_all.README_BEGIN) + len(run_all.README_BEGIN) + 1
    assert readme[begin:readme.index(run_all.README_END)] == results, (
        "README.md's copy of bench/RESULTS.md is stale: run "
        "`python bench/run_all.py --readme README.md` (or copy the file between the markers)")
    assert '--8<-- "bench/RESULTS.md"' in (ROOT / "docs" / "performance.md").read_text()


@pytest.mark.parametrize("entry", run_all.SCRIPTS, ids=lambda entry: entry[0])
def test_every_registered_script_accepts_its_arguments(entry: tuple[str, list[str], list[str]],
                                                       ) -> None:
    name, small, full = entry
    done = subprocess.run([sys.executable, str(ROOT / "bench" / name), "--help"],
                          capture_output=True, text=True, check=False, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    for flag in (arg for arg in (*small, *full) if arg.startswith("--")):
        assert flag in done.stdout, f"{name} has no {flag}"
    if "--size" in small:
        assert "{small,full}" in done.stdout


def _refused_before_running(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> str:
    """run_all's usage error for ``argv`` (exit 2), checked to come before any benchmark."""

    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("a benchmark ran before the arguments were checked")

    monkeypatch.setattr(run_all, "run", no_run)
    with pytest.raises(SystemExit) as exited:
        run_all.main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_any_benchmark_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 26: --out /proc/nope/x.md ran every benchmark, then crashed writing the table.
    err = _refused_before_running(monkeypatch, capsys, "--out", "/proc/nope/x.md")
    assert "--out /proc/nope/x.md" in err


def test_a_readme_without_markers_is_refused_before_any_benchmark_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n", encoding="utf-8")
    err = _refused_before_running(monkeypatch, capsys, "--out", str(tmp_path / "r.md"),
                                  "--readme", str(readme))
    assert "markers" in err
    err = _refused_before_running(monkeypatch, capsys, "--out", str(tmp_path / "r.md"),
                                  "--readme", str(tmp_path / "missing.md"))
    assert "cannot be read" in err


def test_an_unregistered_script_is_named_with_the_registered_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused_before_running(monkeypatch, capsys, "--only", "mapping_cost.py")
    assert "mapping_cost.py" in err
    assert all(name in err for name, _, _ in run_all.SCRIPTS)


def test_a_run_stopped_part_way_keeps_the_figures_of_the_scripts_that_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "RESULTS.md"
    real = run_all.run_script
    calls: list[Path] = []

    def stopped_at_the_second(script: Path, *args: object, **kwargs: object) -> object:
        calls.append(script)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C half an hour into a full run
        return real(script, *args, **kwargs)

    monkeypatch.setattr(run_all, "run_script", stopped_at_the_second)
    scripts: list[tuple[str, list[str], list[str]]] = [
        (STUB, ["--size", "small"], []), (STUB, ["--size", "small"], [])]
    with pytest.raises(KeyboardInterrupt):
        run_all.run(scripts, size="small", out=out, folder=Path(__file__).parent, echo=False)
    assert "stub pace (small)" in out.read_text(encoding="utf-8")
