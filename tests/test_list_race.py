"""Sailthru makes duplicate lists when first uses race; the list mutex must prevent it.

The fake reproduces the quirk with ``list_race_window``: a request naming a list that
does not exist yet creates it only after that window, so racing requests each create one.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from pathlib import Path

from helpers import KEY, SECRET, app_for, make_fake

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi

LISTS = [f"Race List {i}" for i in range(10)]
PROCESSES = 4
THREADS = 20
PROFILES = 2_000


def _groups_for(i: int) -> set[str]:
    return {LISTS[i % 10], LISTS[(i * 7 + 3) % 10]}


def _export_share(url: str, key: str, secret: str, lock_dir: str, start: int, stop: int) -> None:
    app = AppOptions(api_key=key, api_secret=secret, api_url=url)
    opts = DestinationOptions(concurrency=THREADS, lock_dir=lock_dir)
    with SailthruDestination(app, opts) as dest:
        batch = dest.export_profiles(
            ProfileChange(
                f"racer{i}@example.com", new_properties={"i": i}, new_groups=_groups_for(i)
            )
            for i in range(start, stop)
        )
    if not batch.ok:
        raise SystemExit(f"{len(batch.errors)} records failed: {batch.errors[:3]}")


def _racing_fake() -> FakeSailthru:
    return make_fake(
        faults=Faults(list_race_window=0.2),
        rate_limits={"default": 5000},
        seed=3,
    )


def test_without_the_mutex_racing_first_uses_create_duplicate_lists() -> None:
    with _racing_fake() as fake:
        api = SailthruApi(app_for(fake), concurrency=THREADS)
        barrier = threading.Barrier(THREADS)

        def naive(i: int) -> None:
            barrier.wait()
            api.post("user", {"id": f"naive{i}@example.com", "key": "email", "lists": {"Fresh": 1}})

        threads = [threading.Thread(target=naive, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        api.close()
        assert Counter(r["name"] for r in fake.lists)["Fresh"] > 1


def test_four_processes_of_twenty_threads_create_each_list_exactly_once(tmp_path: Path) -> None:
    with _racing_fake() as fake:
        ctx = multiprocessing.get_context("spawn")
        share = PROFILES // PROCESSES
        procs = [
            ctx.Process(
                target=_export_share,
                args=(
                    fake.url,
                    KEY,
                    SECRET,
                    str(tmp_path),
                    p * share,
                    (p + 1) * share,
                ),
            )
            for p in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * PROCESSES
        names = Counter(r["name"] for r in fake.lists)
        assert names == Counter(LISTS)
        assert len(fake.users) == PROFILES
        for i in range(0, PROFILES, 37):
            user = fake.find_user(email=f"racer{i}@example.com")
            assert user is not None
            assert set(user["lists"]) == _groups_for(i)
