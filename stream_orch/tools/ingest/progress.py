"""The progress bar of one file: tqdm over the bytes read (so the ETA is by bytes), with rows/s
and rejects beside it. tqdm rather than rich: one small pure-Python dependency, and the bar is
redrawn from the ingest loop at most every 1,024 rows (tqdm itself limits redraws to 10/s).
Off when stderr is not a terminal or with ``--quiet``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm


class FileBar:
    def __init__(self, path: Path, *, disabled: bool = False) -> None:
        self._bar: tqdm | None = None
        if disabled or not sys.stderr.isatty():
            return
        try:
            total = path.stat().st_size
        except OSError:
            total = None
        self.started = time.monotonic()
        self._bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=path.name,
            leave=False,
            file=sys.stderr,
        )

    def update(self, position: int, published: int, rejected: int) -> None:
        if self._bar is None:
            return
        self._bar.update(position - self._bar.n)
        rate = published / max(time.monotonic() - self.started, 1e-6)
        self._bar.set_postfix_str(
            f"{published:,} rows {rate:,.0f} rows/s {rejected:,} rejects", refresh=False
        )

    def close(self, position: int, published: int, rejected: int) -> None:
        if self._bar is not None:
            self.update(position, published, rejected)
            self._bar.close()
