"""Issue 19, item 5, with a real worker: a python step's module comes from the topology's own
folder (no PYTHONPATH needed), and `stream-orch run` refuses one from anywhere else before
anything runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.topology_harness import BOOTSTRAP, REPO, WorkerProcess, collect, produce_raw, wait_for_group

pytestmark = pytest.mark.integration

TOPOLOGY = """\
topology: udf_{suffix}
topics:
  {inp}: {{partitions: 2}}
  {out}: {{partitions: 2}}
nodes:
  n:
    input: {inp}
    steps:
      - step: python
        function: {function}
    routes:
      - to: {out}
    errors: {{dlq: {inp}.dlq}}
"""


async def delete_topics(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if gone := [n for n in names if n in existing]:
            await admin.delete_topics(gone)
    finally:
        await admin.close()


async def test_the_worker_loads_a_function_from_the_topology_s_folder(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    inp, out = f"udf.in.{suffix}", f"udf.out.{suffix}"
    (tmp_path / f"udfs_{suffix}.py").write_text("def tag(record):\n    return {**record, 'tagged': True}\n")
    path = tmp_path / "udf.yaml"
    path.write_text(TOPOLOGY.format(suffix=suffix, inp=inp, out=out, function=f"udfs_{suffix}:tag"))
    worker = WorkerProcess(path, tmp_path / "worker.log")
    worker.env.pop("PYTHONPATH", None)  # the module is found through the topology's folder alone
    try:
        worker.start()
        await wait_for_group(f"udf_{suffix}.n", timeout=60)
        await produce_raw(inp, [(b"k%d" % i, orjson.dumps({"n": i})) for i in range(3)])
        seen = await collect([out], lambda got: len(got[out]) >= 3, timeout=60)
        values = sorted((orjson.loads(r.value) for r in seen[out]), key=lambda v: v["n"])
        assert values == [{"n": i, "tagged": True} for i in range(3)], worker.log()
    finally:
        worker.stop()
        await delete_topics([inp, out, f"{inp}.dlq"])


async def test_run_refuses_a_standard_library_callable_before_it_runs(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    inp, out = f"udf.in.{suffix}", f"udf.out.{suffix}"
    path = tmp_path / "udf.yaml"
    path.write_text(TOPOLOGY.format(suffix=suffix, inp=inp, out=out, function="subprocess:run"))
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "stream_orch.cli.main", "--bootstrap-servers", BOOTSTRAP,
             "--metrics-port", "0", "run", str(path), "--schemas", str(REPO / "schemas")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        errors = [line for line in result.stderr.splitlines() if "warning:" not in line]
        assert len(errors) == 1, result.stderr
        where = f"{path}:10: node `n`, step python: `subprocess:run`: module `subprocess` is not in "
        assert errors[0].startswith(where), errors[0]
        assert "Traceback" not in result.stderr
    finally:
        await delete_topics([inp, out, f"{inp}.dlq"])  # none should exist; nothing is left either way
