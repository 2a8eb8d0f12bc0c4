"""The limits of ``serve``, each a flag: how much the queue holds, how long a request may take."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QueueLimits", "ServerLimits"]


@dataclass(frozen=True)
class QueueLimits:
    """How much the queue may hold before intake answers 429, and how long senders wait."""

    max_messages: int = 1_000_000
    """Messages waiting; intake takes a request while fewer wait."""
    max_bytes: int = 2 * 1024**3
    """Bytes of message text waiting (2 GiB); intake takes a request while fewer wait."""
    retry_after: int = 5
    """Seconds a sender is asked to wait (``Retry-After``) when the queue is full."""

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_bytes", "retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits of the HTTP server (each a flag of ``serve``)."""

    threads: int = 4
    header_timeout: float = 10.0
    """Seconds a request may take to send its headers."""
    body_timeout: float = 30.0
    """Seconds a request may take to send all of itself."""
    idle_timeout: float = 30.0
    """Seconds an idle keep-alive connection stays open."""
    per_client: int = 16
    """Connections one client address may hold at once."""
    connections_per_thread: int = 25
    """The connection limit is this many per HTTP thread."""

    def __post_init__(self) -> None:
        for name in ("threads", "per_client", "connections_per_thread"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
