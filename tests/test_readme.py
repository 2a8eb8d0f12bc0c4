"""Every code sample in the README runs, and prints what the README says it prints."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_coordination import RedisServer

from sailthru_destination.testing import FakeSailthru

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def _tour() -> str:
    text = README.read_text()
    marker = text.index("<!-- doctest: tour -->")
    match = FENCE.search(text, marker)
    assert match is not None
    return match.group(2)


def test_the_readme_has_python_samples_and_a_tour() -> None:
    assert len(_blocks("python")) >= 8
    assert "sailthru-destination sync people.csv" in _tour()


# A README sample shows what a print prints in a comment: after the print on its line, or else
# on the comment lines right below it (up to a blank line); "..." stands for any text.
_PRINT = re.compile(r"^\s*print\(.*?\)(?:\s+#\s?(?P<inline>.*))?$")


def _shown_output(block: str) -> list[str]:
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


def _printed_in_order(shown: list[str], printed: list[str]) -> list[str]:
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


def _is_test_module(block: str) -> bool:
    return bool(re.search(r"^def test_", block, re.MULTILINE))


def test_every_python_sample_runs_in_order_and_prints_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The samples are one session (the first starts a fake); each prints what it shows."""
    monkeypatch.chdir(tmp_path)
    redis = RedisServer()
    monkeypatch.setenv("REDIS_URL", redis.url)
    namespace: dict[str, Any] = {"__name__": "readme"}
    out = io.StringIO()
    samples = [b for b in _blocks("python") if not _is_test_module(b)]
    try:
        with contextlib.redirect_stdout(out):
            for block in samples:
                exec(compile(block, str(README), "exec"), namespace)
    finally:
        fake_in_readme = namespace.get("fake")
        if fake_in_readme is not None:
            fake_in_readme.stop()
        redis.stop()
    shown = [line for block in samples for line in _shown_output(block)]
    assert len(shown) >= 15
    printed = out.getvalue().splitlines()
    assert _printed_in_order(shown, printed) == [], "\n".join(printed)


def test_the_output_check_catches_a_sample_that_prints_something_else() -> None:
    shown = _shown_output('print(x)  # m3 skipped: message\nprint(y)\n# sent ...; z\n')
    assert shown == ["m3 skipped: message", "sent ...; z"]
    assert _printed_in_order(shown, ["m3 skipped message", "sent a; z"]) == [
        "m3 skipped: message"]
    assert _printed_in_order(shown, ["m3 skipped: message", "sent a; z"]) == []


def test_the_test_author_sample_runs_alone_as_a_test_module(tmp_path: Path) -> None:
    """Pasted into a fresh test file, with only the package installed: its imports are its
    own (issue 17: they were missing and came from the samples before it)."""
    [block] = [b for b in _blocks("python") if _is_test_module(b)]
    namespace: dict[str, Any] = {"__name__": "test_pasted"}
    exec(compile(block, str(README), "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert tests
    for test in tests:
        with FakeSailthru(api_key="test-key", api_secret="test-secret") as fake:
            test(fake)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_five_minute_tour_runs_as_written(tmp_path: Path) -> None:
    port = str(_free_port())
    script = "set -e\n" + _tour().replace("8765", port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
    # The console script sits beside this interpreter in the virtual environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "summary.json" in done.stdout
    assert "errors.jsonl" in done.stdout
    assert "calls.jsonl" in done.stdout
    assert "test-secret" not in done.stdout + done.stderr


# Blocks that no test runs as written, and why; any other block must be run by a test.
_NOT_RUN = {
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/sailthru-destination demo":
        "installs from the registry; the demo itself runs in test_cli",
    "export SAILTHRU_API_KEY=... SAILTHRU_API_SECRET=... SEGMENT_WRITE_KEY=":
        "a deployment recipe with placeholder credentials; serve runs in tests/serve",
    "plugins:": "a meltano.yml fragment (Meltano is not installed in CI)",
}
# Tagged blocks and the tests that run them.
_TAGGED = {"tour": "test_the_five_minute_tour_runs_as_written",
           "dlt-secrets": "tests/integrations/test_readme_hosts.py",
           "dlt": "tests/integrations/test_readme_hosts.py",
           "singer": "tests/integrations/test_readme_hosts.py",
           "test-command": ".ci/run",
           "celery-worker": "tests/test_readme_celery.py"}


def test_every_code_block_is_run_by_a_test_or_listed_with_the_reason() -> None:
    text = README.read_text()
    unaccounted = []
    for match in FENCE.finditer(text):
        language, body = match.group(1), match.group(2)
        before = text[:match.start()].rstrip().splitlines()[-1]
        tag = re.fullmatch(r"<!-- (?:doctest: )?([\w-]+) -->", before)
        if language == "python" or (tag and tag.group(1) in _TAGGED):
            continue
        if not any(body.startswith(start) for start in _NOT_RUN):
            unaccounted.append(body.splitlines()[0])
    assert unaccounted == []
