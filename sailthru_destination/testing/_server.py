"""The HTTP layer: a threading stdlib server on loopback that writes each reply in one piece.

A stdlib handler that writes the status line, headers and body separately stalls a keep-alive
client about 40 ms per call (Nagle + delayed ACK), so replies are built into one buffer, sent
with one write, on sockets with TCP_NODELAY.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ._app import App
from ._wire import Reply, Request

__all__ = ["Server"]

logger = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    """The fake's listening server; one daemon thread per connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the stdlib default of 5 drops SYNs under parallel clients

    def __init__(self, host: str, port: int, app: App) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # socketserver prints tracebacks to stderr; a library logs instead.
        logger.debug("fake Sailthru: connection from %s failed", client_address, exc_info=True)

    def track(self, sock: socket.socket, is_open: bool) -> None:
        """Remember open connections, so that stopping can close the idle keep-alive ones."""
        with self._open_lock:
            if is_open:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def close_connections(self) -> None:
        """Shut every open connection down (their threads then end)."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server
    server_version = "fake-sailthru"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)
        state = self.server.app.state
        with state.lock:
            state.connections += 1

    def handle(self) -> None:
        latency = self.server.app.state.connect_latency
        if latency > 0:
            time.sleep(latency)  # TCP + TLS set-up of a new connection to the real service
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def finish(self) -> None:
        self.server.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k: v for k, v in self.headers.items()},
            body=body,
        )
        try:
            reply = self.server.app.handle(request)
        except Exception:
            logger.exception("fake Sailthru failed on %s %s", self.command, parts.path)
            reply = Reply.json(500, {"error": 9, "errormsg": "Internal error"})
        if reply is None:
            self.close_connection = True  # the injected fault: no reply at all
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        lines = [
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in reply.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + reply.body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("fake Sailthru: " + format, *args)
