"""Authentication as Sailthru does it: api_key and sig over the raw json string."""

from __future__ import annotations

import requests
from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport._protocol import sign


def test_unknown_api_key_is_refused_with_401_error_3(fake_sailthru: FakeSailthru) -> None:
    response = SailthruClient("wrong-key", "test-secret", api_url=fake_sailthru.url).get_lists()
    assert response.get_status_code() == 401
    assert response.get_body() == {"error": 3, "errormsg": "Invalid API key"}
    assert not response.is_ok()


def test_wrong_secret_is_refused_with_401_error_5(fake_sailthru: FakeSailthru) -> None:
    response = SailthruClient("test-key", "wrong", api_url=fake_sailthru.url).get_user("a@b.com")
    assert response.get_status_code() == 401
    assert response.get_error().get_error_code() == 5


def test_refused_calls_are_not_counted_but_still_carry_rate_headers(
    fake_sailthru: FakeSailthru,
) -> None:
    response = SailthruClient("test-key", "wrong", api_url=fake_sailthru.url).get_lists()
    assert response.get_rate_limit_headers() is not None
    assert fake_sailthru.calls == {}
    assert fake_sailthru.call_times == []


def test_signature_is_checked_over_the_raw_json_string(fake_sailthru: FakeSailthru) -> None:
    raw = '{"id":  "a@b.com"}'  # unusual spacing: a re-serialisation would not match
    params = {"api_key": "test-key", "format": "json", "json": raw}
    params["sig"] = sign(params, "test-secret")
    ok = requests.get(f"{fake_sailthru.url}/user", params=params, timeout=5)
    assert ok.status_code == 400  # authenticated, then: user not found
    assert ok.json()["error"] == 99
    params["json"] = '{"id": "a@b.com"}'
    refused = requests.get(f"{fake_sailthru.url}/user", params=params, timeout=5)
    assert refused.status_code == 401
    assert refused.json()["error"] == 5


def test_missing_signature_is_refused(fake_sailthru: FakeSailthru) -> None:
    params = {"api_key": "test-key", "format": "json", "json": "{}"}
    response = requests.post(f"{fake_sailthru.url}/user", data=params, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"error": 5, "errormsg": "Authentication failed"}


def test_forbidden_endpoint_is_refused_with_403() -> None:
    with FakeSailthru(forbidden_endpoints=frozenset({"purchase"})) as fake:
        client = SailthruClient("test-key", "test-secret", api_url=fake.url)
        response = client.purchase("a@b.com", [])
        assert response.get_status_code() == 403
        assert response.get_body() == {
            "error": 99,
            "errormsg": "API key not permitted to use the purchase API",
        }
        assert client.get_lists().is_ok()
