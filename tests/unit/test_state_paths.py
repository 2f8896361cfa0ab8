"""Every store path is checked to be inside the state folder before anything is created or
deleted (issue 19, item 10, defence in depth behind validate's name rule): a table or topology
name with '..' or a symlink out of the folder gets one line, and nothing outside is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.errors import UserError
from stream_orch.state.store import store_opener


@pytest.mark.parametrize(
    "names",
    [
        ["topo", "worker-0", "../../../../seen"],  # a table named ../../../../seen
        ["..", "..", "seen", "t"],  # topology: .., and a worker id of .. (STREAM_ORCH_INSTANCE_ID)
        ["topo", "worker-0", "/tmp/seen"],  # an absolute name replaces the path before it
    ],
)
def test_a_name_leading_out_of_the_state_folder_gets_one_line_and_no_store(
    tmp_path: Path, names: list[str]
) -> None:
    root = tmp_path / "state"
    folder = Path(root, "stores", *names)
    with pytest.raises(UserError) as caught:
        store_opener("rocksdb", folder, root=root)
    message = str(caught.value)
    assert "outside the state folder" in message and "\n" not in message
    assert str(folder) in message, "the line names the path"
    assert not (tmp_path / "seen").exists() and not root.exists(), "nothing was created"


def test_a_symlink_out_of_the_state_folder_is_not_followed_to_delete(tmp_path: Path) -> None:
    root, outside = tmp_path / "state", tmp_path / "elsewhere"
    (outside / "0").mkdir(parents=True)
    (outside / "0" / "CURRENT").write_text("not-a-manifest\n")  # looks like a corrupt store
    (outside / "0" / "keep.txt").write_text("someone's file")
    (root / "stores" / "p").mkdir(parents=True)
    (root / "stores" / "t").symlink_to(outside)  # the table's folder
    (root / "stores" / "p" / "0").symlink_to(outside / "0")  # one partition's folder
    with pytest.raises(UserError, match="outside the state folder"):
        store_opener("rocksdb", root / "stores" / "t", root=root)
    opener = store_opener("rocksdb", root / "stores" / "p", root=root)
    with pytest.raises(UserError, match="outside the state folder"):
        opener(0)
    assert (outside / "0" / "keep.txt").exists(), "a folder outside the state folder was deleted"


def test_a_symlink_within_the_state_folder_and_memory_stores_are_fine(tmp_path: Path) -> None:
    root = tmp_path / "state"
    (root / "real").mkdir(parents=True)
    (root / "stores").symlink_to(root / "real")
    store = store_opener("rocksdb", root / "stores" / "t", root=root)(0)
    store.write({"k": 1}, 1)
    store.close()
    assert (root / "real" / "t" / "0").is_dir()
    assert store_opener("memory", tmp_path / ".." / "x", root=root)(0).get("k") is None
