"""The reload decision of a worker (Reloader) on a copy of the fraud topology, and the store of
the versions it ran; the swap itself is a callback here (the integration tests run it for real)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stream_orch.runtime.reload import Reloader
from stream_orch.runtime.versions import TopologyVersion, VersionStore, version_file_stem
from stream_orch.topology.loader import load_topology
from stream_orch.topology.models import TopologySpec

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
WEIGHT = "{name: amount_over_5x_average, when: amount_eur > 5 * avg_amount, weight: 0.4}"


def fraud_copy(folder: Path) -> Path:
    """The fraud topology in ``folder``; its model file still found in topologies/."""
    text = (REPO / "topologies" / "fraud_detection.yaml").read_text()
    assert WEIGHT in text and 'version: "1.0.0"' in text
    path = folder / "fraud.yaml"
    path.write_text(text + f"\npython_paths: [{REPO / 'topologies'}]\n")
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


class Applied:
    def __init__(self) -> None:
        self.specs: list[TopologySpec] = []

    async def __call__(self, spec: TopologySpec) -> None:
        self.specs.append(spec)


def reloader(tmp_path: Path) -> tuple[Reloader, Path, Applied]:
    path = fraud_copy(tmp_path)
    running = TopologyVersion.of(load_topology(path), path.read_text(), SCHEMAS)
    applied = Applied()
    store = VersionStore(tmp_path / "state", running.spec.topology)
    return Reloader(running, path, SCHEMAS, store, applied), path, applied


def run(coro):
    return asyncio.run(coro)


def weight_of(spec: TopologySpec) -> float:
    score = next(s for s in spec.nodes["score_transactions"].steps if s.step == "score")
    return score.rules[0].weight


def test_a_changed_weight_with_a_new_version_is_applied_and_kept(tmp_path: Path) -> None:
    r, path, applied = reloader(tmp_path)
    edit(path, "weight: 0.4}", "weight: 0.5}")
    edit(path, 'version: "1.0.0"', 'version: "1.1.0"')
    result = run(r.reload("SIGHUP"))
    assert (result.result, result.version) == ("applied", "1.1.0")
    assert [weight_of(s) for s in applied.specs] == [0.5]
    assert r.status()["version"] == "1.1.0" and r.status()["last_reload"]["result"] == "applied"
    assert sorted(r.store.versions()) == ["1.0.0", "1.1.0"]
    assert r.store.get("1.1.0")[0] == path.read_text()


def test_a_reload_that_adds_a_step_is_refused_and_the_running_version_stays(tmp_path: Path) -> None:
    r, path, applied = reloader(tmp_path)
    edit(
        path,
        "      - step: validate\n      # d.",
        "      - step: validate\n      - {step: filter, when: amount > 0}\n      # d.",
    )
    edit(path, 'version: "1.0.0"', 'version: "1.1.0"')
    result = run(r.reload("SIGHUP"))
    assert result.result == "refused" and applied.specs == []
    assert "nodes.score_transactions.steps[2]: a step was added (needs a restart)" in result.reason
    assert "\n" not in result.reason
    assert r.status()["version"] == "1.0.0"


def test_new_content_under_the_same_version_is_refused(tmp_path: Path) -> None:
    r, path, applied = reloader(tmp_path)
    edit(path, "weight: 0.4}", "weight: 0.5}")
    result = run(r.reload("SIGHUP"))
    assert result.result == "refused" and "give it a new version" in result.reason
    assert applied.specs == []


def test_an_invalid_file_is_refused_with_its_first_problem(tmp_path: Path) -> None:
    r, path, applied = reloader(tmp_path)
    edit(path, "when: velocity_60s > 5", "when: velocity_60s >")
    edit(path, 'version: "1.0.0"', 'version: "1.1.0"')
    result = run(r.reload("SIGHUP"))
    assert result.result == "refused" and result.reason.startswith(str(path))
    assert applied.specs == []


def test_a_formatting_change_only_is_a_new_content_but_no_new_rules(tmp_path: Path) -> None:
    r, path, _ = reloader(tmp_path)
    assert run(r.reload("SIGHUP")).result == "unchanged"
    edit(path, "# Fraud detection", "# Fraud detection (comment edited)")
    edit(path, 'version: "1.0.0"', 'version: "1.0.1"')
    assert run(r.reload("SIGHUP")).result == "applied"


def test_a_changed_schema_file_is_refused(tmp_path: Path) -> None:
    r, path, _ = reloader(tmp_path)
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    for f in SCHEMAS.glob("*.avsc"):
        (schemas / f.name).write_text(f.read_text())
    r.schema_dir = schemas
    (schemas / "fraud_alert.avsc").write_text((SCHEMAS / "fraud_alert.avsc").read_text().replace("\n", "\n "))
    edit(path, 'version: "1.0.0"', 'version: "1.1.0"')
    result = run(r.reload("SIGHUP"))
    assert result.result == "refused" and "schema fraud_alert: changed (needs a restart)" in result.reason


def test_rollback_applies_the_kept_copy_and_an_unknown_version_is_refused(tmp_path: Path) -> None:
    r, path, applied = reloader(tmp_path)
    edit(path, "weight: 0.4}", "weight: 0.5}")
    edit(path, 'version: "1.0.0"', 'version: "2"')
    assert run(r.reload("SIGHUP")).result == "applied"
    back = run(r.reload("stream-orch reload", to_version="1.0.0"))
    assert (back.result, back.version) == ("applied", "1.0.0")
    assert [weight_of(s) for s in applied.specs] == [0.5, 0.4]
    missing = run(r.reload("http", to_version="../../etc/passwd"))
    assert missing.result == "refused" and "no kept version" in missing.reason
    assert r.status()["version"] == "1.0.0"


def test_an_announced_version_is_taken_only_when_this_workers_file_is_that_content(tmp_path: Path) -> None:
    r, path, applied = reloader(tmp_path)
    edit(path, "weight: 0.4}", "weight: 0.5}")
    edit(path, 'version: "1.0.0"', 'version: "1.1.0"')
    ours = TopologyVersion.of(load_topology(path), path.read_text(), SCHEMAS)
    run(r.heard("1.1.0", "0" * 16))  # another content: kept
    assert applied.specs == [] and r.running.version == "1.0.0"
    run(r.heard("1.1.0", ours.content_hash))
    assert [weight_of(s) for s in applied.specs] == [0.5] and r.running.version == "1.1.0"
    assert r.last is not None and r.last.trigger == "announced"


@pytest.mark.parametrize("version", ["1.0.0", "v2_final", "../x", "a/b", ".hidden", "x" * 300])
def test_a_version_is_always_a_plain_file_name(version: str) -> None:
    stem = version_file_stem(version)
    assert "/" not in stem and not stem.startswith(".") and len(stem) <= 202
    assert (stem == version) == (version in ("1.0.0", "v2_final"))


def test_a_state_folder_that_cannot_be_written_loses_the_rollback_not_the_reload(tmp_path: Path) -> None:
    path = fraud_copy(tmp_path)
    running = TopologyVersion.of(load_topology(path), path.read_text(), SCHEMAS)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the state folder should be")
    applied = Applied()
    r = Reloader(running, path, SCHEMAS, VersionStore(blocked, running.spec.topology), applied)
    edit(path, 'version: "1.0.0"', 'version: "1.0.1"')
    assert run(r.reload("SIGHUP")).result == "applied" and len(applied.specs) == 1
    assert r.store.versions() == []
