"""The facade: connection test, streaming batches, and what it shows of itself."""

from __future__ import annotations

import logging
import multiprocessing
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, destination_for, make_fake

import sailthru_destination.destination as destination_module
from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog


def test_connection_check_passes_with_good_credentials(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as dest:
        check = dest.test_connection()
    assert check.ok
    assert [name for name, _, _ in check.checks] == ["authentication", "user", "list", "job"]
    assert all(passed for _, passed, _ in check.checks)


def test_connection_check_with_a_wrong_secret_says_to_check_the_secret(
    fake: FakeSailthru,
) -> None:
    check = destination_module.test_connection(KEY, "wrong-secret", fake.url)
    assert not check.ok
    assert check.message == (
        "authentication failed: the API secret does not match the API key (the signature was "
        "refused): check the API secret")
    assert "wrong-secret" not in repr(check)
    wrong_key = destination_module.test_connection("wrong-key", "wrong-secret", fake.url)
    assert wrong_key.message == (
        "authentication failed: Sailthru does not know this API key: check the API key")


def test_connection_check_names_the_endpoint_a_key_may_not_use(tmp_path: Path) -> None:
    with make_fake(forbidden_endpoints=frozenset({"job", "purchase"})) as fake:
        with destination_for(fake, tmp_path) as dest:
            check = dest.test_connection(["user", "list", "job", "event", "purchase"])
    assert not check.ok
    failed = {name: sentence for name, passed, sentence in check.checks if not passed}
    assert set(failed) == {"job", "purchase"}
    assert failed["job"] == (
        "this key may not use the job endpoint: ask Sailthru support to grant it"
    )
    assert "job endpoint" in check.message
    assert "purchase endpoint" in check.message


def test_connection_check_reports_an_unreachable_server_without_raising() -> None:
    check = destination_module.test_connection(KEY, SECRET, "http://127.0.0.1:9")
    assert not check.ok
    assert "could not reach Sailthru" in check.message


def test_connection_check_refuses_plain_http_to_a_remote_host_as_a_failed_check() -> None:
    check = destination_module.test_connection(KEY, SECRET, "http://api.sailthru.com")
    assert not check.ok
    assert "plain http" in check.message


def test_the_destination_never_shows_the_secret(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as dest:
        assert SECRET not in repr(dest)
        assert SECRET not in repr(dest.app)
        assert SECRET not in repr(dest.api)


@pytest.fixture
def fake_in_another_process() -> Iterator[str]:
    """A standalone fake, so its own memory does not count in this process's measurements."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sailthru_destination.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        yield url.group(0)
    finally:
        proc.terminate()
        proc.wait(10)


def _peak_memory_of_a_batch(url: str, lock_dir: str, count: int) -> int:
    logging.getLogger("sailthru_destination").setLevel(logging.ERROR)
    app = AppOptions(KEY, SECRET, url)
    opts = DestinationOptions(lock_dir=lock_dir, concurrency=4)
    api = SailthruApi(app, concurrency=4, call_log=CallLog(max_records=50))
    changes = (
        ProfileChange(f"m{count}-{i}@example.com", new_properties={"i": i, "pad": "x" * 4000})
        for i in range(count)
    )
    with SailthruDestination(app, opts, api=api) as dest:
        tracemalloc.start()
        ok = sum(result.ok for result in dest.iter_export_profiles(changes))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert ok == count
    return peak


def _measure(url: str, lock_dir: str, out: Any) -> None:
    out.put([_peak_memory_of_a_batch(url, lock_dir, count) for count in (150, 600)])


def test_batches_stream_with_flat_memory(fake_in_another_process: str, tmp_path: Path) -> None:
    # Measured in a fresh process: tracemalloc counts every thread's allocations, and a long
    # test session leaves threads and captured logs behind that are not the destination's.
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=_measure, args=(fake_in_another_process, str(tmp_path), out))
    process.start()
    small, large = out.get(timeout=120)
    process.join(10)
    # Holding every record would add about 450 x 4 KB = 1.8 MB; streaming adds next to nothing.
    assert large < small + 300_000


def test_results_come_back_in_input_order(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path, concurrency=8) as dest:
        batch = dest.export_profiles(
            ProfileChange(f"o{i}@example.com", new_properties={"i": i}, record_id=str(i))
            for i in range(100)
        )
    assert [r.record_id for r in batch.results] == [str(i) for i in range(100)]


def test_the_module_helper_is_not_collected_as_a_test() -> None:
    assert getattr(destination_module.test_connection, "__test__", True) is False


def test_app_options_are_validated_before_any_call() -> None:
    with pytest.raises(ValueError, match="plain http"):
        SailthruDestination(AppOptions(KEY, SECRET, "http://example.com"))
