"""Run every benchmark at one size and write their figures as one Markdown table.

Each script in :data:`SCRIPTS` runs in its own process, one after another, at ``--size small``
(seconds to a minute each: a quick look) or ``--size full`` (the sizes the figures are quoted
at: about half an hour in all). Every script prints, besides its own lines, one ``FIGURE
{json}`` line per figure (see ``bench/_figures.py``); this collects them into
``bench/RESULTS.md``: the date, the machine, its load before and after each script, and each
figure beside its baseline, the ratio and the goal. The README's performance section and the
docs' performance page quote that file (``--readme`` refreshes the README's copy; a test
checks the two agree). A script that fails or prints no figure gets a row saying so; the
table is written whatever happens.

    python bench/run_all.py [--size small|full] [--only NAME ...] [--out bench/RESULTS.md]
        [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PREFIX = "FIGURE "
README_BEGIN = "<!-- bench/RESULTS.md: begin (written by bench/run_all.py --readme) -->"
README_END = "<!-- bench/RESULTS.md: end -->"

# (script in bench/, arguments at --size small, arguments at --size full)
SCRIPTS: list[tuple[str, list[str], list[str]]] = [
    ("adaptive_concurrency.py", ["--size", "small"], ["--size", "full"]),
    ("api_throughput.py", ["--size", "small"], ["--size", "full"]),
    ("cpu_per_call.py", ["--size", "small"], ["--size", "full"]),
    ("export_throughput.py", ["--size", "small"], ["--size", "full"]),
    ("sync_bulk.py", ["--size", "small"], ["--size", "full"]),
    ("fake_throughput.py", ["--size", "small"], ["--size", "full"]),
    ("serve_intake.py", ["--size", "small"], ["--size", "full"]),
    ("million_rows.py", ["--size", "small"], ["--size", "full"]),
]


@dataclass
class Outcome:
    """One script's run: its figures (FIGURE lines, parsed) and how it went."""

    script: str
    args: list[str]
    seconds: float
    returncode: int
    load_before: str
    load_after: str
    figures: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_figures(output: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The FIGURE lines of a script's output, and a note for each malformed one."""
    figures: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(output.splitlines(), 1):
        if not line.startswith(PREFIX):
            continue
        try:
            value = json.loads(line[len(PREFIX):])
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(value, dict) or not {"figure", "value", "unit"} <= value.keys():
            problems.append(f"line {number}: a FIGURE needs figure, value and unit")
            continue
        figures.append(value)
    return figures, problems


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_script(script: Path, args: Sequence[str], python: str = sys.executable) -> Outcome:
    """Run one benchmark script to the end and collect its figures."""
    load_before = _load()
    started = time.monotonic()
    done = subprocess.run([python, str(script), *args], capture_output=True, text=True,
                          check=False, cwd=script.parent.parent)
    seconds = time.monotonic() - started
    figures, problems = parse_figures(done.stdout)
    outcome = Outcome(script.name, list(args), seconds, done.returncode, load_before, _load(),
                      figures, problems)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        outcome.problems.append(f"exit {done.returncode}: {last}")
    elif not figures:
        outcome.problems.append("no FIGURE line printed")
    return outcome


def machine() -> str:
    """Cores, CPU model, memory, Python and OS, in one line."""
    model = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    return (f"{os.cpu_count()} cores"
            + (f" ({model.group(1).strip()})" if model else "")
            + (f", {int(memory.group(1)) / 1024 / 1024:.0f} GiB" if memory else "")
            + f", Python {platform.python_version()}, {platform.system()} {platform.release()}")


def _read(path: str) -> str:
    """A file's text, or "" when it cannot be read (not Linux)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _number(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value == 0 or abs(value) >= 100:
        return f"{value:,.1f}".removesuffix(".0")
    return f"{value:.4g}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(outcomes: Sequence[Outcome], *, size: str, started: datetime, host: str) -> str:
    """The Markdown of bench/RESULTS.md for these runs."""
    lines = [
        f"Measured by `python bench/run_all.py --size {size}` on "
        f"{started:%Y-%m-%d %H:%M} UTC, in one run; machine: {host}.",
        "",
        "| benchmark | figure | value | baseline | ratio | goal | met | load (1, 5, 15 min) |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for outcome in outcomes:
        name = f"`{outcome.script}`"
        load = f"{outcome.load_before} → {outcome.load_after}"
        for figure in outcome.figures:
            baseline = figure.get("baseline") or ""
            if figure.get("baseline_value") is not None:
                baseline = f"{baseline} ({_number(figure['baseline_value'])})"
            met = {True: "yes", False: "**no**", None: ""}.get(figure.get("met"), "")
            lines.append(
                f"| {name} | {_cell(figure['figure'])} | "
                f"{_number(figure['value'])} {_cell(figure['unit'])} | {_cell(baseline)} | "
                f"{_number(figure.get('ratio'))} | {_cell(figure.get('goal') or '')} | {met} | "
                f"{load} |"
            )
        for problem in outcome.problems:
            lines.append(f"| {name} | *{_cell(problem)}* | | | | | | {load} |")
    lines += ["", "Seconds per script: " + ", ".join(
        f"`{o.script}` {o.seconds:.0f}" for o in outcomes) + "."]
    return "\n".join(lines) + "\n"


def destination_problem(out: Path, readme: Path | None) -> str | None:
    """Why the table could not be written to ``out`` (or copied into ``readme``), found before
    any benchmark runs (a bad path used to crash after every benchmark had run); else None."""
    folder = out.parent
    if not folder.is_dir():
        return f"--out {out}: the folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        return f"--out {out}: not writable"
    if readme is None:
        return None
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return f"--readme {readme}: cannot be read ({error})"
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        return f"--readme {readme}: the markers {README_BEGIN!r} and {README_END!r} are missing"
    if not os.access(readme, os.W_OK):
        return f"--readme {readme}: not writable"
    return None


def write_readme(readme: Path, results: str) -> None:
    """Put ``results`` between the README's markers (which must be there already)."""
    text = readme.read_text(encoding="utf-8")
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{readme}: the markers {README_BEGIN!r} and {README_END!r} are missing")
    head = text[: begin + len(README_BEGIN)]
    readme.write_text(f"{head}\n{results}{text[end:]}", encoding="utf-8")


def run(
    scripts: Sequence[tuple[str, list[str], list[str]]],
    *,
    size: str,
    out: Path,
    folder: Path = HERE,
    python: str = sys.executable,
    echo: bool = True,
) -> list[Outcome]:
    """Run ``scripts`` (found in ``folder``) at ``size`` and write the table to ``out``."""
    started = datetime.now(timezone.utc)
    outcomes: list[Outcome] = []
    for name, small, full in scripts:
        args = small if size == "small" else full
        if echo:
            print(f"running {name} {' '.join(args)} (load {_load()})", flush=True)
        outcome = run_script(folder / name, args, python)
        outcomes.append(outcome)
        if echo:
            status = "; ".join(outcome.problems) or f"{len(outcome.figures)} figures"
            print(f"  {outcome.seconds:.0f} s: {status}", flush=True)
        # After each script, not only at the end: a full run takes most of an hour, and one
        # stopped part way keeps the figures of the scripts that finished.
        out.write_text(table(outcomes, size=size, started=started, host=machine()),
                       encoding="utf-8")
    if not outcomes:
        out.write_text(table(outcomes, size=size, started=started, host=machine()),
                       encoding="utf-8")
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="small (default): seconds to a minute per script; full: the "
                        "sizes the figures are quoted at")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this script (repeatable), e.g. cpu_per_call.py")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md",
                        help="where the table goes (default bench/RESULTS.md)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="also copy the table into this README, between its markers")
    args = parser.parse_args(argv)
    scripts = [entry for entry in SCRIPTS if not args.only or entry[0] in args.only]
    unknown = set(args.only or ()) - {entry[0] for entry in SCRIPTS}
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (registered: "
                     f"{', '.join(entry[0] for entry in SCRIPTS)}; a script joins the "
                     "registry once it prints FIGURE lines)")
    problem = destination_problem(args.out, args.readme)
    if problem is not None:
        parser.error(problem)
    outcomes = run(scripts, size=args.size, out=args.out)
    if args.readme is not None:
        write_readme(args.readme, args.out.read_text(encoding="utf-8"))
    print(f"wrote {args.out}")
    return 1 if any(o.problems for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
