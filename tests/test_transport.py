"""The signed calls' transport: one write per request, over plain HTTP and over TLS."""

from __future__ import annotations

import http.client
import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import app_for, make_fake

from sailthru_destination import AppOptions
from sailthru_destination.errors import SailthruError
from sailthru_destination.transport.api import RetryPolicy, SailthruApi
from sailthru_destination.transport.ratelimit import RateLimiterRegistry


def test_a_signed_post_is_written_in_one_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    send = http.client.HTTPConnection.send

    def counted(self: http.client.HTTPConnection, data: Any) -> None:
        writes.append(bytes(data))
        send(self, data)

    monkeypatch.setattr(http.client.HTTPConnection, "send", counted)
    with make_fake() as fake, SailthruApi(
        app_for(fake), limiters=RateLimiterRegistry()
    ) as api:
        api.post("user", {"id": "one@example.com", "key": "email", "vars": {"a": 1}})
        api.post("user", {"id": "two@example.com", "key": "email", "vars": {"a": 2}})
        user = fake.find_user(email="two@example.com")
    assert user is not None
    assert user["vars"] == {"a": 2}
    assert len(writes) == 2  # one per call: the head and its body together
    head, _, body = writes[1].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /user HTTP/1.1")
    assert b"sig=" in body
    assert b"two%40example.com" in body


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        received = self.rfile.read(length).decode()
        body = json.dumps({"received": received}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A local HTTPS server with a self-signed certificate: (its URL, the certificate)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", str(cert)
    finally:
        server.shutdown()
        server.server_close()


def test_signed_calls_over_tls_verify_the_certificate(
    tls_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = tls_server
    app = AppOptions("k", "s", api_url=url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    with SailthruApi(app, limiters=RateLimiterRegistry()) as api:
        reply = api.post("user", {"id": "tls@example.com", "key": "email"})
        again = api.post("user", {"id": "again@example.com", "key": "email"})
    assert "tls%40example.com" in reply["received"]
    assert "sig=" in reply["received"]
    assert "again%40example.com" in again["received"]

    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    # requests' own CA bundle does not know the certificate: refused, as requests would.
    with SailthruApi(
        app, limiters=RateLimiterRegistry(), retry=RetryPolicy(max_attempts=1)
    ) as api, pytest.raises(SailthruError, match="SSLError"):
        api.post("user", {"id": "tls@example.com", "key": "email"})
