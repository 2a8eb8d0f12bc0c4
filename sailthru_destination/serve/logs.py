"""``serve --log-format json``: one JSON object per log line, for log shippers.

Each line holds ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, plus
``message_id`` and ``outcome`` when the record carries them (intake refusals and the worker's
result of each message). Only the command line installs it; the library never configures
logging. Secrets never reach a log record in the first place (keys are masked where they are
formatted); the write key is also scrubbed here, as a last guard.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

__all__ = ["JsonFormatter", "use_json_logs"]

_FIELDS = ("message_id", "outcome", "kind")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; ``secrets`` are replaced by ``***``."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        text = json.dumps(line, ensure_ascii=False, default=str)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def use_json_logs(level: int, secrets: tuple[str, ...] = ()) -> None:
    """Send every log record to stderr as JSON lines, at ``level`` or above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
