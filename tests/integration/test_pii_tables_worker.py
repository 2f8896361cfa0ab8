"""A real worker's /tables on the real broker masks the fields its topics' schemas declare `"pii"`,
with no `mask` step in the topology (issue 24: the schema is the one source of truth of PII)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from stream_orch.runtime.inspect import MASKED
from stream_orch.steps.join import SEP
from tests.integration.test_http_tables_worker import _delete_topics, _get, _until_ready
from tests.topology_harness import WorkerProcess, free_port, produce_raw

pytestmark = pytest.mark.integration

TOKEN = "integration-token-" + uuid.uuid4().hex

TOPOLOGY = """\
topology: pii_tables_{s}
topics:
  orders.{s}: {{partitions: 1, key: order_id, schema: order}}
  shipments.{s}: {{partitions: 1, key: order_id}}
  orders.shipped.{s}: {{partitions: 1, key: order_id}}
tables:
  awaiting_shipment: {{description: Orders and shipments waiting for their counterpart.}}
nodes:
  ship:
    input: orders.{s}
    steps:
      - {{step: join, topic: shipments.{s}, table: awaiting_shipment, key: order_id, after: 1h}}
    routes:
      - to: orders.shipped.{s}
    errors:
      dlq: orders.dlq.{s}
"""

SCHEMAS = {
    "order": [
        {"name": "order_id", "type": "string"},
        {"name": "email", "type": ["null", "string"], "default": None, "pii": "direct"},
        {"name": "amount", "type": "double"},
        {"name": "ts", "type": "long"},
    ],
}


async def test_table_values_mask_the_schemas_pii_fields(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path = tmp_path / "pii_tables.yaml"
    path.write_text(TOPOLOGY.format(s=suffix))
    (tmp_path / "schemas").mkdir()
    for name, fields in SCHEMAS.items():
        schema = {"type": "record", "name": name.title(), "fields": fields}
        (tmp_path / "schemas" / f"{name}.avsc").write_text(json.dumps(schema))
    worker = WorkerProcess(
        path, tmp_path / "worker.log", env={"STREAM_ORCH_HTTP_TOKEN": TOKEN}, metrics_port=free_port()
    )
    try:
        worker.start("--serve-tables", "--schemas", str(tmp_path / "schemas"))  # the last --schemas wins
        await _until_ready(worker.url, worker)
        ts = int(time.time() * 1000)
        order = {"order_id": "O-1", "email": "ann@example.com", "amount": 12.5, "ts": ts}
        await produce_raw(f"orders.{suffix}", [(b"O-1", orjson.dumps(order))])
        entry = f"L{SEP}O-1{SEP}{ts:015d}{SEP}{0:015d}"  # the join's buffered left record, offset 0
        url = f"{worker.url}/tables/awaiting_shipment/{quote(entry, safe='')}"
        deadline = time.monotonic() + 60
        while (found := await _get(url, TOKEN))[0] != 200:
            assert time.monotonic() < deadline, (found, worker.log())
            await asyncio.sleep(0.5)
        assert found[1]["value"]["v"] == {**order, "email": MASKED}, found
        assert b"ann@example.com" not in orjson.dumps(found[1])
        assert worker.terminate() == 0
    finally:
        worker.stop()
        await _delete_topics(suffix)
