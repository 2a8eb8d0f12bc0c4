"""Every code sample in the README runs, and prints what the README says it prints.

The README is the landing page: one short example per way in, each a cut of a guide in
``docs/`` (whose blocks ``tests/test_docs.py`` runs).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from samples import (
    PYTHON,
    ROOT,
    blocks,
    is_test_module,
    printed_in_order,
    run_test_module,
    run_tour,
    shown_output,
    tagged,
)

README = ROOT / "README.md"


def _python() -> list[str]:
    return [b.body for b in blocks(README) if b.language in PYTHON and b.tag is None]


def test_the_readme_is_a_landing_page_with_an_example_per_way_in() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    assert len(_python()) >= 5
    assert "sailthru-destination sync people.csv" in tagged(README, "tour")
    # Its links are relative, so they work on GitHub and point at existing files.
    links = re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]*)", text)
    assert len(links) >= 10
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_every_python_sample_runs_in_order_and_prints_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The samples are one session (the first starts a fake); each prints what it shows."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme"}
    out = io.StringIO()
    samples = [b for b in _python() if not is_test_module(b)]
    try:
        with contextlib.redirect_stdout(out):
            for block in samples:
                exec(compile(block, str(README), "exec"), namespace)
    finally:
        fake_in_readme = namespace.get("fake")
        if fake_in_readme is not None:
            fake_in_readme.stop()
    shown = [line for block in samples for line in shown_output(block)]
    assert len(shown) >= 6
    printed = out.getvalue().splitlines()
    assert printed_in_order(shown, printed) == [], "\n".join(printed)


def test_the_output_check_catches_a_sample_that_prints_something_else() -> None:
    shown = shown_output('print(x)  # m3 skipped: message\nprint(y)\n# sent ...; z\n')
    assert shown == ["m3 skipped: message", "sent ...; z"]
    assert printed_in_order(shown, ["m3 skipped message", "sent a; z"]) == [
        "m3 skipped: message"]
    assert printed_in_order(shown, ["m3 skipped: message", "sent a; z"]) == []


def test_the_test_author_sample_runs_alone_as_a_test_module() -> None:
    """Pasted into a fresh test file, with only the package installed: its imports are its
    own (issue 17: they were missing and came from the samples before it)."""
    [block] = [b for b in _python() if is_test_module(b)]
    run_test_module(block, str(README))


def test_the_five_minute_tour_runs_as_written(tmp_path: Path) -> None:
    run_tour(tagged(README, "tour"), tmp_path)


def test_the_dlt_example_is_the_guides_which_runs() -> None:
    """The README's dlt example is the guide's word for word (tests/integrations runs that)."""
    assert tagged(README, "dlt") == tagged(ROOT / "docs" / "integrations.md", "dlt")


# Blocks that no test runs as written, and why; any other block must be run by a test.
_NOT_RUN = {
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/sailthru-destination demo":
        "installs from the registry; the demo itself runs in test_cli",
}
# Tagged blocks and the tests that run them.
_TAGGED = {"tour": "test_the_five_minute_tour_runs_as_written",
           "dlt": "test_the_dlt_example_is_the_guides_which_runs",
           "test-command": ".ci/run"}


def test_every_code_block_is_run_by_a_test_or_listed_with_the_reason() -> None:
    unaccounted = [
        block.first_line for block in blocks(README)
        if not (block.language in PYTHON and block.tag is None)
        and block.tag not in _TAGGED and block.first_line not in _NOT_RUN
    ]
    assert unaccounted == []
