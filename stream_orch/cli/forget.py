"""``stream-orch forget TOPOLOGY --key FIELD=VALUE [--dry-run]``: an erasure request."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_orch.cli.schemas_dir import add_schemas_option
from stream_orch.errors import UserError
from stream_orch.settings import Settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "forget",
        help="erase one data subject's entries from every table keyed by them (GDPR/HIPAA erasure)",
        description="Tombstones the subject's entries in the changelogs of the tables steps write keyed by "
        "FIELD, and on the topics feeding tables keyed by FIELD; reports counts per table (never values) and "
        "the topics that may still hold the subject's records; records an audit event naming the subject by "
        "an HMAC digest (STREAM_ORCH_ERASURE_KEY). The nodes writing those tables must be stopped.",
    )
    p.add_argument("file", type=Path, help="the topology file")
    p.add_argument(
        "--key",
        required=True,
        metavar="FIELD=VALUE",
        help="the field keying the tables and the subject's value as the tables hold it (e.g. "
        "customer_id=C-000123: after the topology's normalize)",
    )
    p.add_argument("--dry-run", action="store_true", help="find and count only: nothing written or audited")
    p.add_argument(
        "--scan",
        action="store_true",
        help="also read every topic listed as possibly holding the subject's records and count them "
        "(reads those topics whole)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_schemas_option(p)
    p.set_defaults(func=_forget)


async def _forget(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.audit import Auditor, AuditSubject, audit_log
    from stream_orch.audit.events import FORGET
    from stream_orch.steps.mask import DEMO_KEY
    from stream_orch.tools.forget import erase
    from stream_orch.tools.forget.plan import as_json, parse_subject, plan, render, subject_digest
    from stream_orch.topology.loader import load_topology
    from stream_orch.topology.schema_fields import SchemaFields

    field, value = parse_subject(args.key)
    loaded = load_topology(args.file)
    try:
        from stream_orch.topology.loader import find_schemas_dir

        schemas = SchemaFields(find_schemas_dir(args.file, args.schemas))
        fields = schemas.fields
    except UserError:  # no schema folder: the topics are then named by their key alone
        fields = lambda name: None  # noqa: E731
    chosen = plan(loaded.spec, field, value, fields)
    if not args.dry_run:
        await erase.ensure_stopped(settings, chosen)
    found = await erase.find(settings, chosen)
    removed = {table: len(entries) for table, entries in found.items()}
    scanned = await erase.scan(settings, list(chosen.topics), field, value) if args.scan else None
    if not args.dry_run:
        secret = settings.erasure_key.get_secret_value() if settings.erasure_key else ""
        if not secret:
            print(
                "forget: STREAM_ORCH_ERASURE_KEY is unset: the audit digest uses the public demo key",
                file=sys.stderr,
            )
        # the audit topic is opened before anything is erased: one that cannot be written stops it first
        auditor = Auditor(
            audit_log(settings, strict=True), AuditSubject.of_topology(loaded.spec, args.file, None)
        )
        await auditor.start()
        try:
            written = await erase.tombstone(settings, chosen, found)
            joined = await erase.joined_meanwhile(settings, chosen) if chosen.groups else []
            await auditor.record(
                FORGET,
                field=field,
                subject_digest=subject_digest(field, value, secret or DEMO_KEY),
                digest_key="erasure_key" if secret else "demo",
                tables=removed,
                tombstones=written,
                topics=sorted({t.topic for t in chosen.targets}),
            )
        finally:
            await auditor.close()
        if joined:
            print(
                f"forget: warning: {', '.join(joined)} got members while erasing: a batch they committed may "
                "have written the subject's entries again; stop them and run forget again",
                file=sys.stderr,
            )
    if args.format == "json":
        sys.stdout.write(
            orjson.dumps(as_json(chosen, removed, args.dry_run, scanned), option=orjson.OPT_INDENT_2).decode()
            + "\n"
        )
    else:
        print(render(chosen, removed, args.dry_run, scanned))
    return 0
