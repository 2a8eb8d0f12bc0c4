"""Every code block of the documentation site (``docs/**/*.md``) runs, and prints what it shows.

Per page, the Python blocks run in order as one session (the first block starts the fake the
others use) and the shell blocks run in order in one folder, against a fake whose credentials are
in the ``SAILTHRU_*`` variables. A test-module sample runs alone, as a pasted test file would. A
tagged block is run by the test named in ``TAGGED``; a block that no test can run in CI says why
above it (``<!-- not-run: reason -->``), and ``NOT_RUN`` lists them all.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
from samples import (
    PYTHON,
    ROOT,
    SHELL,
    Block,
    blocks,
    is_test_module,
    printed_in_order,
    run_test_module,
    run_tour,
    shell_env,
    shown_output,
    tagged,
)
from test_coordination import RedisServer

from sailthru_destination.testing import FakeSailthru

DOCS = ROOT / "docs"
PAGES = sorted(path for path in DOCS.rglob("*.md") if "reference" not in path.parts)

# Tagged blocks and the tests that run them.
TAGGED = {
    "tour": "tests/test_docs.py::test_the_getting_started_tour_runs_as_written",
    "dlt-secrets": "tests/integrations/test_docs_hosts.py::test_the_dlt_example_runs_as_written",
    "dlt": "tests/integrations/test_docs_hosts.py::test_the_dlt_example_runs_as_written",
    "singer": "tests/integrations/test_docs_hosts.py::test_the_singer_example_runs_as_written",
    "celery-worker": "tests/test_readme_celery.py::"
                     "test_the_readme_worker_command_starts_a_worker_that_runs_tasks",
}
# Every block that no test runs, by page and first line: a new one must be added here, so a
# reviewer sees it (its reason is the marker's, on the page).
NOT_RUN = {
    ("getting-started.md", "pip install sailthru-destination"),
    ("getting-started.md", "python3 -m venv .venv && .venv/bin/pip install . && "
                           ".venv/bin/sailthru-destination demo"),
    ("segment-and-serve.md", "export SAILTHRU_API_KEY=... SAILTHRU_API_SECRET=... "
                             "SEGMENT_WRITE_KEY=choose-a-long-random-key"),
    ("development.md", "(command -v redis-server && command -v chromium && "
                       "ls /usr/lib/postgresql/*/bin/initdb) >/dev/null 2>&1 || "
                       "(apt-get update -qq && apt-get install -y -qq redis-server chromium "
                       "postgresql); "
                       "python3 -m venv .venv && .venv/bin/pip install --quiet -e '.[test]' && "
                       ".venv/bin/python -m pytest -q"),
    ("development.md", "pip install -e '.[docs]' && mkdocs serve"),
}


def _name(page: Path) -> str:
    return str(page.relative_to(DOCS))


def _runs_here(block: Block) -> bool:
    return block.tag is None and block.not_run is None


def _session(page: Path) -> list[str]:
    return [b.body for b in blocks(page) if b.language in PYTHON and _runs_here(b)
            and not is_test_module(b.body)]


def _shell(page: Path) -> list[str]:
    return [b.body for b in blocks(page) if b.language in SHELL and _runs_here(b)]


def test_the_pages_have_code_and_every_block_is_run_or_listed() -> None:
    listed, unaccounted = set(), []
    for page in PAGES:
        for block in blocks(page):
            if block.language not in PYTHON + SHELL:
                continue
            if block.not_run is not None:
                assert block.not_run.strip(), f"{_name(page)}: a not-run marker without a reason"
                listed.add((_name(page), block.first_line))
            elif block.tag is not None and block.tag not in TAGGED:
                unaccounted.append((_name(page), block.first_line, block.tag))
    assert unaccounted == []
    assert listed == NOT_RUN
    assert sum(len(_session(page)) for page in PAGES) >= 10


@pytest.mark.parametrize("page", [p for p in PAGES if _session(p)], ids=_name)
def test_the_python_blocks_of_a_page_run_in_order_and_print_what_they_show(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    redis = RedisServer() if "REDIS_URL" in page.read_text() else None
    if redis is not None:
        monkeypatch.setenv("REDIS_URL", redis.url)
    namespace: dict[str, Any] = {"__name__": "docs"}
    out = io.StringIO()
    samples = _session(page)
    try:
        with contextlib.redirect_stdout(out):
            for block in samples:
                exec(compile(block, str(page), "exec"), namespace)
    finally:
        if isinstance(namespace.get("fake"), FakeSailthru):
            namespace["fake"].stop()
        if redis is not None:
            redis.stop()
    shown = [line for block in samples for line in shown_output(block)]
    printed = out.getvalue().splitlines()
    assert printed_in_order(shown, printed) == [], "\n".join(printed)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(is_test_module(b.body) for b in blocks(p))], ids=_name)
def test_a_test_module_sample_runs_alone_as_a_test_file(page: Path) -> None:
    for block in blocks(page):
        if block.language in PYTHON and _runs_here(block) and is_test_module(block.body):
            run_test_module(block.body, str(page))


@pytest.mark.parametrize("page", [p for p in PAGES if _shell(p)], ids=_name)
def test_the_shell_blocks_of_a_page_run_against_the_fake(page: Path, tmp_path: Path) -> None:
    with FakeSailthru(api_key="test-key", api_secret="test-secret") as fake:
        env = shell_env(SAILTHRU_API_URL=fake.url, SAILTHRU_API_KEY="test-key",
                        SAILTHRU_API_SECRET="test-secret")
        for block in _shell(page):
            done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, block + done.stdout + done.stderr
            assert "test-secret" not in done.stdout + done.stderr


def test_the_getting_started_tour_runs_as_written(tmp_path: Path) -> None:
    run_tour(tagged(DOCS / "getting-started.md", "tour"), tmp_path)
