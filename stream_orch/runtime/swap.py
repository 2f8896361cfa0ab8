"""A reloaded topology version waiting for a node's next batch boundary."""

from __future__ import annotations

import asyncio

from stream_orch.runtime.pipeline import NodePipeline
from stream_orch.topology.models import TopologySpec


class VersionSwap:
    """Holds the newest version asked for until the node's loop is between two batches."""

    def __init__(self) -> None:
        self._pending: tuple[TopologySpec, asyncio.Future[None]] | None = None

    def request(self, spec: TopologySpec) -> asyncio.Future[None]:
        """``spec`` (checked by ``reload_problems``) from the next batch on; the future is done
        once the node has swapped (or failed to build it, and kept its version)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._pending is not None:
            self._pending[1].cancel()  # a newer version supersedes one not swapped in yet
        self._pending = (spec, done)
        return done

    def apply(self, pipeline: NodePipeline) -> TopologySpec | None:
        """At a batch boundary (no batch being processed, the last one's outputs rendered):
        the spec now running, or None when there was nothing to swap or it failed."""
        if self._pending is None:
            return None
        (spec, done), self._pending = self._pending, None
        try:
            pipeline.reload(spec)
        except Exception as exc:  # a step that cannot be built: the node keeps its version
            if not done.done():
                done.set_exception(exc)
            return None
        if not done.done():
            done.set_result(None)
        return spec
