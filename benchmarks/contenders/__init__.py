"""The contenders: what runs, as what command, and whether it can run on this checkout.

Every contender is a separate process that reads its topics and group from the variables in
:mod:`benchmarks.env`. Adding one is one ``Contender(...)`` entry in ``CONTENDERS``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmarks.contenders import engine, engine_streams, kstreams

# forward: one output per input; fraud: the fraud topics; window: a closed window per merchant and
# minute (benchmarks/data.make_window_dataset); join: an outcome per payment (make_join_dataset)
Kind = Literal["forward", "fraud", "window", "join"]
ALO, EOS = "at_least_once", "exactly_once"  # the topology-level `processing` values


Argv = Callable[[dict[str, str], Path], list[str]]  # (the run's environment, worker state dir) -> argv


def _module(name: str) -> Argv:
    return lambda _env, _work: [sys.executable, "-m", f"benchmarks.contenders.{name}"]


BENCH_EXTRA = "pip install -e '.[bench]'"


def needs(module: str) -> Callable[[], str | None]:
    """``unavailable`` of a contender built on a package of the ``bench`` extra: the reason it is
    skipped when the package is not installed (``make test`` installs ``.[dev]`` only)."""

    def check() -> str | None:
        if sys.modules.get(module) is not None:
            return None  # imported already (faust's lazy module has no __spec__ for find_spec)
        try:
            found = module not in sys.modules and importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        return None if found else f"{module} is not installed: {BENCH_EXTRA}"

    return check


@dataclass(frozen=True)
class Contender:
    name: str
    kind: Kind  # forward: one output per input on BENCH_OUTPUT_TOPIC; fraud: the fraud topics
    argv: Argv
    description: str
    unavailable: Callable[[], str | None] = lambda: None  # why it cannot run here, or None
    scaling: bool = False  # part of the 1/2/4-worker scaling run
    extra_env: dict[str, str] = field(default_factory=dict)
    ours: bool = False
    # writes its outputs in Kafka transactions: commit markers take offsets, so the harness
    # counts its committed records once after the throughput window (measure._count_committed)
    transactional: bool = False
    # group members per worker process (`--processes N`): the throughput window starts once that
    # many members (times the workers) hold the input's partitions (measure._members_ready)
    members: int = 1


KSTREAMS_APPS = {
    "forward": "Kafka Streams 4.1 forwarding (mapValues adding the field), JSON via Jackson",
    "window": "Kafka Streams windowedBy(1 min, grace 5 s).count().suppress(untilWindowCloses)",
    "join": "Kafka Streams left stream-stream join (5 min before, 30 min after, grace 1 min), routed",
    "fraud": "Kafka Streams fraud rules: Processor API, dedupe window store, velocity store, GlobalKTable",
}


def _kstreams(kind: Kind, processing: str) -> Contender:
    """A Kafka Streams app (benchmarks/contenders/kstreams/), built on first use."""
    eos = processing == EOS
    return Contender(
        f"kstreams_{kind}{'_eos' if eos else ''}",
        kind,
        kstreams.command(kind, processing),
        f"{KSTREAMS_APPS[kind]}, {'exactly_once_v2' if eos else 'at_least_once'}",
        unavailable=kstreams.unavailable,
        transactional=eos,
    )


# A/B of two versions of the engine in one run (CPU per event compares only within a run on a
# shared machine): BENCH_AB_CHECKOUT names another checkout of the project (``git archive
# <commit> | tar -x -C DIR``), whose engine the ``*_ab`` twins of the entries below run.
AB_CHECKOUT = os.environ.get("BENCH_AB_CHECKOUT", "")
_AB_TOPOLOGIES = {
    "engine_forward": (engine.FORWARD_TOPOLOGY, engine.FORWARD_TOPICS, None),
    "engine_fraud": (engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, ALO),
    "engine_join": (engine_streams.JOIN_TOPOLOGY, engine_streams.JOIN_TOPICS, ALO),
}
_AB_KINDS: dict[str, Kind] = {"engine_forward": "forward", "engine_fraud": "fraud", "engine_join": "join"}


def _ab(name: str) -> Contender:
    topology, topics, processing = _AB_TOPOLOGIES[name]
    # the join's topology also renames its join step's topic (engine_streams.render)
    build = engine_streams.command if name == "engine_join" else engine.command
    return Contender(
        f"{name}_ab",
        _AB_KINDS[name],
        build(topology, topics, processing=processing, checkout=AB_CHECKOUT or None),
        f"{name} with the engine of BENCH_AB_CHECKOUT ({AB_CHECKOUT or 'not set'})",
        unavailable=lambda: None if AB_CHECKOUT else "BENCH_AB_CHECKOUT is not set",
        extra_env=engine.ENV,
        ours=True,
    )


CONTENDERS: tuple[Contender, ...] = (
    Contender(
        "aiokafka_batch",
        "forward",
        _module("aiokafka_batch"),
        "aiokafka getmany → orjson → send_batch per partition → commit",
        scaling=True,
    ),
    Contender(
        "aiokafka_send",
        "forward",
        _module("aiokafka_send"),
        "aiokafka getmany → orjson → send per record → commit",
    ),
    Contender(
        "faust_agent",
        "forward",
        lambda _env, _work: [
            sys.executable,
            "-m",
            "faust",
            "-A",
            "benchmarks.contenders.faust_agent",
            "worker",
            "-l",
            "warn",
            "--without-web",
        ],
        "bare per-event Faust agent (memory store, no web)",
        unavailable=needs("faust"),  # the faust-streaming package
    ),
    Contender(
        "quix_forward",
        "forward",
        _module("quix_forward"),
        "Quix Streams forwarding",
        unavailable=needs("quixstreams"),
    ),
    Contender(
        "quix_fraud",
        "fraud",
        _module("quix_fraud"),
        "Quix Streams running the fraud rules",
        unavailable=needs("quixstreams"),
    ),
    Contender(
        "engine_fraud",
        "fraud",
        # at_least_once stated, not inherited: the reference file's own setting may change, and
        # this entry is the at-least-once half of the pair with engine_fraud_eos
        engine.command(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=ALO),
        "stream-orch run topologies/fraud_detection.yaml (all steps), processing: at_least_once",
        unavailable=engine.unavailable(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=ALO),
        scaling=True,
        extra_env=engine.ENV,
        ours=True,
    ),
    Contender(
        "engine_fraud_p2",
        "fraud",
        # engine_fraud as `run --processes 2` runs it: two members of the group, one supervisor
        # (the harness counts the CPU of the whole process tree)
        engine.command(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=ALO, processes=2),
        "engine_fraud with --processes 2 (two worker processes under one supervisor)",
        unavailable=engine.unavailable(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=ALO),
        extra_env=engine.ENV,
        ours=True,
        members=2,
    ),
    Contender(
        "engine_fraud_memory",
        "fraud",
        # the at-least-once pair again, with the tables in memory: what RocksDB stores cost
        engine.command(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=ALO, store="memory"),
        "engine_fraud with store: memory for its tables (RocksDB is the default)",
        unavailable=engine.unavailable(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=ALO),
        extra_env=engine.ENV,
        ours=True,
    ),
    Contender(
        "engine_fraud_rules",
        "fraud",
        # the at-least-once pair again, without the model step and its score rule: what it costs
        engine.command(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=ALO, models=False),
        "engine_fraud without its model step (fraud.onnx) and the score rule reading it",
        unavailable=engine.unavailable(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=ALO),
        extra_env=engine.ENV,
        ours=True,
    ),
    Contender(
        "engine_fraud_eos",
        "fraud",
        engine.command(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=EOS),
        "stream-orch run topologies/fraud_detection.yaml with processing: exactly_once",
        unavailable=engine.unavailable(engine.FRAUD_TOPOLOGY, engine.FRAUD_TOPICS, processing=EOS),
        extra_env=engine.ENV,
        ours=True,
        transactional=True,
    ),
    Contender(
        "engine_forward",
        "forward",
        engine.command(engine.FORWARD_TOPOLOGY, engine.FORWARD_TOPICS),
        "stream-orch run benchmarks/topologies/forward.yaml",
        unavailable=engine.unavailable(engine.FORWARD_TOPOLOGY, engine.FORWARD_TOPICS),
        scaling=True,
        extra_env=engine.ENV,
        ours=True,
    ),
    Contender(
        "engine_forward_eos",
        "forward",
        engine.command(engine.FORWARD_TOPOLOGY, engine.FORWARD_TOPICS, processing=EOS),
        "engine_forward with processing: exactly_once (a transactional producer per input partition)",
        unavailable=engine.unavailable(engine.FORWARD_TOPOLOGY, engine.FORWARD_TOPICS, processing=EOS),
        extra_env=engine.ENV,
        ours=True,
        transactional=True,
    ),
    Contender(
        "ck_forward_eos",
        "forward",
        _module("ck_forward_eos"),
        "confluent-kafka forwarding, one transaction per batch, offsets with the group metadata (KIP-447)",
        unavailable=needs("confluent_kafka"),
        transactional=True,
    ),
    Contender(
        "engine_forward_p2",
        "forward",
        engine.command(engine.FORWARD_TOPOLOGY, engine.FORWARD_TOPICS, processes=2),
        "engine_forward with --processes 2 (two worker processes under one supervisor)",
        unavailable=engine.unavailable(engine.FORWARD_TOPOLOGY, engine.FORWARD_TOPICS),
        extra_env=engine.ENV,
        ours=True,
        members=2,
    ),
    Contender(
        "quix_window",
        "window",
        _module("quix_window"),
        "Quix Streams tumbling_window(1 min, grace 5 s).count().final() per merchant",
        unavailable=needs("quixstreams"),
    ),
    Contender(
        "engine_window",
        "window",
        engine_streams.command(engine_streams.WINDOW_TOPOLOGY, engine_streams.WINDOW_TOPICS, processing=ALO),
        "stream-orch run benchmarks/topologies/window.yaml (window step, RocksDB), at_least_once",
        unavailable=engine_streams.unavailable(
            engine_streams.WINDOW_TOPOLOGY, engine_streams.WINDOW_TOPICS, processing=ALO
        ),
        extra_env=engine.ENV,
        ours=True,
    ),
    Contender(
        "quix_join",
        "join",
        _module("quix_join"),
        "Quix Streams join_interval(left) payments/settlements + session window for the unmatched",
        unavailable=needs("quixstreams"),
    ),
    Contender(
        "engine_join",
        "join",
        engine_streams.command(engine_streams.JOIN_TOPOLOGY, engine_streams.JOIN_TOPICS, processing=ALO),
        "stream-orch run topologies/reconciliation.yaml (join step, RocksDB), at_least_once",
        unavailable=engine_streams.unavailable(
            engine_streams.JOIN_TOPOLOGY, engine_streams.JOIN_TOPICS, processing=ALO
        ),
        extra_env=engine.ENV,
        ours=True,
    ),
    Contender(
        "engine_join_eos",
        "join",
        engine_streams.command(engine_streams.JOIN_TOPOLOGY, engine_streams.JOIN_TOPICS, processing=EOS),
        "stream-orch run topologies/reconciliation.yaml as shipped, processing: exactly_once",
        unavailable=engine_streams.unavailable(
            engine_streams.JOIN_TOPOLOGY, engine_streams.JOIN_TOPICS, processing=EOS
        ),
        extra_env=engine.ENV,
        ours=True,
        transactional=True,
    ),
    *(_kstreams(kind, processing) for kind in KSTREAMS_APPS for processing in (ALO, EOS)),  # type: ignore[arg-type]
    *(_ab(name) for name in ("engine_forward", "engine_fraud", "engine_join")),
)

BY_NAME = {c.name: c for c in CONTENDERS}
