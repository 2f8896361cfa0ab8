"""A worker process: reconcile topics, load global tables, run every node until told to stop.

Shutdown is graceful and bounded: on SIGTERM or SIGINT each node finishes its in-flight batch,
flushes and commits, the consumers leave their groups, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stream_orch.audit.events import (
    SHADOW_START,
    WORKER_START,
    WORKER_STOP,
    WORKER_UNCLEAN_STOP,
    AuditSubject,
)
from stream_orch.audit.log import Auditor, audit_log
from stream_orch.audit.marker import RunMarker
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.observability.health import HealthState
from stream_orch.observability.lag import LagCollector, LagReader
from stream_orch.observability.loop import monitor_event_loop
from stream_orch.observability.metrics import Metrics
from stream_orch.runtime import sigusr1
from stream_orch.runtime.access import check_access
from stream_orch.runtime.admin import TopicPlan, ensure_topics
from stream_orch.runtime.inspect import PiiMask, TableInspector
from stream_orch.runtime.membership import MemberSlot, claim_slot, start_gate
from stream_orch.runtime.node import NodeRunner
from stream_orch.runtime.observer import NodeObserver
from stream_orch.runtime.output import PartitionMap
from stream_orch.runtime.reloading import ReloadSource, WorkerReloads
from stream_orch.runtime.takeover import gather_all
from stream_orch.runtime.topic_plans import (
    declared_topic_plans,
    derived_topic_plans,
    table_label,
    table_loaded_message,
    tables_read_by,
    tables_written_by,
)
from stream_orch.security.acls import plan_acls
from stream_orch.settings import Settings
from stream_orch.state.global_table import GlobalTable
from stream_orch.state.store import store_opener
from stream_orch.state.tables import LocalTable
from stream_orch.state.topic_rows import table_row_decoder
from stream_orch.steps.base import Table
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import changelog_topic, group_id
from stream_orch.topology.repartition import expand, node_parts
from stream_orch.transport.connect import check_connection

log = logging.getLogger(__name__)

# What aiokafka logs, at ERROR, about a topic a broker does not know yet or whose partitions have
# no leader yet; all of them retried by aiokafka itself.
_NEW_TOPIC_NOISE = (
    "not found in cluster metadata",  # aiokafka.cluster: UnknownTopicOrPartition
    "is not available during auto-create",  # aiokafka.cluster: LeaderNotAvailable
    "NotLeaderForPartitionError",  # aiokafka.consumer.fetcher: an offsets lookup
    "LeaderNotAvailableError",
)
_NOISY_LOGGERS = ("aiokafka.cluster", "aiokafka.consumer.fetcher")


class _NewTopicNoise(logging.Filter):
    """Drops aiokafka's reports that one of ``topics`` is not in a broker's metadata yet or has no
    partition leader yet; every other record passes."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__()
        self.topics = topics
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(n in message for n in _NEW_TOPIC_NOISE) and any(t in message for t in self.topics):
            self.dropped += 1
            return False
        return True


@contextlib.contextmanager
def quiet_new_topics(topics: list[str]) -> Iterator[None]:
    """While a worker starts, the topology's topics it has just created are not in every broker's
    metadata, nor led, at once: a consumer asking for one then makes aiokafka log
    ``ERROR aiokafka.cluster: Topic ... retry.1 not found in cluster metadata`` (or a fetcher's
    ``NotLeaderForPartitionError``) and retry, though nothing is wrong. :func:`wait_for_leaders`
    removes most of that window; this filter, on those two loggers and for those topics only,
    and only until the start is over, hides what is left of it. A topic that never appears
    still fails the start (``wait_for_metadata`` names it)."""
    noise = _NewTopicNoise(topics)
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)
        if noise.dropped:
            log.debug("start-up: %d reports of topics not yet in the metadata left out", noise.dropped)


async def wait_for_leaders(
    client_args: dict[str, Any], counts: dict[str, int], timeout_s: float = 30.0
) -> None:
    """Wait until the broker's metadata lists every topic of ``counts`` with a leader for each
    of its partitions (topics just created take a moment). Asked with the admin client's raw
    metadata request, which logs nothing; after ``timeout_s`` the start goes on, and the
    consumers' own wait reports what is still missing."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_args)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        pending = dict(counts)
        while pending:
            for topic in await admin.describe_topics(list(pending)):
                parts = topic.get("partitions") or []
                led = [p for p in parts if p.get("error_code", 0) == 0 and p.get("leader", -1) >= 0]
                if topic.get("error_code", 0) == 0 and len(led) >= pending.get(topic["topic"], 1):
                    pending.pop(topic["topic"], None)
            if not pending or asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def _process_started() -> float:
    """When this process started, on the monotonic clock (Linux); else when this module was
    imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.monotonic() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return _IMPORTED


_IMPORTED = time.monotonic()


class Worker:
    def __init__(
        self,
        spec: TopologySpec,
        settings: Settings,
        schemas: SchemaRegistry,
        *,
        nodes: list[str] | None = None,
        stop_timeout_s: float = 30.0,
        audit_subject: AuditSubject | None = None,
        shadow: dict[str, Any] | None = None,
        reload_source: ReloadSource | None = None,
    ) -> None:
        """``reload_source``: the file the topology was read from, which reloads read again
        (:mod:`stream_orch.runtime.reloading`); without it the worker does not reload."""
        # the nodes as the engine runs them: one with `repartition` steps is several (one per part)
        self.spec = expand(spec)
        self.settings = settings
        self.schemas = schemas
        self.node_names = [p for n in nodes for p in node_parts(spec, n)] if nodes else list(self.spec.nodes)
        self.stop_timeout_s = stop_timeout_s
        self._tables_token = settings.tables_token()  # /tables on without a token: refused here
        self.metrics = Metrics()
        self.health = HealthState(stall_seconds=settings.health_stall_seconds)
        self.runners: dict[str, NodeRunner] = {}
        self._global_tables: dict[str, GlobalTable] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._server: Any = None
        self._stop = asyncio.Event()
        self.lag: LagCollector | None = None
        self._lag_reader: LagReader | None = None
        self._background: list[asyncio.Task[None]] = []
        self._slot: MemberSlot | None = None
        # audit writes never stop the worker: a failed one is a warning and a metric
        self.audit = Auditor(
            audit_log(settings, strict=False, on_failure=self.metrics.audit_write_failed),
            audit_subject or AuditSubject.of_topology(spec, None, None),
        )
        self._marker: RunMarker | None = None
        self._instance: str | None = None
        self._stop_reason: str | None = None  # set once the start is audited
        # a shadow run (`run --shadow`) is audited as such, with where it started
        self._shadow = shadow
        self._reload_source = reload_source
        self.reloads: WorkerReloads | None = None
        self._denied: frozenset[str] = frozenset()  # outputs its user may not write (runtime/access.py)

    def _local_tables(self) -> list[tuple[str, LocalTable]]:
        return [(name, t) for name, r in self.runners.items() for t in r.local_tables]

    def _stores_dir(self, instance_id: str | None) -> Path:
        """Local state of this worker: one folder per worker (its static member id), so two
        workers on one host never open the same RocksDB, and a restarted one finds its own."""
        owner = instance_id or f"{socket.gethostname()}-pid{os.getpid()}"
        return self.settings.state_dir / "stores" / self.spec.topology / owner

    def _instance_id(self) -> str | None:
        """This worker's static member id (see :mod:`stream_orch.runtime.membership`)."""
        if not self.settings.static_membership:
            return None
        if self.settings.instance_id:
            return self.settings.instance_id
        self._slot = claim_slot(self.settings.state_dir / "members" / self.spec.topology)
        return self._slot.instance_id

    async def _open_kept_stores(self, instance_id: str | None) -> None:
        """Open the stores this worker kept on disk (a restart's own partitions, most likely
        assigned to it again): a take-over then only checks their checkpoints. A store of a
        partition that goes elsewhere is closed again at the take-over."""
        await asyncio.sleep(0)  # the clients started beside this send their first requests first
        for runner in self.runners.values():
            for table in runner.local_tables:
                folder = self._stores_dir(instance_id) / table.name
                if self.spec.tables[table.name].store != "rocksdb" or not folder.is_dir():
                    continue
                for partition in sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()):
                    table.open(partition)
                    await asyncio.sleep(0)

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stopping: finishing in-flight batches")
        self._stop.set()

    async def start(self) -> None:
        plans = declared_topic_plans(self.spec) + derived_topic_plans(self.spec)
        with quiet_new_topics([p.name for p in plans]):
            await self._start(plans)

    def _needs(self) -> dict[str, set[str]]:
        """Topic -> the operations this worker needs on it (what `acl plan` grants)."""
        needs: dict[str, set[str]] = {}
        audit = self.settings.audit_topic if self.settings.audit else None
        for acl in plan_acls(self.spec, audit_topic=audit):
            if acl.resource == "TOPIC" and acl.name != audit:  # audit failures only warn
                needs.setdefault(acl.name, set()).add(acl.operation)
        return needs

    async def _start(self, plans: list[TopicPlan]) -> None:
        began = time.monotonic()
        spec = self.spec
        client_args = self.settings.kafka_client_args()
        await check_connection(self.settings)  # a wrong password or CA: one line, at once
        outputs = {t.topic for n in self.node_names for r in spec.nodes[n].routes for t in r.targets()}
        groups = [group_id(spec.topology, n) for n in self.node_names]
        self._denied = await check_access(client_args, self._needs(), groups, outputs)
        # a topic it may not write is not created or waited for: nothing is ever sent there
        counts = await ensure_topics(client_args, [p for p in plans if p.name not in self._denied])
        await wait_for_leaders(client_args, counts)
        if self._reload_source is not None:
            self.reloads = WorkerReloads(
                self._reload_source,
                self.settings.state_dir,
                client_args,
                self.metrics,
                lambda: list(self.runners.values()),
                self._swapped,
                self.audit,
                self.settings.audit_topic if self.settings.audit else None,
            )
        if self.settings.metrics_port:
            from stream_orch.console.app import console_mount
            from stream_orch.observability.http import serve

            token = self._tables_token
            mask = PiiMask.of(spec, self.schemas.raw_or_none)
            tables = TableInspector(self._local_tables, mask=mask) if token else None
            self._server = await serve(
                self.metrics,
                self.health,
                self.settings.metrics_host,
                self.settings.metrics_port,
                tables=tables,
                token=token,
                reloads=self.reloads,
                admin_reload=self.settings.admin_reload,
                reload_token=self.settings.http_token.get_secret_value()
                if self.settings.http_token
                else None,
                extra=console_mount(spec, self.settings, mask) if self.settings.console else None,
            )
        partitions = PartitionMap(counts)
        read = {t for n in self.node_names for t in tables_read_by(spec, n)}
        for name, table in spec.tables.items():
            if table.topic is not None and name in read:
                decode = table_row_decoder(spec.topics[table.topic], self.schemas)  # schema-checked
                self._global_tables[name] = GlobalTable(
                    name, table.topic, counts[table.topic], client_args, decode
                )
        self._lag_reader = LagReader(self.settings)
        groups = {group_id(spec.topology, name): name for name in self.node_names}
        self.lag = LagCollector(
            self._lag_reader,
            self.metrics,
            groups=list(groups),
            interval_s=self.settings.lag_interval_s,
            health=self.health,
            node_of_group=groups,
        )
        observer = NodeObserver(self.metrics, self.health, self.lag, self.audit)
        instance_id = self._instance_id()
        self._instance = instance_id
        if instance_id is not None:
            self._marker = RunMarker(
                self.settings.state_dir / "audit" / spec.topology / f"{instance_id}.running"
            )
        for name in self.node_names:
            tables: dict[str, Table] = dict(self._global_tables)
            for table in tables_written_by(spec, name):
                folder = self._stores_dir(instance_id) / table
                tables[table] = LocalTable(
                    table,
                    changelog_topic(spec.topology, table),
                    store_opener(spec.tables[table].store, folder, root=self.settings.state_dir),
                )
            runner = NodeRunner(
                spec=spec,
                node_name=name,
                schemas=self.schemas,
                client_args=client_args,
                partitions=partitions,
                tables=tables,
                observer=observer,
                instance_id=instance_id,
                dlq_tracebacks=self.settings.dlq_tracebacks,
                max_rate=self.settings.max_records_per_s,
                denied_outputs=self._denied,
                leave_on_stop=self.settings.leave_group_on_stop,
                read_lead=(self.settings.join_read_lead_ms, self.settings.join_read_idle_ms / 1000)
                if self.settings.join_read_order
                else None,
            )
            observer.watch(runner)
            self.runners[name] = runner  # closed by shutdown() from here on, joined or not
        checked = time.monotonic()
        # Everything that needs no partitions, side by side and before any node joins its group:
        # partitions handed to this worker then wait only for the take-over (a restarted member's
        # partitions, or the others' during the rebalance its joining causes).
        await gather_all(
            *(gt.start() for gt in self._global_tables.values()),
            *(runner.prepare() for runner in self.runners.values()),
            self._lag_reader.start(),
            self._open_kept_stores(instance_id),
        )
        for gt in self._global_tables.values():
            log.info(table_loaded_message(spec, gt.name, gt.partitions, len(gt)))
            self.health.watch_feed(
                table_label(spec, gt.name), gt.fresh_at, self.settings.global_table_stale_seconds
            )
        self.metrics.watch_global_tables(list(self._global_tables.values()))
        prepared = time.monotonic()
        together = await start_gate()  # a supervised member: all join together (membership.py)
        for name, runner in self.runners.items():
            runner.join(together)
            if runner.ticker is not None:
                self.metrics.schedules.nodes[name] = runner.ticker.step
            if runner.read_order is not None:
                self.metrics.read_order.nodes[name] = runner.read_order
        log.info(
            "start-up: %.2f s since the process started: imports and the topology's checks %.2f s, "
            "topics and access checked in %.2f s, global tables loaded and nodes prepared in %.2f s; "
            "joining the groups",
            prepared - _process_started(),
            began - _process_started(),
            checked - began,
            prepared - checked,
        )
        for name, runner in self.runners.items():
            task = asyncio.create_task(runner.run(), name=f"node:{name}")
            self._tasks[name] = task
            self.health.register_task(name, task)
        self._background = [
            asyncio.create_task(self.lag.run(), name="lag-collector"),
            asyncio.create_task(monitor_event_loop(self.metrics), name="event-loop-monitor"),
        ]
        # A batch allocates tens of thousands of short-lived dicts; with the default gen-0
        # threshold (700) the cyclic collector runs every few events. Startup objects are frozen
        # out of collection, and collection runs an order of magnitude less often.
        gc.freeze()
        gc.set_threshold(50_000, 20, 50)
        # /ready turns 200 once every node has taken over its first assignment (the observer)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or ``request_stop``); return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGUSR1, sigusr1.dump, self.runners.values())
            loop.add_signal_handler(signal.SIGHUP, self._sighup)  # not the default: end the process
        try:
            await self.start()
            await self._audit_start()
            if self.reloads is not None:
                self.reloads.start()
            stop_wait = asyncio.create_task(self._stop.wait())
            await asyncio.wait([stop_wait, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            failed = [name for name, t in self._tasks.items() if t.done() and t.exception() is not None]
            for name in failed:
                log.error(
                    "node %s died: %r",
                    name,
                    self._tasks[name].exception(),
                    extra={"node": name, "topic": self.spec.nodes[name].input},
                )
            if failed and not self._stop.is_set():
                self._stop_reason = f"node died: {', '.join(failed)}"
                return 1
            return 0
        finally:
            await self.shutdown()

    async def _audit_start(self) -> None:
        previous = self._marker.claim() if self._marker is not None else None
        if previous is not None:
            left = {k: previous[k] for k in ("pid", "started") if k in previous}
            await self.audit.record(WORKER_UNCLEAN_STOP, instance=self._instance, **left)
        self._stop_reason = "stop requested"
        if self._shadow is not None:
            await self.audit.record(SHADOW_START, instance=self._instance, **self._shadow)
        await self.audit.record(
            WORKER_START,
            nodes=self.node_names,
            instance=self._instance,
            processing=self.spec.processing,
        )

    async def _audit_stop(self) -> None:
        if self._stop_reason is not None:
            await self.audit.record(WORKER_STOP, reason=self._stop_reason, instance=self._instance)
            if self._marker is not None:
                self._marker.clear()
        await self.audit.close()

    def _sighup(self) -> None:
        if self.reloads is None:
            log.warning("reload refused (SIGHUP): the worker is still starting, or has no topology file")
        else:
            self.reloads.on_sighup()

    def _swapped(self, spec: TopologySpec) -> None:
        """Every node runs ``spec`` (expanded) now: a reload was applied."""
        self.spec = spec

    async def shutdown(self) -> None:
        self.health.set_ready(False, "stopping")
        if self.reloads is not None:
            await self.reloads.close()
        for name, runner in self.runners.items():
            self.health.unregister_task(name)
            runner.stop()
        pending = [t for t in self._tasks.values() if not t.done()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=self.stop_timeout_s)
            for task in still:
                log.warning(
                    "%s did not finish within %.0fs; cancelling", task.get_name(), self.stop_timeout_s
                )
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        # side by side: every node leaves its group as soon as its own last batch has landed
        await asyncio.gather(*(r.close() for r in self.runners.values()), return_exceptions=True)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._lag_reader is not None:
            with contextlib.suppress(Exception):
                await self._lag_reader.stop()
        for gt in self._global_tables.values():
            with contextlib.suppress(Exception):
                await gt.stop()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.stop()
        await self._audit_stop()
        if self._slot is not None:
            self._slot.release()
