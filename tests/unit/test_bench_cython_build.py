"""benchmarks/cython_build.py, the issue 25 measurement aid: its module lists name files that
exist (a renamed module would otherwise drop out of the measurement unnoticed), and its clean-up
finds the build products and nothing else."""

from __future__ import annotations

from pathlib import Path

from benchmarks import cython_build


def test_every_listed_module_exists_and_top_is_part_of_all() -> None:
    for sources in cython_build.MODULES.values():
        for source in sources:
            assert (cython_build.ROOT / source).is_file(), source
    assert set(cython_build.MODULES["top"]) <= set(cython_build.MODULES["all"])
    # pipeline.py does not compile unchanged (see MODULES); topology/ holds pydantic models
    assert not any(s.endswith("pipeline.py") or "/topology/" in s for s in cython_build.MODULES["all"])


def test_built_finds_extensions_and_generated_c_only(tmp_path: Path) -> None:
    pkg = tmp_path / "stream_orch" / "runtime"
    pkg.mkdir(parents=True)
    for name in ("routing.py", "routing.c", "routing.cpython-311-x86_64-linux-gnu.so", "vendored.c"):
        (pkg / name).write_text("")
    found = sorted(p.name for p in cython_build.built(tmp_path))
    assert found == ["routing.c", "routing.cpython-311-x86_64-linux-gnu.so"]
