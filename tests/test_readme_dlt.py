"""The README's dlt example, run as the README says, one after another with the others.

Red team: run "as they are, one after another", the dlt example went to the real
api.sailthru.com, because dlt takes its account from ``.dlt/secrets.toml``. The README now
says so and what to change; done as it says, the example's calls reach the README's fake.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from samples import PYTHON, ROOT, blocks, is_test_module, tagged

README = ROOT / "README.md"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SAILTHRU_", "DESTINATION__", "TARGET_SAILTHRU_"))}
    env.update(RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(home / "dlt-data"))
    return env


def test_the_readme_says_where_the_dlt_example_sends_and_how_to_point_it_at_the_fake() -> None:
    text = README.read_text()
    claim = text[text.index("The Python examples below run as they are"):]
    claim = claim[:claim.index("```")]
    assert "all\nbut the dlt one" in claim
    before_dlt = text[:text.index("<!-- doctest: dlt -->")]
    advice = before_dlt[before_dlt.rindex("`.dlt/secrets.toml`"):]
    assert "https://api.sailthru.com" in advice
    assert "`api_url` line" in advice
    assert "fake.url" in advice


def test_the_dlt_example_done_as_the_readme_says_reaches_the_readmes_fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme"}
    session = [b.body for b in blocks(README) if b.language in PYTHON and b.tag is None
               and not is_test_module(b.body)]
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(session[0], str(README), "exec"), namespace)  # starts the README's fake
    fake = namespace["fake"]
    try:
        # The guide's secrets.toml, with its api_url line uncommented and set to fake.url.
        secrets = "\n".join(
            f'api_url = "{fake.url}"' if line.startswith("# api_url") else line
            for line in tagged(ROOT / "docs" / "integrations.md", "dlt-secrets").splitlines())
        (tmp_path / ".dlt").mkdir()
        (tmp_path / ".dlt" / "secrets.toml").write_text(secrets + "\n")
        done = subprocess.run([sys.executable, "-c", tagged(README, "dlt")], cwd=tmp_path,
                              env=_env(tmp_path), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        summaries = [json.loads(p.read_text())
                     for p in tmp_path.glob(".sailthru-sync/reports/dlt-*/summary.json")]
        assert summaries
        assert {s["api_url"] for s in summaries} == {fake.url}
        assert "Newsletter" in fake.find_user(email="ann@example.com")["lists"]
    finally:
        fake.stop()
