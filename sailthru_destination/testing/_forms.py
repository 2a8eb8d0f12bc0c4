"""Request parameters as sailthru-client sends them: query string, form body or multipart."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

__all__ = ["Form", "parse_form"]


class Form:
    """The text fields of a request (first value wins) and its uploaded files' bytes."""

    def __init__(self, fields: dict[str, str], files: dict[str, bytes]) -> None:
        self.fields = fields
        self.files = files


def parse_form(query: str, content_type: str, body: bytes) -> Form:
    """Fields from the query string and, for a POST, the urlencoded or multipart body."""
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        fields.setdefault(name, value)
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        text = body.decode("utf-8", errors="replace")
        for name, value in parse_qsl(text, keep_blank_values=True):
            fields.setdefault(name, value)
    elif kind == "multipart/form-data":
        _parse_multipart(content_type, body, fields, files)
    return Form(fields, files)


def _parse_multipart(
    content_type: str, body: bytes, fields: dict[str, str], files: dict[str, bytes]
) -> None:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            files.setdefault(name, data)
        else:
            fields.setdefault(name, data.decode(part.get_content_charset() or "utf-8"))
