"""The README's figures of the shipped topologies are what `stream-orch graph --format mermaid`
draws today (fleet's is a simplified drawing and says so), so a topology change that forgets its
figure fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.cli.main import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["fraud_detection", "reconciliation", "inventory"])
def test_the_readme_figure_is_the_topology_s_graph(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    topology = REPO / "topologies" / f"{name}.yaml"
    assert main(["graph", str(topology), "--format", "mermaid", "--schemas", str(REPO / "schemas")]) == 0
    graph = capsys.readouterr().out.strip()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{graph}\n```" in readme
