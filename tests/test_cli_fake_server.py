"""``sailthru-destination fake-server`` run as a process: --host, the credentials it states,
and a flag per fault of :class:`Faults` and per job option, checked through the official
client."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sailthru import SailthruClient
from test_cli import COMMAND, run

from sailthru_destination.testing import Faults


@contextmanager
def serving(tmp_path: Path, *flags: str) -> Iterator[tuple[str, list[str]]]:
    """A fake-server process; yields its URL and its banner lines."""
    process = subprocess.Popen([*COMMAND, "fake-server", "--port", "0", *flags], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = []
        while not banner or not banner[-1].startswith("Press Ctrl-C"):
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "no banner"
            banner.append(line.rstrip("\n"))
        url = banner[0].removeprefix("Fake Sailthru listening on ")
        yield url, banner
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def client(url: str) -> SailthruClient:
    return SailthruClient("test-key", "test-secret", api_url=url)


def test_help_and_banner_give_the_default_key_and_secret(tmp_path: Path) -> None:
    helped = run(tmp_path, None, "fake-server", "--help").stdout
    text = " ".join(re.sub(r"-\n\s*", "-", helped).split())  # argparse wraps at hyphens
    assert "accepts API key 'test-key' and secret 'test-secret'" in text
    for flag in ("--host", "--stale-read-window", "--error-after-apply-rate",
                 "--error-with-200-rate", "--job-polls", "--job-fails", "--expire-exports"):
        assert flag in text
    with serving(tmp_path) as (url, banner):
        assert "  api key test-key, api secret test-secret" in banner
        assert (f"  use: export SAILTHRU_API_URL={url} SAILTHRU_API_KEY=test-key "
                "SAILTHRU_API_SECRET=test-secret") in banner
        assert "  faults: none" in banner


def test_every_fault_of_the_python_api_has_a_flag() -> None:
    from sailthru_destination.cli import build_parser

    parser = build_parser()
    helped = parser.parse_args(["fake-server"])
    for name in Faults.__dataclass_fields__:
        assert hasattr(helped, name), f"fake-server has no --{name.replace('_', '-')}"


def test_host_picks_the_address(tmp_path: Path) -> None:
    with serving(tmp_path, "--host", "127.0.0.2") as (url, _):
        assert url.startswith("http://127.0.0.2:")
        assert client(url).api_get("list", {}).get_status_code() == 200


def test_error_with_200_and_error_after_apply(tmp_path: Path) -> None:
    with serving(tmp_path, "--error-with-200-rate", "1") as (url, banner):
        assert "  faults: error-with-200-rate=1.0" in banner
        reply = client(url).api_post("user", {"id": "a@example.com"})
        assert reply.get_status_code() == 200
        assert reply.get_error().get_error_code() == 9
    with serving(tmp_path, "--error-after-apply-rate", "1") as (url, _):
        sent = client(url).api_post("user", {"id": "b@example.com", "vars": {"x": 1}})
        assert sent.get_status_code() == 504
    # (the write happened: a fake without the fault would show it, the fault is per request)


def test_stale_reads(tmp_path: Path) -> None:
    with serving(tmp_path, "--stale-read-window", "30") as (url, _):
        api = client(url)
        api.api_post("user", {"id": "a@example.com", "vars": {"tier": "gold"}})
        api.api_post("user", {"id": "a@example.com", "vars": {"tier": "silver"}})
        seen = api.api_get("user", {"id": "a@example.com", "fields": {"vars": 1}}).get_body()
        assert seen["vars"]["tier"] == "gold"


def test_job_flags(tmp_path: Path) -> None:
    def export(api: SailthruClient) -> str:
        api.api_post("list", {"list": "News"})
        return str(api.api_post("job", {"job": "export_list_data", "list": "News"})
                   .get_body()["job_id"])

    with serving(tmp_path, "--job-polls", "-1") as (url, banner):
        assert "  faults: job-polls=-1" in banner
        api = client(url)
        job = export(api)
        for _ in range(3):
            assert api.api_get("job", {"job_id": job}).get_body()["status"] == "pending"
    with serving(tmp_path, "--job-fails", "--job-polls", "0") as (url, _):
        api = client(url)
        assert api.api_get("job", {"job_id": export(api)}).get_body()["status"] == "error"
    with serving(tmp_path, "--expire-exports", "--job-seconds", "0") as (url, banner):
        assert "  faults: expire-exports, job-seconds=0" in banner
        api = client(url)
        status = api.api_get("job", {"job_id": export(api)}).get_body()
        assert status["status"] == "completed"
        assert status["expired"] is True
        assert "export_url" not in status
        # Nothing left to download: every export is gone.
        assert requests.get(f"{url}/_export/x.csv", timeout=5).status_code == 404


@pytest.mark.parametrize("flags", [("--server-error-rate", "2"), ("--stale-read-window", "-1"),
                                   ("--job-polls", "-5"), ("--rate-window", "0")])
def test_a_bad_fault_setting_is_a_usage_error(tmp_path: Path, flags: tuple[str, str]) -> None:
    done = run(tmp_path, None, "fake-server", "--port", "0", *flags)
    assert done.returncode == 2
    assert flags[0].removeprefix("--").split("-")[0] in done.stderr
    assert "Traceback" not in done.stderr


def test_rate_window_counts_per_minute(tmp_path: Path) -> None:
    with serving(tmp_path, "--rate-window", "60", "--rate-limit", "default=0.05") as (url, banner):
        assert "  rate limits counted per 60 s (wall-clock windows)" in banner
        api = client(url)
        answers = [api.api_get("list", {}) for _ in range(7)]
    # 3 a minute: even if a minute turns during the calls, at most 6 of 7 pass.
    refused = [a for a in answers if a.get_status_code() == 429]
    assert 1 <= len(refused) <= 4
    for answer in refused:
        headers = answer.get_rate_limit_headers()
        assert headers["reset"] % 60 == 0
        assert headers["remaining"] == 0
