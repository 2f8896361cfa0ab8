"""``stream-orch generate inventory``: stores, products, stock ledgers (topologies/inventory.yaml)."""

from __future__ import annotations

import argparse

from stream_orch.cli.generate_kind import Generated, Kind


def _arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--movements", type=int, default=3000, help="ledger lines (default 3000)")
    group.add_argument(
        "--stores", type=int, default=8, help="stores, over four regions (default 8, at least 2)"
    )
    group.add_argument("--products", type=int, default=20, help="products (default 20, at least 4)")
    group.add_argument("--movements-topic", default="inventory.movements")
    group.add_argument("--stores-topic", default="inventory.stores")
    group.add_argument("--products-topic", default="inventory.products")
    group.add_argument("--substitutes-topic", default="inventory.substitutes")


def _build(args: argparse.Namespace) -> Generated:
    from stream_orch.errors import UserError
    from stream_orch.runtime.admin import TopicPlan
    from stream_orch.tools.generate_inventory import Topics, generate_inventory

    if args.stores < 2 or args.products < 4:
        raise UserError("generate inventory: --stores must be >= 2 and --products >= 4")
    topics = Topics(args.movements_topic, args.stores_topic, args.products_topic, args.substitutes_topic)
    records, plan = generate_inventory(
        args.movements,
        seed=args.seed,
        start_ms=args.start_ms,
        stores=args.stores,
        products=args.products,
        topics=topics,
    )
    # the tables' topics as the topology declares them (3 partitions, compacted)
    plans = [TopicPlan(args.movements_topic, args.partitions)] + [
        TopicPlan(name, min(3, args.partitions), compact=True)
        for name in (args.stores_topic, args.products_topic, args.substitutes_topic)
    ]
    summary = {
        "lines": plan.lines,
        "counted": plan.counted,
        "duplicates": plan.duplicates,
        "by_type": dict(sorted(plan.kinds.items())),
        "levels": len(plan.stock),
        "expected_alerts": plan.alert_count(),
        "expected_dlq": dict(sorted(plan.dlq.items())),
    }
    return Generated(records, plans, summary, plan.truth())


KIND = Kind(
    help="stores, products and stock ledgers with low-stock crossings (topologies/inventory.yaml)",
    add_arguments=_arguments,
    build=_build,
    non_negative=("movements",),
)
