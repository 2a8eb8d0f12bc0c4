"""What the host-integration tests share: a quiet, self-contained dlt home per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def host_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own, with dlt's telemetry off and no SAILTHRU_* settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    for name in ("SAILTHRU_API_KEY", "SAILTHRU_API_SECRET", "SAILTHRU_API_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path
