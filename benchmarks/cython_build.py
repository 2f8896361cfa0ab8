"""Compile the per-record path's modules with Cython 3 in place, unchanged (pure-Python mode).

    python -m benchmarks.cython_build                 # every module of MODULES, next to its .py
    python -m benchmarks.cython_build --set top       # eight of them (routing, outbox, tables...)
    python -m benchmarks.cython_build --clean         # remove the .so and .c files again

A measurement aid for issue 25 (does compiling cut CPU per event? Not enough to keep: figures in
benchmarks/README.md, "Cython"), not part of the install. An in-place ``.so`` shadows its ``.py``:
after an edit the old compiled code runs, so ``--clean`` when done. The build products are
deliberately not git-ignored, so that ``git status`` shows any left behind. Needs
``pip install 'cython>=3'`` and a C compiler. Annotations are not used as C types
(``annotation_typing=False``): a ``float`` annotation would turn an ``int`` argument into a C
double, and behaviour must stay as it is (``--annotation-typing`` builds it anyway, to measure).
Compiled, tracebacks name the sources relative to the tree (``stream_orch/runtime/batch.py``),
which is the one unit test that fails (tests/unit/test_dlq_privacy.py, the DLQ stack trace).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The modules a batch's records go through in the forwarding and fraud topologies (decode, the
# steps, routing and the outbox, the tables and their RocksDB stores, the fetch hand-over).
# Left out: pydantic models (topology/), the expression compiler (its output is Python code), and
# runtime/pipeline.py: Cython 3.3 rejects its `max([*delays, x if c else 0])` ("starred
# expression is not allowed here") and the source is not changed for this.
MODULES: dict[str, tuple[str, ...]] = {
    "all": (
        "stream_orch/runtime/batch.py",
        "stream_orch/runtime/routing.py",
        "stream_orch/runtime/output.py",
        "stream_orch/runtime/failures.py",
        "stream_orch/runtime/delivery.py",
        "stream_orch/runtime/node.py",
        "stream_orch/runtime/topic_plans.py",
        "stream_orch/runtime/prefetch.py",
        "stream_orch/codecs/json_codec.py",
        "stream_orch/codecs/conform.py",
        "stream_orch/codecs/base.py",
        "stream_orch/steps/base.py",
        "stream_orch/steps/common.py",
        "stream_orch/steps/table_keys.py",
        "stream_orch/steps/validate.py",
        "stream_orch/steps/normalize.py",
        "stream_orch/steps/dedupe.py",
        "stream_orch/steps/enrich.py",
        "stream_orch/steps/aggregate.py",
        "stream_orch/steps/window_aggs.py",
        "stream_orch/steps/windows.py",
        "stream_orch/steps/source_watermarks.py",
        "stream_orch/steps/score.py",
        "stream_orch/steps/model.py",
        "stream_orch/steps/mask.py",
        "stream_orch/steps/derive.py",
        "stream_orch/steps/filter.py",
        "stream_orch/state/rocks.py",
        "stream_orch/state/tables.py",
        "stream_orch/state/store.py",
        "stream_orch/state/global_table.py",
        "stream_orch/transport/fetched.py",
        "stream_orch/reliability/headers.py",
        "stream_orch/expressions/functions.py",
    ),
}
MODULES["top"] = (
    "stream_orch/runtime/batch.py",
    "stream_orch/runtime/routing.py",
    "stream_orch/runtime/output.py",
    "stream_orch/state/rocks.py",
    "stream_orch/state/tables.py",
    "stream_orch/steps/dedupe.py",
    "stream_orch/steps/aggregate.py",
    "stream_orch/transport/fetched.py",
)


def built(root: Path) -> list[Path]:
    """The compiled files (and generated C) under ``root/stream_orch``."""
    pkg = root / "stream_orch"
    return [*pkg.rglob("*.so"), *(c for c in pkg.rglob("*.c") if c.with_suffix(".py").exists())]


def build(root: Path, sources: tuple[str, ...], annotation_typing: bool = False) -> None:
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    # named from their paths: steps/ is a namespace package, which cythonize would not see
    named = [Extension(s[: -len(".py")].replace("/", "."), [str(root / s)]) for s in sources]
    exts = cythonize(
        named,
        compiler_directives={"language_level": 3, "annotation_typing": annotation_typing},
        quiet=True,
        nthreads=2,
    )
    dist = Distribution({"ext_modules": exts})
    cmd = build_ext(dist)
    cmd.inplace = True
    cmd.build_temp = str(root / "build" / "cython")
    cmd.ensure_finalized()
    cmd.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(MODULES), default="all")
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree to compile in")
    parser.add_argument("--clean", action="store_true", help="remove the compiled files")
    parser.add_argument(
        "--annotation-typing",
        action="store_true",
        help="let Cython type variables from their annotations (changes behaviour: see above)",
    )
    args = parser.parse_args()
    for path in built(args.root):
        path.unlink()
    if not args.clean:
        os.chdir(args.root)
        build(args.root, MODULES[args.set], args.annotation_typing)
    print(*(p.relative_to(args.root) for p in sorted(built(args.root))), sep="\n", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
