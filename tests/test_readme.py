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


def test_every_python_sample_runs_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    redis = RedisServer()
    monkeypatch.setenv("REDIS_URL", redis.url)
    namespace: dict[str, Any] = {"__name__": "readme"}
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            for block in _blocks("python"):
                exec(compile(block, str(README), "exec"), namespace)
            tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
            assert tests, "the test-author sample defines a test"
            for test in tests:
                with FakeSailthru(api_key="test-key", api_secret="test-secret") as fake:
                    test(fake)
    finally:
        fake_in_readme = namespace.get("fake")
        if fake_in_readme is not None:
            fake_in_readme.stop()
        redis.stop()
    printed = out.getvalue()
    for expected in [
        "True connected: every check passed",
        "created 42",
        "updated",
        "Counter({'created': 2, 'failed': 1})",
        "not-an-email key 'not-an-email' is not a valid email address",
        "deleted seen gone",
        "Counter({'sent': 1})",
        "Counter({'skipped': 1})",
        "1999",
        "m3 skipped",
        "'traits.first-name' sent as 'first_name'",
        "sent https://shop.example/p/sku-1",
        "sent None",
        "True ann@example.com all",
        "POST user 200",
        "created",
    ]:
        assert expected in printed, f"{expected!r} not printed:\n{printed}"


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
