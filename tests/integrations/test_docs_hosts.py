"""The dlt and Singer examples of docs/integrations.md run as written, against the fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from samples import ROOT, tagged

from sailthru_destination.testing import FakeSailthru

PAGE = ROOT / "docs" / "integrations.md"


def _tagged(tag: str) -> str:
    return tagged(PAGE, tag)


def _docs_fake() -> FakeSailthru:
    return FakeSailthru(api_key="your-api-key", api_secret="your-api-secret",
                        rate_limits={"default": 100_000})


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SAILTHRU_", "DESTINATION__", "TARGET_SAILTHRU_"))}
    env.update(RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(home / "dlt-data"))
    # The console scripts sit beside this interpreter in the virtual environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _errors(home: Path) -> list[str]:
    return [json.loads(line)["record"] for path in sorted(home.glob(".sailthru-sync/reports/*/"
                                                                    "errors.jsonl"))
            for line in path.read_text().splitlines()]


def test_the_dlt_example_runs_as_written(tmp_path: Path) -> None:
    with _docs_fake() as fake:
        port = fake.url.rsplit(":", 1)[1]
        secrets = _tagged("dlt-secrets").replace("# api_url", "api_url").replace("8765", port)
        (tmp_path / ".dlt").mkdir()
        (tmp_path / ".dlt" / "secrets.toml").write_text(secrets)
        done = subprocess.run([sys.executable, "-c", _tagged("dlt")], cwd=tmp_path,
                              env=_env(tmp_path), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Newsletter" in fake.find_user(email="ann@example.com")["lists"]
        assert fake.find_user(email="bo@example.com") is None  # marked _deleted
        assert fake.calls[("POST", "user")] == 2  # the second run cost nothing
        assert _errors(tmp_path) == ["3", "3"]  # once per run that was handed it
        assert "your-api-secret" not in done.stdout + done.stderr


def test_the_singer_example_runs_as_written(tmp_path: Path) -> None:
    with _docs_fake() as fake:
        script = "set -e\n" + _tagged("singer").replace("8765", fake.url.rsplit(":", 1)[1])
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=_env(tmp_path),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        states = [json.loads(line) for line in done.stdout.splitlines()]
        assert states == [{"bookmarks": {"users": 2, "clicks": 1}}] * 2
        assert fake.find_user(email="cy@example.com")["vars"] == {"plan": "pro"}
        assert len(fake.events) == 1
        assert fake.calls[("POST", "user")] == 1  # the second run cost nothing
        assert _errors(tmp_path) == ["2", "2"]
        assert "your-api-secret" not in done.stdout + done.stderr
