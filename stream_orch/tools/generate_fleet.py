"""Vehicle readings and route plans with a known outcome, for ``topologies/fleet.yaml``.

Each vehicle sends a reading every 30 s (its own phase within the 30 s) for the whole shift, and
has a route of planned stops spread over the shift. Injected on top of healthy readings:

- faults per vehicle and health check: *spikes* (1 to 4 out-of-range readings in a row, at most
  90 s: a warning, never critical) and *persistent* faults (11 to 24 readings: 300 s or more, a
  warning and then critical once); episodes of one check are at least two in-range readings apart;
- stop arrivals (the reading entering the stop carries its ``stop_id``): on time (2 minutes
  early to 9 minutes late), late (11 to 16 minutes after the planned time: past the topology's
  10-minute tolerance) or missed (no arrival); late and missed stops are delays;
- malformed readings (JSON cut short, no vehicle_id, a battery voltage below 0, a speed that is
  not a number, a latitude beyond 90), only in place of healthy readings that are not arrivals,
  so they change no episode and no stop.

The plan is published first (its ``ts`` a minute before the shift), then the readings in event
time order. The shift ends at least 10 minutes after the last stop's due time, on every vehicle,
so event time passes every due time. The ground truth comes from the injected plan, not from the
records (``tests/unit/test_fleet_generator.py`` recomputes it from the records).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_orch.tools.generate import Record

SECOND = 1000
MINUTE = 60 * SECOND
INTERVAL = 30 * SECOND  # between two readings of a vehicle
CRITICAL_AFTER = 5 * MINUTE  # as fleet.yaml's critical_after_ms
TOLERANCE = 10 * MINUTE  # as fleet.yaml's stop_tolerance_ms
MIN_SPACING = 20 * MINUTE  # between planned stops: arrivals of two stops never meet

HEALTHY = {"engine_temp_c": (82.0, 96.0), "oil_pressure_kpa": (250.0, 350.0),
           "battery_v": (13.2, 14.2), "tyre_pressure_kpa": (220.0, 250.0)}  # fmt: skip
FAULTY = {"engine_temp_c": (108.0, 125.0), "oil_pressure_kpa": (60.0, 130.0),
          "battery_v": (10.5, 11.6), "tyre_pressure_kpa": (120.0, 190.0)}  # fmt: skip
CHECKS = {"engine_temp": "engine_temp_c", "oil_pressure": "oil_pressure_kpa",
          "battery": "battery_v", "tyre_pressure": "tyre_pressure_kpa"}  # fmt: skip
MALFORMED = ("malformed_json", "missing_field: vehicle_id", "invalid_field: battery_v",
             "invalid_field: speed_kmh", "invalid_field: lat")  # fmt: skip


@dataclass(frozen=True)
class FleetShares:
    spike: float = 0.30  # chance per vehicle and check of a spike
    persistent: float = 0.15  # of a persistent fault
    late: float = 0.15  # of a stop reached after its tolerance
    missed: float = 0.05  # of a stop never reached
    malformed: float = 0.01  # of a healthy reading replaced by a malformed one


@dataclass
class FleetPlan:
    """The ground truth: alert ids per severity, stops per outcome, dead letters per reason."""

    vehicles: int = 0
    readings: int = 0
    stops: int = 0
    warnings: list[str] = field(default_factory=list)  # alert ids, <vehicle>/<check>/<start>/warning
    critical: list[str] = field(default_factory=list)
    delays: list[str] = field(default_factory=list)  # <vehicle>/<stop>
    on_time: list[str] = field(default_factory=list)
    dlq: Counter[str] = field(default_factory=Counter)

    def truth(self) -> dict[str, Any]:
        per_check: dict[str, Counter[str]] = {}
        for alert in [*self.warnings, *self.critical]:
            vehicle, check, _, severity = alert.split("/")
            per_check.setdefault(f"{vehicle}/{check}", Counter())[severity] += 1
        return {
            "warnings": sorted(self.warnings),
            "critical": sorted(self.critical),
            "delays": sorted(self.delays),
            "on_time": sorted(self.on_time),
            "dlq": dict(sorted(self.dlq.items())),
            "per_check": {k: dict(v) for k, v in sorted(per_check.items())},
        }

    def counts(self) -> dict[str, int]:
        return {"warnings": len(self.warnings), "critical": len(self.critical), "delays": len(self.delays),
                "on_time": len(self.on_time), "dead_letters": sum(self.dlq.values())}  # fmt: skip


def generate_fleet(
    vehicles: int,
    *,
    seed: int = 7,
    start_ms: int | None = None,
    minutes: float = 120.0,
    stops: int = 5,
    readings_topic: str = "fleet.readings",
    plan_topic: str = "fleet.plan",
    shares: FleetShares = FleetShares(),
) -> tuple[list[Record], FleetPlan]:
    """``vehicles`` vehicles over a shift of ``minutes``, each with ``stops`` planned stops;
    returns the records in publishing order and the ground truth."""
    span = int(minutes * MINUTE)
    spacing = span // (stops + 1) if stops else span
    if stops and (spacing < MIN_SPACING or span - stops * spacing < TOLERANCE + 10 * MINUTE):
        raise ValueError(
            f"{stops} stops need a shift of at least {(stops + 1) * MIN_SPACING // MINUTE} minutes"
        )
    rng = random.Random(seed)
    if start_ms is None:
        start_ms = (int(time.time() * 1000) - span) // SECOND * SECOND
    plan = FleetPlan(vehicles=vehicles)
    first: list[Record] = []
    timed: list[tuple[int, int, Record]] = []
    for v in range(1, vehicles + 1):
        vid = f"V-{v:04d}"
        phase = rng.randrange(0, INTERVAL // SECOND) * SECOND
        times = list(range(start_ms + phase, start_ms + span, INTERVAL))
        values = [_healthy(rng, i) for i in range(len(times))]
        busy: set[int] = set()  # readings that must stay as they are (faults, arrivals)
        for check, name in CHECKS.items():
            _faults(rng, shares, vid, check, name, times, values, busy, plan)
        for s in range(1, stops + 1):
            stop_id = f"S-{v:04d}-{s:02d}"
            planned = start_ms + s * spacing
            first.append(_plan_record(plan_topic, vid, stop_id, planned, start_ms - MINUTE))
            plan.stops += 1
            _arrival(rng, shares, f"{vid}/{stop_id}", stop_id, planned, times, values, busy, plan)
        for i, ts in enumerate(times):
            reading = {"vehicle_id": vid, "ts": ts, **values[i]}
            if i not in busy and rng.random() < shares.malformed:
                reason = rng.choice(MALFORMED)
                plan.dlq[reason] += 1
                timed.append((ts, v, Record(readings_topic, vid.encode(), _malformed(reading, reason))))
            else:
                timed.append((ts, v, Record(readings_topic, vid.encode(), orjson.dumps(reading))))
            plan.readings += 1
    timed.sort(key=lambda item: (item[0], item[1]))
    return [*first, *(r for _, _, r in timed)], plan


def _healthy(rng: random.Random, i: int) -> dict[str, Any]:
    reading: dict[str, Any] = {name: round(rng.uniform(*HEALTHY[name]), 1) for name in HEALTHY}
    reading.update(lat=round(52.0 + i * 0.0004, 5), lon=round(13.0 + i * 0.0003, 5),
                   speed_kmh=round(rng.uniform(0.0, 80.0), 1), stop_id=None)  # fmt: skip
    return reading


def _faults(
    rng: random.Random,
    shares: FleetShares,
    vid: str,
    check: str,
    name: str,
    times: list[int],
    values: list[dict[str, Any]],
    busy: set[int],
    plan: FleetPlan,
) -> None:
    """At most one spike and one persistent fault for the check, two in-range readings apart."""
    taken: list[tuple[int, int]] = []
    for share, lengths in ((shares.persistent, (11, 24)), (shares.spike, (1, 4))):  # persistent, spike
        if rng.random() >= share:
            continue
        length = rng.randint(*lengths)
        for _ in range(20):  # a free place, else none
            at = rng.randrange(0, len(times) - length)
            if all(at + length + 2 <= a or b + 2 <= at for a, b in taken):
                break
        else:
            continue
        taken.append((at, at + length))
        for i in range(at, at + length):
            values[i][name] = round(rng.uniform(*FAULTY[name]), 1)
            busy.add(i)
        episode = f"{vid}/{check}/{times[at]}"
        plan.warnings.append(f"{episode}/warning")
        if times[at + length - 1] - times[at] >= CRITICAL_AFTER:
            plan.critical.append(f"{episode}/critical")


def _arrival(
    rng: random.Random,
    shares: FleetShares,
    vehicle_stop: str,
    stop_id: str,
    planned: int,
    times: list[int],
    values: list[dict[str, Any]],
    busy: set[int],
    plan: FleetPlan,
) -> None:
    roll = rng.random()
    if roll < shares.missed:
        plan.delays.append(vehicle_stop)
        return
    late = roll < shares.missed + shares.late
    target = (
        planned + (rng.randint(11, 16) if late else rng.randint(-2, 8)) * MINUTE + rng.randrange(0, MINUTE)
    )
    i = next(i for i, t in enumerate(times) if t >= target)  # the reading entering the stop
    values[i]["stop_id"] = stop_id
    busy.add(i)
    (plan.delays if times[i] > planned + TOLERANCE else plan.on_time).append(vehicle_stop)


def _plan_record(topic: str, vid: str, stop_id: str, planned: int, published: int) -> Record:
    key = f"{vid}/{stop_id}"
    value = {
        "vehicle_stop": key,
        "vehicle_id": vid,
        "stop_id": stop_id,
        "planned_ts": planned,
        "ts": published,
    }
    return Record(topic, key.encode(), orjson.dumps(value))


def _malformed(reading: dict[str, Any], reason: str) -> bytes:
    bad = dict(reading)
    if reason == "malformed_json":
        return orjson.dumps(bad)[:40]
    if reason == "missing_field: vehicle_id":
        del bad["vehicle_id"]
    elif reason == "invalid_field: battery_v":
        bad["battery_v"] = -1.0
    elif reason == "invalid_field: speed_kmh":
        bad["speed_kmh"] = "fast"
    else:
        bad["lat"] = 123.4
    return orjson.dumps(bad)
