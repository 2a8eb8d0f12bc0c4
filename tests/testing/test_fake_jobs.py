"""/job through the official client: list export CSV, bulk update, import, polling, expiry."""

from __future__ import annotations

import csv
import io
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport._protocol import sign


def _export(client: SailthruClient, name: str) -> str:
    job = client.api_post("job", {"job": "export_list_data", "list": name}).get_body()
    assert job["status"] == "pending"
    return str(job["job_id"])


def _post_update_file(fake: FakeSailthru, lines: list[dict[str, object]]) -> requests.Response:
    params = {"api_key": "test-key", "format": "json", "json": json.dumps({"job": "update"})}
    params["sig"] = sign(params, "test-secret")
    body = "\n".join(json.dumps(line) for line in lines).encode()
    return requests.post(
        f"{fake.url}/job", data=params, files={"file": ("update.json", body)}, timeout=5
    )


def test_export_completes_on_first_poll_and_serves_a_csv(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("a@example.com", {"keys": {"extid": "E1"}, "vars": {"age": 30, "tier": "g"},
                                        "lists": {"News": 1}})
    client.save_user("b@example.com", {"vars": {"flags": [1]}, "lists": {"News": 1}})
    client.save_user("c@example.com", {"lists": {"Other": 1}})
    job_id = _export(client, "News")
    status = client.api_get("job", {"job_id": job_id}).get_body()
    assert status["status"] == "completed"
    assert status["end_time"]
    download = requests.get(status["export_url"], timeout=5)
    assert download.status_code == 200
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert list(rows[0]) == ["Profile Id", "email", "extid", "age", "flags", "tier"]
    by_email = {row["email"]: row for row in rows}
    assert set(by_email) == {"a@example.com", "b@example.com"}
    assert by_email["a@example.com"]["extid"] == "E1"
    assert by_email["a@example.com"]["age"] == "30"
    assert by_email["b@example.com"]["flags"] == "[1]"
    assert len(by_email["a@example.com"]["Profile Id"]) == 24


def test_export_of_an_unknown_list_is_refused(client: SailthruClient) -> None:
    response = client.api_post("job", {"job": "export_list_data", "list": "Nope"})
    assert response.get_status_code() == 404
    assert response.get_error().get_error_code() == 15


def test_a_job_stays_pending_until_its_configured_poll(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    fake_sailthru.job_polls = 3
    client.api_post("list", {"list": "News"})
    job_id = _export(client, "News")
    statuses = [client.api_get("job", {"job_id": job_id}).get_body()["status"] for _ in range(3)]
    assert statuses == ["pending", "pending", "completed"]


def test_a_job_can_stay_pending_forever_or_end_in_error(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.api_post("list", {"list": "News"})
    fake_sailthru.job_polls = None
    stuck = _export(client, "News")
    for _ in range(3):
        assert client.api_get("job", {"job_id": stuck}).get_body()["status"] == "pending"
    fake_sailthru.job_polls = 1
    fake_sailthru.job_fails = True
    failed = client.api_get("job", {"job_id": _export(client, "News")}).get_body()
    assert failed["status"] == "error"
    assert "export_url" not in failed


def test_an_expired_export_says_so_and_its_file_is_gone(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.api_post("list", {"list": "News"})
    job_id = _export(client, "News")
    url = client.api_get("job", {"job_id": job_id}).get_body()["export_url"]
    fake_sailthru.expire_export(job_id)
    status = client.api_get("job", {"job_id": job_id}).get_body()
    assert status["expired"] is True
    assert "export_url" not in status
    assert requests.get(url, timeout=5).status_code == 404


def test_unknown_job_id_and_job_type_are_refused(client: SailthruClient) -> None:
    assert client.api_get("job", {"job_id": "nope"}).get_error().get_error_code() == 2
    assert client.api_post("job", {"job": "blast_query"}).get_status_code() == 400


def test_update_job_from_a_multipart_json_lines_file_creates_and_updates_users(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    client.save_user("a@example.com", {"vars": {"old": 1}})
    response = _post_update_file(fake_sailthru, [
        {"id": "a@example.com", "key": "email", "vars": {"new": 2}},
        {"id": "b@example.com", "vars": {"x": "y"}, "lists": {"News": 1}},
    ])
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert fake_sailthru.find_user(email="a@example.com")["vars"] == {"old": 1, "new": 2}
    assert "News" in fake_sailthru.find_user(email="b@example.com")["lists"]
    (job,) = fake_sailthru.jobs
    assert (job["type"], job["processed"], job["errors"]) == ("update", 2, 0)


def test_update_job_applies_the_shared_update_to_every_email(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    response = client.api_post("job", {
        "job": "update", "emails": "a@example.com,b@example.com",
        "update": {"vars": {"source": "bulk"}},
    })
    assert response.is_ok()
    for email in ("a@example.com", "b@example.com"):
        assert fake_sailthru.find_user(email=email)["vars"] == {"source": "bulk"}


def test_update_job_fetches_its_file_from_a_loopback_url(
    client: SailthruClient, fake_sailthru: FakeSailthru, tmp_path: Path
) -> None:
    lines = [{"id": "a@example.com", "vars": {"n": 1}}, "not json", {"id": "b@example.com"}]
    (tmp_path / "update.json").write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/update.json"
        response = client.api_post("job", {"job": "update", "url": url})
        server.shutdown()
    assert (response.get_body()["processed"], response.get_body()["errors"]) == (2, 1)
    assert fake_sailthru.find_user(email="a@example.com")["vars"] == {"n": 1}
    refused = client.api_post("job", {"job": "update", "url": "https://example.com/f.json"})
    assert refused.get_status_code() == 400


def test_update_job_needs_exactly_one_source(client: SailthruClient) -> None:
    assert client.api_post("job", {"job": "update"}).get_status_code() == 400
    both = client.api_post("job", {"job": "update", "emails": "a@x.com", "url": "http://127.0.0.1/"})
    assert both.get_status_code() == 400


def test_import_job_puts_emails_on_a_list(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    response = client.api_post("job", {"job": "import", "list": "News",
                                       "emails": "a@example.com,B@example.com"})
    assert response.get_body()["processed"] == 2
    assert "News" in fake_sailthru.find_user(email="b@example.com")["lists"]
    assert fake_sailthru.lists[0]["email_count"] == 2


def test_a_job_completes_at_creation_when_polls_is_zero(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    fake_sailthru.job_polls = 0
    client.api_post("list", {"list": "News"})
    body = client.api_post("job", {"job": "export_list_data", "list": "News"}).get_body()
    assert body["status"] == "completed"
    assert body["export_url"].startswith(fake_sailthru.url)


def test_import_job_reads_a_file_posted_as_multipart_by_the_official_client(
    client: SailthruClient, fake_sailthru: FakeSailthru, tmp_path: Path
) -> None:
    path = tmp_path / "emails.csv"
    path.write_text("a@example.com\nb@example.com\n")
    response = client.api_post(
        "job", {"job": "import", "list": "News", "file": str(path)}, binary_data_param=["file"]
    )
    assert response.get_body()["processed"] == 2
    assert "News" in fake_sailthru.find_user(email="a@example.com")["lists"]
