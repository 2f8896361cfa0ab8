"""Retry tiers, the DLQ with every header, `dlq inspect`/`dlq replay` exactly once, bad input that
never stops a partition, and a slow step that does not grow memory: real broker, real worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from kafka_helpers import run_cli

from tests import reliability_harness as rh
from tests.topology_harness import headers_of, wait_for_group

pytestmark = pytest.mark.integration

FLAKY = {
    "topology": "reliability_flaky",
    "version": "2",
    "python_packages": ["tests.integration.slow_steps"],
    "topics": {"events": {"partitions": 3, "key": "id"}, "out": {"partitions": 3, "key": "id"}},
    "nodes": {
        "work": {
            "input": "events",
            "steps": [
                {
                    "step": "python",
                    "function": "tests.integration.slow_steps:flaky",
                    "retry_on": ["TransientError"],
                },
            ],
            "routes": [{"to": "out"}],
            "errors": {
                "retry": {"delays": ["300ms", "600ms", "900ms"], "on": ["TransientError"]},
                "dlq": "events.dlq",
            },
        }
    },
}

# Stateful steps before the fallible one: a retried or replayed record must not be taken for a
# duplicate of itself (its id was marked when it first passed), nor counted twice by the
# aggregate (a DLQ replay comes back with a new offset): every output says `seen: 1`.
DEDUPED_FLAKY = {
    **FLAKY,
    "tables": {"seen_ids": {}, "per_id": {}},
    "nodes": {
        "work": {
            **FLAKY["nodes"]["work"],
            "steps": [
                {"step": "dedupe", "field": "id", "table": "seen_ids", "horizon": "1h"},
                {"step": "aggregate", "table": "per_id", "key": "id", "window": "1h", "as": "seen"},
                *FLAKY["nodes"]["work"]["steps"],
            ],
        }
    },
}

DLQ_HEADERS = [
    "so.error.reason",
    "so.error.class",
    "so.error.message",
    "so.error.stacktrace",  # asked for with STREAM_ORCH_DLQ_TRACEBACKS (off by default)
    "so.error.node",
    "so.error.topology",
    "so.error.version",
    "so.error.topic",
    "so.error.partition",
    "so.error.offset",
    "so.error.timestamp",
    "so.error.attempts",
    "so.error.first_failure",
    "so.error.last_failure",
]


_topology = rh.topology_copy


async def _delete(t: dict[str, str]) -> None:
    """The topics a test created: its topology's and the retry tiers of its input."""
    await rh.delete_topics([*t.values(), *(f"{t['events']}.retry.{n}" for n in (1, 2, 3))])


def _rec(id_: str, **fields: object) -> tuple[bytes, bytes]:
    return id_.encode(), orjson.dumps({"id": id_, "ts": int(time.time() * 1000), **fields})


def _ids(records: list) -> list[str]:
    return sorted(orjson.loads(r.value)["id"] for r in records)


async def test_retry_tiers_dlq_headers_and_replay_exactly_once(tmp_path: Path) -> None:
    path, t, group = _topology(tmp_path, DEDUPED_FLAKY)
    w = rh.worker(path, tmp_path / "worker.log")  # SO_TEST_FAULT_DIR = tmp_path
    w.env["STREAM_ORCH_DLQ_TRACEBACKS"] = "true"
    (tmp_path / "broken").write_text("the downstream service is down")
    out, dlq = t["out"], t["events.dlq"]
    env = {"STREAM_ORCH_BOOTSTRAP_SERVERS": rh.bootstrap()}
    try:
        w.start()
        await wait_for_group(group)
        started = time.monotonic()
        records = [
            _rec("ok"),
            _rec("twice", fail_first=2),  # succeeds at tier 2
            _rec("thrice", fail_first=3),  # succeeds at tier 3, the last one
            _rec("down", broken=True),  # fails on every attempt: DLQ
        ]
        await rh.produce_bulk(t["events"], records)
        async with rh.Watcher([out, dlq]) as watch:
            assert await watch.wait(lambda x: x.count(out) >= 3 and x.count(dlq) >= 1, timeout=30), w.log()
            through_tiers_s = time.monotonic() - started
            assert _ids(watch.records[out]) == ["ok", "thrice", "twice"]
            assert (tmp_path / "attempts-twice").read_text() == "3"
            assert (tmp_path / "attempts-thrice").read_text() == "4"
            [dead] = watch.records[dlq]
            h = headers_of(dead)
            assert [name for name in DLQ_HEADERS if name not in h] == []
            assert dead.value == records[3][1]  # the original bytes
            assert dead.key == b"down"
            assert h["so.error.reason"] == "TransientError" and h["so.error.class"] == "TransientError"
            assert h["so.error.attempts"] == "4" and h["so.error.topic"] == t["events"]
            assert h["so.error.node"] == "work" and h["so.error.version"] == "2"
            assert "the downstream service is down" in h["so.error.message"]
            assert "slow_steps.py" in h["so.error.stacktrace"]
            assert int(h["so.error.first_failure"]) < int(h["so.error.last_failure"])

            code, summary, err = await run_cli("dlq", "inspect", dlq, env=env)
            assert code == 0, err
            assert "1 dead letters" in summary and "TransientError  1" in summary and "work  1" in summary
            code, lines, err = await run_cli("dlq", "inspect", dlq, "--records", env=env)
            assert code == 0, err
            shown = orjson.loads(lines.splitlines()[0])
            assert shown["value"] == orjson.loads(records[3][1])
            assert shown["headers"]["so.error.attempts"] == "4"

            replay = ("dlq", "replay", dlq, "--topology", str(path))  # its input is the only origin
            code, stdout, err = await run_cli(*replay, "--dry-run", env=env)
            assert code == 0 and "would publish 1" in err, err
            (tmp_path / "broken").unlink()  # the fault is fixed
            code, stdout, err = await run_cli(
                *replay, "--filter", "reason == 'TransientError' and attempts >= 4", env=env
            )
            assert code == 0 and "published 1" in stdout, stdout + err
            code, stdout, err = await run_cli(*replay, env=env)  # again: nothing
            assert code == 0 and "published 0" in stdout and "1 already replayed" in stdout, stdout
            assert await watch.wait(lambda x: x.count(out) >= 4, timeout=30, settle=3.0), w.log()
            assert _ids(watch.records[out]) == ["down", "ok", "thrice", "twice"]  # replayed exactly once
            assert {orjson.loads(r.value)["seen"] for r in watch.records[out]} == {1}, "counted twice"
            assert watch.count(dlq) == 1
        rh.record_result(
            "retry tiers, DLQ and replay",
            events_in=4,
            succeeded_through_tiers=2,
            dead_lettered=1,
            replayed_once=1,
            lost=0,
            duplicated_outputs=0,
            through_tiers_s=round(through_tiers_s, 1),
        )
        assert w.terminate() == 0
    finally:
        w.stop()
        await _delete(t)


async def test_bad_input_never_stops_a_partition(tmp_path: Path) -> None:
    """Everything on partition-pinned keys: each bad record sits before a good one on its partition."""
    path, t, group = _topology(tmp_path, FLAKY)
    w = rh.worker(path, tmp_path / "worker.log")
    out, dlq = t["out"], t["events.dlq"]
    big = orjson.dumps({"id": "big", "blob": "x" * 1_000_000})  # a 1 MB value, processed normally
    big_bad = b'{"id": "big-bad", "blob": "' + b"y" * 1_000_000  # 1 MB of malformed JSON
    bad = [
        (b"k", b"\xff\xfe not json"),  # malformed bytes
        (b"k", b'{"id": "trunc", '),  # truncated JSON
        (b"k", b"[1, 2, 3]"),  # JSON, but not an object
        (b"k", None),  # null value
        (None, orjson.dumps({"id": "nokey"})),  # null key: fine, processed
        (b"k", orjson.dumps({"id": "inflated", "inflate": 1_100_000})),  # output over the 1 MiB limit
        (b"k", big_bad),
        (b"k", big),
    ]
    try:
        w.start()
        await wait_for_group(group)
        coords = await rh.produce_bulk(t["events"], bad, max_request_size=2 * 1024 * 1024)
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=rh.bootstrap())
        await producer.start()
        try:  # unexpected headers: binary values, a null value, engine-looking names
            headers = [("weird", b"\x00\xff"), ("empty", None), ("so.retry.due", b"99999999999999")]
            await producer.send_and_wait(t["events"], orjson.dumps({"id": "hdr"}), key=b"k", headers=headers)
            await producer.send_and_wait(t["events"], orjson.dumps({"id": "after"}), key=b"k")
        finally:
            await producer.stop()
        async with rh.Watcher([out, dlq]) as watch:
            assert await watch.wait(
                lambda x: {"after", "hdr", "nokey", "big"} <= set(_ids(x.records[out])), timeout=60, settle=2
            ), w.log()
            reasons = {}
            for r in watch.records[dlq]:
                h = headers_of(r)
                reasons[(int(h["so.error.partition"]), int(h["so.error.offset"]))] = h["so.error.reason"]
            dropped_values = [headers_of(r).get("so.error.value_dropped") for r in watch.records[dlq]]
            traces = [r for r in watch.records[dlq] if "so.error.stacktrace" in headers_of(r)]
        assert _ids(watch.records[out]) == ["after", "big", "hdr", "nokey"]
        good = {big, bad[4][1]}
        expected_dlq = [c for c, (_k, v) in zip(coords, bad, strict=True) if v not in good]
        assert sorted(reasons) == sorted(expected_dlq), (reasons, coords)
        by_reason = sorted(r.split(":")[0] for r in reasons.values())
        assert "output_too_large" in by_reason and "null_value" in by_reason, by_reason
        assert all(d is None for d in dropped_values)  # the 1 MB dead letter kept its value
        assert traces == []  # not asked for (STREAM_ORCH_DLQ_TRACEBACKS)
        hdr = next(r for r in watch.records[out] if orjson.loads(r.value)["id"] == "hdr")
        h = dict(hdr.headers)
        assert h["weird"] == b"\x00\xff" and "so.retry.due" not in h  # engine names are the engine's
        rh.record_result(
            "bad input never stops a partition",
            events_in=len(bad) + 2,
            dead_lettered=len(reasons),
            with_output=4,
            lost=0,
            reasons=sorted(set(by_reason)),
        )
        assert w.terminate() == 0
    finally:
        w.stop()
        await _delete(t)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def test_slow_step_does_not_grow_memory(tmp_path: Path) -> None:
    """2 ms per record downstream (500 records/s) against 20k records of 1 KB produced at once:
    the worker reads one batch at a time, so its memory stays flat while the lag is large."""
    doc = {
        "topology": "reliability_slow",
        "version": "1",
        "python_packages": ["tests.integration.slow_steps"],
        "topics": {"events": {"partitions": 3}, "out": {"partitions": 3}},
        "nodes": {
            "work": {
                "input": "events",
                "batch_size": 500,
                "steps": [
                    {"step": "python", "function": "tests.integration.slow_steps:sleepy", "batch": True}
                ],
                "routes": [{"to": "out"}],
                "errors": {"dlq": "events.dlq"},
            }
        },
    }
    path, t, group = _topology(tmp_path, doc)
    w = rh.worker(path, tmp_path / "worker.log")
    pad = "p" * 1000
    records = [(str(i).encode(), orjson.dumps({"id": str(i), "pad": pad})) for i in range(20_000)]
    try:
        w.start("--stop-timeout", "10")
        await wait_for_group(group)
        await asyncio.sleep(1.0)
        before = _rss_mb(w.proc.pid)
        await rh.produce_bulk(t["events"], records)
        samples = []
        for _ in range(16):
            await asyncio.sleep(1.0)
            samples.append(_rss_mb(w.proc.pid))
        async with rh.Watcher([t["out"]]) as watch:
            await watch.poll(1.0)
            processed = watch.count(t["out"])
        w.proc.send_signal(15)
        sent = time.monotonic()
        code = await asyncio.to_thread(w.proc.wait, 20)
        stop_s = time.monotonic() - sent
        growth = max(samples) - before
        rh.record_result(
            "slow step (2 ms/record) under 20k records",
            events_in=len(records),
            processed_in_16s=processed,
            rss_before_mb=round(before, 1),
            rss_max_mb=round(max(samples), 1),
            rss_growth_mb=round(growth, 1),
            sigterm_exit=code,
            stop_s=round(stop_s, 2),
        )
        assert processed < len(records) * 0.8, "the step was not the bottleneck; nothing was tested"
        assert growth < 80, samples  # 20 MB of input is waiting; a worker that buffered it would show
        assert code == 0 and stop_s < 10, w.log()
    finally:
        w.stop()
        await _delete(t)
