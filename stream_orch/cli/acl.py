"""``stream-orch acl plan TOPOLOGY --user U [--create-topics] [--apply]``: the ACLs a worker of a
topology needs (:mod:`stream_orch.security.acls`), printed, or applied through the admin API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from stream_orch.cli.topology_file import load_or_report
from stream_orch.security.acls import plan_acls, principal_of
from stream_orch.settings import Settings
from stream_orch.transport.connect import start_client
from stream_orch.transport.security_admin import create_acls


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "acl",
        help="the Kafka ACLs a topology's workers need (least privilege)",
        description="Kafka ACLs for the user a topology's workers run as.",
    )
    actions = parser.add_subparsers(dest="acl_action", metavar="ACTION", required=True)
    plan = actions.add_parser(
        "plan",
        help="print (or --apply) the exact ACLs a worker of TOPOLOGY needs",
        description="Print the ACLs a worker running every node of TOPOLOGY needs, and nothing else: "
        "read its inputs, retry tiers, table topics and changelogs; write its outputs, retry tiers, "
        "dead letters, changelogs, repartition and ticks topics and the audit topic (read too: reload "
        "announcements); describe the configs of every topic it reconciles; its consumer groups; its "
        "transactional ids under exactly_once. --apply creates them through the admin API, connected "
        "with the STREAM_ORCH_* settings (a user allowed to alter ACLs, e.g. the local broker's admin).",
    )
    plan.add_argument("file", type=Path, help="topology YAML file")
    plan.add_argument("--user", required=True, help="the workers' user (principal User:USER)")
    plan.add_argument("--create-topics", action="store_true", help="also CREATE on the topics it reconciles")
    plan.add_argument("--apply", action="store_true", help="create the ACLs on the cluster")
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    loaded = load_or_report(args.file)
    if loaded is None:
        return 1
    spec = loaded.spec
    principal = principal_of(args.user)
    acls = plan_acls(
        spec, audit_topic=settings.audit_topic if settings.audit else None, create_topics=args.create_topics
    )
    for acl in acls:
        print(acl.describe(principal))
    if args.apply:
        admin = await start_client(AIOKafkaAdminClient(**settings.kafka_client_args()), settings)  # type: ignore[type-var]
        try:
            await create_acls(admin, [acl.codes(principal) for acl in acls])
        finally:
            await admin.close()
        print(f"applied {len(acls)} ACLs for {principal} at {settings.bootstrap_servers}", file=sys.stderr)
    return 0
