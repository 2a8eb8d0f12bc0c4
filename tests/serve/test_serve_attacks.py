"""``serve`` attacked from outside, on loopback: one real ``serve`` process for the module.

Each test is one attack class of /work/shared/ATTACKS.md ("A network service") with bounded
loops; after each, an authenticated sender must still be served (``assert_serving``).
"""

from __future__ import annotations

import gzip
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import make_fake
from prometheus_client.parser import text_string_to_metric_families
from serving import WRITE_KEY, Serve, basic, raw, read_all, request

AUTH = (WRITE_KEY, "")


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    folder = tmp_path_factory.mktemp("attacks")
    # Short deadlines and a small per-address cap so the slow attacks show in seconds.
    with make_fake(rate_limits={"default": 100_000, "user": 100_000}) as fake:
        server = Serve(fake, folder, "--header-timeout", "1", "--body-timeout", "2",
                       "--max-connections-per-client", "8")  # fmt: skip
        server.start()
        try:
            yield server
        finally:
            server.stop()


def assert_serving(serve: Serve) -> None:
    """An authenticated sender is served at once."""
    body = {"batch": [{"type": "identify", "userId": "ok", "traits": {"email": "ok@x.test"}}]}
    answer = requests.post(f"{serve.url}/v1/batch", json=body, auth=AUTH, timeout=3)
    assert answer.status_code == 200, answer.text


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def statuses_in(reply: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)]


def test_a_lone_surrogate_is_refused_by_name_and_the_good_messages_are_queued(
    serve: Serve,
) -> None:
    good = [{"type": "track", "userId": "s", "event": "Good", "messageId": f"sur-{n}"}
            for n in range(2)]  # fmt: skip
    body = json.dumps({"batch": [good[0], {"type": "track", "userId": "s", "event": "\ud800",
                                           "messageId": "sur-bad"}, good[1]]})  # fmt: skip
    answer = requests.post(f"{serve.url}/v1/batch", data=body, auth=AUTH, timeout=5,
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    [refused] = answer.json()["refused"]
    assert (refused["index"], refused["messageId"], refused["reason"]) == (1, "sur-bad", "encoding")
    serve.drained()
    assert [e["event"] for e in serve.fake.events].count("Good") == 2
    assert_serving(serve)


def test_an_unauthenticated_body_is_not_read(serve: Serve) -> None:
    head = (b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n")  # fmt: skip
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    sent = 0
    reply = b""
    with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as conn:
        conn.sendall(head)
        try:
            while sent < 200 * 1024 * 1024:  # the attack of the issue: 200 MB
                readable, writable, _ = select.select([conn], [conn], [], 2)
                if readable:
                    reply = read_all(conn, 1)
                    break
                if not writable:
                    break
                sent += conn.send(chunk)
        except OSError:  # the server closed the connection: that is the point
            pass
        reply = reply or read_all(conn, 1)
    assert status_of(reply) == 401
    assert b'"unauthorized"' in reply
    # The kernel's socket buffers take a few MB; the server itself read none of it.
    assert sent < 20 * 1024 * 1024
    assert_serving(serve)
    metrics = text_string_to_metric_families(requests.get(f"{serve.url}/metrics", timeout=5).text)
    refused = {s.labels.get("reason"): s.value for f in metrics for s in f.samples
               if s.name == "sailthru_serve_messages_refused_total"}  # fmt: skip
    assert refused["auth"] >= 1


def test_expect_100_continue_without_the_key_gets_401_and_no_continue(serve: Serve) -> None:
    # Red team t16/t17: waitress answered "100 Continue" and read the body before the 401.
    head = (b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 400000\r\n\r\n")  # fmt: skip
    reply = raw(serve.port, head, timeout=4)
    assert b"100 Continue" not in reply
    assert status_of(reply) == 401
    # With the key, the sender is told to go on and its body is taken.
    body = json.dumps({"batch": [{"type": "identify", "userId": "ex",
                                  "traits": {"email": "ex@x.test"}}]}).encode()  # fmt: skip
    with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as conn:
        conn.sendall(request("/v1/batch", Expect="100-continue").replace(
            b"Content-Length: 0", b"Content-Length: %d" % len(body)))
        assert statuses_in(conn.recv(1024)) == [100]
        conn.sendall(body)
        assert statuses_in(read_all(conn, 2)) == [200]
    assert_serving(serve)


def test_an_authenticated_body_over_the_limit_is_cut_while_reading(serve: Serve) -> None:
    head = (b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Authorization: " + basic().encode() + b"\r\n\r\n")  # fmt: skip
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as conn:
        conn.sendall(head)
        try:
            while sent < 100 * 1024 * 1024:
                _, writable, _ = select.select([], [conn], [], 2)
                if not writable:
                    break
                sent += conn.send(chunk)
        except OSError:
            pass
        reply = read_all(conn, 2)
    assert status_of(reply) == 413
    assert sent < 20 * 1024 * 1024
    assert_serving(serve)


def test_a_batch_level_context_cannot_multiply_the_disk(serve: Serve) -> None:
    serve.drained()
    context = {"blob": "x" * 30_000}
    batch = [{"type": "track"} for _ in range(2_000)]  # the 66 KB request
    body = json.dumps({"batch": batch, "context": context}, separators=(",", ":"))
    assert len(body) < 70_000
    answer = requests.post(f"{serve.url}/v1/batch", data=body, auth=AUTH, timeout=10)
    assert answer.status_code == 413, answer.text
    assert "context" in answer.json()["message"]
    assert serve.health()["queue_depth"] == 0
    # A shared context on a normal batch is still merged into each message.
    track = {"type": "track", "userId": "amp", "event": "E"}
    small = {"batch": [track] * 3, "context": {"ip": "1.2.3.4"}}
    assert requests.post(f"{serve.url}/v1/batch", json=small, auth=AUTH, timeout=5).ok


def test_slow_drips_from_many_connections_do_not_starve_a_real_sender(serve: Serve) -> None:
    conns = []
    try:
        for _ in range(105):
            try:
                # another loopback address: the attacker is not the sender
                conns.append(socket.create_connection(("127.0.0.1", serve.port), timeout=2,
                                                      source_address=("127.0.0.2", 0)))  # fmt: skip
            except OSError:
                break
        for conn in conns:
            try:
                conn.sendall(b"POST /v1/batch HTTP/1.1\r\n")
            except OSError:
                pass
        for _ in range(3):  # drip while the sender sends
            for conn in conns:
                try:
                    conn.send(b"X")
                except OSError:
                    pass
            assert_serving(serve)
            time.sleep(0.3)
        # The header deadline (1 s here) closes the drippers that were let in.
        time.sleep(1.5)
        closed = 0
        for conn in conns:
            try:
                conn.send(b"X-Drip: 1\r\n")
                conn.settimeout(0.5)
                closed += conn.recv(1) == b""
            except OSError:
                closed += 1
        assert closed == len(conns)
    finally:
        for conn in conns:
            conn.close()


def test_a_header_flood_is_refused_and_closed(serve: Serve) -> None:
    flood = b"".join(b"X-F%d: %s\r\n" % (n, b"y" * 100) for n in range(400))
    reply = raw(serve.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + flood + b"\r\n")
    assert status_of(reply) == 431
    assert_serving(serve)


def test_pipelined_requests_are_answered_in_order_and_a_refused_one_ends_the_line(
    serve: Serve,
) -> None:
    one = json.dumps({"userId": "p", "event": "Piped", "messageId": "pipe-1"}).encode()
    two = json.dumps({"userId": "p", "event": "Piped", "messageId": "pipe-2"}).encode()
    data = request("/v1/track", one) + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + request(
        "/v1/track", two, Connection="close")
    reply = raw(serve.port, data)
    assert statuses_in(reply) == [200, 200, 200]
    # Unauthenticated with a body: 401 and the connection closes; what follows is not read.
    refused = request("/v1/track", one, key=None) + request("/v1/track", two)
    reply = raw(serve.port, refused)
    assert statuses_in(reply) == [401]


def test_a_truncated_gzip_is_refused_and_nothing_is_queued(serve: Serve, tmp_path: Path) -> None:
    message = {"userId": "gz", "event": "Cut", "messageId": "gzip-cut"}
    whole = gzip.compress(json.dumps(message).encode())
    for cut in (whole[:-4], whole[: len(whole) // 2]):  # no length trailer; half the stream
        answer = requests.post(f"{serve.url}/v1/track", data=cut, auth=AUTH, timeout=5,
                               headers={"Content-Encoding": "gzip"})  # fmt: skip
        assert answer.status_code == 400, answer.text
    serve.drained()
    assert not [e for e in serve.fake.events if e["event"] == "Cut"]
    assert "gzip-cut" not in json.dumps(serve.errors())


def test_json_nested_ten_thousand_deep_is_refused_and_the_server_lives(serve: Serve) -> None:
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    body = '{"batch": [{"type": "track", "userId": "d", "event": "D", "properties": ' + deep + "}]}"
    answer = requests.post(f"{serve.url}/v1/batch", data=body, auth=AUTH, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_request"
    assert_serving(serve)
