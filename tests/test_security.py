"""The API secret and request signatures never leak; plain http is refused off this machine.

A full sync and failing syncs run with every logger at DEBUG (urllib3 included); every log
line, report file (summary.json, errors.jsonl, calls.jsonl), exception text and repr is
scanned for the secret and for every ``sig`` value the fake received (collected exactly, by
spying on the signing), and for anything shaped like a signature next to "sig".
"""

from __future__ import annotations

import csv
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sailthru.sailthru_client import SailthruClient

from sailthru_destination.destination import SailthruDestination, test_connection
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import AppOptions, DestinationOptions, SyncMode
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.run import run_sync
from sailthru_destination.sync.warehouse.sources import open_source
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi

KEY = "sec-key-7f3a"
SECRET = "Sup3r-S3cret-Value-9d41c0"
SIG_SHAPED = re.compile(r"sig\W{0,6}[0-9a-f]{32}", re.IGNORECASE)
SCRIPT = Path(sys.executable).with_name("sailthru-destination")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sailthru_destination"]


@pytest.fixture
def sigs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every signature computed in this process (what the fake receives)."""
    seen: list[str] = []
    original = SailthruClient._prepare_json_payload

    def spy(self: SailthruClient, data: Any) -> Any:
        prepared = original(self, data)
        seen.append(prepared["sig"])
        return prepared

    monkeypatch.setattr(SailthruClient, "_prepare_json_payload", spy)
    return seen


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool", "sailthru_destination", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _model(path: Path, rows: int = 12) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "email", "name", "groups"])
        for n in range(rows):
            writer.writerow([n, f"s{n}@example.com", f"S {n}", "Secure;All"])
        writer.writerow([rows, "not an email", "Bad", ""])
    return path


def _texts(caplog: pytest.LogCaptureFixture, folder: Path | None = None) -> list[str]:
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(repr(record.exc_info[1]))
    if folder is not None:
        texts.extend(p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file())
    return texts


def _assert_clean(texts: list[str], sigs: list[str]) -> None:
    assert sigs, "no signature was computed: the scan would prove nothing"
    for text in texts:
        assert SECRET not in text
        assert not SIG_SHAPED.search(text), SIG_SHAPED.search(text)
        for sig in set(sigs):
            assert sig not in text


def test_a_full_sync_at_debug_leaks_neither_the_secret_nor_any_signature(
    tmp_path: Path, sigs: list[str], debug_logs: pytest.LogCaptureFixture
) -> None:
    with FakeSailthru(api_key=KEY, api_secret=SECRET, rate_limits={"default": 10_000}) as fake:
        app = AppOptions(KEY, SECRET, fake.url)
        config = SyncConfig(name="people", report_dir=str(tmp_path / "report"),
                            delete_behavior="delete")
        outcome = run_sync(app, config, open_source(str(_model(tmp_path / "people.csv"))),
                           home=tmp_path)
        assert outcome.summary.counts["created"] == 12
        assert outcome.summary.failed == 1
        assert len(fake.users) == 12
    texts = _texts(debug_logs, tmp_path / "report")
    texts += [repr(app), str(app), repr(outcome), repr(outcome.summary)]
    assert any("GET" in t or "POST" in t for t in texts)  # the DEBUG lines were captured
    _assert_clean(texts, sigs)


def test_failing_calls_at_debug_leak_nothing_in_logs_errors_or_reprs(
    tmp_path: Path, sigs: list[str], debug_logs: pytest.LogCaptureFixture
) -> None:
    # Dropped connections (GET with the signature in the query string), 500s, then a wrong
    # secret: every failure path writes its error text somewhere.
    faults = Faults(connection_error_rate=0.5, server_error_rate=0.3)
    with FakeSailthru(api_key=KEY, api_secret=SECRET, faults=faults, seed=4,
                      rate_limits={"default": 10_000}) as fake:
        app = AppOptions(KEY, SECRET, fake.url, read_timeout=2.0)
        api = SailthruApi(app, concurrency=4,
                          retry=RetryPolicy(max_attempts=2, initial_backoff=0.001))
        options = DestinationOptions(
            sync_mode=SyncMode.UPDATE, lock_dir=str(tmp_path), concurrency=4
        )
        with SailthruDestination(app, options, api=api) as dest:
            batch = dest.export_profiles(
                ProfileChange(f"f{n}@example.com", new_properties={"n": n}) for n in range(30)
            )
            texts = [repr(dest), repr(api), repr(api.call_log)]
            texts += [repr(r) for r in dest.api.call_log.records()]
            texts += [str(r.to_dict()) for r in dest.api.call_log.records()]
        wrong = AppOptions(KEY, "wrong-" + SECRET[::-1], fake.url)
        with SailthruDestination(wrong, DestinationOptions(lock_dir=str(tmp_path))) as bad:
            refused = bad.export_profiles([ProfileChange("w@example.com", new_properties={})])
    failures = [r for r in batch.results if not r.ok] + list(refused.results)
    assert failures
    assert any("no reply" in r.detail for r in failures)  # a transport error was reported
    for result in failures:
        texts += [result.detail, repr(result), repr(result.error)]
    logged = _texts(debug_logs)
    assert any("GET /user?<redacted>" in t for t in logged)  # urllib3's query lines, hidden
    _assert_clean(texts + logged, sigs)


def test_the_command_line_at_debug_leaks_nothing_on_stderr_or_in_its_report(
    tmp_path: Path,
) -> None:
    model = _model(tmp_path / "people.csv")
    with FakeSailthru(api_key=KEY, api_secret=SECRET, rate_limits={"default": 10_000}) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
        env.update(SAILTHRU_API_KEY=KEY, SAILTHRU_API_SECRET=SECRET, SAILTHRU_API_URL=fake.url)
        runs = [
            subprocess.run([*COMMAND, "-vv", *args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60, check=False)
            for args in (["sync", str(model)], ["test-connection"],
                         ["sync", str(model), "--api-secret", "not-" + SECRET])
        ]
        assert len(fake.users) == 12
    assert [r.returncode for r in runs] == [1, 0, 2]  # a wrong secret: exit 2 at once
    assert "DEBUG" in runs[0].stderr  # -vv really logged at DEBUG
    report = tmp_path / ".sailthru-sync" / "reports"
    texts = [r.stdout + r.stderr for r in runs]
    texts += [p.read_text(encoding="utf-8") for p in report.rglob("*") if p.is_file()]
    assert any('"status": 200' in t for t in texts)  # calls.jsonl was written and scanned
    for text in texts:
        assert SECRET not in text
        assert SECRET[::-1] not in text
        assert not SIG_SHAPED.search(text), SIG_SHAPED.search(text)


@pytest.mark.parametrize("url", ["http://api.sailthru.com", "http://10.0.0.5:8080",
                                 "http://example.com/api"])
def test_plain_http_to_another_machine_is_refused_everywhere(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        AppOptions(KEY, SECRET, url)
    check = test_connection(KEY, SECRET, url)
    assert not check.ok
    assert "http" in check.message
    assert SECRET not in repr(check)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
    result = subprocess.run(
        [*COMMAND, "test-connection", "--api-key", KEY, "--api-secret", SECRET, "--api-url", url],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode in (1, 2)
    assert "plain http" in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_https_and_loopback_http_are_accepted() -> None:
    for url in ("https://api.sailthru.com", "http://127.0.0.1:9999", "http://localhost:1"):
        assert AppOptions(KEY, SECRET, url).api_url.startswith(url.split(":")[0])
