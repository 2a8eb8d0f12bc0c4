"""Options are validated when built, and never show the secret."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sailthru_destination.options import (
    AppOptions,
    DeleteBehavior,
    DestinationOptions,
    MatchKey,
    OptoutLevel,
)


def test_app_options_hide_the_secret_from_repr() -> None:
    app = AppOptions(api_key="key-1234", api_secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(app)
    assert "s3cr3t-value" not in str(app)


def test_masked_key_shows_only_the_last_four_characters() -> None:
    assert AppOptions(api_key="abcdef123456", api_secret="s").masked_key == "****3456"


@pytest.mark.parametrize("key", ["k", "abcd", "abcdefgh", "abcdefghijk"])
def test_a_short_key_is_never_shown_nor_its_length(key: str) -> None:
    assert AppOptions(api_key=key, api_secret="s").masked_key == "****"


def test_the_mask_does_not_tell_a_key_s_length() -> None:
    masks = {AppOptions(api_key="x" * n + "tail", api_secret="s").masked_key
             for n in range(8, 60)}
    assert masks == {"****tail"}


def test_a_one_character_secret_does_not_garble_messages() -> None:
    from sailthru_destination.transport._http import redact_secret

    assert redact_secret("certificate is self-signed", "s") == "certificate is self-signed"
    assert redact_secret("secret=s here", "s") == "secret=<redacted> here"
    assert redact_secret("with abcdefgh123 inside", "abcdefgh") == "with <redacted>123 inside"


@pytest.mark.parametrize(
    "url",
    ["http://api.sailthru.com", "http://10.0.0.5:8080", "http://example.com/"],
)
def test_plain_http_api_urls_are_refused_unless_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="plain http"):
        AppOptions(api_key="k", api_secret="s", api_url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:9", "https://x.test"]
)
def test_https_and_loopback_http_urls_are_accepted(url: str) -> None:
    assert AppOptions(api_key="k", api_secret="s", api_url=url + "/").api_url == url


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": ""}, "api_key must be a non-empty string"),
        ({"api_secret": "  "}, "api_secret must be a non-empty string"),
        ({"api_url": "ftp://x"}, "http"),
        ({"read_timeout": 0}, "read_timeout must be a positive number"),
        ({"connect_timeout": True}, "connect_timeout must be a positive number"),
        ({"timezone": "Mars/Olympus"}, "IANA time zone"),
    ],
)
def test_bad_app_options_fail_with_a_message_naming_the_option(
    kwargs: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {"api_key": "k", "api_secret": "s"}
    with pytest.raises(ValueError, match=message):
        AppOptions(**{**base, **kwargs})  # type: ignore[arg-type]


def test_destination_options_accept_plain_strings_and_turn_them_into_enums() -> None:
    opts = DestinationOptions(match_key="extid", delete_behavior="delete", optout="blast")  # type: ignore[arg-type]
    assert opts.match_key is MatchKey.EXTID
    assert opts.delete_behavior is DeleteBehavior.DELETE
    assert opts.optout is OptoutLevel.BLAST


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"match_key": "phone"}, "match_key must be one of 'email', 'sid', 'extid'"),
        ({"sync_mode": "merge"}, "sync_mode must be one of 'upsert', 'update'"),
        ({"delete_behavior": "purge"}, "'nothing', 'clear', 'delete'"),
        ({"optout": "some"}, "optout must be one of 'none', 'all', 'basic', 'blast'"),
        ({"concurrency": 0}, "concurrency must be a whole number"),
        ({"delete_attempts": 1000}, "delete_attempts must be a whole number"),
        ({"default_list": " "}, "default_list"),
        ({"var_names": {"a": ""}}, "var_names"),
    ],
)
def test_invalid_destination_options_list_the_valid_values(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DestinationOptions(**kwargs)  # type: ignore[arg-type]


def test_destination_options_cannot_be_mutated_after_construction() -> None:
    opts = DestinationOptions(var_names={"first": "first_name"})
    with pytest.raises(TypeError):
        opts.var_names["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    "url",
    ["https://exa mple.com", "https://api.sailthru.com:http", "https://[::1",
     "https://api.sailthru.com:99999", "https://api.sailthru.com/?x=1", "https://a<b>.com"],
)
def test_malformed_api_urls_are_refused_when_built(url: str) -> None:
    with pytest.raises(ValueError, match="api_url"):
        AppOptions("key", "secret", url)


@pytest.mark.parametrize(
    "url",
    ["https://user:hunter2@api.sailthru.com", "https://:hunter2@api.sailthru.com:x",
     "https://hunter2@exa mple.com", "ftp://u:hunter2@host"],
)
def test_an_api_url_with_a_password_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ValueError, match="api_url") as refused:
        AppOptions("key", "secret", url)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("value", ["email_marketing", b"email_marketing", 3, [""], ["ok", 7]])
def test_required_consents_refuses_a_plain_string_rather_than_splitting_it(value: object) -> None:
    """Red team: ``required_consents="email_marketing"`` became a set of letters, so no
    profile ever consented and every one was skipped."""
    with pytest.raises(ValueError, match="required_consents"):
        DestinationOptions(required_consents=value)  # type: ignore[arg-type]


@given(st.lists(st.text(min_size=1).filter(str.strip), max_size=4))
def test_required_consents_accepts_any_iterable_of_names(names: list[str]) -> None:
    for value in (names, tuple(names), set(names), iter(names)):
        options = DestinationOptions(required_consents=value)  # type: ignore[arg-type]
        assert options.required_consents == frozenset(names)


@pytest.mark.parametrize("value", ["first_name", [("a", "b")]])
def test_var_names_must_be_a_mapping(value: object) -> None:
    with pytest.raises(ValueError, match="var_names must map"):
        DestinationOptions(var_names=value)  # type: ignore[arg-type]
