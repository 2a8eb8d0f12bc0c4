"""Code samples in Markdown (the README and the pages in ``docs/``): finding them, running them,
and checking that they print what they show.

A sample shows what a ``print`` prints in a comment: after the print on its line, or else on the
comment lines right below it (up to a blank line); ``...`` stands for any text. The line right
above a fence may tag the block (``<!-- doctest: tour -->``: a named test runs it) or say why no
test runs it (``<!-- not-run: reason -->``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sailthru_destination.testing import FakeSailthru

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!-- (?:(?:doctest: )?(?P<tag>[\w-]+)|not-run: (?P<reason>.+?)) -->")
PYTHON = ("python", "py")
SHELL = ("sh", "bash", "shell")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its text, and the tag or not-run reason above it."""

    language: str
    body: str
    tag: str | None
    not_run: str | None

    @property
    def first_line(self) -> str:
        return self.body.splitlines()[0] if self.body else ""


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        above = text[:match.start()].rstrip("\n").splitlines()
        marker = _MARKER.fullmatch(above[-1].strip()) if above else None
        found.append(Block(
            match.group(1), match.group(2),
            marker.group("tag") if marker else None,
            marker.group("reason") if marker else None,
        ))
    return found


def tagged(path: Path, tag: str) -> str:
    """The body of the one block of ``path`` tagged ``tag``."""
    [body] = [b.body for b in blocks(path) if b.tag == tag]
    return body


_PRINT = re.compile(r"^\s*print\(.*?\)(?:\s+#\s?(?P<inline>.*))?$")


def shown_output(block: str) -> list[str]:
    """What the sample shows its prints print, in order."""
    shown: list[str] = []
    lines = block.splitlines()
    for index, line in enumerate(lines):
        match = _PRINT.match(line)
        if not match:
            continue
        if match.group("inline"):
            shown.append(match.group("inline").strip())
            continue
        for below in lines[index + 1:]:
            if not below.strip().startswith("#"):
                break
            shown.append(below.strip().removeprefix("#").strip())
    return shown


def printed_in_order(shown: list[str], printed: list[str]) -> list[str]:
    """The shown lines not printed, in order, as whole lines (empty: all were)."""
    missing, position = [], 0
    for expected in shown:
        pattern = re.compile(".*".join(re.escape(part) for part in expected.split("...")))
        for index in range(position, len(printed)):
            if pattern.fullmatch(printed[index]):
                position = index + 1
                break
        else:
            missing.append(expected)
    return missing


def is_test_module(block: str) -> bool:
    """Whether the sample is a test module to paste into a test file (it defines tests)."""
    return bool(re.search(r"^def test_", block, re.MULTILINE))


def run_test_module(block: str, source: str) -> None:
    """Runs each test of a pasted test-module sample against a fresh fake, as pytest would
    with the ``fake_sailthru`` fixture; its imports must be its own."""
    namespace: dict[str, Any] = {"__name__": "test_pasted"}
    exec(compile(block, source, "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert tests
    for test in tests:
        with FakeSailthru(api_key="test-key", api_secret="test-secret") as fake:
            test(fake)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shell_env(**extra: str) -> dict[str, str]:
    """The environment a shell sample runs in: no SAILTHRU_* of the caller's, and the console
    scripts of this interpreter's virtual environment first on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_tour(script: str, cwd: Path) -> str:
    """Runs the five-minute tour (it starts its own fake on port 8765, moved to a free one);
    returns what it printed, after checking it ended well and never showed the secret."""
    done = subprocess.run(
        ["bash", "-c", "set -e\n" + script.replace("8765", str(free_port()))], cwd=cwd,
        env=shell_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test-secret" not in done.stdout + done.stderr
    for name in ("summary.json", "errors.jsonl", "calls.jsonl", "report.html"):
        assert name in done.stdout
    return done.stdout
