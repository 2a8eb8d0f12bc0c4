"""``run_sync(resend=...)``, the full resync: every row sent whole through either path, old
values still cleared, and a row whose resend failed sent again by the next plain run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.options import AppOptions
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.run import run_sync
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru

FAST = {"default": 100_000.0}


def _rows(model: list[dict[str, Any]]) -> list[Row]:
    return [Row(f"row {n + 1}", dict(data)) for n, data in enumerate(model)]


def _model(count: int) -> list[dict[str, Any]]:
    return [{"id": str(n), "email": f"u{n}@example.com", "first_name": f"U{n}",
             "groups": "A;B" if n % 2 else "A"} for n in range(count)]


def _held(fake: FakeSailthru) -> dict[str, Any]:
    return {u["keys"]["email"]: (u["vars"], sorted(u["lists"])) for u in fake.users.values()}


@pytest.mark.parametrize("bulk", ["never", "always"])
def test_a_full_resync_rebuilds_a_restarted_sailthru_through_either_path(
    tmp_path: Path, bulk: str
) -> None:
    config = SyncConfig(name="people", bulk=bulk)
    model = _model(4)
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as first:
        app = AppOptions(api_key="k", api_secret="s", api_url=first.url)
        run_sync(app, config, _rows(model), home=tmp_path)
        model[1]["first_name"] = ""  # removed since: the resync must still clear it
        model[1]["groups"] = "A"
        with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as second:
            # Another account under the same state, holding the users as first synced
            # (restored from an old backup, say): what the model removed since is there.
            app = AppOptions(api_key="k", api_secret="s", api_url=second.url)
            run_sync(app, SyncConfig(name="restore"), _rows(_model(4)), home=tmp_path)
            outcome = run_sync(app, config, _rows(model), home=tmp_path, resend=True)
            assert outcome.summary.counts == {"updated": 4}
            assert outcome.summary.path == ("bulk" if bulk == "always" else "per-user")
            held = _held(second)
            assert held["u1@example.com"] == ({}, ["A"])
            assert held["u2@example.com"] == ({"first_name": "U2"}, ["A"])
            again = run_sync(app, config, _rows(model), home=tmp_path)
            assert again.summary.counts == {"unchanged": 4}


def test_a_row_whose_resend_failed_is_sent_again_by_the_next_plain_run(tmp_path: Path) -> None:
    config = SyncConfig(name="people")
    model = _model(3)
    with FakeSailthru(api_key="k", api_secret="s", rate_limits=FAST) as fake:
        app = AppOptions(api_key="k", api_secret="s", api_url=fake.url)
        run_sync(app, config, _rows(model), home=tmp_path)
        refused = AppOptions(api_key="k", api_secret="wrong", api_url=fake.url)
        failed = run_sync(refused, config, _rows(model), home=tmp_path, resend=True)
        assert failed.summary.counts == {"failed": 3}
        # What Sailthru holds is in doubt for those rows: the next run sends them again.
        again = run_sync(app, config, _rows(model), home=tmp_path)
        assert again.summary.counts == {"updated": 3}
        assert run_sync(app, config, _rows(model), home=tmp_path).summary.counts == {
            "unchanged": 3}
