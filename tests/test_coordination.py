"""Coordination through a real Redis: list mutex, known lists and pacing shared across "hosts".

Each test module run starts its own ``redis-server`` on a free loopback port (Debian's
``redis-server`` package; ``.ci/run`` installs it). A missing binary fails the tests with a
message saying what to install: these tests are never skipped.
"""

from __future__ import annotations

import multiprocessing
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, app_for, make_fake, max_in_any_window

from sailthru_destination.coordination import (
    CoordinationError,
    KnownLists,
    RedisCoordination,
)
from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.once.locks import LocalLock, LockTimeout, NamedLock
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi
from sailthru_destination.transport.machine_pacer import machine_limiters

RACE_LIMITS = {"POST user": 60, "GET list": 40, "POST list": 10, "default": 40}
RACE_LISTS = ("race-a", "race-b", "race-c")
HOSTS = 3
THREADS = 20
PROFILES_PER_THREAD = 3


class RedisServer:
    """A throw-away redis-server on a free loopback port, without persistence."""

    def __init__(self, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed; install it (Debian/Ubuntu: "
                "apt-get install -y redis-server) to run the coordination tests"
            )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                time.sleep(0.01)
        self.stop()
        pytest.fail(f"redis-server did not start listening on port {self.port}")

    def stop(self) -> None:
        """Kill the server (as a crash would) and wait for it."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def coord(redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[RedisCoordination]:
    # A prefix per test keeps the tests' keys apart on the shared server.
    coordination = RedisCoordination(redis_server.url, prefix=f"t-{request.node.name}")
    yield coordination
    coordination.close()


# -- start-up and the pieces -------------------------------------------------------------------


def test_unreachable_redis_fails_at_start_with_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(CoordinationError) as caught:
        RedisCoordination(f"redis://:hunter2@127.0.0.1:{port}/0")
    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "connect" in message
    assert "hunter2" not in message
    assert caught.value.retryable


def test_the_pieces_fit_the_protocols_the_destination_uses(coord: RedisCoordination) -> None:
    assert isinstance(coord.lock(), NamedLock)
    assert isinstance(coord.known_lists(KEY), KnownLists)


def test_known_lists_are_shared_by_every_worker_and_kept_per_account(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    other_host = RedisCoordination(redis_server.url, prefix=coord.prefix)
    coord.known_lists(KEY).add("newsletter")
    assert other_host.known_lists(KEY).contains("newsletter")
    assert not other_host.known_lists("another-key").contains("newsletter")
    assert not other_host.known_lists(KEY).contains("other")
    other_host.close()


def test_the_list_lock_excludes_other_holders_until_released(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    impatient = RedisCoordination(redis_server.url, prefix=coord.prefix, lock_timeout=0.1)
    with coord.lock(KEY).hold("vip"):
        with pytest.raises(LockTimeout):
            with impatient.lock(KEY).hold("vip"):
                pass
        with impatient.lock(KEY).hold("other list"):
            pass
    with impatient.lock(KEY).hold("vip"):
        pass
    impatient.close()


def test_a_crashed_holder_loses_the_lock_when_its_lease_runs_out(
    redis_server: RedisServer,
) -> None:
    coord = RedisCoordination(redis_server.url, prefix="crash", lease=0.3, lock_timeout=2.0)
    crashed = RedisCoordination(redis_server.url, prefix="crash", lease=0.3)
    # A worker that takes the lock and dies: nobody renews or releases it.
    key = coord.key("lock", _lock_digest(KEY, "vip"))
    assert crashed.redis.lock(key, timeout=0.3).acquire(blocking=False)
    crashed.close()
    started = time.monotonic()
    with coord.lock(KEY).hold("vip"):
        waited = time.monotonic() - started
    assert 0.1 < waited < 1.0
    coord.close()


def test_a_held_lock_is_renewed_beyond_its_lease(redis_server: RedisServer) -> None:
    coord = RedisCoordination(redis_server.url, prefix="renew", lease=0.15, lock_timeout=0.1)
    with coord.lock(KEY).hold("slow"):
        time.sleep(0.3)  # twice the lease: still ours
        with pytest.raises(LockTimeout):
            with (
                RedisCoordination(redis_server.url, prefix="renew", lock_timeout=0.05)
                .lock(KEY)
                .hold("slow")
            ):
                pass
    coord.close()


def test_a_pause_after_a_429_holds_every_process(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    other_host = RedisCoordination(redis_server.url, prefix=coord.prefix)
    here = coord.limiters().get("POST", "user", account="a")
    there = other_host.limiters().get("POST", "user", account="a")
    there.acquire(time.monotonic, time.sleep)  # reads the (empty) shared state once
    here.pause(0.0, 0.2)
    time.sleep(0.11)  # let the other host's cached view of the shared state expire
    sleeps: list[float] = []
    there.acquire(time.monotonic, _sleeping(sleeps))
    assert 0.05 < sum(sleeps) <= 0.2
    other_host.close()


def test_a_learned_limit_and_a_low_budget_apply_to_every_process(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    other_host = RedisCoordination(redis_server.url, prefix=coord.prefix)
    here = coord.limiters().get("GET", "user", account="a")
    there = other_host.limiters().get("GET", "user", account="a")
    assert there.rate == 300
    here.observe(0.0, limit_per_minute=600, remaining=500, reset_in=50.0, reset_at=1e9)
    time.sleep(0.11)
    assert there.rate == 10
    # 500 calls left for 50 s: 10/s, already the pace: no slow-down...
    assert there.pace(0.0) == pytest.approx(10 * 0.975)
    # ...but 100 left for 50 s is 2/s for everyone.
    here.observe(0.0, limit_per_minute=600, remaining=100, reset_in=50.0, reset_at=1e9)
    time.sleep(0.11)
    assert there.pace(0.0) == pytest.approx(2 * 0.975, rel=0.01)
    other_host.close()


def test_send_slots_are_spaced_across_processes(
    coord: RedisCoordination, redis_server: RedisServer
) -> None:
    other_host = RedisCoordination(redis_server.url, prefix=coord.prefix)
    limiters = [c.limiters({"POST user": 100}) for c in (coord, other_host)]
    times: list[float] = []
    guard = threading.Lock()

    def worker(index: int) -> None:
        limiter = limiters[index % 2].get("POST", "user", account="a")
        for _ in range(10):
            limiter.acquire(time.monotonic, time.sleep)
            with guard:
                times.append(time.monotonic())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times.sort()
    # 60 slots at 97.5/s from two "hosts" and six threads: about 0.6 s, never bunched.
    assert times[-1] - times[0] >= 59 / 100
    assert max_in_any_window(times, 0.1) <= 11
    other_host.close()


# -- the list race across hosts ----------------------------------------------------------------


def _host(fake_url: str, redis_url: str | None, lock_dir: str, host: int, out: Any) -> None:
    """One "host": a process with its own lock dir, exporting profiles from 20 threads."""
    app = AppOptions(api_key=KEY, api_secret=SECRET, api_url=fake_url, read_timeout=5.0)
    opts = DestinationOptions(lock_dir=lock_dir, concurrency=THREADS)
    coord = RedisCoordination(redis_url, prefix="race") if redis_url else None
    api = SailthruApi(
        app,
        concurrency=THREADS,
        rate_limits=RACE_LIMITS,
        # Without Redis each "host" paces on its own machine (its own folder).
        limiters=coord.limiters(RACE_LIMITS) if coord else machine_limiters(lock_dir, RACE_LIMITS),
        retry=RetryPolicy(max_attempts=3, max_total=5.0, initial_backoff=0.05, max_backoff=0.2),
    )
    lock: NamedLock = coord.lock(KEY) if coord else LocalLock(lock_dir, scope=KEY)
    failures: list[str] = []
    with SailthruDestination(app, opts, api=api, lock=lock) as dest:

        def export(thread: int) -> None:
            for i in range(PROFILES_PER_THREAD):
                change = ProfileChange(
                    f"h{host}-t{thread}-{i}@example.com", new_groups=frozenset(RACE_LISTS)
                )
                result = dest.export_profile(change)
                if not result.ok:
                    failures.append(str(result.error))

        threads = [threading.Thread(target=export, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    out.put(failures)


def _race(fake: FakeSailthru, redis_url: str | None, tmp_path: Path) -> list[str]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    hosts = [
        context.Process(
            target=_host, args=(fake.url, redis_url, str(tmp_path / f"host{h}"), h, out)
        )
        for h in range(HOSTS)
    ]
    for process in hosts:
        process.start()
    failures: list[str] = []
    for _ in hosts:
        failures.extend(out.get(timeout=60))
    for process in hosts:
        process.join(timeout=10)
        assert process.exitcode == 0
    return failures


def _peak_per_second(fake: FakeSailthru) -> dict[tuple[str, str], int]:
    by_call: dict[tuple[str, str], list[float]] = {}
    for at, method, endpoint in fake.call_times:
        by_call.setdefault((method, endpoint), []).append(at)
    return {call: max_in_any_window(times, 1.0) for call, times in by_call.items()}


def _limit(method: str, endpoint: str) -> int:
    return RACE_LIMITS.get(f"{method} {endpoint}", RACE_LIMITS["default"])


def test_three_hosts_share_one_list_mutex_and_one_pace_through_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with make_fake(rate_limits=RACE_LIMITS, faults=Faults(list_race_window=0.05)) as fake:
        failures = _race(fake, redis_server.url, tmp_path)
        names = [record["name"] for record in fake.lists]
        peaks = _peak_per_second(fake)
        users = len(fake.users)
    assert failures == []
    assert sorted(names) == sorted(RACE_LISTS)  # zero duplicates
    assert users == HOSTS * THREADS * PROFILES_PER_THREAD
    for (method, endpoint), peak in peaks.items():
        assert peak <= _limit(method, endpoint), (method, endpoint, peak)


def test_file_locks_in_separate_lock_dirs_do_not_protect_several_hosts(
    tmp_path: Path,
) -> None:
    with make_fake(rate_limits=RACE_LIMITS, faults=Faults(list_race_window=0.05)) as fake:
        _race(fake, None, tmp_path)
        names = [record["name"] for record in fake.lists]
        peaks = _peak_per_second(fake)
    duplicates = len(names) - len(set(names))
    over = {call: peak for call, peak in peaks.items() if peak > _limit(*call)}
    # Each host paces itself to the account's limit and locks only its own files.
    assert duplicates > 0 or over
    assert over  # three hosts at the limit each: at least three times the limit


# -- Redis lost mid-run --------------------------------------------------------------------


def test_records_are_reported_retryable_and_nothing_is_created_when_redis_dies(
    tmp_path: Path,
) -> None:
    server = RedisServer()
    try:
        with make_fake(rate_limits={"default": 1000}) as fake:
            app = app_for(fake)
            coord = RedisCoordination(server.url, cooldown=30.0)
            api = SailthruApi(app, limiters=coord.limiters({"default": 1000}))
            with SailthruDestination(
                app, DestinationOptions(lock_dir=str(tmp_path)), api=api, lock=coord.lock(KEY)
            ) as dest:
                before = dest.export_profile(ProfileChange("a@example.com", new_groups={"old"}))
                assert before.ok
                calls_before = sum(fake.calls.values())
                server.stop()
                batch = dest.export_profiles(
                    ProfileChange(f"u{i}@example.com", new_groups={"brand-new"}) for i in range(5)
                )
            assert coord.failed
            assert [r.ok for r in batch.results] == [False] * 5
            for result in batch.results:
                assert result.error is not None
                assert result.error.retryable
                assert "coordination failed" in result.error.reason
            # Not a single call went to Sailthru unpaced, and no list was made unlocked.
            assert sum(fake.calls.values()) == calls_before
            assert [record["name"] for record in fake.lists] == ["old"]
    finally:
        server.stop()


def test_redis_dying_while_the_lock_is_held_is_reported_and_nothing_more_is_sent(
    tmp_path: Path,
) -> None:
    server = RedisServer()
    try:
        coord = RedisCoordination(server.url)
        limiter = coord.limiters().get("POST", "list", account="a")
        refused: list[str] = []

        def create_under_the_lock() -> None:
            with coord.lock(KEY).hold("vip"):
                server.stop()
                # The create that would follow cannot get a send slot: it is never made.
                try:
                    limiter.acquire(time.monotonic, time.sleep)
                except CoordinationError as exc:
                    refused.append(str(exc))
                    raise

        with pytest.raises(CoordinationError):
            create_under_the_lock()
        assert len(refused) == 1
        # Failing fast from now on, without waiting on Redis per record.
        started = time.monotonic()
        with pytest.raises(CoordinationError):
            coord.known_lists(KEY).contains("vip")
        assert time.monotonic() - started < 0.05
    finally:
        server.stop()


def _sleeping(record: list[float]) -> Any:
    def sleep(seconds: float) -> None:
        record.append(seconds)
        time.sleep(seconds)

    return sleep


def _lock_digest(scope: str, name: str) -> str:
    from sailthru_destination.coordination._health import digest

    return digest(scope, name)


def test_destination_options_coordination_wires_lock_lists_and_pacing_through_redis(
    coord: RedisCoordination, tmp_path: Path
) -> None:
    with make_fake(rate_limits={"default": 1000}) as fake:
        app = app_for(fake)
        opts = DestinationOptions(lock_dir=str(tmp_path), coordination=coord)
        with SailthruDestination(app, opts) as dest:
            batch = dest.export_profiles(
                ProfileChange(f"w{i}@example.com", new_groups={"wired"}) for i in range(10)
            )
            assert batch.ok
        # the list known to the cluster, so a second "host" makes no list calls at all
        assert coord.known_lists(KEY).contains("wired")
        list_calls = fake.calls[("GET", "list")] + fake.calls[("POST", "list")]
        with SailthruDestination(app, opts) as other_host:
            assert other_host.export_profile(
                ProfileChange("x@example.com", new_groups={"wired"})
            ).ok
        assert fake.calls[("GET", "list")] + fake.calls[("POST", "list")] == list_calls + 1
        assert [record["name"] for record in fake.lists] == ["wired"]


def test_once_redis_is_lost_the_destination_stops_taking_new_work(tmp_path: Path) -> None:
    server = RedisServer()
    try:
        with make_fake(rate_limits={"default": 1000}) as fake:
            coord = RedisCoordination(server.url, cooldown=30.0)
            opts = DestinationOptions(lock_dir=str(tmp_path), coordination=coord, concurrency=1)
            with SailthruDestination(app_for(fake), opts) as dest:
                assert dest.export_profile(ProfileChange("a@example.com", new_groups={"g"})).ok
                server.stop()
                batch = dest.export_profiles(
                    ProfileChange(f"n{i}@example.com", new_properties={"i": i}) for i in range(4)
                )
        reasons = [r.error.reason for r in batch.results if r.error is not None]
        assert len(reasons) == 4
        assert "coordination failed" in reasons[0]
        assert all("not attempted" in reason for reason in reasons[1:])
        assert all(r.error is not None and r.error.retryable for r in batch.results)
    finally:
        server.stop()
