"""``stream-orch alerts forward``: records of a topic (e.g. ``fraud.alerts``) become Alertmanager alerts.

The logic lives in :mod:`stream_orch.tools.alerts`; this module parses arguments and runs it until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from stream_orch.errors import UserError
from stream_orch.redact import redact_urls
from stream_orch.settings import Settings
from stream_orch.tools.alerts import DEFAULT_SEVERITY_MAP, ForwardConfig, forward, parse_pairs
from stream_orch.topology.durations import parse_duration_ms


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "alerts",
        help="business alerts: forward records of a topic to Alertmanager",
        description="Alerting helpers. `forward` turns the JSON records of a topic into Alertmanager "
        "alerts, so business alerts (fraud.alerts) take the same escalation path as ops alerts.",
    )
    sub = parser.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)
    fwd = sub.add_parser(
        "forward",
        help="POST each record of --topic to Alertmanager as an alert (committed records, own group)",
        description="Reads committed records of --topic with its own consumer group and POSTs one "
        "alert per record to Alertmanager's /api/v2/alerts, committing after Alertmanager accepted "
        "them. The alert_key label (--key-field, else the record key) makes a repeated key one "
        "alert that pages once.",
    )
    fwd.add_argument("--topic", required=True, help="topic to read, e.g. fraud.alerts")
    fwd.add_argument("--alertmanager", required=True, metavar="URL", help="e.g. http://127.0.0.1:9093")
    fwd.add_argument(
        "--labels", default="", metavar="FIELD,...", help="record fields that become labels (routing)"
    )
    fwd.add_argument(
        "--label", action="append", default=[], metavar="NAME=VALUE", help="constant label (repeatable)"
    )
    fwd.add_argument("--severity-field", default="severity", metavar="FIELD", help="(severity)")
    default_map = ",".join(f"{k}={v}" for k, v in DEFAULT_SEVERITY_MAP.items())
    fwd.add_argument(
        "--severity-map",
        default=default_map,
        metavar="VALUE=SEVERITY,...",
        help=f"record severity -> Alertmanager severity; others pass unchanged ({default_map})",
    )
    fwd.add_argument(
        "--default-severity", default="warning", help="severity of a record without one (warning)"
    )
    fwd.add_argument(
        "--key-field", default=None, metavar="FIELD", help="field identifying an alert (default: record key)"
    )
    fwd.add_argument("--alertname", default="", help="default: from the topic (fraud.alerts -> FraudAlerts)")
    fwd.add_argument("--summary", default=None, help="str.format template over the record's fields")
    fwd.add_argument(
        "--resolve-after", default="1h", metavar="DURATION", help="endsAt = posting time + this (1h)"
    )
    fwd.add_argument("--group", default="", help="consumer group (default stream-orch-alerts.<topic>)")
    fwd.add_argument(
        "--from",
        dest="start",
        choices=("latest", "earliest"),
        default="latest",
        help="where a new group starts (latest: no pages for old records)",
    )
    fwd.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ForwardConfig:
    try:
        static: dict[str, str] = {}
        for item in args.label:
            static.update(parse_pairs(item, "--label"))
        return ForwardConfig(
            topic=args.topic,
            alertmanager=args.alertmanager,
            alertname=args.alertname,
            group=args.group,
            label_fields=tuple(f.strip() for f in args.labels.split(",") if f.strip()),
            static_labels=static,
            severity_field=args.severity_field,
            severity_map={k.lower(): v for k, v in parse_pairs(args.severity_map, "--severity-map").items()},
            default_severity=args.default_severity,
            key_field=args.key_field,
            summary=args.summary,
            resolve_after_s=parse_duration_ms(args.resolve_after) / 1000.0,
            start=args.start,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None


async def run(args: argparse.Namespace, settings: Settings) -> int:
    cfg = config_from_args(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(
        f"forwarding {cfg.topic} (group {cfg.group}) to {redact_urls(cfg.url)} as {cfg.alertname}",
        flush=True,
    )
    stats = await forward(settings, cfg, stop)
    print(
        f"stopped: {stats.records} records, {stats.posted} alerts posted, "
        f"{stats.skipped} skipped, {stats.rejected} rejected",
        flush=True,
    )
    return 0
