"""SailthruApi against the fake Sailthru over HTTP: signing, sending, classification, call log."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _api_stub import Reply, stub_server

from sailthru_destination.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    TransientError,
)
from sailthru_destination.options import AppOptions
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi
from sailthru_destination.transport.calllog import CallLog, CallRecord, JsonLinesSink

KEY, SECRET = "test-key", "test-secret"
NO_RETRY = RetryPolicy(max_attempts=1)


def _api(url: str, **kwargs: object) -> SailthruApi:
    kwargs.setdefault("sleep", lambda seconds: None)
    return SailthruApi(AppOptions(KEY, SECRET, api_url=url), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def api(fake_sailthru: FakeSailthru) -> Iterator[SailthruApi]:
    with _api(fake_sailthru.url) as api:
        yield api


def test_signed_calls_create_read_and_delete_a_user(
    api: SailthruApi, fake_sailthru: FakeSailthru
) -> None:
    created = api.post(
        "user", {"id": "Ann@Example.com", "vars": {"tier": "gold"}, "fields": {"keys": 1}}
    )
    assert created["ok"] is True
    sid = created["keys"]["sid"]
    assert fake_sailthru.find_user(sid=sid)["vars"] == {"tier": "gold"}
    assert api.get("/user/", {"id": "ann@example.com"})["keys"]["sid"] == sid
    assert api.delete("user", {"id": sid, "key": "sid"}) == {"ok": True}
    assert fake_sailthru.find_user(sid=sid) is None
    assert fake_sailthru.calls[("POST", "user")] == 1


def test_one_pooled_connection_serves_many_calls(
    api: SailthruApi, fake_sailthru: FakeSailthru
) -> None:
    for i in range(5):
        api.post("user", {"id": f"u{i}@example.com"})
        api.get("user", {"id": f"u{i}@example.com"})
    assert fake_sailthru.connections == 1


def test_an_unknown_api_key_is_an_auth_error(fake_sailthru: FakeSailthru) -> None:
    with SailthruApi(AppOptions("other-key", SECRET, api_url=fake_sailthru.url)) as api:
        with pytest.raises(AuthError) as caught:
            api.get("user", {"id": "a@example.com"})
    assert (caught.value.status, caught.value.code) == (401, 3)
    assert not caught.value.retryable


def test_a_wrong_secret_is_an_auth_error(fake_sailthru: FakeSailthru) -> None:
    with SailthruApi(AppOptions(KEY, "wrong", api_url=fake_sailthru.url)) as api:
        with pytest.raises(AuthError) as caught:
            api.post("user", {"id": "a@example.com"})
    assert (caught.value.status, caught.value.code) == (401, 5)


def test_a_missing_user_is_not_found(api: SailthruApi) -> None:
    with pytest.raises(NotFound) as caught:
        api.get("user", {"id": "nobody@example.com"})
    assert (caught.value.status, caught.value.code) == (400, 99)
    with pytest.raises(NotFound) as deleted:
        api.delete("user", {"id": "nobody@example.com"})
    assert deleted.value.status == 404


def test_an_unknown_list_is_not_found(api: SailthruApi) -> None:
    with pytest.raises(NotFound) as caught:
        api.get("list", {"list": "No Such List"})
    assert (caught.value.status, caught.value.code) == (404, 15)
    assert "No Such List" in caught.value.message


def test_a_forbidden_endpoint_is_permission_denied() -> None:
    with FakeSailthru(
        api_key=KEY, api_secret=SECRET, forbidden_endpoints=frozenset({"list"})
    ) as fake:
        with _api(fake.url) as api, pytest.raises(PermissionDenied) as caught:
            api.get("list", {})
    assert (caught.value.status, caught.value.code, caught.value.endpoint) == (403, 99, "list")


def test_a_server_error_is_transient(fake_sailthru: FakeSailthru) -> None:
    fake_sailthru.faults = Faults(server_error_rate=1.0)
    with _api(fake_sailthru.url, retry=NO_RETRY) as api, pytest.raises(TransientError) as caught:
        api.get("user", {"id": "a@example.com"})
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (500, 9, True)


def test_a_rate_limit_reply_is_rate_limited(fake_sailthru: FakeSailthru) -> None:
    fake_sailthru.faults = Faults(rate_limit_burst=1.0)
    with _api(fake_sailthru.url, retry=NO_RETRY) as api, pytest.raises(RateLimited) as caught:
        api.post("user", {"id": "a@example.com"})
    error = caught.value
    assert (error.status, error.code) == (429, 43)
    assert error.reset_at is not None
    # A burst refusal resets when the fake's window has room: the next whole second.
    assert error.reset_at % 1 == 0
    assert 0 < error.reset_at - time.time() <= 2
    # Remaining: 0, but a reset less than a second away with no minute known: a burst, so
    # neither the pace nor the retry waits for the reset (issue 26).
    assert error.burst
    assert not error.budget_spent


def test_an_unknown_endpoint_is_an_invalid_request(api: SailthruApi) -> None:
    with pytest.raises(InvalidRequest) as caught:
        api.get("no-such-api", {})
    assert caught.value.status == 404
    assert caught.value.code == 1


def test_an_error_body_sent_with_http_200_raises_instead_of_returning_data() -> None:
    body = {"error": 99, "errormsg": "Invalid email: not-an-email"}
    with stub_server(Reply(200, body)) as stub, _api(stub.url) as api:
        with pytest.raises(InvalidRequest) as caught:
            api.get("user", {"id": "not-an-email"})
    assert (caught.value.status, caught.value.code) == (200, 99)


def test_a_reply_that_is_not_json_is_an_invalid_request() -> None:
    with stub_server(Reply(200, b"<html>welcome</html>")) as stub, _api(stub.url) as api:
        with pytest.raises(InvalidRequest, match="not JSON"):
            api.get("user", {"id": "a@example.com"})


def test_a_refused_connection_is_transient() -> None:
    with stub_server() as stub:
        url = stub.url
    with _api(url, retry=NO_RETRY) as api, pytest.raises(TransientError) as caught:
        api.get("user", {"id": "a@example.com"})
    assert caught.value.status is None
    assert "no reply" in str(caught.value)


def test_get_and_delete_send_the_four_fields_in_the_query_and_post_in_the_body() -> None:
    with stub_server() as stub, _api(stub.url) as api:
        api.get("user", {"id": "a@example.com"})
        api.post("user", {"id": "a@example.com", "vars": {"n": 1}})
        api.delete("user", {"id": "a@example.com"})
    (get, post, delete) = stub.requests
    for method, path, fields, raw in (get, delete):
        assert set(fields) == {"api_key", "format", "json", "sig"}
        assert raw == b""
    assert post[2]["json"] == json.dumps({"id": "a@example.com", "vars": {"n": 1}})
    assert post[1] == "/user"
    assert [r[0] for r in stub.requests] == ["GET", "POST", "DELETE"]


@pytest.mark.parametrize("kind", ["bytes", "path", "file object"])
def test_a_file_goes_as_a_multipart_part_and_its_path_stays_out_of_the_payload(
    kind: str, tmp_path: Path
) -> None:
    content = b'{"id": "a@example.com", "vars": {"n": 1}}\n'
    path = tmp_path / "update.json"
    path.write_bytes(content)
    upload: object = {"bytes": content, "path": str(path), "file object": io.BytesIO(content)}[kind]
    with stub_server(Reply(500, {"error": 9, "errormsg": "busy"}), Reply()) as stub:
        with _api(stub.url) as api:
            api.post("job", {"job": "update"}, file=upload)  # type: ignore[arg-type]
    assert len(stub.requests) == 2  # retried after the 500, file sent again in full
    for _, _, _, raw in stub.requests:
        assert b'name="file"' in raw
        assert content in raw
        for name in (b"api_key", b"format", b"json", b"sig"):
            assert b'name="' + name + b'"' in raw
        assert str(tmp_path).encode() not in raw
    assert api.call_log.records()[0].payload == {"job": "update"}


def test_the_call_log_keeps_one_redacted_record_per_attempt(fake_sailthru: FakeSailthru) -> None:
    fake_sailthru.faults = Faults(server_error_rate=1.0)
    log = CallLog(max_records=3)
    with _api(fake_sailthru.url, call_log=log, retry=RetryPolicy(max_attempts=2)) as api:
        with pytest.raises(TransientError):
            api.post("user", {"id": "a@example.com", "vars": {"x": 1}})
        fake_sailthru.faults = Faults()
        api.post("user", {"id": "b@example.com"})
        api.get("user", {"id": "b@example.com"})
    records = log.records()
    assert len(records) == len(log) == 3  # bounded: the first attempt was dropped
    failed, posted, read = records
    assert (failed.attempt, failed.status, failed.code, failed.error) == (
        2,
        500,
        9,
        "TransientError",
    )
    assert failed.payload == {"id": "a@example.com", "vars": {"x": 1}}
    assert (posted.method, posted.endpoint, posted.status, posted.error) == (
        "POST",
        "user",
        200,
        None,
    )
    assert read.method == "GET"
    assert {r.api_key for r in records} == {"****"}  # an 8-character key shows nothing
    assert all(r.duration >= 0 and r.time > 1e9 for r in records)
    assert "sig" not in json.dumps([r.to_dict() for r in records])
    log.clear()
    assert list(log) == []


def test_a_json_lines_sink_streams_every_record(
    fake_sailthru: FakeSailthru, tmp_path: Path
) -> None:
    path = tmp_path / "calls.jsonl"
    with JsonLinesSink(path) as sink:
        log = CallLog(max_records=1, sink=sink)
        with _api(fake_sailthru.url, call_log=log) as api:
            api.post("user", {"id": "a@example.com"})
            api.get("user", {"id": "a@example.com"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["method"], line["status"]) for line in lines] == [("POST", 200), ("GET", 200)]
    assert lines[0]["payload"] == {"id": "a@example.com"}
    assert "sig" not in path.read_text()


def test_a_failing_sink_does_not_break_calls(
    fake_sailthru: FakeSailthru, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(record: CallRecord) -> None:
        raise OSError("disk full")

    with _api(fake_sailthru.url, call_log=CallLog(sink=broken)) as api:
        assert api.post("user", {"id": "a@example.com"})["ok"] is True
    assert len(api.call_log) == 1
    assert "sink failed" in caplog.text


def test_each_attempt_is_logged_at_debug(
    api: SailthruApi, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sailthru_destination.transport.api"):
        api.post("user", {"id": "a@example.com"})
    assert "POST /user attempt 1 -> 200" in caplog.text


def test_wait_uses_the_injected_sleep(fake_sailthru: FakeSailthru) -> None:
    slept: list[float] = []
    with _api(fake_sailthru.url, sleep=slept.append) as api:
        api.wait(2.5)
        api.wait(0)
    assert slept == [2.5]


def test_a_closed_api_refuses_calls(api: SailthruApi) -> None:
    api.close()
    with pytest.raises(RuntimeError, match="closed"):
        api.get("user", {"id": "a@example.com"})


def test_plain_http_is_refused_unless_loopback() -> None:
    with pytest.raises(ValueError, match="plain http"):
        AppOptions(KEY, SECRET, api_url="http://api.sailthru.com")
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"):
        assert SailthruApi(AppOptions(KEY, SECRET, api_url=url)).url == url


def test_the_repr_shows_the_url_and_the_masked_key_only(api: SailthruApi) -> None:
    text = repr(api)
    assert text == f"SailthruApi(url={api.url!r}, api_key='****')"
    assert SECRET not in text


def test_bad_settings_are_refused(fake_sailthru: FakeSailthru) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        _api(fake_sailthru.url, concurrency=0)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_backoff"):
        RetryPolicy(max_backoff=-1)
    with pytest.raises(ValueError, match="max_records"):
        CallLog(max_records=-1)


def test_proxy_settings_are_read_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with SailthruApi(AppOptions(KEY, SECRET)) as api:
        assert api._session.proxies["https"] == "http://proxy.example:3128"
        assert api._session.trust_env is False


def test_download_refuses_plain_http_to_another_machine(api: SailthruApi) -> None:
    with pytest.raises(InvalidRequest, match="plain http"):
        api.download("http://exports.example.com/list.csv?sig=abc")


def test_download_of_an_expired_export_is_not_found_without_its_signed_query(
    api: SailthruApi, fake_sailthru: FakeSailthru
) -> None:
    fake_sailthru.job_seconds = 0  # the export is ready at its first poll
    api.post("user", {"id": "gone@example.com", "key": "email", "lists": {"Gone": 1}})
    job = api.post("job", {"job": "export_list_data", "list": "Gone"})
    url = api.get("job", {"job_id": job["job_id"]})["export_url"]
    fake_sailthru.expire_export(job["job_id"])
    with pytest.raises(NotFound) as caught:
        api.download(url + "?signature=s3cr3t")
    assert caught.value.status == 404
    assert "s3cr3t" not in str(caught.value)


def test_download_streams_an_export_as_text_lines(
    api: SailthruApi, fake_sailthru: FakeSailthru
) -> None:
    fake_sailthru.job_seconds = 0  # the export is ready at its first poll
    api.post("user", {"id": "dl@example.com", "key": "email", "lists": {"DL": 1}})
    job = api.post("job", {"job": "export_list_data", "list": "DL"})
    done = api.get("job", {"job_id": job["job_id"]})
    with api.download(done["export_url"]) as lines:
        rows = list(lines)
    assert "dl@example.com" in "".join(rows)


def test_page_views_go_to_the_tracking_service_with_the_customer_id_as_bearer(
    fake_sailthru: FakeSailthru,
) -> None:
    app = AppOptions(KEY, SECRET, api_url=fake_sailthru.url, tracking_url=fake_sailthru.url)
    with SailthruApi(app, sleep=lambda seconds: None) as api:
        reply = api.track_pageview(
            "cust-1", {"userIdKey": "extid", "userIdValue": "u1", "url": "https://x.test/a"}
        )
        [record] = api.call_log.records()
    assert reply == {"ok": True}
    [view] = fake_sailthru.pageviews
    assert view["url"] == "https://x.test/a"
    assert record.endpoint == "v1/track/event/pageview"
    assert "cust-1" not in json.dumps(record.to_dict())
