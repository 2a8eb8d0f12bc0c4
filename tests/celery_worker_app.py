"""The Celery app the integration tests run real workers with, configured by environment.

``SAILTHRU_TEST_REDIS`` is the broker, result store and coordination; ``SAILTHRU_TEST_ACCOUNTS``
the accounts (JSON: name -> url, key, secret, limits), which only the resolver reads: a task
message names the account, never its credentials. ``SAILTHRU_LOCK_DIR`` is this worker's own
lock folder (a host of its own); ``SAILTHRU_TEST_MARKS`` a folder where each worker notes that
it is ready and which task it started (so a test knows whom to kill).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import task_prerun, worker_ready

from sailthru_destination.coordination import RedisCoordination
from sailthru_destination.integrations.celery import WORKER_SETTINGS, Account, SailthruTasks
from sailthru_destination.options import AppOptions, DestinationOptions

REDIS_URL = os.environ["SAILTHRU_TEST_REDIS"]
ACCOUNTS: dict[str, dict[str, Any]] = json.loads(os.environ["SAILTHRU_TEST_ACCOUNTS"])
MARKS = Path(os.environ["SAILTHRU_TEST_MARKS"])
VISIBILITY_TIMEOUT = 8  # longer than any test task; how soon a lost worker's task comes back
CLAIM_LEASE = 4  # shorter than the visibility timeout, longer than any one send here

app = Celery("sailthru_test", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    WORKER_SETTINGS,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    result_expires=600,
    worker_hijack_root_logger=False,
)


def resolve(account: str) -> Account:
    """The host's resolver: credentials come from the worker's own configuration."""
    found = ACCOUNTS[account]
    return Account(
        AppOptions(found["key"], found["secret"], found["url"], read_timeout=5.0),
        DestinationOptions(lock_dir=os.environ.get("SAILTHRU_LOCK_DIR"), concurrency=8),
        rate_limits=found["limits"],
    )


coordination = RedisCoordination(REDIS_URL, prefix="celery-test")
tasks = SailthruTasks(
    app, resolve, coordination, partitions=4, order_wait=2.0, claim_lease=CLAIM_LEASE
)


@worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    (MARKS / f"ready-{os.getpid()}").touch()


@task_prerun.connect
def _started(task_id: str | None = None, **_: Any) -> None:
    (MARKS / f"started-{task_id}-{os.getpid()}").touch()
