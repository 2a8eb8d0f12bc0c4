"""A request as the server read it and a reply as it will be written."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Reply", "Request"]


@dataclass
class Request:
    """One HTTP request as the server read it."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Reply:
    """One HTTP reply: status, headers and body bytes (JSON unless said otherwise)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, data: object, headers: Mapping[str, str] | None = None) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(data).encode("utf-8"), dict(headers or {}))
