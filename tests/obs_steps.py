"""User functions of ``tests/fixtures/topologies/obs_forward.yaml`` (imported by the worker as
``obs_steps:handle`` from ``tests/``, a folder the topology lists in ``python_paths``).

A record's fields say what to do with it, so one topology covers every observability case.
"""

from __future__ import annotations

import asyncio


class Flaky(Exception):
    """Retried (``retry_on``), then dead-lettered when the tiers are used up."""


class AgentDied(BaseException):
    """Not an ``Exception``: nothing in the runtime catches it, so it ends the node's task."""


async def handle(record: dict) -> dict | None:
    if record.get("slow_ms"):
        await asyncio.sleep(record["slow_ms"] / 1000)  # records of a batch sleep together
    if record.get("hang"):
        await asyncio.Event().wait()  # an await that never returns: a hung call to some service
    if record.get("die"):
        raise AgentDied("the agent died")
    if record.get("drop"):
        return None
    if record.get("fail"):
        raise ValueError("cannot handle this record")
    if record.get("flaky"):
        raise Flaky("upstream timeout")
    return record
