"""Structured logs: one JSON object per line, ``extra={...}`` fields included.

Field names reuse metric label names (``node``, ``pod``, ``device_uuid``) so logs and metrics join.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Final, TextIO

import msgspec

_RESERVED: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_ENCODER: Final = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "msg", ...extra, "exc"}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(doc).decode()


def setup_logging(level: str | int = "INFO", *, stream: TextIO | None = None) -> None:
    """Replace the root handlers with one JSON handler at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
