"""The `model` step: scores equal onnxruntime's own output, files that do not fit are refused at
validate (file:line) and at build, bad features and results go to the DLQ with their reason."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from stream_orch.reliability import headers as H
from stream_orch.steps.base import Event
from stream_orch.steps.common import StepConfigError
from stream_orch.steps.registry import build_step
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import load_topology
from tests.unit.step_harness import REPO, SCHEMAS, FakeContext

FRAUD_MODEL = REPO / "topologies" / "models" / "fraud.onnx"
FRAUD_FEATURES = ["amount_ratio", "velocity_60s", "foreign", "online"]

TOPOLOGY = """\
topology: scored
topics:
  in: {{partitions: 1}}
  out: {{partitions: 1}}
nodes:
  work:
    input: in
    steps:
      - step: model
        file: {file}
        inputs: {inputs}
        output: p
        take: {take}
    routes:
      - to: out
    errors: {{dlq: in.dlq}}
"""


def columns_model(path: Path, names: list[str], body: str = "sigmoid") -> Path:
    """A model with one float [N, 1] input per name; its output is sigmoid(sum), or log(first)."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in names]
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])
    if body == "sigmoid":
        nodes = [helper.make_node("Sum", names, ["s"]), helper.make_node("Sigmoid", ["s"], ["probabilities"])]
    else:  # log: a negative input gives nan, zero gives -inf
        nodes = [helper.make_node("Log", [names[0]], ["probabilities"])]
    graph = helper.make_graph(nodes, "m", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def topology(tmp_path: Path, file: str, inputs: Any, take: str = "probability") -> Path:
    path = tmp_path / "scored.yaml"
    path.write_text(TOPOLOGY.format(file=file, inputs=inputs, take=take))
    return path


def step_of(path: Path) -> Any:
    spec = load_topology(path).spec
    return build_step(spec.nodes["work"].steps[0], topology_spec=spec, schemas=SCHEMAS, node_name="work")


def with_fraud_model(tmp_path: Path, inputs: Any = None, take: str = "probability") -> Path:
    shutil.copytree(FRAUD_MODEL.parent, tmp_path / "models")
    return topology(tmp_path, "models/fraud.onnx", inputs or FRAUD_FEATURES, take)


def errors(problems: list[Any]) -> list[Any]:
    return [p for p in problems if p.severity == "error"]  # not the warning of a topic without schema


def events(rows: list[dict[str, Any]]) -> list[Event]:
    return [Event(value=dict(r), offset=i) for i, r in enumerate(rows)]


def fraud_rows(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "amount_ratio": rng.uniform(0, 40),
            "velocity_60s": rng.randint(1, 9),
            "foreign": rng.choice([0, 1]),
            "online": rng.choice([True, False]),  # a bool counts as 0/1
        }
        for _ in range(n)
    ]


async def test_scores_equal_onnxruntime_on_the_same_rows(tmp_path: Path) -> None:
    step = step_of(with_fraud_model(tmp_path))
    rows = fraud_rows(2000)
    ctx = FakeContext()
    out = await step.run(events(rows), ctx)
    assert len(out) == 2000 and not ctx.rejected
    session = ort.InferenceSession(str(FRAUD_MODEL), providers=["CPUExecutionProvider"])
    x = np.array([[float(r[f]) for f in FRAUD_FEATURES] for r in rows], dtype=np.float32)
    label, probabilities = session.run(None, {"features": x})
    assert [e.value["p"] for e in out] == pytest.approx(probabilities[:, 1].tolist(), abs=1e-6)
    assert len({round(e.value["p"], 3) for e in out}) > 100  # the rows differ: so do the scores
    # take: label gives the model's class
    labelled = step_of(with_fraud_model(tmp_path / "l", take="label"))
    out = await labelled.run(events(rows), FakeContext())
    assert [e.value["p"] for e in out] == label.tolist() and set(label.tolist()) == {0, 1}


async def test_expressions_feed_the_features_as_the_fraud_topology_does(tmp_path: Path) -> None:
    inputs = (
        '{amount_ratio: "amount_eur / max(avg_amount, 1.0)", velocity_60s: velocity_60s, '
        'foreign: "1 if country != home_country else 0", online: "1 if channel == \'online\' else 0"}'
    )
    step = step_of(with_fraud_model(tmp_path, inputs))
    record = {"amount_eur": 936.0, "avg_amount": 200.0, "velocity_60s": 5, "country": "FR"}
    out = await step.run(events([{**record, "home_country": "GB", "channel": "atm"}]), FakeContext())
    session = ort.InferenceSession(str(FRAUD_MODEL), providers=["CPUExecutionProvider"])
    expected = session.run(["probabilities"], {"features": np.array([[4.68, 5, 1, 0]], dtype=np.float32)})
    assert out[0].value["p"] == pytest.approx(float(expected[0][0, 1]), abs=1e-6)


async def test_a_model_with_one_input_per_feature(tmp_path: Path) -> None:
    columns_model(tmp_path / "m.onnx", ["a", "b"])
    step = step_of(topology(tmp_path, "m.onnx", "[a, b]"))
    rows = [{"a": 0.5 * i, "b": -0.25 * i} for i in range(50)]
    out = await step.run(events(rows), FakeContext())
    assert [e.value["p"] for e in out] == pytest.approx([1 / (1 + np.exp(-0.25 * i)) for i in range(50)])


async def test_bad_features_go_to_the_dlq_and_the_rest_of_the_batch_is_scored(tmp_path: Path) -> None:
    step = step_of(with_fraud_model(tmp_path))
    good = fraud_rows(4)
    bad = [
        {**good[0], "foreign": None},
        {k: v for k, v in good[1].items() if k != "velocity_60s"},
        {**good[2], "amount_ratio": "12.5"},
        {**good[3], "online": float("nan")},
        {**good[0], "amount_ratio": 10**40},  # beyond float32
    ]
    ctx = FakeContext()
    batch = events([good[0], *bad[:2], good[1], *bad[2:], good[2], good[3]])
    out = await step.run(batch, ctx)
    assert [e.offset for e in out] == [0, 3, 7, 8]
    assert ctx.reject_reasons == [
        "model_input: foreign is missing",
        "model_input: velocity_60s is missing",
        "model_input: amount_ratio is not a number (got '12.5')",
        "model_input: online is not a finite number in float32",
        "model_input: amount_ratio is not a finite number in float32",
    ]
    assert all("p" not in e.value for e, _, _ in ctx.rejected)
    alone = await step_of(with_fraud_model(tmp_path / "a")).run(events(good), FakeContext())
    assert [e.value["p"] for e in out] == [e.value["p"] for e in alone]  # as if scored without them


async def test_a_result_that_is_not_finite_goes_to_the_dlq(tmp_path: Path) -> None:
    columns_model(tmp_path / "log.onnx", ["a"], body="log")
    step = step_of(topology(tmp_path, "log.onnx", "[a]"))
    ctx = FakeContext()
    out = await step.run(events([{"a": 1.0}, {"a": -1.0}, {"a": 0.0}, {"a": np.e}]), ctx)
    assert [(e.offset, e.value["p"]) for e in out] == [(0, 0.0), (3, pytest.approx(1.0))]
    assert [(e.offset, r) for e, r, _ in ctx.rejected] == [
        (1, "model_output: the model returned nan (not a finite number)"),
        (2, "model_output: the model returned -inf (not a finite number)"),
    ]


def test_wrong_input_names_fail_validate_with_file_and_line_and_the_build(tmp_path: Path) -> None:
    columns_model(tmp_path / "m.onnx", ["a", "b"])
    path = topology(tmp_path, "m.onnx", "[a, c]")
    [problem] = errors(lint(load_topology(path), REPO / "schemas"))
    assert (problem.file, problem.line) == (str(path), 10)  # the step's `file:` line
    assert "node `work`, step model: model file `m.onnx`" in problem.message
    assert "no model input named `c`" in problem.message and "`b` float[N, 1] not fed" in problem.message
    with pytest.raises(StepConfigError, match="no model input named `c`"):
        step_of(path)


def test_a_matrix_model_checks_its_feature_names_and_count(tmp_path: Path) -> None:
    renamed = with_fraud_model(tmp_path, ["ratio", "velocity_60s", "foreign", "online"])
    [problem] = errors(lint(load_topology(renamed), REPO / "schemas"))
    assert problem.line == 10
    assert "the model's features are amount_ratio, velocity_60s, foreign, online" in problem.message
    three = topology(tmp_path, "models/fraud.onnx", "[amount_ratio, velocity_60s, foreign]")
    [problem] = errors(lint(load_topology(three), REPO / "schemas"))
    assert "takes 4 features but the step gives 3" in problem.message
    with pytest.raises(StepConfigError, match="takes 4 features"):
        step_of(three)


def test_a_file_that_is_not_onnx_or_not_there_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    [problem] = errors(lint(load_topology(topology(tmp_path, "junk.onnx", "[a]")), REPO / "schemas"))
    assert (
        "model file `junk.onnx` cannot be loaded as ONNX" in problem.message and "\n" not in problem.message
    )
    [problem] = errors(lint(load_topology(topology(tmp_path, "none.onnx", "[a]")), REPO / "schemas"))
    assert "model file `none.onnx` does not exist" in problem.message


def test_a_path_outside_the_topology_folder_is_refused(tmp_path: Path) -> None:
    outside = columns_model(tmp_path / "elsewhere" / "m.onnx", ["a"])
    home = tmp_path / "home"
    home.mkdir()
    (home / "link.onnx").symlink_to(outside)
    for file, why in [
        ("../elsewhere/m.onnx", "is outside the topology's folder"),
        (str(outside), "is an absolute path"),
        ("link.onnx", "is outside the topology's folder"),
    ]:
        path = topology(home, file, "[a]")
        [problem] = errors(lint(load_topology(path), REPO / "schemas"))
        assert why in problem.message, (file, problem.message)
        with pytest.raises(StepConfigError, match=why):
            step_of(path)


async def test_lineage_names_the_model_its_version_and_its_file_hash(tmp_path: Path) -> None:
    step = step_of(with_fraud_model(tmp_path))
    digest = hashlib.sha256(FRAUD_MODEL.read_bytes()).hexdigest()[:12]
    assert step.lineage_headers == [
        (H.MODEL_NAME, b"fraud"),
        (H.MODEL_VERSION, b"1"),  # the file's model_version
        (H.MODEL_SHA256, digest.encode()),
    ]
    await step.run(events(fraud_rows(3)), FakeContext())
    [(model, seconds)] = step.drain_timings()
    assert model == "fraud" and seconds > 0 and step.drain_timings() == []


def test_the_model_runs_on_one_thread(tmp_path: Path) -> None:
    options = step_of(with_fraud_model(tmp_path)).model.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


def test_a_worker_path_scores_dead_letters_and_tags_outputs_with_the_model(tmp_path: Path) -> None:
    from stream_orch.testing import TopologyTestDriver

    path = with_fraud_model(tmp_path)
    with TopologyTestDriver(path, schemas=REPO / "schemas", start_ms=0) as driver:
        rows = fraud_rows(3)
        driver.pipe_many("in", [rows[0], {**rows[1], "foreign": "yes"}, rows[2]])
        out = driver.read("out")
        dead = driver.dead_letters()
    assert [r.value["amount_ratio"] for r in out] == [rows[0]["amount_ratio"], rows[2]["amount_ratio"]]
    assert all(0 <= r.value["p"] <= 1 for r in out)
    digest = hashlib.sha256(FRAUD_MODEL.read_bytes()).hexdigest()[:12]
    for record in out:
        assert record.headers["so.model.name"] == "fraud" and record.headers["so.model.version"] == "1"
        assert record.headers["so.model.sha256"] == digest and record.headers["so.node"] == "work"
    [letter] = dead
    assert letter.headers["so.error.reason"] == "model_input: foreign is not a number (got 'yes')"
    assert "so.model.name" not in letter.headers


def test_the_observer_puts_model_timings_in_a_histogram() -> None:
    from types import SimpleNamespace

    from stream_orch.observability.health import HealthState
    from stream_orch.observability.metrics import Metrics
    from stream_orch.runtime.batch import BatchStats
    from stream_orch.runtime.observer import NodeObserver

    metrics = Metrics()
    runner = SimpleNamespace(
        name="work",
        spec=SimpleNamespace(topology="scored"),
        node=SimpleNamespace(input="in"),
        local_tables=[],
    )
    stats = BatchStats(n_in=2000, timings=[("fraud", 0.002), ("fraud", 0.004)])
    NodeObserver(metrics, HealthState()).batch_done(runner, stats)  # type: ignore[arg-type]
    labels = {"topology": "scored", "node": "work", "model": "fraud"}
    count = metrics.registry.get_sample_value("stream_orch_model_seconds_count", labels)
    total = metrics.registry.get_sample_value("stream_orch_model_seconds_sum", labels)
    assert count == 2 and total == pytest.approx(0.006)


def test_the_benchmark_variant_without_the_model_drops_the_step_and_its_rule() -> None:
    from benchmarks.model_step import without_model

    shipped = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    plain = without_model(shipped)
    kinds = [s.step for s in plain.nodes["score_transactions"].steps]
    assert "model" in [s.step for s in shipped.nodes["score_transactions"].steps] and "model" not in kinds
    [score] = [s for s in plain.nodes["score_transactions"].steps if s.step == "score"]
    [shipped_score] = [s for s in shipped.nodes["score_transactions"].steps if s.step == "score"]
    assert [r.name for r in score.rules] == [
        r.name for r in shipped_score.rules if r.name != "model_high_probability"
    ]


def test_every_step_with_a_bad_model_is_reported_even_when_checked_once(tmp_path: Path) -> None:
    columns_model(tmp_path / "m.onnx", ["a", "b"])
    text = topology(tmp_path, "m.onnx", "[a, c]").read_text()
    second = text.split("nodes:\n")[1].replace("  work:", "  again:")
    path = tmp_path / "two.yaml"
    path.write_text(text + second)
    problems = [p for p in errors(lint(load_topology(path), REPO / "schemas")) if "step model" in p.message]
    assert [p.line for p in problems] == [10, 21]
    assert all("no model input named `c`" in p.message for p in problems)


_FRAUD_INPUTS = (
    '{amount_ratio: "amount_eur / max(avg_amount, 1.0)", velocity_60s: velocity_60s, '
    'foreign: "1 if country != home_country else 0", online: "1 if channel == \'online\' else 0"}'
)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.sampled_from(["GB", "online", ""]),
)
_FIELDS = ["amount_eur", "avg_amount", "velocity_60s", "country", "home_country", "channel"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({f: _VALUES for f in _FIELDS}), min_size=1, max_size=6))
def test_the_features_read_in_one_function_equal_those_read_one_by_one(tmp_path: Path, rows) -> None:
    """The step reads all features with one generated function and falls back to its per-feature
    readers for a record that fails or has a feature not an int or float; the same features and
    rejections as the per-feature readers alone, for any mix of good and bad records."""
    step = step_of(with_fraud_model(tmp_path / str(len(list(tmp_path.iterdir()))), _FRAUD_INPUTS))
    fused_ctx, alone_ctx = FakeContext(), FakeContext()
    kept, flat = step._features(events(rows), fused_ctx)
    step._fused = None
    kept_alone, flat_alone = step._features(events(rows), alone_ctx)
    assert [e.offset for e in kept] == [e.offset for e in kept_alone]
    assert repr(flat) == repr(flat_alone)  # nan included
    assert fused_ctx.reject_reasons == alone_ctx.reject_reasons
