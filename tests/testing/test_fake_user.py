"""/user through the official client: lookups, vars, lists, keys, merge, opt-out, fields."""

from __future__ import annotations

import re

from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru


def test_post_creates_a_user_with_a_24_hex_sid_and_lower_cased_email(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    response = client.save_user("Ann@Example.COM", {"fields": {"keys": 1}})
    body = response.get_body()
    assert body["ok"] is True
    assert re.fullmatch(r"[0-9a-f]{24}", body["keys"]["sid"])
    assert body["keys"]["email"] == "ann@example.com"
    assert set(body) == {"ok", "keys"}
    assert fake_sailthru.find_user(email="ANN@example.com") is not None


def test_get_of_a_missing_user_answers_400_error_99(client: SailthruClient) -> None:
    response = client.get_user("nobody@example.com")
    assert response.get_status_code() == 400
    assert response.get_body() == {
        "error": 99,
        "errormsg": "User not found with email: nobody@example.com",
    }


def test_delete_of_a_missing_user_answers_404_error_99(client: SailthruClient) -> None:
    response = client.api_delete("user", {"id": "nobody@example.com"})
    assert response.get_status_code() == 404
    assert response.get_error().get_error_code() == 99


def test_delete_removes_the_user(client: SailthruClient, fake_sailthru: FakeSailthru) -> None:
    client.save_user("a@example.com")
    response = client.api_delete("user", {"id": "a@example.com"})
    assert response.get_body() == {"ok": True}
    assert fake_sailthru.find_user(email="a@example.com") is None
    assert client.get_user("a@example.com").get_status_code() == 400


def test_default_get_answers_keys_vars_lists_engagement_optout(client: SailthruClient) -> None:
    client.save_user("a@example.com")
    body = client.get_user("a@example.com").get_body()
    assert set(body) == {"keys", "vars", "lists", "engagement", "optout_email"}
    assert body["lists"] is None  # null, not {}, when the user is on no list
    assert body["optout_email"] == "none"


def test_vars_are_set_merged_and_cleared_by_blank_values(client: SailthruClient) -> None:
    client.save_user("a@example.com", {"vars": {"a": 1, "b": "x", "c": True}})
    client.save_user("a@example.com", {"vars": {"a": None, "b": "", "d": [1, 2]}})
    body = client.get_user("a@example.com", {"fields": {"vars": 1}}).get_body()
    assert body == {"vars": {"c": True, "d": [1, 2]}}


def test_lists_join_with_rfc2822_dates_and_leave_with_zero(client: SailthruClient) -> None:
    client.save_user("a@example.com", {"lists": {"News": 1, "Deals": 1}})
    client.save_user("a@example.com", {"lists": {"Deals": 0}})
    lists = client.get_user("a@example.com", {"fields": {"lists": 1}}).get_body()["lists"]
    assert list(lists) == ["News"]
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}", lists["News"])


def test_lookup_by_sid_and_extid(client: SailthruClient) -> None:
    body = client.save_user(
        "a@example.com", {"keys": {"extid": "E1"}, "fields": {"keys": 1}}
    ).get_body()
    sid = body["keys"]["sid"]
    by_sid = client.get_user(sid, {"key": "sid", "fields": {"keys": 1}}).get_body()
    by_extid = client.get_user("E1", {"key": "extid", "fields": {"keys": 1}}).get_body()
    assert by_sid == by_extid == {"keys": body["keys"]}
    assert by_sid["keys"]["extid"] == "E1"


def test_post_by_unknown_extid_creates_the_user(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("E9", {"key": "extid", "keys": {"email": "e9@example.com"}})
    user = fake_sailthru.find_user(extid="E9")
    assert user is not None
    assert user["keys"]["email"] == "e9@example.com"


def test_extid_lookup_is_refused_when_not_enabled() -> None:
    with FakeSailthru(extid_lookup=False) as fake:
        client = SailthruClient("test-key", "test-secret", api_url=fake.url)
        response = client.get_user("E1", {"key": "extid"})
        assert response.get_status_code() == 400
        assert response.get_body() == {"error": 2, "errormsg": "extid lookup is not enabled"}


def test_changing_the_email_key_moves_the_lookup(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("old@example.com")
    client.save_user("old@example.com", {"keys": {"email": "New@example.com"}})
    assert fake_sailthru.find_user(email="old@example.com") is None
    assert client.get_user("new@example.com").is_ok()


def test_a_key_owned_by_another_user_is_refused_without_merge(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("a@example.com", {"keys": {"extid": "E1"}})
    client.save_user("b@example.com")
    response = client.save_user("b@example.com", {"keys": {"extid": "E1"}})
    assert response.get_status_code() == 400
    assert response.get_error().get_error_code() == 2
    assert len(fake_sailthru.users) == 2


def test_keysconflict_merge_folds_the_other_profile_in(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("E1", {"key": "extid", "vars": {"from_a": 1}, "lists": {"A": 1}})
    client.save_user("b@example.com", {"vars": {"from_b": 2}, "lists": {"B": 1}})
    response = client.save_user("b@example.com", {"keys": {"extid": "E1"}, "keysconflict": "merge"})
    assert response.is_ok()
    users = fake_sailthru.users
    assert len(users) == 1
    (user,) = users.values()
    assert user["keys"]["extid"] == "E1"
    assert user["vars"] == {"from_a": 1, "from_b": 2}
    assert set(user["lists"]) == {"A", "B"}


def test_optout_email_is_stored_and_validated(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    assert client.save_user("a@example.com", {"optout_email": "basic"}).is_ok()
    assert fake_sailthru.find_user(email="a@example.com")["optout_email"] == "basic"
    refused = client.save_user("a@example.com", {"optout_email": "sometimes"})
    assert refused.get_status_code() == 400
    assert refused.get_error().get_error_code() == 2


def test_an_invalid_email_is_refused_with_error_11(client: SailthruClient) -> None:
    response = client.save_user("not-an-email")
    assert response.get_status_code() == 400
    assert response.get_error().get_error_code() == 11


def test_fields_select_purchase_incomplete_and_purchases(client: SailthruClient) -> None:
    client.save_user("a@example.com")
    body = client.get_user(
        "a@example.com", {"fields": {"purchase_incomplete": 1, "purchases": 1}}
    ).get_body()
    assert body == {"purchase_incomplete": None, "purchases": []}


def test_find_user_answers_a_copy(client: SailthruClient, fake_sailthru: FakeSailthru) -> None:
    client.save_user("a@example.com", {"vars": {"x": 1}})
    user = fake_sailthru.find_user(email="a@example.com")
    assert user is not None
    assert set(user) >= {"keys", "vars", "lists", "optout_email", "purchase_incomplete"}
    user["vars"]["x"] = 2
    assert fake_sailthru.find_user(email="a@example.com")["vars"] == {"x": 1}
