"""Logging setup: plain text for people, JSON lines (``--log-json``) for log pipelines.

Error lines carry where the record came from when the caller passes it, e.g.
``log.error("bad record", extra={"node": n, "topic": t, "partition": p, "offset": o})``;
those four fields become top-level JSON keys (and a ``[node topic/partition@offset]`` suffix in text).
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import logging
import sys
from typing import Any, TextIO

CONTEXT_FIELDS = ("node", "topic", "partition", "offset")
# Attributes every LogRecord has; anything else came in through ``extra=`` and is logged too.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO 8601), level, logger, message, context, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """Human format; appends the record context when present."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = {f: getattr(record, f) for f in CONTEXT_FIELDS if hasattr(record, f)}
        if ctx:
            where = ctx.get("node", "")
            if "topic" in ctx:
                where += f" {ctx['topic']}"
                if "partition" in ctx:
                    where += f"/{ctx['partition']}"
                if "offset" in ctx:
                    where += f"@{ctx['offset']}"
            text += f" [{where.strip()}]"
        return text


def setup_logging(level: str | int = "INFO", json: bool = False, stream: TextIO | None = None) -> None:
    """Configures the root logger once (replacing earlier handlers, so calling it twice is safe)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_stream_orch", False):
            root.removeHandler(old)
    handler._stream_orch = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))
