"""``generate fleet``: seeded; its ground truth (taken from the faults and stops it injected) equals
a brute-force recomputation from the records it publishes (with the thresholds, gap and tolerance
read from topologies/fleet.yaml), and equals what the topology itself produces from them in the
test driver (the worker's own pipeline, no broker)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_orch.testing.driver import TopologyTestDriver
from stream_orch.tools.generate_fleet import generate_fleet
from stream_orch.topology.durations import parse_duration_ms
from stream_orch.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
FLEET = REPO / "topologies" / "fleet.yaml"
START = 1_767_225_600_000


@pytest.fixture(scope="module")
def generated() -> tuple[list[Any], dict[str, Any]]:
    records, plan = generate_fleet(20, seed=3, start_ms=START, minutes=120, stops=5)
    return records, plan.truth()


def _rules() -> dict[str, Any]:
    spec = load_topology(FLEET).spec
    c = spec.constants
    window = next(s for s in spec.nodes["health"].steps if s.step == "window")
    return {
        "bad": {
            "engine_temp": lambda r: r["engine_temp_c"] > c["max_engine_temp_c"],
            "oil_pressure": lambda r: r["oil_pressure_kpa"] < c["min_oil_pressure_kpa"],
            "battery": lambda r: r["battery_v"] < c["min_battery_v"],
            "tyre_pressure": lambda r: r["tyre_pressure_kpa"] < c["min_tyre_pressure_kpa"],
        },
        "gap": parse_duration_ms(window.gap),
        "critical_after": c["critical_after_ms"],
        "tolerance": c["stop_tolerance_ms"],
    }


def _reason(raw: bytes) -> tuple[str | None, dict[str, Any] | None]:
    try:
        r = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "malformed_json", None
    if not r.get("vehicle_id"):
        return "missing_field: vehicle_id", None
    for name, low, high in (("battery_v", 0, 30), ("speed_kmh", 0, 250), ("lat", -90, 90)):
        v = r[name]
        if not isinstance(v, int | float) or not low <= v <= high:
            return f"invalid_field: {name}", None
    return None, r


def brute_force(records: list[Any]) -> dict[str, Any]:
    rules = _rules()
    plans: dict[str, int] = {}
    arrivals: dict[str, int] = {}
    series: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    dlq: Counter[str] = Counter()
    for rec in records:
        if rec.topic == "fleet.plan":
            p = orjson.loads(rec.value)
            plans[p["vehicle_stop"]] = p["planned_ts"]
            continue
        reason, r = _reason(rec.value)
        if r is None:
            dlq[reason] += 1
            continue
        for check, bad in rules["bad"].items():
            series[f"{r['vehicle_id']}/{check}"].append((r["ts"], bad(r)))
        if r.get("stop_id"):
            arrivals[f"{r['vehicle_id']}/{r['stop_id']}"] = r["ts"]
    warnings, critical = [], []
    for vehicle_check, points in series.items():
        bad_times = [t for t, bad in sorted(points) if bad]
        episodes: list[list[int]] = []
        for t in bad_times:
            if episodes and t - episodes[-1][-1] <= rules["gap"]:
                episodes[-1].append(t)
            else:
                episodes.append([t])
        for ep in episodes:
            warnings.append(f"{vehicle_check}/{ep[0]}/warning")
            if ep[-1] - ep[0] >= rules["critical_after"]:
                critical.append(f"{vehicle_check}/{ep[0]}/critical")
    in_time = {
        vs for vs, planned in plans.items() if vs in arrivals and arrivals[vs] <= planned + rules["tolerance"]
    }
    return {
        "warnings": sorted(warnings),
        "critical": sorted(critical),
        "delays": sorted(set(plans) - in_time),
        "on_time": sorted(in_time),
        "dlq": dict(sorted(dlq.items())),
    }


def test_the_same_seed_gives_the_same_records_and_another_seed_others() -> None:
    a, _ = generate_fleet(5, seed=1, start_ms=START)
    b, _ = generate_fleet(5, seed=1, start_ms=START)
    c, _ = generate_fleet(5, seed=2, start_ms=START)
    assert [(r.topic, r.key, r.value) for r in a] == [(r.topic, r.key, r.value) for r in b]
    assert [r.value for r in a] != [r.value for r in c]


def test_the_truth_equals_a_brute_force_recomputation_from_the_records(generated) -> None:
    records, truth = generated
    assert {k: v for k, v in truth.items() if k != "per_check"} == brute_force(records)
    # every kind of outcome occurs: spikes that stay warnings, escalations, delays, each reason
    assert len(truth["warnings"]) > len(truth["critical"]) > 0
    assert truth["delays"] and truth["on_time"]
    assert set(truth["dlq"]) == {
        "malformed_json",
        "missing_field: vehicle_id",
        "invalid_field: battery_v",
        "invalid_field: speed_kmh",
        "invalid_field: lat",
    }
    assert sum(n["critical"] for n in truth["per_check"].values() if "critical" in n) == len(
        truth["critical"]
    )


def test_the_topology_in_the_test_driver_produces_the_truth(generated) -> None:
    records, truth = generated
    with TopologyTestDriver(FLEET, schemas=REPO / "schemas", start_ms=START) as driver:
        for r in records:
            driver.pipe(r.topic, r.value, key=r.key)
        ids = {
            t: sorted(o.value["alert_id"] for o in driver.records(t))
            for t in ("fleet.warnings", "fleet.critical")
        }
        delays = sorted(o.value["vehicle_stop"] for o in driver.records("fleet.delays"))
        on_time = sorted(o.value["vehicle_stop"] for o in driver.records("fleet.stops"))
        reasons = Counter()
        for d in driver.records("fleet.readings.dlq"):
            kind, _, detail = d.headers["so.error.reason"].partition(":")
            reasons[f"{kind}: {detail.split()[0]}" if detail else kind] += 1
        other_dlqs = [
            t for t in ("fleet.checks.dlq", "fleet.episodes.dlq", "fleet.plan.dlq") if driver.records(t)
        ]
    assert ids["fleet.warnings"] == truth["warnings"]
    assert ids["fleet.critical"] == truth["critical"]
    assert delays == truth["delays"]
    assert on_time == truth["on_time"]
    assert dict(reasons) == truth["dlq"]
    assert other_dlqs == []


def test_too_many_stops_for_the_shift_is_refused() -> None:
    with pytest.raises(ValueError, match="stops need a shift of at least"):
        generate_fleet(2, seed=1, start_ms=START, minutes=60, stops=5)


def test_generate_fleet_writes_its_truth_and_refuses_a_crowded_route_in_one_line(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    from stream_orch.cli.main import main

    truth_file = tmp_path / "truth.json"
    args = ["generate", "fleet", "--vehicles", "3", "--seed", "9", "--start-ms", str(START), "--dry-run"]
    assert main([*args, "--truth", str(truth_file)]) == 0
    lines = capsysbinary.readouterr().out.splitlines()
    records, plan = generate_fleet(3, seed=9, start_ms=START)
    assert len(lines) == len(records)
    assert orjson.loads(truth_file.read_bytes()) == plan.truth()
    assert main([*args, "--stops", "50"]) == 2
    err = capsysbinary.readouterr().err.decode()
    assert (
        err.count("\n") == 1
        and "50 stops need a shift of at least 1020 minutes (--stops, --shift-minutes)" in err
    )
