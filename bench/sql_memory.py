"""Peak memory of a sync reading a 50,000-row model from a real PostgreSQL.

The model has every common warehouse type (bigint, numeric, boolean, timestamptz, date,
text[], jsonb, uuid, NULLs). The sync runs as the installed CLI in its own process, so its
peak RSS (``ru_maxrss`` of the child) is the whole cost of reading, diffing and sending:
with the server-side cursor (``stream_results``/``yield_per``) it stays flat as the model grows.
The fake Sailthru runs in this process. PostgreSQL is started as in the tests
(``tests/pg_cluster.py``: Debian's ``/usr/lib/postgresql/<version>/bin``).

    python bench/sql_memory.py --rows 50000 [--bulk never]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pg_cluster import PostgresCluster  # found through the tests folder

from sailthru_destination.testing import FakeSailthru

KEY, SECRET = "bench-key", "bench-secret"
LIMIT_MB = 200
_MODEL = """
CREATE TABLE people AS
SELECT n::bigint AS id, 'p' || n || '@example.com' AS email,
       (n % 10000) / 100.0::numeric(10,2) AS score, n % 2 = 0 AS vip,
       timestamptz '2024-01-01 00:00+00' + n * interval '1 minute' AS signup_time,
       timestamptz '2024-01-01 00:00+00' + n * interval '1 hour' AS seen_at,
       date '1990-01-01' + (n % 9000) AS birthday,
       ARRAY['tag' || (n % 7), 'tag' || (n % 11)] AS tags,
       jsonb_build_object('color', 'c' || (n % 5), 'n', n) AS prefs,
       md5(n::text)::uuid AS ref,
       CASE WHEN n % 3 = 0 THEN NULL ELSE 'nick' || n END AS nickname,
       ARRAY['Newsletter'] AS groups
FROM generate_series(1, {rows}) AS n
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--bulk", choices=("auto", "always", "never"), default="auto")
    args = parser.parse_args()
    cluster = PostgresCluster()
    try:
        cluster.execute(_MODEL.format(rows=args.rows))
        script = Path(sys.executable).with_name("sailthru-destination")
        with FakeSailthru(api_key=KEY, api_secret=SECRET, job_polls=0,
                          rate_limits={"default": 100_000}) as fake, \
                tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "SAILTHRU_API_KEY": KEY, "SAILTHRU_API_SECRET": SECRET,
                   "SAILTHRU_API_URL": fake.url}
            started = time.perf_counter()
            done = subprocess.run(
                [str(script), "sync", "--sql", "SELECT * FROM people", "--db", cluster.url(),
                 "--home", home, "--bulk", args.bulk, "--rate-limit", "user=100000",
                 "--no-progress"],
                env=env, capture_output=True, text=True, check=False)
            seconds = time.perf_counter() - started
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(done.stdout.strip())
            if done.returncode != 0:
                print(done.stderr.strip(), file=sys.stderr)
                raise SystemExit(done.returncode)
            users = len(fake.users)
    finally:
        cluster.stop()
    print(f"{args.rows:,} rows (bulk {args.bulk}): {users:,} users in the fake, "
          f"{seconds:.1f} s, peak RSS of the sync {peak_mb:.0f} MB (limit {LIMIT_MB} MB)")
    if peak_mb > LIMIT_MB:
        raise SystemExit(f"peak RSS {peak_mb:.0f} MB is over {LIMIT_MB} MB")


if __name__ == "__main__":
    main()
