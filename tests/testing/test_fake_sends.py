"""GET/POST /send and /blast: enough for the official client's hard-bounce postback check."""

from __future__ import annotations

from helpers import KEY, SECRET
from sailthru import SailthruClient
from sailthru.sailthru_client import get_signature_hash

from sailthru_destination.testing import FakeSailthru


def _client(fake: FakeSailthru) -> SailthruClient:
    return SailthruClient(KEY, SECRET, api_url=fake.url)


def _hardbounce(**ids: str) -> dict[str, str]:
    params = {"action": "hardbounce", "email": "gone@example.com", "api_key": KEY, **ids}
    return {**params, "sig": get_signature_hash(params, SECRET)}


def test_a_hardbounce_postback_for_a_known_send_is_accepted(fake: FakeSailthru) -> None:
    client = _client(fake)
    reply = client.send("Welcome", "Gone@Example.com")
    assert reply.is_ok()
    send_id = reply.get_body()["send_id"]
    assert client.get_send(send_id).get_body()["email"] == "gone@example.com"
    assert client.receive_hardbounce_post(_hardbounce(send_id=send_id)) is True
    assert [s["send_id"] for s in fake.sends] == [send_id]


def test_a_hardbounce_postback_for_a_known_blast_is_accepted(fake: FakeSailthru) -> None:
    client = _client(fake)
    reply = client.schedule_blast(
        "Spring", "Newsletter", "now", "Shop", "shop@example.com", "Hi", "<p>hi</p>", "hi"
    )
    assert reply.is_ok()
    blast_id = reply.get_body()["blast_id"]
    assert client.get_blast(blast_id).get_body()["name"] == "Spring"
    assert client.receive_hardbounce_post(_hardbounce(blast_id=blast_id)) is True


def test_unknown_send_and_blast_ids_fail_the_postback_check(fake: FakeSailthru) -> None:
    client = _client(fake)
    assert client.receive_hardbounce_post(_hardbounce(send_id="0" * 24)) is False
    assert client.receive_hardbounce_post(_hardbounce(blast_id="0" * 24)) is False
    missing = client.get_send("0" * 24)
    assert missing.get_status_code() == 400
    assert missing.get_body()["error"] == 99
