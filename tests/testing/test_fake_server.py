"""The server itself: lifecycle, keep-alive, one-piece replies, inspection, reset."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests
from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport._protocol import sign


def _signed(payload: str) -> dict[str, str]:
    params = {"api_key": "test-key", "format": "json", "json": payload}
    params["sig"] = sign(params, "test-secret")
    return params


def test_url_is_loopback_with_an_ephemeral_port(fake_sailthru: FakeSailthru) -> None:
    assert fake_sailthru.url.startswith("http://127.0.0.1:")
    assert int(fake_sailthru.url.rsplit(":", 1)[1]) > 0


def test_stop_frees_the_port_and_url_is_refused_afterwards() -> None:
    fake = FakeSailthru().start()
    url = fake.url
    fake.stop()
    with pytest.raises(RuntimeError):
        _ = fake.url
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/list", params=_signed("{}"), timeout=2)


def test_a_session_reuses_one_connection_for_several_calls(fake_sailthru: FakeSailthru) -> None:
    with requests.Session() as session:
        for _ in range(5):
            response = session.get(f"{fake_sailthru.url}/list", params=_signed("{}"), timeout=5)
            assert response.status_code == 200
    assert fake_sailthru.connections == 1
    assert fake_sailthru.calls[("GET", "list")] == 5


def test_the_official_client_opens_a_connection_per_call(
    fake_sailthru: FakeSailthru, client: SailthruClient
) -> None:
    for _ in range(3):
        client.get_lists()
    assert fake_sailthru.connections == 3


def test_each_reply_arrives_in_one_piece_with_a_content_length(
    fake_sailthru: FakeSailthru,
) -> None:
    from urllib.parse import urlencode, urlsplit

    port = urlsplit(fake_sailthru.url).port
    with socket.create_connection(("127.0.0.1", port or 0), timeout=5) as sock:
        request = f"GET /list?{urlencode(_signed('{}'))} HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request.encode())
        data = sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"X-Rate-Limit-Limit: 18000" in head
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.startswith(b"Content-Length")
        )
    )
    assert len(body) == length  # status line, headers and body came in one segment


def test_concurrent_clients_are_served_and_counted(fake_sailthru: FakeSailthru) -> None:
    client = SailthruClient("test-key", "test-secret", api_url=fake_sailthru.url)
    errors: list[int] = []

    def work(n: int) -> None:
        for i in range(5):
            response = client.save_user(f"u{n}-{i}@example.com", {"lists": {"L": 1}})
            if not response.is_ok():
                errors.append(response.get_status_code())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(fake_sailthru.users) == 40
    assert fake_sailthru.calls[("POST", "user")] == 40
    assert len(fake_sailthru.call_times) == 40
    assert fake_sailthru.lists[0]["email_count"] == 40


def test_reset_forgets_data_and_calls(fake_sailthru: FakeSailthru, client: SailthruClient) -> None:
    client.save_user("a@example.com", {"lists": {"L": 1}})
    fake_sailthru.reset()
    assert fake_sailthru.users == {}
    assert fake_sailthru.lists == []
    assert fake_sailthru.calls == {}
    assert client.get_user("a@example.com").get_status_code() == 400


def test_same_seed_gives_the_same_sids() -> None:
    sids = []
    for _ in range(2):
        with FakeSailthru(seed=7) as fake:
            client = SailthruClient("test-key", "test-secret", api_url=fake.url)
            client.save_user("a@example.com")
            sids.append(list(fake.users))
    assert sids[0] == sids[1]


def test_unknown_endpoint_and_unsupported_method_answer_error_1(
    client: SailthruClient, fake_sailthru: FakeSailthru
) -> None:
    unknown = client.api_get("nothing-here", {})
    assert unknown.get_status_code() == 404
    assert unknown.get_error().get_error_code() == 1
    wrong_method = requests.put(f"{fake_sailthru.url}/user", data=_signed("{}"), timeout=5)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == 1
    assert client.api_delete("event", {"id": "a@example.com"}).get_status_code() == 405


def test_standalone_server_prints_its_url_serves_and_stops_on_ctrl_c() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "sailthru_destination.testing", "--port", str(port),
         "--api-key", "k", "--api-secret", "s"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        assert "s)" not in line  # the secret is not printed
        client = SailthruClient("k", "s", api_url=f"http://127.0.0.1:{port}")
        assert client.save_user("a@example.com").is_ok()
        assert client.get_user("a@example.com").is_ok()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stop_closes_idle_keep_alive_connections() -> None:
    from urllib.parse import urlencode, urlsplit

    fake = FakeSailthru().start()
    port = urlsplit(fake.url).port or 0
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"GET /list?{urlencode(_signed('{}'))} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        fake.stop()
        assert sock.recv(65536) == b""  # closed by the server, not left hanging
