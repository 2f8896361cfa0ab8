"""``python -m benchmarks run | soak | profile | list`` — see benchmarks/README.md."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from benchmarks import env
from benchmarks.procs import install_cleanup

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--bootstrap", default=env.DEFAULT_BOOTSTRAP, help="local broker (127.0.0.1 only)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="throughput, CPU, RSS, latency and scaling of every contender")
    run.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke test: 20k records, 1 run, latency at 1k/s for 2 s on the warm process, no scaling",
    )
    run.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        help="comma-separated contender names (see `list`)",
    )
    run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    run.add_argument("--records", type=int, help="transactions in the data set (default 200000; quick 20000)")
    run.add_argument(
        "--runs", type=int, help="measured throughput rounds (each contender once per round; default 5)"
    )
    run.add_argument(
        "--warmup-rounds", type=int, help="rounds run first and discarded (default 1; quick: none)"
    )
    run.add_argument(
        "--quiet-timeout",
        type=float,
        default=20.0,
        help="longest wait, s, for an idle broker and machine before each measurement",
    )
    run.add_argument("--rates", type=_ints, help="latency offered rates, events/s (default 1000,5000,10000)")
    run.add_argument("--latency-seconds", type=float, help="seconds per offered rate (default 10)")
    run.add_argument("--workers", type=_ints, default=[1, 2, 4], help="scaling run worker counts")
    run.add_argument("--no-latency", action="store_true")
    run.add_argument("--no-scaling", action="store_true")
    run.add_argument("--keep-topics", action="store_true", help="leave the run's topics on the broker")

    soak = sub.add_parser("soak", help="fixed rate for minutes, RSS over time")
    soak.add_argument("--minutes", type=float, default=10.0)
    soak.add_argument("--rate", type=int, default=2000)
    soak.add_argument("--contender", default="engine_fraud")
    soak.add_argument("--out", type=Path, default=DEFAULT_OUT)

    prof = sub.add_parser("profile", help="one throughput run under py-spy")
    prof.add_argument("contender")
    prof.add_argument("--records", type=int, default=100_000)
    prof.add_argument("--format", choices=["speedscope", "flamegraph", "raw"], default="flamegraph")
    prof.add_argument("--out", type=Path, default=DEFAULT_OUT)
    prof.add_argument(
        "--native",
        action="store_true",
        help="py-spy --native: C frames (orjson, RocksDB, the record builder) too",
    )
    prof.add_argument(
        "--idle",
        action="store_true",
        help="py-spy --idle: samples of the event loop waiting too (where a worker waits, not works)",
    )
    prof.add_argument(
        "--rate",
        type=int,
        default=100,
        help="samples per second (100: about 1,000 samples for a 100k-record fraud run, too few for "
        "line-level shares; 1000 for those)",
    )

    sub.add_parser("list", help="the contenders and whether each can run here")
    clean = sub.add_parser("clean", help="delete the topics a killed run left (bench.<RUN_ID>.*)")
    clean.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="as in the run's topic names")
    args = parser.parse_args(argv)
    install_cleanup()

    if args.command == "list":
        from benchmarks.contenders import CONTENDERS

        for c in CONTENDERS:
            reason = c.unavailable()
            print(
                f"{c.name:16} {c.kind:8} {'ready' if not reason else 'skipped: ' + reason}  — {c.description}"
            )
        return 0
    if args.command == "clean":
        import re

        from benchmarks.kafka import sweep_topics
        from benchmarks.runner import check_local

        check_local(args.bootstrap)
        for run_id in args.run_ids:
            if not re.fullmatch(r"[0-9a-z]{6,}", run_id):
                raise SystemExit(f"benchmarks: {run_id!r} does not look like a run id")
            print(f"{run_id}: deleted {asyncio.run(sweep_topics(args.bootstrap, f'bench.{run_id}.'))} topics")
        return 0
    if args.command == "run":
        from benchmarks.runner import RunConfig
        from benchmarks.runner import run as run_all

        q = args.quick
        cfg = RunConfig(
            quick=q,
            records=args.records or (20_000 if q else 200_000),
            runs=args.runs or (1 if q else 5),
            rates=args.rates or ([1000] if q else [1000, 5000, 10000]),
            latency_seconds=args.latency_seconds or (2.0 if q else 10.0),
            workers=args.workers,
            only=args.only,
            out=args.out,
            bootstrap=args.bootstrap,
            keep_topics=args.keep_topics,
            latency=not args.no_latency,
            scaling=not (q or args.no_scaling),
            warmup_rounds=args.warmup_rounds if args.warmup_rounds is not None else (0 if q else 1),
            quiet_timeout_s=args.quiet_timeout,
        )
        results = asyncio.run(run_all(cfg))
        ok = [c for c in results["contenders"].values() if c["status"] == "ok"]
        failed = [c for c in results["contenders"].values() if c["status"] == "failed"]
        return 1 if failed or not ok else 0
    if args.command == "soak":
        from benchmarks.soak import soak as soak_run

        asyncio.run(soak_run(args.contender, args.minutes, args.rate, args.out, args.bootstrap))
        return 0
    if args.command == "profile":
        from benchmarks.profile import profile as profile_run

        asyncio.run(
            profile_run(
                args.contender,
                args.records,
                args.format,
                args.out,
                args.bootstrap,
                rate=args.rate,
                native=args.native,
                idle=args.idle,
            )
        )
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
