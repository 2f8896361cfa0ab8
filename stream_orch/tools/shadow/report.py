"""``stream-orch shadow report``: read the live version's and the shadow's outputs and dead
letters, and compare them (:mod:`stream_orch.tools.shadow.compare`)."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from stream_orch.codecs import SchemaRegistry, codec_for
from stream_orch.errors import UserError
from stream_orch.observability.metrics import label_code
from stream_orch.reliability import headers as H
from stream_orch.settings import Settings
from stream_orch.tools.shadow.compare import Output, Source, Version, compare
from stream_orch.tools.shadow.plan import VersionPlan, live_inputs, live_name, version_plan
from stream_orch.topology.field_flow import pii_field_names
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import group_id
from stream_orch.transport import offsets as O
from stream_orch.transport.reading import read_to_end

READ_TIMEOUT_S = 600.0  # per topic read to its end


def output_of(record: ConsumerRecord[bytes, bytes], topic: str, dlq: bool, decode: Any) -> Output | None:
    """The report's view of one record (None: a watermark, or no lineage we can read)."""
    headers = record.headers or ()
    if H.is_watermark(headers):
        return None
    fields = H.as_dict(list(headers))
    names = (
        (H.ERROR_TOPIC, H.ERROR_PARTITION, H.ERROR_OFFSET)
        if dlq
        else (H.SRC_TOPIC, H.SRC_PARTITION, H.SRC_OFFSET)
    )
    partition, offset = H.number(fields.get(names[1])), H.number(fields.get(names[2]))
    if names[0] not in fields or partition is None or offset is None:
        return None
    source: Source = (fields[names[0]], partition, offset)
    if dlq:
        return Output(topic, source, None, label_code(fields.get(H.ERROR_REASON, "")))
    value = None
    if decode is not None and record.value is not None:
        try:
            value = decode(record.value)
        except Exception:  # a record we cannot read still counts, without its fields
            value = None
    return Output(topic, source, value)


async def read_version(
    plan: VersionPlan, settings: Settings, schemas: SchemaRegistry, inputs: list[str]
) -> Version:
    """Every output and dead letter of ``plan`` whose input is one of ``inputs``, and the
    offsets its groups have committed on them."""
    outputs: list[Output] = []
    client_args = settings.kafka_client_args()
    for topic, dlq in [*((t, False) for t in plan.outputs), *((t, True) for t in plan.dlqs)]:
        spec = plan.spec.topics.get(topic)
        decode = codec_for(spec, schemas).decode if spec is not None and not dlq else None
        name = live_name(topic)

        def keep(
            record: ConsumerRecord[bytes, bytes], name: str = name, dlq: bool = dlq, decode: Any = decode
        ) -> None:
            out = output_of(record, name, dlq, decode)
            if out is not None and out.source[0] in inputs:
                outputs.append(out)

        try:
            await read_to_end(
                client_args, await O.partitions_of(settings, [topic]), keep, timeout_s=READ_TIMEOUT_S
            )
        except TimeoutError as exc:
            raise UserError(f"shadow report: {exc}") from None
    committed: dict[tuple[str, int], int] = {}
    for node in plan.reading(inputs):
        for tp, offset in (await O.committed(settings, group_id(plan.spec.topology, node))).items():
            key = (tp.topic, tp.partition)
            committed[key] = min(offset, committed.get(key, offset))
    return Version(outputs, plan.conditional, plan.score_fields, committed)


async def shadow_report(
    new: TopologySpec, old: TopologySpec, settings: Settings, schemas: SchemaRegistry, examples: int
) -> dict[str, Any]:
    live_plan = version_plan(old, as_shadow=False)
    shadow_plan = version_plan(new, as_shadow=True)
    inputs = [t for t in live_inputs(live_plan.spec) if t in live_inputs(shadow_plan.spec)]
    live = await read_version(live_plan, settings, schemas, inputs)
    shade = await read_version(shadow_plan, settings, schemas, inputs)
    # what a mask step of either version names, and what their schemas declare PII
    pii = pii_field_names(old, schemas.raw_or_none) | pii_field_names(new, schemas.raw_or_none)
    report = compare(live, shade, examples=examples, masked=live_plan.masked | shadow_plan.masked | pii)
    report["versions"] = {"live": f"{old.topology} {old.version}", "shadow": f"{new.topology} {new.version}"}
    report["inputs"] = inputs
    return report


def as_text(report: dict[str, Any]) -> str:
    """The report for people: counts side by side, the moves, the score changes, dead letters,
    examples."""
    lines = [
        f"shadow report: live {report['versions']['live']} vs shadow {report['versions']['shadow']}",
        f"compared: {report['window']['inputs']} inputs of {', '.join(report['inputs'])} that both "
        f"versions processed ({len(report['window']['partitions'])} partitions)",
    ]
    for title, counts in (("records per route", report["routes"]), ("records per topic", report["topics"])):
        width = max([len(title), *(len(name) for name in counts)]) + 2
        lines += ["", f"{title:<{width}} {'live':>8} {'shadow':>8}"]
        lines += [f"  {name:<{width - 2}} {c['live']:>8} {c['shadow']:>8}" for name, c in counts.items()]
    lines += ["", f"moves ({report['moved']} inputs):"]
    lines += [f"  {m['count']:>6}  {m['from']} -> {m['to']}" for m in report["moves"]] or ["  none"]
    score = report["score"]
    if score is not None:
        q = score["quantiles"]
        lines += [
            "",
            f"score change (shadow - live) of {score['compared']} inputs: {score['unchanged']} unchanged, "
            f"mean {score['mean']:+.3f}",
            "  " + "  ".join(f"{k} {v:+.3f}" for k, v in q.items()),
        ]
        lines += [
            f"  [{b['from']:+.3f}, {b['to']:+.3f}]  {b['count']}" for b in score["histogram"] if b["count"]
        ]
    dead = report["dead_letters"]
    lines += ["", "dead letters:"]
    lines += [f"  newly dead-lettered: {n} ({reason})" for reason, n in sorted(dead["new"].items())]
    lines += [f"  no longer dead-lettered: {n} ({reason})" for reason, n in sorted(dead["no_longer"].items())]
    if not dead["new"] and not dead["no_longer"]:
        lines.append("  no change")
    if report["examples"]:
        lines += ["", "examples:"]
        for ex in report["examples"]:
            src = ex["source"]
            lines.append(f"  {src['topic']}[{src['partition']}]@{src['offset']}: {ex['from']} -> {ex['to']}")
            for name, (before, after) in ex["changed"].items():
                lines.append(f"      {name}: {before!r} -> {after!r}")
    return "\n".join(lines)
