"""Stores, products and stock ledgers with a known outcome, for ``topologies/inventory.yaml``.

The tables (stores with their region, products with their reorder point and region policy,
substitutes) come first, then ``movements`` ledger lines in event-time order, one second apart,
keyed by their store (every line of a store is on one partition, in order). A store's level of a
product moves with its sales, receipts (more likely once it runs low), both sides of transfers
between stores of the same product (``transfer_out`` at the sender, ``transfer_in`` at the
receiver a few lines later), returns and adjustments either way; it starts at 0 and may go below
(a product sold before it was booked in). Edge cases on purpose: ids, types and quantities spelled
the way sloppy producers do (``s3``, ``"17"``, ``" Sale"``, ``"2"``), lines sent twice
(redelivery: same id, same bytes), a catalogue product never stocked anywhere, a product with a
reorder point of 0, and malformed lines (broken JSON, a quantity of 0 or not a number, an unknown
type, a missing product, an unknown store or product) that belong in the DLQ.

The plan is the exact ground truth of the topology: the final level per store + product, the
low-stock alerts per store + product in order (a level going from at or above its region's
reorder point to below it), the dead letters by reason, and the reorder list a tick of the
``reorder`` node finds after the last line (each store + product whose final level is below its
region's point, with ``qty`` = max(the product's ``reorder_qty``, point - level) and the product's
substitutes whose level in the same store is above 0; the tick's time is the tick's, not the data
set's). The same seed gives the same records.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_orch.tools.generate import Record

REGIONS = ("north", "south", "east", "west")
DOWN = ("sale", "transfer_out", "adjustment_out")  # types that take stock away
TYPES = ("sale", "receipt", "transfer_out", "transfer_in", "return", "adjustment_in", "adjustment_out")
STEP_MS = 1000  # event time between two lines


@dataclass(frozen=True)
class Topics:
    movements: str = "inventory.movements"
    stores: str = "inventory.stores"
    products: str = "inventory.products"
    substitutes: str = "inventory.substitutes"


@dataclass
class InventoryPlan:
    """The ground truth of the inventory topology's outputs for the generated records."""

    lines: int = 0  # ledger lines published (duplicates and malformed ones included)
    counted: int = 0  # lines that move a level: one inventory.stock record each
    duplicates: int = 0
    stock: dict[str, int] = field(default_factory=dict)  # stock_key -> final level
    alerts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # stock_key -> alerts, in order
    dlq: Counter[str] = field(default_factory=Counter)  # reason (before its ':') -> lines
    kinds: Counter[str] = field(default_factory=Counter)  # counted lines per type
    reorder: list[dict[str, Any]] = field(default_factory=list)  # a tick after the last line, by stock_key

    def truth(self) -> dict[str, Any]:
        return {
            "stock": dict(sorted(self.stock.items())),
            "alerts": dict(sorted(self.alerts.items())),
            "dlq": dict(sorted(self.dlq.items())),
            "counted": self.counted,
            "reorder": self.reorder,
        }

    def alert_count(self) -> int:
        return sum(len(a) for a in self.alerts.values())


@dataclass(frozen=True)
class Catalogue:
    stores: dict[str, str]  # store_id -> region
    products: dict[str, dict[str, Any]]  # product_id -> row
    substitutes: dict[str, list[str]]  # product_id -> equivalent products
    never_stocked: str  # a catalogue product with no movement at all

    def reorder_point(self, product_id: str, region: str) -> int:
        row = self.products[product_id]
        return int(row["region_points"].get(region, row["reorder_point"]))


def catalogue(rng: random.Random, stores: int, products: int) -> Catalogue:
    store_rows = {f"S-{i:03d}": REGIONS[i % len(REGIONS)] for i in range(1, stores + 1)}
    rows: dict[str, dict[str, Any]] = {}
    for i in range(1, products + 1):
        pid = f"P-{i:05d}"
        point = 0 if i == 2 else rng.randrange(3, 10)  # one product is never low until below 0
        policy = {}
        if i % 3 == 0:  # a region policy: another point in one or two regions
            for region in rng.sample(REGIONS, rng.randrange(1, 3)):
                policy[region] = max(0, point + rng.choice([-2, 3, 5]))
        rows[pid] = {"product_id": pid, "name": f"Product {i}", "reorder_point": point,
                     "region_points": policy, "reorder_qty": rng.randrange(20, 50)}  # fmt: skip
    ids = list(rows)
    subs: dict[str, list[str]] = {}
    for g in range(0, len(ids) - 2, 4):  # groups of three equivalents; every fourth product has none
        group = ids[g : g + 3]
        for pid in group:
            subs[pid] = [p for p in group if p != pid]
    return Catalogue(store_rows, rows, subs, never_stocked=ids[-1])


def generate_inventory(
    movements: int,
    *,
    seed: int = 7,
    start_ms: int | None = None,
    stores: int = 8,
    products: int = 20,
    topics: Topics = Topics(),
) -> tuple[list[Record], InventoryPlan]:
    """The tables' rows, then ``movements`` ledger lines; returns them in publishing order and the
    ground truth."""
    if stores < 2 or products < 4:
        raise ValueError("the inventory data set needs at least 2 stores and 4 products")
    rng = random.Random(seed)
    if start_ms is None:
        start_ms = int(time.time() * 1000) - movements * STEP_MS
    cat = catalogue(rng, stores, products)
    out = _table_records(cat, topics)
    sim = _Ledger(cat)
    store_ids = list(cat.stores)
    stocked = [p for p in cat.products if p != cat.never_stocked]
    pending: list[tuple[int, dict[str, Any]]] = []  # (line index due, transfer_in)
    sent: list[tuple[bytes, bytes]] = []  # valid lines already published, for redelivery
    for i in range(movements):
        ts = start_ms + i * STEP_MS
        roll = rng.random()
        if pending and pending[0][0] <= i:
            line = {**pending.pop(0)[1], "ts": ts}
        elif roll < 0.03 and sent:
            key, value = rng.choice(sent[-20:])  # the store's system sends a line again
            out.append(Record(topics.movements, key, value))
            sim.plan.duplicates += 1
            sim.plan.lines += 1
            continue
        elif roll < 0.07:
            out.append(_malformed(rng, i, ts, cat, topics, sim.plan))
            continue
        else:
            line = _line(rng, seed, i, ts, rng.choice(store_ids), rng.choice(stocked), sim)
            if line["type"] == "transfer_out":
                other = rng.choice([s for s in store_ids if s != line["store_id"]])
                back = {
                    **line,
                    "movement_id": f"{line['movement_id']}-in",
                    "store_id": other,
                    "type": "transfer_in",
                }
                pending.append((i + rng.randrange(1, 6), back))
                pending.sort(key=lambda due: due[0])
        key = line["store_id"].encode()
        value = orjson.dumps(_sloppy(rng, line))
        out.append(Record(topics.movements, key, value))
        sent.append((key, value))
        sim.count(line)
    sim.finish()
    return out, sim.plan


class _Ledger:
    """The topology's outcome, line by line: levels, alerts, counts."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat
        self.plan = InventoryPlan()

    def finish(self) -> None:
        """The reorder list of a tick after every line: the final levels below their point."""
        for key, level in sorted(self.plan.stock.items()):
            store_id, product_id = key.split(":")
            region = self.cat.stores[store_id]
            point = self.cat.reorder_point(product_id, region)
            if level < point:
                qty = max(int(self.cat.products[product_id]["reorder_qty"]), point - level)
                subs = self.cat.substitutes.get(product_id, [])
                in_stock = [s for s in subs if self.plan.stock.get(f"{store_id}:{s}", 0) > 0]
                self.plan.reorder.append({
                    "region": region, "store_id": store_id, "product_id": product_id, "stock_key": key,
                    "level": level, "reorder_point": point, "qty": qty, "substitutes_in_stock": in_stock,
                })  # fmt: skip

    def level(self, store_id: str, product_id: str) -> int:
        return self.plan.stock.get(f"{store_id}:{product_id}", 0)

    def count(self, line: dict[str, Any]) -> None:
        store_id, product_id = line["store_id"], line["product_id"]
        key = f"{store_id}:{product_id}"
        delta = -line["qty"] if line["type"] in DOWN else line["qty"]
        before = self.plan.stock.get(key, 0)
        after = self.plan.stock[key] = before + delta
        region = self.cat.stores[store_id]
        point = self.cat.reorder_point(product_id, region)
        if after < point <= before:
            self.plan.alerts.setdefault(key, []).append({
                "region": region, "store_id": store_id, "product_id": product_id,
                "movement_id": line["movement_id"], "level": after, "level_before": before,
                "reorder_point": point, "substitutes": self.cat.substitutes.get(product_id, []),
                "ts": line["ts"],
            })  # fmt: skip
        self.plan.counted += 1
        self.plan.lines += 1
        self.plan.kinds[line["type"]] += 1


def _line(
    rng: random.Random, seed: int, i: int, ts: int, store_id: str, product_id: str, sim: _Ledger
) -> dict[str, Any]:
    level = sim.level(store_id, product_id)
    point = sim.cat.reorder_point(product_id, sim.cat.stores[store_id])
    roll = rng.random()
    if level <= point + 1 and roll < 0.35:
        kind, qty = "receipt", rng.randrange(8, 25)
    elif roll < 0.66:
        kind, qty = "sale", rng.randrange(1, 4)
    elif roll < 0.74:
        kind, qty = "receipt", rng.randrange(5, 20)
    elif roll < 0.80:
        kind, qty = "transfer_out", rng.randrange(1, 5)
    elif roll < 0.86:
        kind, qty = "return", 1
    elif roll < 0.93:
        kind, qty = "adjustment_out", rng.randrange(1, 4)  # shrinkage, damage, a count below book
    else:
        kind, qty = "adjustment_in", rng.randrange(1, 3)
    line = {"movement_id": f"MV-{seed}-{i:07d}", "store_id": store_id, "product_id": product_id,
            "type": kind, "qty": qty, "ts": ts}  # fmt: skip
    if kind == "transfer_out":
        line["transfer_id"] = f"TR-{seed}-{i:07d}"
    return line


def _sloppy(rng: random.Random, line: dict[str, Any]) -> dict[str, Any]:
    """The line as a producer may spell it (the topology's normalize step harmonises it)."""
    if rng.random() >= 0.1:
        return line
    sloppy = dict(line)
    store_n, product_n = int(line["store_id"][2:]), int(line["product_id"][2:])
    sloppy["store_id"] = rng.choice([f"s{store_n}", str(store_n), f"S{store_n:03d}"])
    sloppy["product_id"] = rng.choice([str(product_n), f"p-{product_n}", product_n])
    sloppy["type"] = rng.choice([f" {line['type'].capitalize()}", line["type"].upper()])
    sloppy["qty"] = str(line["qty"])
    sloppy["ts"] = rng.choice([line["ts"] // 1000 if line["ts"] % 1000 == 0 else line["ts"], line["ts"]])
    return sloppy


def _malformed(
    rng: random.Random, i: int, ts: int, cat: Catalogue, topics: Topics, plan: InventoryPlan
) -> Record:
    """A line the topology must send to the DLQ, and its reason counted in the plan."""
    store_id, product_id = rng.choice(list(cat.stores)), rng.choice(list(cat.products))
    line: dict[str, Any] = {"movement_id": f"BAD-{i:07d}", "store_id": store_id,
                            "product_id": product_id, "type": "sale", "qty": 1, "ts": ts}  # fmt: skip
    kind = rng.randrange(7)
    if kind == 0:
        plan.dlq["malformed_json"] += 1
        plan.lines += 1
        return Record(topics.movements, store_id.encode(), orjson.dumps(line)[:25])
    if kind == 1:
        line["qty"], reason = rng.choice([0, -2]), "invalid_field"
    elif kind == 2:
        line["qty"], reason = "a few", "invalid_field"
    elif kind == 3:
        line["type"], reason = "theft", "invalid_field"
    elif kind == 4:
        del line["product_id"]
        reason = "missing_field"
    elif kind == 5:
        line["store_id"], reason = f"S-{900 + rng.randrange(99)}", "unknown_store"
    else:
        line["product_id"], reason = f"P-{90000 + rng.randrange(9999)}", "unknown_product"
    plan.dlq[reason] += 1
    plan.lines += 1
    return Record(topics.movements, line["store_id"].encode(), orjson.dumps(line))


def _table_records(cat: Catalogue, topics: Topics) -> list[Record]:
    out = [
        Record(
            topics.stores,
            sid.encode(),
            orjson.dumps({"store_id": sid, "name": f"Store {sid[2:]}", "region": region}),
        )
        for sid, region in cat.stores.items()
    ]
    out += [Record(topics.products, pid.encode(), orjson.dumps(row)) for pid, row in cat.products.items()]
    out += [
        Record(topics.substitutes, pid.encode(), orjson.dumps({"product_id": pid, "substitutes": subs}))
        for pid, subs in cat.substitutes.items()
    ]
    return out
