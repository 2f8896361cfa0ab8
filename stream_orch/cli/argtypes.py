"""Argument types shared by the sub-commands; argparse turns their errors into one usage line."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def point_in_time(text: str) -> int:
    """Epoch ms of ``2h`` (that long ago: ms, s, m, h, d) or of an ISO 8601 time (UTC unless it
    names its offset), as ``--from-time`` takes it."""
    import time
    from datetime import UTC, datetime

    from stream_orch.topology.durations import parse_duration_ms

    try:
        return int(time.time() * 1000) - parse_duration_ms(text.strip())
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration or an ISO time: {text!r} (e.g. 2h, 30m, 2026-12-03T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
