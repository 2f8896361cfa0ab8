"""A test double of the step context (no Kafka) and an in-memory table, for step unit tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stream_orch.codecs import SchemaRegistry
from stream_orch.steps.base import Event
from stream_orch.topology.models import TopologySpec

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = SchemaRegistry(REPO / "schemas")


class MemoryTable:
    """The Table protocol over dicts, one per partition (``global_`` ignores the partition)."""

    def __init__(self, name: str = "t", global_: bool = False) -> None:
        self.name = name
        self.global_ = global_
        self.data: dict[int, dict[str, Any]] = {}
        self.writes = 0

    def _part(self, partition: int) -> dict[str, Any]:
        return self.data.setdefault(-1 if self.global_ else partition, {})

    def get(self, key: str, partition: int, default: Any = None) -> Any:
        return self._part(partition).get(key, default)

    def set(self, key: str, value: Any, partition: int) -> None:
        self.writes += 1
        self._part(partition)[key] = value

    def delete(self, key: str, partition: int) -> None:
        self._part(partition).pop(key, None)

    def drop(self, key: str, partition: int) -> None:
        self._part(partition).pop(key, None)

    def scan(self, partition: int, start: str, end: str) -> Iterator[tuple[str, Any]]:
        return iter([(k, v) for k, v in self._part(partition).items() if start <= k < end])

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        return iter(list(self._part(partition).items()))


class FakeContext:
    """Records what steps hand it: rejected, retried and dropped events with their reasons."""

    def __init__(self, tables: dict[str, MemoryTable] | None = None, constants: dict | None = None) -> None:
        self.topology = "test"
        self.node = "node"
        self.constants = constants or {}
        self.tables = tables if tables is not None else {}
        self.rejected: list[tuple[Event, str, BaseException | None]] = []
        self.retried: list[tuple[Event, str, BaseException | None]] = []
        self.dropped: list[tuple[Event, str]] = []

    def table(self, name: str) -> MemoryTable:
        if name not in self.tables:
            self.tables[name] = MemoryTable(name)
        return self.tables[name]

    def reject(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.rejected.append((event, reason, error))

    def retry(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.retried.append((event, reason, error))

    def drop(self, event: Event, why: str) -> None:
        self.dropped.append((event, why))

    @property
    def reject_reasons(self) -> list[str]:
        return [r for _, r, _ in self.rejected]

    @property
    def retry_reasons(self) -> list[str]:
        return [r for _, r, _ in self.retried]

    @property
    def drop_reasons(self) -> list[str]:
        return [w for _, w in self.dropped]


def events(*records: dict[str, Any], partition: int = 0) -> list[Event]:
    return [
        Event(value=copy.deepcopy(r), partition=partition, offset=i, topic="in")
        for i, r in enumerate(records)
    ]


async def run_step(
    step: Any, records: list[dict[str, Any]], ctx: FakeContext | None = None, partition: int = 0
):
    """Run one batch; returns (output values, ctx)."""
    ctx = ctx or FakeContext()
    out = await step.run(events(*records, partition=partition), ctx)
    return [e.value for e in out], ctx


def topology(**overrides: Any) -> TopologySpec:
    """A minimal topology with the fraud constants, a transactions topic and one node."""
    spec: dict[str, Any] = {
        "topology": "t",
        "constants": {
            "rates_to_eur": {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05, "JPY": 0.0062},
        },
        "topics": {"transactions": {"schema": "transaction"}, "out": {}},
        "nodes": {"n": {"input": "transactions", "routes": [{"to": "out"}]}},
    }
    spec.update(overrides)
    return TopologySpec.model_validate(spec)


def build(step_spec: dict[str, Any], topo: TopologySpec | None = None) -> Any:
    from pydantic import TypeAdapter

    from stream_orch.steps.registry import build_step
    from stream_orch.topology.models import StepSpec

    model = TypeAdapter(StepSpec).validate_python(step_spec)
    return build_step(model, topology_spec=topo or topology(), schemas=SCHEMAS, node_name="n")


def txn(**fields: Any) -> dict[str, Any]:
    """A valid harmonised transaction, with overrides."""
    record = {
        "txn_id": "t-1",
        "account_id": "A-1",
        "customer_id": "C-000123",
        "amount": 120.0,
        "currency": "EUR",
        "merchant_id": "M-1",
        "channel": "card_present",
        "country": "DE",
        "ts": 1_700_000_000_000,
    }
    record.update(fields)
    return {k: v for k, v in record.items() if v is not ...}
