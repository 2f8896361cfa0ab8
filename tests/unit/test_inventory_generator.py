"""The inventory data set (``stream-orch generate inventory``): seeded, its ground truth agrees
with a brute-force recomputation from the records it emits, and the topology run in-process on
those records (the test driver) yields exactly that truth. The topology's cases file passes, and
fails when the alert's crossing rule is changed."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_orch.cli.main import main
from stream_orch.testing import TopologyTestDriver
from stream_orch.tools.generate_inventory import DOWN, TYPES, generate_inventory

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO / "topologies" / "inventory.yaml"
CASES = REPO / "topologies" / "inventory.cases.yaml"
SCHEMAS = REPO / "schemas"
START = 1_767_225_600_000


def _id(value: Any, prefix: str, digits: int) -> str | None:
    found = "".join(re.findall(r"\d", str(value)))
    return f"{prefix}{int(found):0{digits}d}" if found else None


def _recompute(records: list) -> dict[str, Any]:
    """The topology's outcome worked out again from the published bytes alone, line by line."""
    tables: dict[str, dict[str, Any]] = {
        "inventory.stores": {},
        "inventory.products": {},
        "inventory.substitutes": {},
    }
    for r in records:
        if r.topic in tables:
            tables[r.topic][r.key.decode()] = orjson.loads(r.value)
    stores, products, subs = tables.values()
    seen: set[str] = set()
    stock: dict[str, int] = {}
    alerts: dict[str, list[dict[str, Any]]] = {}
    dlq: Counter[str] = Counter()
    counted = 0
    for r in records:
        if r.topic != "inventory.movements":
            continue
        try:
            v = orjson.loads(r.value)
        except orjson.JSONDecodeError:
            dlq["malformed_json"] += 1
            continue
        if v.get("product_id") is None:
            dlq["missing_field"] += 1
            continue
        kind = str(v["type"]).strip().lower()
        qty = v["qty"]
        if kind not in TYPES or not str(qty).lstrip("-").isdigit() or int(qty) <= 0:
            dlq["invalid_field"] += 1
            continue
        store, product = _id(v["store_id"], "S-", 3), _id(v["product_id"], "P-", 5)
        if v["movement_id"] in seen:
            continue
        if store not in stores:
            dlq["unknown_store"] += 1
            continue
        if product not in products:
            dlq["unknown_product"] += 1
            continue
        seen.add(v["movement_id"])
        key = f"{store}:{product}"
        region = stores[store]["region"]
        point = products[product]["region_points"].get(region, products[product]["reorder_point"])
        before = stock.get(key, 0)
        after = stock[key] = before + (-int(qty) if kind in DOWN else int(qty))
        counted += 1
        if before >= point > after:
            ts = int(v["ts"])
            alerts.setdefault(key, []).append({
                "region": region, "store_id": store, "product_id": product, "movement_id": v["movement_id"],
                "level": after, "level_before": before, "reorder_point": point,
                "substitutes": subs.get(product, {}).get("substitutes", []),
                "ts": ts * 1000 if ts < 10**11 else ts,
            })  # fmt: skip
    reorder = []  # a tick after the last line: the final levels below their point
    for key, level in sorted(stock.items()):
        store, product = key.split(":")
        region, row = stores[store]["region"], products[product]
        point = row["region_points"].get(region, row["reorder_point"])
        short = point - level
        if short > 0:
            qty = row["reorder_qty"] if row["reorder_qty"] > short else short
            alike = subs.get(product, {}).get("substitutes", [])
            in_stock = [s for s in alike if f"{store}:{s}" in stock and stock[f"{store}:{s}"] >= 1]
            reorder.append({"region": region, "store_id": store, "product_id": product, "stock_key": key,
                            "level": level, "reorder_point": point, "qty": qty,
                            "substitutes_in_stock": in_stock})  # fmt: skip
    return {"stock": dict(sorted(stock.items())), "alerts": dict(sorted(alerts.items())),
            "dlq": dict(sorted(dlq.items())), "counted": counted, "reorder": reorder}  # fmt: skip


def test_the_same_seed_gives_the_same_records_and_another_seed_others() -> None:
    a, plan_a = generate_inventory(600, seed=3, start_ms=START)
    b, plan_b = generate_inventory(600, seed=3, start_ms=START)
    c, _ = generate_inventory(600, seed=4, start_ms=START)
    assert [(r.topic, r.key, r.value) for r in a] == [(r.topic, r.key, r.value) for r in b]
    assert plan_a.truth() == plan_b.truth()
    assert [r.value for r in a] != [r.value for r in c]


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_the_truth_agrees_with_a_recomputation_from_the_records(seed: int) -> None:
    records, plan = generate_inventory(2000, seed=seed, start_ms=START)
    assert _recompute(records) == plan.truth()
    # the data set holds what it claims: every edge case occurs
    assert plan.duplicates > 0 and plan.alert_count() > 20
    assert set(plan.dlq) == {
        "malformed_json",
        "invalid_field",
        "missing_field",
        "unknown_store",
        "unknown_product",
    }
    assert set(plan.kinds) == set(TYPES)
    assert len(plan.reorder) > 5  # a tick after the last line has a list to make
    assert any(r["substitutes_in_stock"] for r in plan.reorder)
    assert any(level < 0 for level in plan.stock.values())
    assert not any(key.endswith(":P-00020") for key in plan.stock)  # the product never stocked
    sloppy = [
        orjson.loads(r.value) for r in records if r.topic == "inventory.movements" and b'"qty":"' in r.value
    ]
    assert sloppy, "no line spelled the way sloppy producers do"
    assert plan.lines == sum(r.topic == "inventory.movements" for r in records) == 2000


def test_the_topology_run_in_process_yields_the_ground_truth() -> None:
    records, plan = generate_inventory(1500, seed=5, start_ms=START)
    with TopologyTestDriver(TOPOLOGY, schemas=SCHEMAS, start_ms=START) as driver:
        for r in records:
            driver.pipe(r.topic, r.value, key=r.key)
        driver.advance(10)  # the retry tiers (1 s, 5 s) of unknown stores and products
        listed = len(driver.records("inventory.reorder"))  # the ticks while the lines came
        tick = driver.tick(driver.now_ms + 60_000)
        reorder = [o.value for o in driver.records("inventory.reorder")[listed:]]
        stock = [o.value for o in driver.records("inventory.stock")]
        alerts = [o.value for o in driver.records("inventory.alerts")]
        dead = driver.dead_letters()
    truth = plan.truth()
    final: dict[str, int] = {}
    for v in stock:
        final[v["stock_key"]] = v["level"]
    assert len(stock) == truth["counted"]
    assert final == truth["stock"]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for v in alerts:
        by_key.setdefault(f"{v['store_id']}:{v['product_id']}", []).append(v)
    assert by_key == truth["alerts"]
    assert dict(Counter(d.error["reason"].split(":")[0] for d in dead)) == truth["dlq"]
    assert len(tick) == 1 and {v.pop("tick_time") for v in reorder} == set(tick)
    assert sorted(reorder, key=lambda v: v["stock_key"]) == truth["reorder"]


def _test_cli(capsys: pytest.CaptureFixture[str], topology: Path) -> tuple[int, str]:
    code = main(["test", str(topology), str(CASES), "--schemas", str(SCHEMAS)])
    out, err = capsys.readouterr()
    return code, out + err


def test_the_inventory_cases_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _test_cli(capsys, TOPOLOGY)
    assert code == 0, out
    assert out.rstrip().endswith("10 cases: 10 passed, 0 failed")


def test_a_changed_crossing_rule_fails_the_cases(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rule = "level < reorder_point and level_before >= reorder_point"
    text = TOPOLOGY.read_text(encoding="utf-8")
    assert rule in text
    changed = tmp_path / "inventory.yaml"
    changed.write_text(text.replace(rule, "level < reorder_point"), encoding="utf-8")  # alerts while below
    code, out = _test_cli(capsys, changed)
    assert code == 1, out
    assert "FAIL    b. " in out and "PASS    a. " in out


def test_generate_inventory_writes_its_truth_and_refuses_a_bad_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    truth = tmp_path / "truth.json"
    args = [
        "generate",
        "inventory",
        "--dry-run",
        "--movements",
        "300",
        "--seed",
        "9",
        "--start-ms",
        str(START),
    ]
    assert main([*args, "--truth", str(truth)]) == 0
    lines = capsys.readouterr().out.splitlines()
    _, plan = generate_inventory(300, seed=9, start_ms=START)
    assert orjson.loads(truth.read_bytes()) == plan.truth()
    assert sum(orjson.loads(line)["topic"] == "inventory.movements" for line in lines) == 300
    assert main([*args, "--stores", "1"]) != 0
    out, err = capsys.readouterr()
    assert "--stores must be >= 2" in err and "Traceback" not in err + out and len(err.splitlines()) == 1
