"""The waitress server around :class:`~.app.SegmentIngest`, with limits an attacker cannot pass.

- **Auth before the body.** A request carrying a body is checked for the write key as soon
  as its headers end; without it the answer is 401 and the connection closes, before a byte
  of the body is read or spooled.
- **Bounded reads.** Headers are limited to 16 KB; a body to the 500 KB Segment allows,
  enforced while reading (chunked bodies too), and held in memory, never spooled to disk.
- **Slow and many.** A request must send its headers within ``header_timeout`` and all of
  itself within ``body_timeout`` however slowly it drips; one client address may hold at
  most ``per_client`` connections; the total is sized for the thread pool. An idle
  keep-alive connection closes after ``idle_timeout``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import Error

from .app import SegmentIngest, authorized
from .intake import MAX_BATCH_BYTES
from .limits import ServerLimits

__all__ = ["make_server", "stop_server"]


class _Unauthorized(Error):
    code = 401
    reason = "Unauthorized"

    def to_response(  # type: ignore[override]  # waitress's stub says str; bytes are sent
        self, ident: str | None = None
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        body = {"success": False, "code": "unauthorized", "message": self.body}
        headers = [("Content-Type", "application/json"),
                   ("WWW-Authenticate", 'Basic realm="segment"')]  # fmt: skip
        return f"{self.code} {self.reason}", headers, json.dumps(body).encode("utf-8")


def _parser_for(app: SegmentIngest) -> type[HTTPRequestParser]:
    key = app.key

    class Parser(HTTPRequestParser):
        """Waitress's parser that refuses a body from a sender without the write key."""

        refused = False
        checked = False

        def __init__(self, adj: Any) -> None:
            super().__init__(adj)
            self.started = time.monotonic()

        def received(self, data: bytes) -> int:
            consumed: int = super().received(data)
            if self.headers_finished and not self.checked:
                self.checked = True  # once per request, when its headers end
                has_body = self.chunked or self.content_length > 0
                header = str(self.headers.get("AUTHORIZATION", ""))
                if self.error is None and has_body and not authorized(header, key):
                    app.count_refused("auth")
                    self.refused = True
                    self.error = _Unauthorized("the write key is missing or wrong")
                    self.completed = True
                    self.connection_close = True
                    # Else waitress answers "100 Continue" (and marks the request not
                    # completed): the sender would send the body it was told to hold back.
                    self.expect_continue = False
                    return len(data)  # swallow what came with the headers, read no more
            return consumed

    return Parser


class _Channel(HTTPChannel):
    """A connection that stops reading once its request is refused before its body."""

    def readable(self) -> bool:
        if any(getattr(r, "refused", False) for r in list(self.requests)):
            return False
        return bool(super().readable())


class _Server(TcpWSGIServer):
    """Waitress's TCP server with per-address connection limits and request deadlines."""

    channel_class = _Channel
    limits = ServerLimits()

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        conn, addr = accepted
        host = addr[0] if isinstance(addr, tuple) else str(addr)
        held = Counter(
            ch.addr[0] if isinstance(ch.addr, tuple) else str(ch.addr) for ch in self._channels()
        )
        if held[host] >= self.limits.per_client:
            conn.close()  # one address cannot hold every connection
            return
        self.set_socket_options(conn)
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self.socket_map())

    def _channels(self) -> list[Any]:
        channels: dict[int, Any] = self.active_channels  # type: ignore[assignment]
        return list(channels.values())

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen when asked for port 0)."""
        return int(self.effective_port)  # type: ignore[attr-defined]

    def socket_map(self) -> dict[int, Any]:
        """Waitress's map of this server's sockets (the trigger, the listener, connections)."""
        sockets: dict[int, Any] = self._map  # type: ignore[attr-defined]
        return sockets

    def maintenance(self, now: Any) -> None:
        super().maintenance(now)
        mono = time.monotonic()
        for channel in self._channels():
            request = channel.request
            if request is None or request.completed:
                continue
            age = mono - getattr(request, "started", mono)
            late = (
                age > self.limits.header_timeout
                if not request.headers_finished
                else age > self.limits.body_timeout
            )
            if late:
                channel.will_close = True  # slowloris: drip or not, the deadline holds


def make_server(app: SegmentIngest, host: str, port: int, limits: ServerLimits) -> _Server:
    """A waitress server for ``app`` on ``host:port`` with ``limits`` (not yet running)."""
    channel_class = type("SegmentChannel", (_Channel,), {"parser_class": _parser_for(app)})
    server_class = type(
        "SegmentServer", (_Server,), {"limits": limits, "channel_class": channel_class}
    )
    tick = min(limits.header_timeout, limits.body_timeout, limits.idle_timeout) / 4
    adj = Adjustments(
        host=host,
        port=port,
        threads=limits.threads,
        max_request_body_size=MAX_BATCH_BYTES + 1,
        # Held in memory up to the limit: a body is never spooled to a temporary file.
        inbuf_overflow=MAX_BATCH_BYTES + 1,
        max_request_header_size=16 * 1024,
        # One read takes a whole typical batch (waitress reads 8 KB by default: a 40 KB
        # request took five turns of the event loop, ~0.7 ms more per request for a sender).
        recv_bytes=64 * 1024,
        channel_timeout=limits.idle_timeout,
        cleanup_interval=max(tick, 0.05),
        connection_limit=limits.threads * limits.connections_per_thread,
        asyncore_loop_timeout=max(min(tick, 1.0), 0.05),
        ident="sailthru-destination",
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    server: _Server = server_class(
        app, map={}, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0]
    )
    return server


def stop_server(server: _Server, timeout: float = 5.0) -> None:
    """Close ``server`` from another thread: every socket is closed by the server's own loop
    (woken through its trigger), which then returns."""
    closed = threading.Event()

    def close_all() -> None:
        for dispatcher in list(server.socket_map().values()):
            if isinstance(dispatcher, HTTPChannel):
                dispatcher.handle_close()  # forgets the channel too
            else:
                dispatcher.close()  # the listener and the loop's wake-up pipe
        closed.set()

    wake: Any = server.trigger  # (the stub types it wrongly)
    wake.pull_trigger(close_all)
    if not closed.wait(timeout):  # the loop is stuck or gone: close from here
        close_all()
    server.task_dispatcher.shutdown()
