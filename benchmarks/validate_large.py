"""How long ``stream-orch validate`` takes on a large honest topology (issue 19, item 6).

    python -m benchmarks.validate_large                  # 1 MB of each shape, budget 2 s
    python -m benchmarks.validate_large --kb 2000 --only nodes --budget 4

Each shape is written to a temporary folder and validated by the CLI in a fresh process,
interpreter start included (about 0.8 s of it):

* ``nodes``: the reference fraud topology (topologies/fraud_detection.yaml) repeated with renamed
  topics, tables and nodes until the file has the size asked for: many keys, steps, expressions
  and schema checks;
* ``constants``: the reference topology with one large ``constants`` lookup table (a mapping of
  merchant id to a rate), the shape of a topology that carries its reference data;
* ``list``: the reference topology whose currency rule allows a long ``one_of`` list.

The budget applies to the process's CPU time (user + system), which other work on a shared
machine does not inflate; the wall time is printed beside it (on an idle machine they agree).
Exits 1 when a shape is refused, fails, or needs more than ``--budget`` seconds of CPU.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "topologies" / "fraud_detection.yaml"
SCHEMAS = ROOT / "schemas"


def _reference() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(REFERENCE.read_text(encoding="utf-8"))
    return data


def _renamed(data: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The reference's topics, tables and nodes, every name (and every use of it) + ``suffix``."""
    topic = {name: f"{name}{suffix}" for name in data["topics"]}
    topic.update({"customers.dlq": f"customers.dlq{suffix}", "transactions.dlq": f"transactions.dlq{suffix}"})
    table = {name: f"{name}{suffix}" for name in data["tables"]}
    tables = {
        table[name]: {**spec, **({"topic": topic[spec["topic"]]} if "topic" in spec else {})}
        for name, spec in data["tables"].items()
    }
    nodes = {}
    for name, node in data["nodes"].items():
        steps = [
            {**step, **({"table": table[step["table"]]} if "table" in step else {})} for step in node["steps"]
        ]
        routes = []
        for route in node["routes"]:
            to = route["to"] if isinstance(route["to"], list) else [route["to"]]
            renamed = [topic[t] if isinstance(t, str) else {**t, "topic": topic[t["topic"]]} for t in to]
            routes.append({**route, "to": renamed})
        errors = {**node["errors"], "dlq": topic[node["errors"]["dlq"]]}
        nodes[f"{name}{suffix}"] = {
            **node,
            "input": topic[node["input"]],
            "steps": steps,
            "routes": routes,
            "errors": errors,
        }
    return {
        "topics": {topic[n]: spec for n, spec in data["topics"].items()},
        "tables": tables,
        "nodes": nodes,
    }


def _dump(data: dict[str, Any], path: Path) -> int:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.width = 200
    yaml.sort_base_mapping_type_on_output = False  # a model step's `inputs` are in the model's order
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)
    return path.stat().st_size


def _grow(path: Path, target: int, build: Callable[[int], dict[str, Any]]) -> int:
    """Write ``build(n)`` with n chosen so that the file has about ``target`` bytes (the size of a
    shape grows linearly with n)."""
    one, two = _dump(build(1), path), _dump(build(2), path)
    n = max(1, round(1 + (target - one) / max(1, two - one)))
    size = _dump(build(n), path)
    if abs(size - target) > target // 50:  # not quite linear: correct once
        size = _dump(build(max(1, round(n * target / size))), path)
    return size


def nodes_shape(copies: int) -> dict[str, Any]:
    data = _reference()
    out = {**data, "topics": {}, "tables": {}, "nodes": {}}
    for i in range(copies):
        part = _renamed(data, f"_{i}")
        for key in ("topics", "tables", "nodes"):
            out[key].update(part[key])
    return out


def constants_shape(entries: int) -> dict[str, Any]:
    data = _reference()
    data["constants"]["merchant_rates"] = {f"M-{i:07d}": round(1 + i % 997 / 1000, 3) for i in range(entries)}
    return data


def list_shape(entries: int) -> dict[str, Any]:
    data = _reference()
    rule = data["nodes"]["score_transactions"]["steps"][0]["fields"]["currency"]
    rule["one_of"] = [*rule["one_of"], *(f"X{i:06d}" for i in range(entries))]
    return data


SHAPES: dict[str, Callable[[int], dict[str, Any]]] = {
    "nodes": nodes_shape,
    "constants": constants_shape,
    "list": list_shape,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.validate_large", description=__doc__)
    parser.add_argument("--kb", type=int, default=1000, help="size of each topology file, KB (default 1000)")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="CPU seconds allowed per validate (default 2)"
    )
    parser.add_argument("--only", choices=sorted(SHAPES), action="append", help="shape(s) to run")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="validate-large-") as tmp:
        shutil.copytree(REFERENCE.parent / "models", Path(tmp) / "models")  # the model steps' file
        for name in args.only or list(SHAPES):
            path = Path(tmp) / f"{name}.yaml"
            size = _grow(path, args.kb * 1000, SHAPES[name])
            command = [*_cli(), "validate", str(path), "--schemas", str(SCHEMAS)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            ok = done.returncode == 0 and cpu <= args.budget
            failed |= not ok
            verdict = "ok" if ok else ("FAILED" if done.returncode else "TOO SLOW")
            print(f"{name:<10} {size / 1000:6.0f} KB  cpu {cpu:5.2f} s  wall {wall:5.2f} s  {verdict}")
            if done.returncode:
                print((done.stdout + done.stderr).strip()[-2000:])
    return 1 if failed else 0


def _cli() -> list[str]:
    """The installed console script (what a user runs), else ``python -m``."""
    script = Path(sys.executable).parent / "stream-orch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stream_orch.cli.main"]


if __name__ == "__main__":
    sys.exit(main())
