"""Injected faults, each reproduced through the official client and reproducible under a seed."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from sailthru import SailthruClient
from sailthru.sailthru_error import SailthruClientError

from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport._protocol import sign


def _client(fake: FakeSailthru) -> SailthruClient:
    return SailthruClient("test-key", "test-secret", api_url=fake.url)


def _outcomes(seed: int, faults: Faults, calls: int = 40) -> list[int]:
    with FakeSailthru(seed=seed, faults=faults) as fake:
        client = _client(fake)
        found = []
        for _ in range(calls):
            try:
                found.append(client.get_lists().get_status_code())
            except SailthruClientError:
                found.append(0)
        return found


def test_faults_are_off_by_default() -> None:
    assert Faults() == Faults(0, 0, 0, 0.0, 0.0, 0.0)
    assert set(_outcomes(0, Faults(), calls=10)) == {200}


def test_connection_errors_drop_the_connection_without_a_reply() -> None:
    outcomes = _outcomes(1, Faults(connection_error_rate=0.5))
    assert 0 in outcomes
    assert 200 in outcomes
    assert set(outcomes) == {0, 200}


def test_server_errors_answer_500_error_9(fake_sailthru: FakeSailthru) -> None:
    fake_sailthru.faults = Faults(server_error_rate=1.0)
    response = _client(fake_sailthru).save_user("a@example.com")
    assert response.get_status_code() == 500
    assert response.get_body() == {"error": 9, "errormsg": "Internal error"}
    assert response.get_rate_limit_headers() is not None
    assert fake_sailthru.users == {}


def test_faults_repeat_under_the_same_seed_and_differ_under_another() -> None:
    faults = Faults(server_error_rate=0.3, connection_error_rate=0.1)
    first, again, other = _outcomes(5, faults), _outcomes(5, faults), _outcomes(6, faults)
    assert first == again
    assert first != other
    assert {0, 500, 200} <= set(first)


def test_false_ok_delete_answers_200_and_keeps_the_user(fake_sailthru: FakeSailthru) -> None:
    client = _client(fake_sailthru)
    client.save_user("a@example.com")
    fake_sailthru.faults = Faults(false_ok_delete_rate=1.0)
    assert client.api_delete("user", {"id": "a@example.com"}).get_body() == {"ok": True}
    assert fake_sailthru.find_user(email="a@example.com") is not None
    fake_sailthru.faults = Faults()
    assert client.api_delete("user", {"id": "a@example.com"}).is_ok()
    assert fake_sailthru.find_user(email="a@example.com") is None


def test_list_race_window_makes_concurrent_first_uses_create_duplicates(
    fake_sailthru: FakeSailthru,
) -> None:
    fake_sailthru.faults = Faults(list_race_window=0.1)
    client = _client(fake_sailthru)
    threads = [
        threading.Thread(target=client.save_user, args=(f"u{n}@example.com", {"lists": {"New": 1}}))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.save_user("late@example.com", {"lists": {"New": 1}})  # the list exists by now
    names = [record["name"] for record in fake_sailthru.lists]
    assert names == ["New"] * 4
    assert sum(record["email_count"] for record in fake_sailthru.lists) == 5


def test_list_race_window_also_applies_to_post_list(fake_sailthru: FakeSailthru) -> None:
    fake_sailthru.faults = Faults(list_race_window=0.1)
    client = _client(fake_sailthru)
    threads = [
        threading.Thread(target=client.api_post, args=("list", {"list": "New"})) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_sailthru.lists) == 3


def test_without_a_race_window_concurrent_first_uses_create_one_list(
    fake_sailthru: FakeSailthru,
) -> None:
    client = _client(fake_sailthru)
    threads = [
        threading.Thread(target=client.save_user, args=(f"u{n}@example.com", {"lists": {"New": 1}}))
        for n in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_sailthru.lists) == 1


def test_stale_read_window_shows_the_user_as_before_the_post(
    fake_sailthru: FakeSailthru,
) -> None:
    fake_sailthru.faults = Faults(stale_read_window=0.15)
    client = _client(fake_sailthru)
    client.save_user("a@example.com", {"vars": {"v": 1}})
    assert client.get_user("a@example.com").get_status_code() == 400  # not there yet
    client.save_user("a@example.com", {"vars": {"v": 2}})
    stale = client.get_user("a@example.com", {"fields": {"vars": 1}}).get_body()
    assert stale == {"vars": {"v": 1}}
    time.sleep(0.16)
    fresh = client.get_user("a@example.com", {"fields": {"vars": 1}}).get_body()
    assert fresh == {"vars": {"v": 2}}
    assert fake_sailthru.find_user(email="a@example.com")["vars"] == {"v": 2}


def test_rate_limit_burst_adds_429s_within_the_limit(fake_sailthru: FakeSailthru) -> None:
    fake_sailthru.faults = Faults(rate_limit_burst=1.0)
    response = _client(fake_sailthru).get_lists()
    assert response.get_status_code() == 429
    assert response.get_error().get_error_code() == 43


def test_latency_is_slept_per_request() -> None:
    with FakeSailthru(latency=0.05) as fake:
        client = _client(fake)
        started = time.perf_counter()
        client.get_lists()
        client.get_lists()
        assert time.perf_counter() - started >= 0.1


def test_connect_latency_is_slept_once_per_connection() -> None:
    params = {"api_key": "test-key", "format": "json", "json": "{}"}
    params["sig"] = sign(params, "test-secret")
    with FakeSailthru(connect_latency=0.08) as fake, requests.Session() as session:
        started = time.perf_counter()
        session.get(f"{fake.url}/list", params=params, timeout=5)
        first = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(3):
            session.get(f"{fake.url}/list", params=params, timeout=5)
        reused = time.perf_counter() - started
    assert first >= 0.08
    assert reused < 0.08


def test_faults_validate_their_rates() -> None:
    with pytest.raises(ValueError, match="server_error_rate"):
        Faults(server_error_rate=1.5)
    with pytest.raises(ValueError, match="window"):
        Faults(list_race_window=-1)


def test_error_after_apply_applies_the_post_then_answers_a_gateway_504(
    fake_sailthru: FakeSailthru,
) -> None:
    fake_sailthru.faults = Faults(error_after_apply_rate=1.0)
    client = _client(fake_sailthru)
    response = client.api_post("event", {"id": "a@example.com", "event": "signed_up"})
    assert response.get_status_code() == 504
    assert "application/json" not in response.response.headers["Content-Type"]
    assert [e["event"] for e in fake_sailthru.events] == ["signed_up"]
    # Reads are answered as usual: only writes are applied and then denied.
    assert client.get_user("a@example.com").get_status_code() == 200


def test_error_after_apply_repeats_under_the_same_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with FakeSailthru(seed=seed, faults=Faults(error_after_apply_rate=0.5)) as fake:
            client = _client(fake)
            found = [
                client.save_user(f"u{n}@example.com").get_status_code() for n in range(20)
            ]
            assert len(fake.users) == 20  # every one applied, whatever the answer
            return found

    assert statuses(3) == statuses(3)
    assert set(statuses(3)) == {200, 504}
    with pytest.raises(ValueError, match="error_after_apply_rate"):
        Faults(error_after_apply_rate=2.0)
