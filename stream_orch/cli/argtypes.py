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


def process_count(text: str) -> int:
    """``--processes``: a count, or ``auto`` for one per core."""
    if text == "auto":
        import os

        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or auto: one per core)") from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def past_time_ms(text: str) -> int:
    """A moment in the past, as epoch milliseconds: a duration back from now (``90s``, ``15m``,
    ``1h``, ``2d``) or an ISO 8601 time (``2026-12-04T08:00``, UTC unless it names its zone)."""
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
            f"not a duration or an ISO time: {text!r} (e.g. 1h, 30m, 2d or 2026-12-04T08:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def port_number(value: str | int, flag: str = "--port") -> int:
    """A TCP port from a flag or a setting; 0 means "any free port". Raises UserError (one line),
    since the value may come from a setting rather than from argparse."""
    from stream_orch.errors import UserError

    try:
        port = int(value)
    except ValueError:
        raise UserError(f"{flag} must be a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise UserError(f"{flag} must be between 0 and 65535, got {port}")
    return port
