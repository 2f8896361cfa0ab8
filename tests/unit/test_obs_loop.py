"""The SIGUSR1 task dump shows each task's whole await chain, down to what it waits on."""

from __future__ import annotations

import asyncio
import io

from stream_orch.observability.loop import dump_tasks


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


async def test_dump_names_every_task_and_the_frames_it_is_suspended_in() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_outer(event), name="node:score")
    await asyncio.sleep(0)
    out = io.StringIO()
    try:
        n = dump_tasks(out)
    finally:
        event.set()
        await task
    text = out.getvalue()
    assert n >= 2 and f"--- {n} asyncio tasks ---" in text
    block = text[text.index("task node:score:") :]
    assert block.index("in _outer") < block.index("in _inner") < block.index("in wait")
