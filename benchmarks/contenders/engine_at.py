"""``python -m benchmarks.contenders.engine_at CHECKOUT ARGS...``: ``stream-orch ARGS`` run from
the package in another checkout of the project (e.g. ``git archive <commit> | tar -x -C DIR``).

For A/B runs of two versions of the engine in one benchmark run (``BENCH_AB_CHECKOUT``, the
``*_ab`` contenders): CPU per event is only comparable within a run on a shared machine. The
editable install of this checkout puts a finder ahead of ``sys.path``; it is taken out so that
``stream_orch`` is imported from CHECKOUT, with this venv's dependencies.
"""

from __future__ import annotations

import sys


def main() -> int:
    checkout, args = sys.argv[1], sys.argv[2:]
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    sys.path.insert(0, checkout)
    for name in [m for m in sys.modules if m == "stream_orch" or m.startswith("stream_orch.")]:
        del sys.modules[name]
    from stream_orch.cli.main import main as stream_orch

    if not stream_orch.__code__.co_filename.startswith(checkout):
        raise SystemExit(f"engine_at: stream_orch imported from {stream_orch.__code__.co_filename}")
    sys.argv = ["stream-orch", *args]
    return stream_orch()


if __name__ == "__main__":
    sys.exit(main())
