"""``stream-orch ingest`` against the real broker, run as the CLI in a subprocess.

Every check compares the topic (read_committed) with a reference computed from the input
(:mod:`benchmarks.ingest_data`): the count of records, the distinct keys (the row ids: a
duplicate or a loss changes them), and a checksum of the values; and the rejects file line for
line with the bad rows' lines and reasons.

The tests use 200,000-row CSVs (1 % bad, multi-line quoted fields, CRLF) to stay well under 90 s
each on a shared 2-core machine; the 1 M-row run is the benchmark's (benchmarks/ingest_bench.py),
which checks the same reference.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson
import pytest
from kafka_helpers import consume_committed, create_topic, run_cli, stream_orch_cmd
from reliability_harness import delete_topics

from benchmarks.ingest_data import SCHEMA, Reference, value_checksum, write_csv
from stream_orch.tools.ingest.ledger import ledger_topic

ROWS = 200_000
EXIT_REJECTED = 4


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "ingest_payment.avsc"
    path.write_bytes(orjson.dumps(SCHEMA))
    return path


@pytest.fixture
async def topic(kafka_bootstrap: str, make_topic):  # type: ignore[no-untyped-def]
    name = make_topic("")
    await create_topic(kafka_bootstrap, name, partitions=3)
    yield name
    await delete_topics([name, ledger_topic(name)], server=kafka_bootstrap)


def ingest_args(path: Path, topic: str, schema: Path, *extra: str) -> list[str]:
    return ["ingest", str(path), "--topic", topic, "--format", "csv", "--schema", str(schema),
            "--key-field", "id", "--bootstrap-servers", os.environ.get("STREAM_ORCH_BOOTSTRAP_SERVERS",
            "127.0.0.1:9092"), *extra]  # fmt: skip


async def assert_exactly_once(bootstrap: str, topic: str, ref: Reference, ids: set[int]) -> None:
    records = await consume_committed(bootstrap, topic, timeout=80)
    keys = [int(k) for k, _ in records]
    lost = ids - set(keys)
    duplicated = len(keys) - len(set(keys))
    assert (len(lost), duplicated) == (0, 0), f"{len(lost)} rows lost, {duplicated} published twice"
    assert set(keys) == ids
    assert value_checksum(v for _, v in records) == (ref.good, ref.checksum)


def expected_rejects(path: Path, ref: Reference) -> str:
    return "".join(f"{path}:{line}: {reason}\n" for line, reason in ref.rejects)


async def test_rejects_exact_every_good_row_once_and_a_rerun_publishes_nothing(
    kafka_bootstrap: str, topic: str, schema_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "payments.csv"
    ref = write_csv(path, ROWS)
    code, out, err = await run_cli(*ingest_args(path, topic, schema_file), timeout=80)
    assert code == EXIT_REJECTED, err
    assert f"{ref.good} rows published" in out and f"{len(ref.rejects)} rejected" in out
    assert (tmp_path / "payments.csv.rejects").read_text() == expected_rejects(path, ref)
    await assert_exactly_once(kafka_bootstrap, topic, ref, ref.good_ids())

    code, out, err = await run_cli(*ingest_args(path, topic, schema_file), timeout=60)
    assert code == 0, err
    assert "already ingested" in out and "nothing published" in out
    await assert_exactly_once(kafka_bootstrap, topic, ref, ref.good_ids())


async def test_kill_9_mid_file_then_rerun_publishes_every_good_row_once(
    kafka_bootstrap: str, topic: str, schema_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "payments.csv"
    ref = write_csv(path, ROWS)
    cmd = [*stream_orch_cmd(), *ingest_args(path, topic, schema_file, "--chunk", "2000")]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    # kill -9 once the topic holds a good part of the file, committed or not
    seen = 0
    for _ in range(600):
        await asyncio.sleep(0.1)
        seen = await _end_offsets(kafka_bootstrap, topic)
        if seen >= ROWS // 4 or proc.returncode is not None:
            break
    assert proc.returncode is None, "the ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert 0 < seen < ref.good

    code, out, err = await run_cli(*ingest_args(path, topic, schema_file), timeout=80)
    assert code == EXIT_REJECTED, err
    resumed = int(out.split("resumed after row ")[1].split(")")[0])
    assert 0 < resumed < ROWS, out  # the second run did not start over
    assert (tmp_path / "payments.csv.rejects").read_text() == expected_rejects(path, ref)
    await assert_exactly_once(kafka_bootstrap, topic, ref, ref.good_ids())


async def _end_offsets(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def test_watch_ingests_each_file_once_across_a_restart(
    kafka_bootstrap: str, topic: str, schema_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    staging = tmp_path / "staging"
    staging.mkdir()
    refs: dict[str, Reference] = {}
    ids: set[int] = set()

    def drop(name: str, start: int, renamed: bool) -> None:
        target = folder / name
        ref = write_csv(staging / name if renamed else target, 5_000, start=start)
        if renamed:
            (staging / name).rename(target)
        refs[name] = ref
        ids.update(ref.good_ids(start))

    watcher = await _start_watcher(folder, topic, schema_file)
    try:
        drop("a.csv", 0, renamed=True)
        drop("b.csv", 100_000, renamed=False)  # written in place: taken once it settles
        lines = await _read_summaries(watcher, 2)
        assert all("rows published" in line for line in lines), lines
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert (
            await asyncio.wait_for(watcher.wait(), 30) == EXIT_REJECTED
        )  # stopped cleanly; rows were rejected
    drop("c.csv", 200_000, renamed=True)  # while the watcher is down

    watcher = await _start_watcher(folder, topic, schema_file)
    try:
        lines = await _read_summaries(watcher, 3)
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert (
            await asyncio.wait_for(watcher.wait(), 30) == EXIT_REJECTED
        )  # stopped cleanly; rows were rejected
    by_file = {Path(line.split(":")[0]).name: line for line in lines}
    assert "already ingested" in by_file["a.csv"] and "already ingested" in by_file["b.csv"]
    assert f"{refs['c.csv'].good} rows published" in by_file["c.csv"]

    merged = Reference(rows=0)
    merged.good = sum(r.good for r in refs.values())
    merged.checksum = sum(r.checksum for r in refs.values()) % 2**64
    await assert_exactly_once(kafka_bootstrap, topic, merged, ids)
    for name, ref in refs.items():
        assert (folder / f"{name}.rejects").read_text() == expected_rejects(folder / name, ref)


async def _start_watcher(folder: Path, topic: str, schema: Path) -> asyncio.subprocess.Process:
    args = ["ingest", "--topic", topic, "--format", "csv", "--schema", str(schema), "--key-field", "id",
            "--watch", str(folder), "--settle", "0.5"]  # fmt: skip
    return await asyncio.create_subprocess_exec(
        *stream_orch_cmd(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )


async def _read_summaries(proc: asyncio.subprocess.Process, count: int) -> list[str]:
    """The watcher's first ``count`` summary lines (one per file), within 60 s."""
    assert proc.stdout is not None
    lines = []
    while len(lines) < count:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, f"the watcher ended after {lines}"
        lines.append(line.decode().strip())
    return lines
