"""``stream-orch generate fleet``: vehicle readings with faults, and route plans with delays."""

from __future__ import annotations

import argparse

from stream_orch.cli.generate_kind import Generated, Kind


def _arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--vehicles", type=int, default=20, help="vehicles (default 20)")
    group.add_argument(
        "--shift-minutes", type=float, default=120.0, help="event time of the shift (default 120)"
    )
    group.add_argument("--stops", type=int, default=5, help="planned stops per vehicle (default 5)")
    group.add_argument("--readings-topic", default="fleet.readings")
    group.add_argument("--plan-topic", default="fleet.plan")


def _build(args: argparse.Namespace) -> Generated:
    from stream_orch.errors import UserError
    from stream_orch.runtime.admin import TopicPlan
    from stream_orch.tools.generate_fleet import generate_fleet

    try:
        records, plan = generate_fleet(
            args.vehicles,
            seed=args.seed,
            start_ms=args.start_ms,
            minutes=args.shift_minutes,
            stops=args.stops,
            readings_topic=args.readings_topic,
            plan_topic=args.plan_topic,
        )
    except ValueError as exc:
        raise UserError(f"generate fleet: {exc} (--stops, --shift-minutes)") from None
    topics = [TopicPlan(args.readings_topic, args.partitions), TopicPlan(args.plan_topic, args.partitions)]
    summary = {
        "vehicles": plan.vehicles,
        "readings": plan.readings,
        "stops": plan.stops,
        "expected": plan.counts(),
    }
    return Generated(records, topics, summary, plan.truth())


KIND = Kind(
    help="vehicle readings with injected faults and route plans with delays (topologies/fleet.yaml)",
    add_arguments=_arguments,
    build=_build,
    non_negative=("vehicles", "stops", "shift_minutes"),
)
