"""The docs' Celery worker command, run as written on the guide's Celery code saved as
``sync.py``: a real worker starts and runs a task (issue 23: ``celery -A sync worker`` took
the module's ``app``, the ``AppOptions``, and failed)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from samples import FENCE
from test_coordination import RedisServer

from sailthru_destination.testing import FakeSailthru

# What the README's earlier samples set up before its Celery sample (the account it resolves).
_SETUP = '''import os

from sailthru_destination import AppOptions, DestinationOptions
from sailthru_destination.coordination import RedisCoordination

app = AppOptions(os.environ["SAILTHRU_API_KEY"], os.environ["SAILTHRU_API_SECRET"],
                 os.environ["SAILTHRU_API_URL"])
'''


def _celery_section() -> tuple[str, str]:
    """The Celery sample and the worker command, as the integrations guide has them."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    section = text[text.index("## Scaling out with Celery"):]
    end = section.find("\n## ", 1)
    section = section if end < 0 else section[:end]
    code = next(m.group(2) for m in FENCE.finditer(section)
                if m.group(1) == "python" and "Celery(" in m.group(2))
    tagged = re.search(r"<!-- celery-worker -->\n```sh\n(.*?)```", section, re.DOTALL)
    assert tagged, "the worker command is tagged celery-worker"
    return code, tagged.group(1).strip()


def test_the_readme_worker_command_starts_a_worker_that_runs_tasks(tmp_path: Path) -> None:
    code, command = _celery_section()
    (tmp_path / "sync.py").write_text(_SETUP + code, encoding="utf-8")
    redis = RedisServer()
    fake = FakeSailthru(api_key="readme-key", api_secret="readme-secret")
    fake.start()
    env = {**os.environ, "REDIS_URL": redis.url, "SAILTHRU_API_KEY": "readme-key",
           "SAILTHRU_API_SECRET": "readme-secret", "SAILTHRU_API_URL": fake.url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    log = (tmp_path / "worker.log").open("w+")
    worker = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=tmp_path, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    saved = dict(os.environ)
    try:
        deadline = time.monotonic() + 60
        # The banner lists the queues once the app is loaded (a bad -A stops before it).
        while "[queues]" not in (tmp_path / "worker.log").read_text():
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        os.environ.update(env)
        spec = importlib.util.spec_from_file_location("readme_sync", tmp_path / "sync.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        record = {"key": "bob@example.com", "key_type": "email", "name": "signed_up",
                  "properties": {}, "record_id": "ev-readme-worker"}
        [sent] = module.tasks.enqueue("events", "shop", [record])
        [result] = sent.get(timeout=60)
        assert result["status"] == "sent", result
        assert "signed_up" in str(fake.events)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=5)
        log.close()
        fake.stop()
        redis.stop()
