"""Installed without an extra, each integration says which extra to install (issue 23):
``target-sailthru`` without ``singer`` exits 2 with the pip command instead of a traceback,
and the Celery integration without ``celery`` asks for ``celery``, not ``redis``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TARGET = Path(sys.executable).parent / "target-sailthru"


def _without(tmp_path: Path, *packages: str) -> dict[str, str]:
    """An environment in which importing ``packages`` fails as if they were not installed."""
    blocked = tmp_path / "blocked"
    for package in packages:
        (blocked / package).mkdir(parents=True)
        (blocked / package / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{package}'\", name={package!r})\n")
    path = os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_target_sailthru_without_the_singer_extra_names_the_extra(tmp_path: Path) -> None:
    done = subprocess.run([str(TARGET), "--about"], env=_without(tmp_path, "singer_sdk"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'sailthru-destination[singer]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_celery_integration_without_extras_asks_for_the_celery_extra(
    tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sailthru_destination.integrations.celery"],
        env=_without(tmp_path, "celery", "redis"), capture_output=True, text=True, timeout=60,
        check=False)
    assert done.returncode != 0
    assert "needs the 'celery' extra" in done.stderr
    assert "'redis' extra" not in done.stderr


def test_the_package_metadata_has_a_home_page_project_urls_and_python_3_13(
    tmp_path: Path
) -> None:
    """What ``pip show`` and the package index read, from a metadata build of setup.cfg."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base",
                           str(tmp_path)], cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [info] = tmp_path.glob("*.egg-info")
    metadata = (info / "PKG-INFO").read_text(encoding="utf-8")
    assert "Home-page: https://" in metadata
    assert "Project-URL: Changelog, https://" in metadata
    assert "Classifier: Programming Language :: Python :: 3.13" in metadata
