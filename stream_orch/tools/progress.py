"""A small progress bar on stderr, drawn only for a terminal (logs and pipes stay clean)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Bytes-of-input progress with a record rate, redrawn at most ten times a second."""

    def __init__(self, total_bytes: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(1, total_bytes)
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self._last_draw = 0.0

    @classmethod
    def for_input(cls, total_bytes: int | None, min_bytes: int = 1 << 20) -> ProgressBar | None:
        """A bar for large files when stderr is a terminal, else None."""
        if total_bytes is None or total_bytes < min_bytes or not sys.stderr.isatty():
            return None
        return cls(total_bytes)

    def update(self, done_bytes: int, records: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        frac = min(1.0, done_bytes / self.total)
        filled = int(frac * self.width)
        rate = records / max(now - self.started, 1e-6)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {frac:4.0%} {records:,} records {rate:,.0f}/s ")
        self.stream.flush()

    def close(self, done_bytes: int, records: int) -> None:
        self.update(done_bytes, records, force=True)
        self.stream.write("\n")
        self.stream.flush()
