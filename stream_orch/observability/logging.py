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
import time
from collections.abc import Callable
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


class RepeatFilter(logging.Filter):
    """Lets one line per message template and logger through every ``window_s`` seconds, for the
    loggers under ``prefixes``, and says how many were held back. aiokafka logs every refused
    connection to a lost broker, thousands of lines a second while a producer retries a batch
    without backoff (aio-libs/aiokafka#496), which buries everything else in the log."""

    def __init__(
        self,
        prefixes: tuple[str, ...] = ("aiokafka",),
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._clock = clock
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (passed at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        passed_at, held = self._last.get(key, (float("-inf"), 0))
        if now - passed_at < self.window_s:
            self._last[key] = (passed_at, held + 1)
            return False
        self._last[key] = (now, 0)
        if held:
            record.msg = (
                f"{record.msg} ({held} more like this in the previous {self.window_s:.0f}s not shown)"
            )
        return True


def setup_logging(level: str | int = "INFO", json: bool = False, stream: TextIO | None = None) -> None:
    """Configures the root logger once (replacing earlier handlers, so calling it twice is safe)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_stream_orch", False):
            root.removeHandler(old)
    handler._stream_orch = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))
