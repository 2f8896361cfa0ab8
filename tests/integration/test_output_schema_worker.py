"""A real worker (``stream-orch run``) against the real broker: an output that its topic's schema
cannot carry is dead-lettered as ``output_schema_violation`` and never published, an int where the
schema says double goes out as a double (issue 12, item 1); and the first start of a new topology,
which creates every topic, logs no ERROR (issue 12, item 5: quiet start)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import orjson
import pytest

from tests.topology_harness import (
    REPO,
    WorkerProcess,
    collect,
    delete_topics_with,
    free_port,
    headers_of,
    isolated_topology,
    produce_raw,
    scrape,
    wait_for_group,
)

pytestmark = pytest.mark.integration

READING = {
    "type": "record",
    "name": "Reading",
    "fields": [
        {"name": "sensor", "type": "string"},
        {"name": "value", "type": "double"},
        {"name": "count", "type": "long"},
        {"name": "unit", "type": {"type": "enum", "name": "Unit", "symbols": ["C", "F"]}},
    ],
}

TOPOLOGY = """
topology: outschema_{s}
topics:
  readings.in.{s}: {{partitions: 2, key: sensor}}
  readings.out.{s}: {{partitions: 2, key: sensor, schema: reading}}
nodes:
  forward:
    input: readings.in.{s}
    routes:
      - to:
          - topic: readings.out.{s}
            set: {{unit: "'C' if sensor != 'f' else 'F'"}}
    errors: {{dlq: readings.dlq.{s}}}
"""


async def test_an_output_its_schema_cannot_carry_is_dead_lettered_and_the_start_is_quiet(
    tmp_path: Path,
) -> None:
    s = uuid.uuid4().hex[:8]
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "reading.avsc").write_text(json.dumps(READING))
    topology = tmp_path / "outschema.yaml"
    topology.write_text(TOPOLOGY.format(s=s))
    out, dlq = f"readings.out.{s}", f"readings.dlq.{s}"
    worker = WorkerProcess(topology, tmp_path / "worker.log", metrics_port=free_port())
    worker.start("--schemas", str(schemas))  # the last --schemas wins over the harness's
    try:
        await wait_for_group(f"outschema_{s}.forward")
        inputs = [
            {"sensor": "a", "value": 21, "count": 1},  # int -> double
            {"sensor": "b", "value": "hot", "count": 1},  # cannot be a double: DLQ
            {"sensor": "c", "value": 1.5, "count": 2.0},  # integral float -> long
            {"sensor": "d", "value": 1.5},  # required `count` missing: DLQ
        ]
        await produce_raw(f"readings.in.{s}", [(r["sensor"].encode(), orjson.dumps(r)) for r in inputs])
        seen = await collect([out, dlq], lambda got: len(got[out]) >= 2 and len(got[dlq]) >= 2, settle=2.0)
        published = sorted((orjson.loads(r.value) for r in seen[out]), key=lambda v: v["sensor"])
        assert [r.value for r in seen[out] if orjson.loads(r.value)["sensor"] == "a"] == [
            b'{"sensor":"a","value":21.0,"count":1,"unit":"C"}'
        ]
        assert published == [
            {"sensor": "a", "value": 21.0, "count": 1, "unit": "C"},
            {"sensor": "c", "value": 1.5, "count": 2, "unit": "C"},
        ]
        letters = {r.key: headers_of(r) for r in seen[dlq]}
        assert letters[b"b"]["so.error.reason"] == (
            f"output_schema_violation: {out}.value: expected double, got str 'hot'"
        )
        assert letters[b"b"]["so.error.class"] == "OutputSchemaViolation"
        assert (
            letters[b"d"]["so.error.reason"]
            == f"output_schema_violation: {out}.count: missing (expected long)"
        )
        assert {r.value for r in seen[dlq]} == {orjson.dumps(inputs[1]), orjson.dumps(inputs[3])}
        # the metric label is the reason's code, never the field text
        samples: dict = {}
        for _ in range(20):
            samples = await scrape(worker.url)
            if any(name == "stream_orch_dead_lettered_total" for name, _ in samples):
                break
            await asyncio.sleep(0.5)
        dead = {
            labels: v for (name, labels), v in samples.items() if name == "stream_orch_dead_lettered_total"
        }
        # ... and the step label says where: at the routes
        assert dead == {(("node", "forward"), ("reason", "output_schema_violation"), ("step", "route")): 2.0}
    finally:
        code = worker.terminate() if worker.proc and worker.proc.poll() is None else worker.proc.returncode
        await delete_topics_with(s)
    log = worker.log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    # quiet start: creating six topics and starting on them reports no error
    assert not re.findall(r"^.*\bERROR\b.*$", log, re.MULTILINE), log[-3000:]


NON_FINITE = """
topology: nonfinite_{s}
constants: {{factor: 1.0e300}}
topics:
  readings.in.{s}: {{partitions: 1, key: sensor}}
  readings.out.{s}: {{partitions: 1, key: sensor, schema: reading}}
nodes:
  forward:
    input: readings.in.{s}
    steps:
      - step: derive
        fields: {{doubled: "value * 2"}}
    routes:
      - to:
          - topic: readings.out.{s}
            set: {{value: "value * factor", unit: "'C'"}}
    errors: {{dlq: readings.dlq.{s}}}
"""


async def test_a_non_finite_number_is_dead_lettered_with_its_reason_and_bytes_never_written_as_null(
    tmp_path: Path,
) -> None:
    """An overflow to inf in a route's `set` went out as `"value":null` in a required double;
    one in a derive went on as a value (issue 19, item 4)."""
    s = uuid.uuid4().hex[:8]
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "reading.avsc").write_text(json.dumps(READING))
    topology = tmp_path / "nonfinite.yaml"
    topology.write_text(NON_FINITE.format(s=s))
    out, dlq = f"readings.out.{s}", f"readings.dlq.{s}"
    worker = WorkerProcess(topology, tmp_path / "worker.log", metrics_port=free_port())
    worker.start("--schemas", str(schemas))
    try:
        await wait_for_group(f"nonfinite_{s}.forward")
        inputs = [
            {"sensor": "a", "value": 2.0, "count": 1},  # 2e300: written
            {"sensor": "b", "value": 1e10, "count": 1},  # set: 1e310 is inf
            {"sensor": "c", "value": 1e308, "count": 1},  # derive: 2e308 is inf
        ]
        raw = [(r["sensor"].encode(), orjson.dumps(r)) for r in inputs]
        await produce_raw(f"readings.in.{s}", raw)
        seen = await collect([out, dlq], lambda got: len(got[out]) >= 1 and len(got[dlq]) >= 2, settle=2.0)
        assert [r.value for r in seen[out]] == [b'{"sensor":"a","count":1,"value":2e+300,"unit":"C"}']
        letters = {r.key: (headers_of(r), r.value) for r in seen[dlq]}
        assert letters[b"b"][0]["so.error.reason"] == (
            f"output_schema_violation: {out}.value: inf is not a finite number"
        )
        assert letters[b"c"][0]["so.error.reason"] == (
            "expression_error: doubled: the result is not a finite number (inf) in `value * 2`"
        )
        assert {k: v for k, (_, v) in letters.items()} == {b"b": raw[1][1], b"c": raw[2][1]}  # its bytes
    finally:
        code = worker.terminate() if worker.proc and worker.proc.poll() is None else worker.proc.returncode
        await delete_topics_with(s)
    assert code == 0, worker.log_path.read_text(errors="replace")[-3000:]


async def test_the_first_start_of_the_fraud_topology_logs_no_error(tmp_path: Path) -> None:
    """Every topic new (retry tiers, changelogs, a global table's feed): before the start waited
    for their leaders, aiokafka logged `Topic ... retry.1 not found in cluster metadata` or a
    fetcher's NotLeaderForPartitionError at ERROR while they appeared."""
    suffix = uuid.uuid4().hex[:8]
    path, _ = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    worker = WorkerProcess(path, tmp_path / "worker.log").start()
    try:
        spec_name = path.read_text().split("topology: ", 1)[1].split()[0]
        await wait_for_group(f"{spec_name}.score_transactions")
    finally:
        code = worker.terminate() if worker.proc and worker.proc.poll() is None else worker.proc.returncode
        await delete_topics_with(suffix)
    log = worker.log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "global table customer_profiles loaded" in log
    assert not re.findall(r"^.*\bERROR\b.*$", log, re.MULTILINE), log[-3000:]
