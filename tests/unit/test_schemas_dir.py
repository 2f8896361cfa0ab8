"""One schema-folder rule (issue 12, item 2): ``--schemas``, else ``schemas/`` beside the topology
file, else ``./schemas``; the same for validate, run and graph; said in ``--help``; the error
names the folders it tried."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stream_orch.cli.main import _parser, main
from stream_orch.topology.loader import SCHEMAS_RULE, SchemasNotFound, find_schemas_dir

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/work (the current folder) and tmp/project/fraud.yaml, no schema folder anywhere yet."""
    (tmp_path / "work").mkdir()
    (tmp_path / "project").mkdir()
    shutil.copy(FRAUD, tmp_path / "project" / "fraud.yaml")
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def schemas_at(folder: Path) -> Path:
    shutil.copytree(REPO / "schemas", folder)
    return folder


def test_the_order_is_given_then_beside_the_file_then_the_current_folder(layout: Path) -> None:
    topology = layout / "project" / "fraud.yaml"
    here = schemas_at(layout / "work" / "schemas")
    assert find_schemas_dir(topology).resolve() == here
    beside = schemas_at(layout / "project" / "schemas")
    assert find_schemas_dir(topology) == beside
    given = schemas_at(layout / "elsewhere")
    assert find_schemas_dir(topology, given) == given


def test_the_error_names_every_folder_tried(layout: Path) -> None:
    topology = layout / "project" / "fraud.yaml"
    with pytest.raises(SchemasNotFound) as caught:
        find_schemas_dir(topology)
    assert str(caught.value) == (
        f"no schema folder for {topology}: tried {layout / 'project' / 'schemas'} (beside the topology "
        f"file), {layout / 'work' / 'schemas'} (./schemas); pass --schemas DIR"
    )
    with pytest.raises(SchemasNotFound, match=r"schema folder /nope \(--schemas\) does not exist"):
        find_schemas_dir(topology, "/nope")


@pytest.mark.parametrize("command", ["validate", "run", "graph"])
def test_every_command_follows_the_rule(
    command: str, layout: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = layout / "project" / "fraud.yaml"
    # a broken copy, so that every command stops (run: before connecting) once it has read schemas
    topology.write_text(FRAUD.read_text().replace("action: \"'freeze'\"", "action: \"'freze'\""))
    if command == "run":
        rc = main(["run", str(topology)])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"stream-orch: error: no schema folder for {topology}: tried")
    schemas_at(layout / "work" / "schemas")  # found as ./schemas
    rc = main([command, str(topology)])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "`set` field `action` of `account.actions`: expected one of freeze, got str 'freze'" in text
    assert rc == (0 if command == "graph" else 1)


def test_help_says_the_rule() -> None:
    parser = _parser()
    assert SCHEMAS_RULE in " ".join(parser.format_help().split())
    for command in ("validate", "run", "graph"):
        sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        assert SCHEMAS_RULE in " ".join(sub.format_help().split()), command
