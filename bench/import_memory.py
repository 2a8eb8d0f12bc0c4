"""How much memory and time a list import takes: streamed vs merged, against the fake.

The fake runs in another process so that its CSV buffers do not count; memory is this
process's peak as tracemalloc sees it while the import runs.

    python bench/import_memory.py --members 50000
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator

from sailthru_destination.features.imports import ListImporter, PollPolicy
from sailthru_destination.options import AppOptions
from sailthru_destination.transport.api import SailthruApi

KEY, SECRET = "bench-key", "bench-secret"
_SERVER = textwrap.dedent(
    """
    import sys
    from sailthru_destination.testing import FakeSailthru
    with FakeSailthru(api_key=sys.argv[1], api_secret=sys.argv[2], job_polls=0,
                      rate_limits={"default": 100000}) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()
    """
)


def _lines(count: int) -> Iterator[str]:
    for i in range(count):
        user = {
            "id": f"user{i}@example.com",
            "key": "email",
            "vars": {"first_name": f"Name{i}", "score": i, "city": "Oslo"},
            "lists": {"Big": 1, **({"Half": 1} if i % 2 else {})},
        }
        yield json.dumps(user)


def _measure(api: SailthruApi, merge: bool) -> tuple[int, float, int]:
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        lists = ["Big", "Half"] if merge else ["Big"]
        policy = PollPolicy(initial_interval=0.05)
        seen = sum(1 for _ in ListImporter(api).members(lists, merge=merge, poll=policy))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seen, time.perf_counter() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=50_000)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, KEY, SECRET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        url = server.stdout.readline().strip()
        app = AppOptions(api_key=KEY, api_secret=SECRET, api_url=url, read_timeout=120.0)
        with SailthruApi(app) as api:
            started = time.perf_counter()
            api.post("job", {"job": "update"}, file="\n".join(_lines(args.members)).encode())
            print(f"seeded {args.members} members in {time.perf_counter() - started:.2f} s")
            for merge in (False, True):
                seen, seconds, peak = _measure(api, merge)
                mode = "merged (Big + Half)" if merge else "streamed (Big)"
                print(
                    f"{mode:20} {seen:>8} records in {seconds:6.2f} s "
                    f"({seen / seconds:,.0f}/s), peak {peak / 1e6:6.2f} MB"
                )
    finally:
        server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
