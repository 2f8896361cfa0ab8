"""``stream-orch ingest PATH... --topic T --format csv|jsonl|json``: files into a topic, each
good row once (see :mod:`stream_orch.tools.ingest`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from stream_orch.cli.argtypes import positive_float, positive_int
from stream_orch.errors import UserError
from stream_orch.settings import Settings

EXIT_REJECTED = 4  # 0: all good; 2: a bad argument; 3: Kafka unreachable (as every command)


def register(subparsers: Any) -> None:
    from stream_orch.tools.ingest.publish import DEFAULT_CHUNK
    from stream_orch.tools.ingest.readers import FORMATS

    parser = subparsers.add_parser(
        "ingest",
        help="publish the rows of CSV / JSON files into a topic, each once",
        description="Validate every row against the topic's schema and publish the good ones, each "
        "chunk in one transaction with its ledger record (topic stream-orch-ingest.TOPIC), so a "
        "re-run publishes nothing twice and resumes where a killed run stopped. Rejected rows go "
        f"to FILE.rejects as FILE:LINE: reason. Exit status: 0, {EXIT_REJECTED} if any row was "
        "rejected, 2 for a bad argument, 3 if Kafka cannot be reached.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files to ingest")
    parser.add_argument("--topic", required=True, help="topic to publish to")
    parser.add_argument("--format", required=True, choices=FORMATS, help="csv (with a header), jsonl or json")
    parser.add_argument(
        "--schema",
        help="schema NAME (in the schemas folder) or FILE.avsc; default: the one named like the topic",
    )
    parser.add_argument("--schemas", type=Path, metavar="DIR", help="schemas folder (default ./schemas)")
    parser.add_argument("--key-field", help="the record key is this field of the row (default: no key)")
    parser.add_argument("--watch", type=Path, metavar="DIR", help="then ingest each file that appears in DIR")
    parser.add_argument("--settle", type=positive_float, default=1.0, help="--watch: seconds a file must be "
                        "unchanged before it is taken (default 1)")  # fmt: skip
    parser.add_argument("--rejects", type=Path, metavar="FILE", help="one rejects file for all inputs "
                        "(default: PATH.rejects beside each input)")  # fmt: skip
    parser.add_argument("--chunk", type=positive_int, default=DEFAULT_CHUNK,
                        help=f"rows per transaction (default {DEFAULT_CHUNK})")  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _target(args: argparse.Namespace) -> Any:
    from stream_orch.codecs import DEFAULT_SCHEMA_DIR, JsonCodec, SchemaError, SchemaRegistry
    from stream_orch.tools.ingest.coerce import RowConformer
    from stream_orch.tools.ingest.publish import Target

    given = Path(args.schema) if args.schema else None
    if given is not None and (given.suffix == ".avsc" or given.is_file()):
        folder, name = given.parent, given.stem
        if not given.is_file():
            raise UserError(f"--schema {given}: no such file")
    else:
        name = args.schema or args.topic
        folder = args.schemas or (Path("schemas") if Path("schemas").is_dir() else DEFAULT_SCHEMA_DIR)
    try:
        registry = SchemaRegistry(folder)
        schema = registry.plain(name)
    except SchemaError as exc:
        hint = "" if args.schema else " (give --schema NAME or FILE.avsc)"
        raise UserError(f"no schema for topic {args.topic}: {exc}{hint}") from None
    if args.key_field and args.key_field not in {f["name"] for f in schema["fields"]}:
        raise UserError(f"--key-field {args.key_field}: schema {name} has no such field")
    return Target(
        topic=args.topic, format=args.format, conformer=RowConformer(schema, args.topic),
        codec=JsonCodec(schema_name=name), key_field=args.key_field, chunk=args.chunk, quiet=args.quiet,
    )  # fmt: skip


def _check_paths(args: argparse.Namespace) -> list[Path]:
    if not args.paths and args.watch is None:
        raise UserError("ingest: give at least one PATH or --watch DIR")
    paths = [Path(p) for p in args.paths]
    for path in paths:
        if not path.is_file():
            raise UserError(
                f"ingest: {path}: no such file" if not path.exists() else f"ingest: {path}: not a file"
            )
    if args.watch is not None and not args.watch.is_dir():
        raise UserError(f"ingest: --watch {args.watch}: no such folder")
    return paths


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.audit import NOBODY, Auditor, audit_log
    from stream_orch.audit.events import INGEST
    from stream_orch.tools.ingest.publish import ingest_file
    from stream_orch.tools.ingest.rejects import Rejects
    from stream_orch.tools.ingest.watch import watch

    paths = _check_paths(args)
    target = _target(args)
    auditor = Auditor(audit_log(settings, strict=True), NOBODY)
    await auditor.start()  # an audit topic that cannot be written stops the run before a row is sent
    rejects = Rejects(args.rejects)
    stop = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    busy = False  # a file is being ingested

    def on_signal() -> None:
        # Between files the watcher just ends (exit 0); a file being ingested is cut short: its
        # open chunk is aborted, the committed ones stay, a re-run resumes (exit 130).
        stop.set()
        if (busy or args.watch is None) and main is not None:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    rejected = 0

    async def one(path: Path) -> None:
        nonlocal rejected, busy
        busy = True
        try:
            result = await ingest_file(settings, target, path, rejects)
        except OSError as exc:  # gone or unreadable since the check, or the rejects file unwritable
            raise UserError(f"ingest: {exc.filename or path}: {exc.strerror or exc}") from None
        finally:
            busy = False
        rejected += result.rejected
        print(result.summary(rejects.target(path)), flush=True)
        await auditor.record(
            INGEST, file=str(path), topic=target.topic, rows=result.rows, published=result.published,
            rejected=result.rejected, ledger=result.digest[:12], already_done=result.already_done,
        )  # fmt: skip

    async def one_watched(path: Path) -> None:
        try:
            await one(path)
        except UserError as exc:
            if exc.exit_code == 3:  # Kafka is gone: so is the watcher
                raise
            print(f"stream-orch: {exc}", file=sys.stderr, flush=True)

    try:
        for path in paths:
            await one(path)
        if args.watch is not None and not stop.is_set():
            print(f"watching {args.watch} (Ctrl-C to stop)", file=sys.stderr, flush=True)
            await watch(args.watch, one_watched, stop, settle_s=args.settle)
    except asyncio.CancelledError:
        print("stream-orch: ingest: stopped; committed chunks stay published, a re-run resumes",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        rejects.close()
        await auditor.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_REJECTED if rejected else 0
