"""A worker's reload triggers, wired to its :class:`~stream_orch.runtime.reload.Reloader`: SIGHUP
(with a request of ``stream-orch reload``, or bare), ``POST /admin/reload`` and the
announcements of the other workers of its topology; and the swap itself, node by node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stream_orch.audit.log import Auditor
from stream_orch.observability.metrics import Metrics
from stream_orch.runtime.announce import AnnouncementListener, AuditAnnouncer, listen_forever
from stream_orch.runtime.control import WorkerControl
from stream_orch.runtime.node import NodeRunner
from stream_orch.runtime.reload import APPLY_TIMEOUT_S, Refused, Reloader
from stream_orch.runtime.versions import TopologyVersion, VersionStore
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.repartition import expand

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadSource:
    """Where a worker's topology came from: what it re-reads on a reload."""

    running: TopologyVersion
    file: Path
    schema_dir: Path


class WorkerReloads:
    """Reloads of one worker. ``runners`` is read when a version is applied (nodes started later
    take part); ``swapped`` gets the expanded spec every node runs once they all swapped."""

    def __init__(
        self,
        source: ReloadSource,
        state_dir: Path,
        client_args: dict[str, Any],
        metrics: Metrics,
        runners: Callable[[], list[NodeRunner]],
        swapped: Callable[[TopologySpec], None],
        auditor: Auditor,
        audit_topic: str | None,
    ) -> None:
        self._runners = runners
        self._swapped = swapped
        self._client_args = client_args
        self._audit_topic = audit_topic  # None: auditing is off, so no announcements to hear
        self._announcer = AuditAnnouncer(auditor)
        self.reloader = Reloader(
            source.running,
            source.file,
            source.schema_dir,
            VersionStore(state_dir, source.running.spec.topology),
            self._apply,
            announcer=self._announcer,
            counted=lambda result: metrics.reloads.labels(result).inc(),
        )
        self._control = WorkerControl(
            os.getpid(), {"topology": source.running.spec.topology, "file": str(source.file.resolve())}
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ready = False  # every node started: a reload has all of them to swap

    # ------------------------------------------------------------------ triggers

    def start(self) -> None:
        """Every node runs: reloads are taken from now on, the other workers' announcements too."""
        self.ready = True
        if self._audit_topic is not None:
            listener = AnnouncementListener(
                self._client_args, self._audit_topic, self.reloader.running.spec.topology, self.reloader.heard
            )
            self._spawn(listen_forever(listener), "reload-announcements")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_sighup(self) -> None:
        request = self._control.take_request()
        to_version = request.get("to_version")
        request_id = request.get("id")
        if not self.ready:
            log.warning("reload refused (SIGHUP): the worker is still starting")
            if isinstance(request_id, str):
                self._control.answer(
                    request_id, {"result": "refused", "reason": "the worker is still starting"}
                )
            return

        async def reload() -> None:
            trigger = "stream-orch reload" if request_id else "SIGHUP"
            result = await self.reloader.reload(trigger, to_version if isinstance(to_version, str) else None)
            if isinstance(request_id, str):
                self._control.answer(request_id, asdict(result))

        self._spawn(reload(), "reload")

    async def reload_request(self, trigger: str, to_version: str | None) -> tuple[bool, dict[str, Any]]:
        if not self.ready:
            return False, {"result": "refused", "reason": "the worker is still starting"}
        result = await self.reloader.reload(trigger, to_version)
        return result.result != "refused", asdict(result)

    def status(self) -> dict[str, Any]:
        return self.reloader.status()

    # ------------------------------------------------------------------ the swap

    async def _apply(self, spec: TopologySpec) -> None:
        """Every node swaps at its next batch boundary; if one cannot, all go back."""
        runners = self._runners()
        old = runners[0].spec if runners else None
        expanded = expand(spec)
        try:
            await asyncio.wait_for(asyncio.gather(*(r.reload(expanded) for r in runners)), APPLY_TIMEOUT_S)
        except Exception as exc:
            if old is not None:
                for runner in runners:
                    runner.reload(old)
            reason = (
                "a node did not reach a batch boundary in time"
                if isinstance(exc, TimeoutError)
                else repr(exc)
            )
            raise Refused(f"not applied: {reason}") from None
        self._swapped(expanded)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._announcer.close()
        self._control.close()
