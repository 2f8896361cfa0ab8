"""``stream-orch kafka up|down|status|logs|reset``: the local single-node broker."""

from __future__ import annotations

import argparse
from typing import Any

from stream_orch.broker import BrokerManager
from stream_orch.broker.cluster import ClusterManager, ClusterSpec
from stream_orch.broker.users import PASSWORD_ENV, add_user
from stream_orch.errors import UserError
from stream_orch.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "kafka",
        help="run a local single-node Apache Kafka broker (no Docker needed)",
        description="Local single-node Apache Kafka (KRaft) on 127.0.0.1:--kafka-port, "
        "data under --state-dir/kafka. Needs Java 17+ and Maven (for the jars, once).",
    )
    actions = parser.add_subparsers(dest="kafka_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the broker (formats storage on first start)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the broker (default 60)")
    up.add_argument(
        "--secure",
        action="store_true",
        help="a SASL_SSL listener (SCRAM-SHA-512) instead of the plaintext one, a local CA and broker "
        "certificate (made on first start under --state-dir/kafka/secure), ACLs enforced (none: denied) "
        "and an admin user; a state folder started --secure stays secure",
    )
    up.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="a local replicated cluster of N KRaft nodes on --kafka-port .. +N-1 (controllers on the "
        "N ports after), replication factor 3 and min.insync.replicas 2 for new topics (default 1: "
        "the single broker)",
    )
    user = actions.add_parser("user", help="SCRAM users of the secure local broker")
    user_actions = user.add_subparsers(dest="user_action", metavar="ACTION", required=True)
    add = user_actions.add_parser(
        "add",
        help="create a user or change its password",
        description="Create SCRAM-SHA-512 credentials for NAME on the secure local broker (as its admin). "
        f"The password comes from {PASSWORD_ENV} or, when that is unset, a prompt; never from a flag.",
    )
    add.add_argument("name", help="the user's name (its principal is User:NAME)")
    down = actions.add_parser("down", help="stop the broker; data is kept")
    down.add_argument("--wipe", action="store_true", help="also delete all topics and offsets")
    status = actions.add_parser("status", help="running or stopped, PID and address")
    logs = actions.add_parser("logs", help="print the last lines of the broker log")
    logs.add_argument("-n", "--lines", type=int, default=50, help="number of lines (default 50)")
    for action in (up, down, status, logs):
        action.add_argument(
            "--broker", type=int, metavar="N", help="only node N of the local cluster (default: all)"
        )
    actions.add_parser("reset", help="stop the broker and delete all its data")
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    cluster = _cluster(args, settings)
    if cluster is not None:
        return await _run_cluster(args, cluster)
    if getattr(args, "broker", None) is not None:
        raise UserError(f"--broker: no local cluster under {settings.state_dir} (`kafka up --brokers 3`)")
    manager = BrokerManager(
        settings.state_dir, port=settings.kafka_port, secure=getattr(args, "secure", False)
    )
    action = args.kafka_action
    if action == "user":
        await add_user(manager, args.name)
    elif action == "up":
        await manager.up(timeout_s=args.timeout)
    elif action == "down":
        manager.down(wipe=args.wipe)
    elif action == "reset":
        manager.down(wipe=True)
    elif action == "status":
        status = await manager.status()
        print(f"Kafka {status.describe()}")
        return 0 if status.running else 3
    elif action == "logs":
        print(manager.log_tail(max(1, args.lines)))
    return 0


def _cluster(args: argparse.Namespace, settings: Settings) -> ClusterManager | None:
    """The local cluster this command is about: a new one for ``up --brokers N`` (N > 1), else the
    one an earlier ``up --brokers`` recorded in the state folder."""
    brokers = getattr(args, "brokers", 1)
    if args.kafka_action == "up" and brokers != 1:
        if getattr(args, "secure", False):
            raise UserError("--secure with --brokers: a secure local cluster is not supported yet")
        return ClusterManager(settings.state_dir, ClusterSpec(brokers, settings.kafka_port))
    if args.kafka_action == "up" and getattr(args, "broker", None) is None:
        return None
    return ClusterManager.existing(settings.state_dir)


async def _run_cluster(args: argparse.Namespace, cluster: ClusterManager) -> int:
    action, broker = args.kafka_action, getattr(args, "broker", None)
    if action == "user":
        raise UserError("`kafka user` needs the secure single broker; the local cluster is plaintext")
    if action == "up":
        await cluster.up(timeout_s=max(args.timeout, 90.0), broker=broker)
    elif action in ("down", "reset"):
        cluster.down(broker, wipe=action == "reset" or args.wipe)
    elif action == "status":
        states = await cluster.status(broker)
        first = broker or 1
        for i, state in enumerate(states):
            print(f"Kafka broker {first + i} {state.describe()}")
        return 0 if all(s.running for s in states) else 3
    elif action == "logs":
        print(cluster.log_tail(broker, max(1, args.lines)))
    return 0
