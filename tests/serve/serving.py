"""Helpers of the ``serve`` tests: a ``serve`` subprocess on loopback, raw HTTP, queue rows."""

from __future__ import annotations

import base64
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
from helpers import KEY, SECRET

from sailthru_destination.testing import FakeSailthru

WRITE_KEY = "wk-serve-test-0123456789"
SETTINGS = {"product_url_template": "https://shop.example/p/{product_id}"}


def basic(key: str = WRITE_KEY) -> str:
    """The ``Authorization`` header a Segment SDK sends for ``key``."""
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def encoded(messages: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Messages as the intake hands them to the queue."""
    from sailthru_destination.serve.queue import Encoded

    return [
        Encoded(str(m["messageId"]), json.dumps(m, ensure_ascii=False, separators=(",", ":")))
        for m in messages
    ]


def free_port() -> int:
    """A loopback port nothing listens on (for a moment)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Serve:
    """One ``serve`` process at a time on a fixed port and data folder."""

    def __init__(self, fake: FakeSailthru, folder: Path, *flags: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (folder / "settings.json").write_text(json.dumps(SETTINGS))
        self.fake = fake
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self, *extra: str) -> list[str]:
        """The ``serve`` command line (``extra`` flags last)."""
        return [
            sys.executable, "-m", "sailthru_destination", "-v", "serve",
            "--port", str(self.port), "--data-dir", str(self.folder / "data"),
            "--settings", str(self.folder / "settings.json"),
            "--api-key", KEY, "--api-secret", SECRET, "--api-url", self.fake.url,
            *self.flags, *extra,
        ]  # fmt: skip

    def start(self, *extra: str, file_size_limit: int | None = None) -> None:
        """Start serve and wait for /health; ``file_size_limit`` caps every file it writes
        (RLIMIT_FSIZE: a write beyond fails with EFBIG, as on a full disk)."""
        env = {**os.environ, "SEGMENT_WRITE_KEY": WRITE_KEY}
        log = (self.folder / "serve.log").open("ab")

        def limit() -> None:
            if file_size_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        self.proc = subprocess.Popen(
            self.argv(*extra), stdout=log, stderr=log, env=env, preexec_fn=limit
        )
        self.wait(lambda health: True)

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(f"{self.url}/health", timeout=2).json()
        return answer

    def wait(self, done: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log()
            try:
                health = self.health()
            except requests.ConnectionError:
                time.sleep(0.05)
                continue
            if done(health):
                return health
            time.sleep(0.05)
        raise AssertionError(f"serve did not get there in {timeout} s:\n{self.log()}")

    def drained(self) -> dict[str, Any]:
        return self.wait(lambda health: health["queue_depth"] == 0)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, then the exit code (SIGKILL after 15 s: None)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def log(self) -> str:
        return (self.folder / "serve.log").read_text(errors="replace")

    def errors(self) -> list[dict[str, Any]]:
        paths = (self.folder / "data" / "reports").glob("serve-*/errors.jsonl")
        lines = [line for path in sorted(paths) for line in path.read_text().splitlines()]
        return [json.loads(line) for line in lines if line]


def raw(port: int, data: bytes, *, source: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection from ``source`` and read until the server closes
    it or ``timeout`` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as conn:  # fmt: skip
        conn.sendall(data)
        return read_all(conn, timeout)


def read_all(conn: socket.socket, timeout: float) -> bytes:
    """What ``conn`` receives until closed or ``timeout`` passes (no error on a reset)."""
    conn.settimeout(timeout)
    parts = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = conn.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts)


def request(path: str, body: bytes = b"", *, key: str | None = WRITE_KEY, **headers: str) -> bytes:
    """One HTTP/1.1 POST as bytes (``key`` None: no ``Authorization``)."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
             "Content-Type: application/json"]  # fmt: skip
    if key is not None:
        lines.append(f"Authorization: {basic(key)}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
