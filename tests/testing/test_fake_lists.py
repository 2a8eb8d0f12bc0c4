"""/list through the official client: create, read, delete, counts that never go down."""

from __future__ import annotations

import re

from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru


def test_post_list_answers_type_natural(client: SailthruClient) -> None:
    body = client.api_post("list", {"list": "News"}).get_body()
    assert body["list"] == "News"
    assert body["type"] == "natural"
    assert re.fullmatch(r"[0-9a-f]{24}", body["list_id"])


def test_get_all_lists_answers_each_with_counts_and_type(client: SailthruClient) -> None:
    client.api_post("list", {"list": "News"})
    client.api_post("list", {"list": "VIP", "type": "smart", "query": {}})
    lists = client.get_lists().get_body()["lists"]
    assert [(item["name"], item["type"]) for item in lists] == [
        ("News", "normal"),
        ("VIP", "smart"),
    ]
    assert set(lists[0]) == {"list_id", "name", "email_count", "valid_count", "create_time", "type"}


def test_get_one_list_answers_its_record(client: SailthruClient) -> None:
    client.api_post("list", {"list": "News", "primary": 1})
    body = client.get_list("News").get_body()
    assert body["list"] == "News"
    assert body["primary"] is True
    assert set(body) == {"list_id", "list", "create_time", "send_time", "count", "type", "primary"}


def test_unknown_list_answers_404_error_15(client: SailthruClient) -> None:
    for response in (client.get_list("Nope"), client.delete_list("Nope")):
        assert response.get_status_code() == 404
        assert response.get_body() == {"error": 15, "errormsg": "Unknown list: Nope"}


def test_delete_list_removes_it_and_its_memberships(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("a@example.com", {"lists": {"News": 1}})
    assert client.delete_list("News").is_ok()
    assert fake_sailthru.lists == []
    assert fake_sailthru.find_user(email="a@example.com")["lists"] == {}


def test_email_count_counts_every_user_ever_on_the_list(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("a@example.com", {"lists": {"News": 1}})
    client.save_user("b@example.com", {"lists": {"News": 1}})
    client.save_user("a@example.com", {"lists": {"News": 0}})
    client.api_delete("user", {"id": "b@example.com"})
    (record,) = client.get_lists().get_body()["lists"]
    assert record["email_count"] == 2
    assert record["valid_count"] == 0
    assert fake_sailthru.lists[0]["email_count"] == 2


def test_save_list_with_emails_puts_them_on_it(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    assert client.save_list("News", ["a@example.com", "B@example.com"]).is_ok()
    assert "News" in fake_sailthru.find_user(email="b@example.com")["lists"]


def test_a_user_post_naming_a_new_list_creates_it_once(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("a@example.com", {"lists": {"News": 1}})
    client.save_user("b@example.com", {"lists": {"News": 1}})
    assert [record["name"] for record in fake_sailthru.lists] == ["News"]
