"""Window steps that emit (issue 13, item 1) against the real broker, with real worker processes.

The references are computed here from the input as the broker partitioned it (the coordinates
``produce_bulk`` returns), from the definitions: a record is in window [s, s + size) unless its
partition's watermark (greatest event time read so far, this record included) had already
reached s + size + grace; a window is emitted once its partition's watermark reaches that close
time. Sessions are checked against an offline sessionisation of each key's times (gap 60 s) with
a grace that no record's disorder exceeds. Figures of the kill -9 runs go to the reliability
results (tests/reliability_report.py).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML

from stream_orch.runtime.output import murmur2
from tests import reliability_harness as rh
from tests.topology_harness import headers_of, wait_for_group

pytestmark = pytest.mark.integration

M = 60_000
T0 = 1_700_000_040_000  # a minute boundary
PARTITIONS = 3
FAR = T0 + 10**9  # a flush record's time: closes every window of its partition


def topology(tmp_path: Path, processing: str, nodes: list[str]) -> tuple[Path, dict[str, str], str]:
    suffix = uuid.uuid4().hex[:8]
    name = f"windows_{suffix}"
    t = {n: f"{n}.{suffix}" for n in ("clicks", "clicks.dlq", "tumbling", "hopping", "sessions")}
    steps = {
        "tumbling": {"kind": "tumbling", "size": "1m", "grace": "30s", "late": "dlq"},
        "hopping": {"kind": "hopping", "size": "5m", "advance": "1m", "grace": "30s"},
        "sessions": {"kind": "session", "gap": "60s", "grace": "9m", "function": "collect", "field": "i"},
    }
    doc: dict[str, Any] = {
        "topology": name,
        "processing": processing,
        "topics": {
            t["clicks"]: {"partitions": PARTITIONS, "key": "merchant_id"},
            t["clicks.dlq"]: {"partitions": PARTITIONS},
            **{t[n]: {"partitions": PARTITIONS, "key": "merchant_id"} for n in nodes},
        },
        "tables": {f"{n}_state": {} for n in nodes},
        "nodes": {
            n: {
                "input": t["clicks"],
                "batch_size": 300,
                "steps": [
                    {"step": "window", "table": f"{n}_state", "key": "merchant_id", "as": "n", **steps[n]}
                ],
                "routes": [{"to": t[n]}],
                "errors": {"dlq": t["clicks.dlq"]},
            }
            for n in nodes
        },
    }
    path = tmp_path / "windows.yaml"
    with path.open("w") as fh:
        YAML().dump(doc, fh)
    return path, t, name


def clicks(n: int, seed: int, merchants: int = 20) -> list[dict[str, Any]]:
    """Records moving forward ~1 s apart; every 9th up to 3 min behind and every 45th up to 8 min
    (inside and beyond the 30 s grace of tumbling and hopping, inside the sessions' 9 min)."""
    rng = random.Random(seed)
    out, now = [], T0
    for i in range(n):
        now += rng.randrange(0, 2000)
        ts = now - rng.randrange(0, 480_000 if i % 45 == 0 else 180_000) if i % 9 == 0 else now
        out.append({"merchant_id": f"M-{rng.randrange(merchants):03d}", "ts": ts, "i": i})
    return out


def flush_keys() -> list[bytes]:
    """One key per partition (Kafka's default partitioner), for the records that close everything."""
    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < PARTITIONS:
        key = f"FLUSH-{i}".encode()
        keys.setdefault((murmur2(key) & 0x7FFFFFFF) % PARTITIONS, key)
        i += 1
    return list(keys.values())


def as_input(records: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(r["merchant_id"].encode(), orjson.dumps(r)) for r in records]


def by_partition(records: list[dict[str, Any]], coords: list[tuple[int, int]]) -> dict[int, list[dict]]:
    parts: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    for r, (p, offset) in zip(records, coords, strict=True):
        parts[p].append((offset, r))
    return {p: [r for _, r in sorted(rs, key=lambda x: x[0])] for p, rs in parts.items()}


def reference_fixed(parts: dict[int, list[dict]], size: int, advance: int, grace: int):
    """({(merchant, window_start): count} of the windows closed, late records)."""
    emitted: Counter[tuple[str, int]] = Counter()
    late = 0
    for records in parts.values():
        members: Counter[tuple[str, int]] = Counter()
        watermark = -1
        for r in records:
            t = r["ts"]
            watermark = max(watermark, t)
            entered = False
            for s in range(t - t % advance, t - size, -advance):
                if s >= 0 and s + size + grace > watermark:
                    members[(r["merchant_id"], s)] += 1
                    entered = True
            late += not entered
        for (k, s), n in members.items():
            if s + size + grace <= watermark:
                emitted[(k, s)] = n
    return dict(emitted), late


def reference_sessions(parts: dict[int, list[dict]], gap: int, grace: int) -> dict[tuple[str, int], list]:
    """{(merchant, first time): [last time, sorted record indexes]} of the sessions closed."""
    out = {}
    for records in parts.values():
        watermark = max(r["ts"] for r in records)
        times: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for r in records:
            times[r["merchant_id"]].append((r["ts"], r["i"]))
        for key, pairs in times.items():
            pairs.sort()
            sessions = [[pairs[0]]]
            for pair in pairs[1:]:
                if pair[0] - sessions[-1][-1][0] > gap:  # at most gap apart: one session
                    sessions.append([])
                sessions[-1].append(pair)
            for s in sessions:
                if s[-1][0] + gap + grace < watermark:  # closed once the watermark is past
                    out[(key, s[0][0])] = [s[-1][0], sorted(i for _, i in s)]
    return out


def results(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


async def start(tmp_path: Path, path: Path, name: str, nodes: list[str]) -> Any:
    w = rh.worker(path, tmp_path / "worker.log")
    w.start()
    for n in nodes:
        await wait_for_group(f"{name}.{n}")
    return w


async def test_tumbling_hopping_and_session_windows_equal_the_reference(tmp_path: Path) -> None:
    nodes = ["tumbling", "hopping", "sessions"]
    path, t, name = topology(tmp_path, "at_least_once", nodes)
    records = clicks(6000, seed=7)
    flush = [{"merchant_id": k.decode(), "ts": FAR, "i": -1} for k in flush_keys()]
    w = await start(tmp_path, path, name, nodes)
    try:
        coords = await rh.produce_bulk(t["clicks"], as_input(records + flush))
        parts = by_partition(records + flush, coords)
        assert len(parts) == PARTITIONS
        tumbling, late_t = reference_fixed(parts, M, M, 30_000)
        hopping, late_h = reference_fixed(parts, 5 * M, M, 30_000)
        sessions = reference_sessions(parts, 60_000, 540_000)
        assert late_t > 50 and late_h > 20, "the input has records late beyond grace"
        topics = [t["tumbling"], t["hopping"], t["sessions"], t["clicks.dlq"]]
        async with rh.Watcher(topics) as watch:
            done = await watch.wait(
                lambda x: (
                    x.count(t["tumbling"]) >= len(tumbling)
                    and x.count(t["hopping"]) >= len(hopping)
                    and x.count(t["sessions"]) >= len(sessions)
                    and x.count(t["clicks.dlq"]) >= late_t
                ),
                timeout=120,
                settle=2.0,
            )
            assert done, {k: len(v) for k, v in watch.records.items()}
        got_t = results(watch.records[t["tumbling"]])
        got_h = results(watch.records[t["hopping"]])
        got_s = results(watch.records[t["sessions"]])
        assert {(r["merchant_id"], r["window_start"]): r["n"] for r in got_t} == tumbling
        assert len(got_t) == len(tumbling)
        assert {(r["merchant_id"], r["window_start"]): r["n"] for r in got_h} == hopping
        assert len(got_h) == len(hopping)
        assert all(r["window_end"] - r["window_start"] == 5 * M for r in got_h)
        # sessions closed on the gap: each is the offline session, emitted once
        assert {
            (r["merchant_id"], r["window_start"]): [r["window_end"], sorted(r["n"])] for r in got_s
        } == sessions
        assert len(got_s) == len(sessions) and len({len(v[1]) for v in sessions.values()}) > 3
        dlq = watch.records[t["clicks.dlq"]]
        reasons = Counter(headers_of(r).get("so.error.reason", "").split(":")[0] for r in dlq)
        assert reasons == {"late_event": late_t}
        rh.record_result(
            "windows: tumbling/hopping/session equal the reference (at_least_once, no crash)",
            inputs=len(records),
            tumbling_windows=len(tumbling),
            hopping_windows=len(hopping),
            sessions=len(sessions),
            late_beyond_grace_tumbling=late_t,
            late_beyond_grace_hopping=late_h,
        )
        assert w.terminate() == 0
    finally:
        w.stop()


@pytest.mark.parametrize("processing", ["exactly_once", "at_least_once"])
async def test_on_close_emits_each_window_once_across_kill_9(tmp_path: Path, processing: str) -> None:
    path, t, name = topology(tmp_path, processing, ["tumbling"])
    records = clicks(12_000, seed=13)
    flush = [{"merchant_id": k.decode(), "ts": FAR, "i": -1} for k in flush_keys()]
    out = t["tumbling"]
    w = await start(tmp_path, path, name, ["tumbling"])
    try:
        async with rh.Watcher([out, t["clicks.dlq"]]) as watch:
            producing = asyncio.create_task(rh.produce_paced(t["clicks"], as_input(records), rate=1500))
            assert await watch.wait(lambda x: x.count(out) >= 300, timeout=60), w.log()
            assert not producing.done(), "killed after the input was all produced: not mid-stream"
            w.kill()
            killed_at = time.monotonic()
            at_kill = watch.count(out)
            await watch.poll(1.0)
            w.start()
            coords = await producing
            assert None not in coords
            coords += await rh.produce_bulk(t["clicks"], as_input(flush))
            parts = by_partition(records + flush, coords)
            expected, late = reference_fixed(parts, M, M, 30_000)
            assert await watch.wait(
                lambda x: len({(r.key, r.value) for r in x.records[out]}) >= len(expected),
                timeout=120,
                settle=3.0,
            ), w.log()
            recovered_s = time.monotonic() - killed_at
        got = results(watch.records[out])
        per_window = Counter((r["merchant_id"], r["window_start"]) for r in got)
        duplicated = sum(n - 1 for n in per_window.values())
        values = {(r["merchant_id"], r["window_start"]): r["n"] for r in got}
        wrong = {k: (values.get(k), v) for k, v in expected.items() if values.get(k) != v}
        rh.record_result(
            f"windows: on_close tumbling, kill -9 under load, restart ({processing})",
            inputs=len(records),
            windows_expected=len(expected),
            windows_emitted=len(per_window),
            duplicated_windows=duplicated,
            wrong_counts=len(wrong),
            late_beyond_grace=late,
            outputs_before_kill=at_kill,
            done_after_kill_s=round(recovered_s, 1),
        )
        assert set(per_window) == set(expected), "every window emitted, nothing else"
        assert wrong == {}, list(wrong.items())[:5]
        if processing == "exactly_once":
            assert duplicated == 0, [k for k, n in per_window.items() if n > 1][:5]
        assert w.terminate() == 0
    finally:
        w.stop()
