"""The fake's asynchronous jobs and lagging reads, on a clock the test moves."""

from __future__ import annotations

import json

import pytest
import requests
from helpers import KEY, SECRET, make_fake

from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport._protocol import sign


class Clock:
    """The fake's time: moves only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _call(fake: FakeSailthru, method: str, endpoint: str, payload: dict[str, object],
          file: bytes | None = None) -> requests.Response:
    params = {"api_key": KEY, "format": "json", "json": json.dumps(payload)}
    params["sig"] = sign(params, SECRET)
    url = f"{fake.url}/{endpoint}"
    if method == "GET":
        return requests.get(url, params=params, timeout=5)
    files = {"file": ("f.json", file)} if file is not None else None
    return requests.post(url, data=params, files=files, timeout=5)


def _import(fake: FakeSailthru, *orders: str) -> requests.Response:
    lines = [{"email": f"{o}@example.com", "purchase_keys": {"extid": o},
              "items": [{"id": "p", "title": "P", "qty": 1, "price": 100,
                        "url": "https://shop.example/p"}]} for o in orders]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    return _call(fake, "POST", "job", {"job": "purchase_import"}, body)


def test_a_job_works_only_when_its_time_comes_and_completes_after() -> None:
    clock = Clock()
    with make_fake(clock=clock, job_seconds=60) as fake:
        job = _import(fake, "A").json()
        status = _call(fake, "GET", "job", {"job_id": job["job_id"]}).json()
        assert (status["status"], fake.purchases) == ("pending", [])
        clock.now += 59.9
        assert _call(fake, "GET", "job", {"job_id": job["job_id"]}).json()["status"] == "pending"
        clock.now += 0.1
        assert [p["purchase_keys"]["extid"] for p in fake.purchases] == ["A"]
        assert _call(fake, "GET", "job", {"job_id": job["job_id"]}).json()["status"] == (
            "completed")


@pytest.mark.parametrize("fault", ["error_after_apply_rate", "drop_after_apply_rate"])
def test_a_job_whose_reply_was_lost_still_runs(fault: str) -> None:
    clock = Clock()
    with make_fake(clock=clock, job_seconds=30, faults=Faults(**{fault: 1.0})) as fake:
        try:
            reply = _import(fake, "A", "B")
        except requests.ConnectionError:
            reply = None
        assert reply is None or reply.status_code == 504
        assert fake.purchases == []
        clock.now += 30
        assert sorted(p["purchase_keys"]["extid"] for p in fake.purchases) == ["A", "B"]
        assert [job["status"] for job in fake.jobs] == ["pending"]


def test_a_bad_job_is_refused_at_its_post_not_later() -> None:
    with make_fake(job_seconds=30) as fake:
        reply = _call(fake, "POST", "job", {"job": "purchase_import"})
        assert reply.status_code == 400
        assert fake.jobs == []


def _lags(seed: int) -> list[float]:
    """How long each of five purchases stays unreadable after its post, in 0.5 s steps."""
    clock = Clock()
    faults = Faults(stale_read_window=1.0, stale_read_jitter=2.0)
    with make_fake(clock=clock, faults=faults, seed=seed) as fake:
        lags = []
        for order in ("A", "B", "C", "D", "E"):
            posted = clock.now
            _call(fake, "POST", "purchase", {
                "email": "x@example.com", "purchase_keys": {"extid": order},
                "items": [{"id": "p", "title": "P", "qty": 1, "price": 1,
                           "url": "https://shop.example/p"}]})
            while _call(fake, "GET", "purchase",
                        {"purchase_id": order, "purchase_key": "extid"}).status_code != 200:
                clock.now += 0.5
            lags.append(clock.now - posted)
        return lags


def test_reads_lag_each_write_by_its_own_seeded_amount() -> None:
    lags = _lags(seed=3)
    assert all(1.0 <= lag <= 3.5 for lag in lags)
    assert len(set(lags)) > 1  # random per write...
    assert _lags(seed=3) == lags  # ...and reproducible under the seed


def test_job_seconds_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="job_seconds"):
        FakeSailthru(job_seconds=-1)
