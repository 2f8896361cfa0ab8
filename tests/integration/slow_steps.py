"""User functions for the reliability tests (imported by the worker subprocess as
``tests.integration.slow_steps:<name>``; the worker runs with the repository as its working
directory). Faults are driven by files in ``$SO_TEST_FAULT_DIR``, so a test can switch them
off while the worker runs, and attempt counts survive the retry tiers (the python step sees
the record dict, not the headers).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class TransientError(Exception):
    """Retried through the tiers (``retry_on``), then dead-lettered."""


def _dir() -> Path:
    return Path(os.environ["SO_TEST_FAULT_DIR"])


def flaky(record: dict) -> dict:
    """``fail_first: k`` fails the first k attempts of a record (counted per ``id`` in a file);
    ``broken: true`` fails while the file ``broken`` exists; ``inflate: n`` adds n bytes."""
    if record.get("fail_first"):
        counter = _dir() / f"attempts-{record['id']}"
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        if n < record["fail_first"]:
            raise TransientError(f"attempt {n + 1} of {record['id']} failed on purpose")
    if record.get("broken") and (_dir() / "broken").exists():
        raise TransientError("the downstream service is down")
    if record.get("inflate"):
        record["pad"] = "x" * int(record["inflate"])
    record["handled"] = True
    return record


def sleepy(records: list[dict]) -> None:
    """A slow downstream: 2 ms per record, blocking (batch mode: one call per batch)."""
    time.sleep(0.002 * len(records))
