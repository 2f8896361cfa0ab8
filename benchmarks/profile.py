"""``python -m benchmarks profile CONTENDER``: one throughput run under py-spy.

py-spy attaches to the running contender (``--pid``, with ``--subprocesses`` for workers that
fork) and samples it while it works through the data; on SIGINT it writes the profile. It
needs ptrace rights (root, or CAP_SYS_PTRACE); ``--nonblocking`` keeps it from pausing the
process it samples, so the profile does not slow the run it describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.data import make_dataset, produce_raw, produce_records
from benchmarks.kafka import OffsetWatcher, create_topics, delete_topics, sweep_topics
from benchmarks.measure import STARTUP_TIMEOUT_S, RunFailed, _check_alive, _start
from benchmarks.runner import log, make_stream_datasets, one_contender


def _py_spy() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    found = str(exe) if exe.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("benchmarks: py-spy not found; pip install -e '.[bench]'")
    return found


async def profile(
    name: str,
    records: int,
    fmt: str,
    out: Path,
    bootstrap: str,
    rate: int = 100,
    *,
    native: bool = False,
    idle: bool = False,
) -> Path | None:
    """``native``: py-spy's --native (C frames of the extensions too; it pauses the process
    for each sample, so it slows the run it describes: for where the time goes, not how much).
    ``idle``: py-spy's --idle, the samples of a thread waiting too (the event loop's select)."""
    setup = one_contender(name, bootstrap, "prof", streams=True)
    if setup is None:
        return None
    c, ctx, topics, all_topics = setup
    stream = make_stream_datasets({c.kind}, records).get(c.kind)  # window, join: their own data
    data = make_dataset(records) if stream is None else None
    if stream is not None:
        expected = stream.expected_outputs
        all_topics = [*all_topics, *([topics.settlements] if topics.settlements else [])]
    elif c.kind == "forward":
        expected = records
    else:
        expected = data.expected_enriched + data.expected_invalid
    suffix = {"speedscope": "speedscope.json", "flamegraph": "svg", "raw": "txt"}[fmt]
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"profile-{name}.{suffix}"
    await create_topics(bootstrap, all_topics, compact=[topics.customers])
    procs, spy = [], None
    try:
        if stream is not None:
            roles = {"input": topics.input, "settlements": topics.settlements}
            for role, items in stream.inputs.items():
                await produce_raw(bootstrap, roles[role], items)
        else:
            await produce_records(bootstrap, topics.customers, data.customers, "customer_id")
            await produce_records(bootstrap, topics.input, data.transactions, "account_id")
        procs = _start(ctx, c, topics, topics.prefix, 1)
        spy = subprocess.Popen(
            [
                _py_spy(),
                "record",
                "--pid",
                str(procs[0].pid),
                "--subprocesses",
                *(["--native"] if native else ["--nonblocking"]),
                *(["--idle"] if idle else []),
                "--rate",
                str(rate),
                "--format",
                fmt,
                "--output",
                str(target),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log(f"profiling {name} (pid {procs[0].pid}) over {records:,} records with py-spy")
        started = time.perf_counter()
        async with OffsetWatcher(bootstrap, topics.counted(c.kind)) as watcher:
            while (count := await watcher.count()) < expected:
                _check_alive(procs)
                if spy.poll() is not None:
                    raise RunFailed(
                        f"py-spy exited early: {spy.stdout.read().decode(errors='replace')[-800:]}"
                    )
                if time.perf_counter() - started > STARTUP_TIMEOUT_S + records / 500:
                    raise RunFailed(f"timed out at {count}/{expected} outputs")
                await asyncio.sleep(0.1)
        log(f"{name}: {expected:,} outputs in {time.perf_counter() - started:.1f} s (incl. start-up)")
    except RunFailed as exc:
        log(f"profile: FAILED — {exc}")
        raise SystemExit(1) from None
    finally:
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes the profile on SIGINT
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
        if spy is not None and spy.stdout:
            with contextlib.suppress(Exception):
                spy.stdout.close()
        for p in procs:
            p.stop()
        await delete_topics(bootstrap, all_topics)
        await sweep_topics(bootstrap, topics.prefix)  # what the contender derived itself
        shutil.rmtree(ctx.work_dir / "state", ignore_errors=True)
    if not target.exists():
        log(f"profile: py-spy wrote no {target}")
        raise SystemExit(1)
    log(f"wrote {target}")
    return target
