"""The "error with HTTP 200" fault, and the library reading the body before the status."""

from __future__ import annotations

import pytest
from helpers import KEY, SECRET, app_for
from sailthru import SailthruClient

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.errors import TransientError
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import DestinationOptions
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi


def test_the_fault_answers_200_with_an_error_body_and_applies_nothing(
    fake: FakeSailthru,
) -> None:
    fake.faults = Faults(error_with_200_rate=1.0)
    client = SailthruClient(KEY, SECRET, api_url=fake.url)
    reply = client.api_post("user", {"id": "a@example.com", "vars": {"x": 1}})
    assert reply.get_status_code() == 200
    assert reply.get_body() == {"error": 9, "errormsg": "Internal error"}
    assert fake.users == {}


def test_the_library_never_takes_a_200_error_for_a_success(fake: FakeSailthru) -> None:
    fake.faults = Faults(error_with_200_rate=1.0)
    policy = RetryPolicy(max_attempts=3)
    with SailthruApi(app_for(fake), sleep=lambda _: None, retry=policy) as api:
        with pytest.raises(TransientError) as caught:
            api.post("user", {"id": "a@example.com"})
        assert caught.value.status == 200
        assert caught.value.code == 9
        assert fake.calls[("POST", "user")] == 3  # error 9 is retried like a 500
    assert fake.users == {}


def test_an_export_through_200_errors_applies_every_profile(fake: FakeSailthru) -> None:
    fake.faults = Faults(error_with_200_rate=0.3)
    app = app_for(fake)
    api = SailthruApi(app, sleep=lambda _: None, retry=RetryPolicy(max_attempts=10))
    with SailthruDestination(app, DestinationOptions(concurrency=4), api=api) as dest:
        changes = [ProfileChange(f"u{n}@example.com", new_properties={"n": n}) for n in range(30)]
        batch = dest.export_profiles(changes)
    assert [r.status for r in batch.results if not r.ok] == []
    for n in range(30):
        user = fake.find_user(email=f"u{n}@example.com")
        assert user is not None
        assert user["vars"] == {"n": n}
    assert fake.calls[("POST", "user")] > 30  # some replies were 200 errors, then retried
