"""The audit record, the null log, the unclean-stop marker, `--since` and the table, without Kafka."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from stream_orch.audit import NOBODY, Auditor, AuditSubject, NullAuditLog, audit_log
from stream_orch.audit.events import MAX_TEXT, AuditEvent, make_event
from stream_orch.audit.log import KafkaAuditLog
from stream_orch.audit.marker import RunMarker
from stream_orch.audit.read import render_json_lines, render_table
from stream_orch.cli.main import main
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"


def test_an_event_names_its_subject_and_process_and_round_trips_through_json() -> None:
    subject = AuditSubject("fraud", "3", "abcdef012345")
    event = make_event("reload", subject, user="ci", to_version="4", weights={"amount": 2}, nodes=["a", "b"])
    assert (event.topology, event.version, event.content_hash, event.user) == (
        "fraud",
        "3",
        "abcdef012345",
        "ci",
    )
    assert event.key == b"fraud" and event.time.tzinfo is not None
    again = AuditEvent.from_json(event.to_json())
    assert again == event
    assert orjson.loads(event.to_json())["details"] == {
        "to_version": "4",
        "weights": {"amount": 2},
        "nodes": ["a", "b"],
    }


def test_an_event_without_a_topology_has_no_key_and_the_os_user_by_default() -> None:
    event = make_event("ingest", NOBODY, rows=3)
    assert event.key is None and event.topology is None
    assert event.user  # getpass, or uid:N when the uid has no name


def test_long_detail_strings_are_cut_and_nested_records_refused() -> None:
    event = make_event("dlq_replay", NOBODY, filter="x" * 5000, many=["y" * 5000])
    assert len(event.details["filter"]) == MAX_TEXT  # type: ignore[arg-type]
    assert len(event.details["many"][0]) == MAX_TEXT  # type: ignore[index]
    with pytest.raises(ValidationError):  # a record (a map of maps) is not a detail
        make_event("dlq_replay", NOBODY, record={"value": {"card": "4111"}})


def test_reading_ignores_unknown_fields_and_refuses_what_is_not_an_event() -> None:
    event = make_event("worker_start", AuditSubject("t", "1"))
    newer = orjson.loads(event.to_json()) | {"added_later": 1}
    assert AuditEvent.from_json(orjson.dumps(newer)) == event
    with pytest.raises(ValidationError):
        AuditEvent.from_json(b'{"action": "x"}')


def test_the_content_hash_changes_with_the_topology_and_with_its_schemas(tmp_path: Path) -> None:
    spec = load_topology(FRAUD).spec
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    for path in (REPO / "schemas").glob("*.avsc"):
        (schemas / path.name).write_bytes(path.read_bytes())
    topology = tmp_path / "t.yaml"
    topology.write_bytes(FRAUD.read_bytes())
    first = AuditSubject.of_topology(spec, topology, schemas)
    assert first.content_hash is not None and len(first.content_hash) == 16
    assert AuditSubject.of_topology(spec, topology, schemas) == first
    (schemas / "transaction.avsc").write_text((schemas / "transaction.avsc").read_text() + "\n")
    second = AuditSubject.of_topology(spec, topology, schemas)
    assert second.content_hash != first.content_hash
    (schemas / "settlement.avsc").write_text("{}")  # a schema the topology does not name
    assert AuditSubject.of_topology(spec, topology, schemas) == second
    topology.write_text(FRAUD.read_text() + "\n# a comment\n")
    assert AuditSubject.of_topology(spec, topology, schemas).content_hash != second.content_hash
    assert AuditSubject.of_topology(spec, tmp_path / "missing.yaml", schemas).content_hash is None
    assert AuditSubject.of_topology(spec, None, None) == AuditSubject(spec.topology, spec.version)


def test_the_null_log_makes_events_and_writes_nothing() -> None:
    async def use() -> bool:
        auditor = Auditor(audit_log(Settings(audit=False, audit_user="ops"), strict=True), NOBODY)
        assert isinstance(auditor.log, NullAuditLog)
        await auditor.start()
        auditor.post("node_restart", node="n")
        written = await auditor.record("dlq_replay", count=1)
        assert auditor.log.event("x", NOBODY).user == "ops"
        await auditor.close()
        return written

    assert asyncio.run(use()) is True
    assert isinstance(audit_log(Settings(), strict=False), KafkaAuditLog)


def test_a_worker_log_that_cannot_reach_kafka_warns_counts_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: list[int] = []
    settings = Settings(bootstrap_servers="127.0.0.1:1", request_timeout_s=0.5)

    async def use() -> bool:
        log = KafkaAuditLog(settings, strict=False, on_failure=lambda: failures.append(1))
        written = await log.record(log.event("worker_start", NOBODY))
        await log.close()
        return written

    assert asyncio.run(use()) is False
    assert failures == [1]
    assert any("audit topic stream_orch.audit" in r.getMessage() for r in caplog.records)


def test_a_tool_log_that_cannot_reach_kafka_stops_with_one_line() -> None:
    from stream_orch.errors import UserError

    settings = Settings(bootstrap_servers="127.0.0.1:1", request_timeout_s=0.5)
    with pytest.raises(UserError) as exc:
        asyncio.run(KafkaAuditLog(settings, strict=True).start())
    assert exc.value.exit_code == 3 and "\n" not in str(exc.value)
    assert "STREAM_ORCH_AUDIT=false" in str(exc.value)


def test_the_marker_finds_a_run_that_did_not_stop(tmp_path: Path) -> None:
    marker = RunMarker(tmp_path / "audit" / "t" / "host-0.running")
    assert marker.claim() is None  # first run
    marker.clear()  # stopped cleanly
    assert marker.claim() is None
    left = marker.claim()  # the previous claim was never cleared: killed
    assert left is not None and isinstance(left["pid"], int) and "started" in left
    marker.path.write_bytes(b'{"pid": 1')  # cut short while written
    assert marker.claim() == {}


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["audit", "--since", "yesterday"], "--since: not a duration or an ISO time: 'yesterday'"),
        (["audit", "--since=-1h"], "not a duration or an ISO time"),
        (["audit", "--format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_audit_argument_errors_are_one_line(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_since_takes_a_duration_back_from_now_or_an_iso_time() -> None:
    from stream_orch.cli.argtypes import past_time_ms

    before = time.time() * 1000
    assert before - 3_600_000 - 1000 <= past_time_ms("1h") <= time.time() * 1000 - 3_600_000
    assert past_time_ms("2026-12-04T08:00") == int(datetime(2026, 12, 4, 8, tzinfo=UTC).timestamp() * 1000)
    assert past_time_ms("2026-12-04T08:00+01:00") == int(
        datetime(2026, 12, 4, 7, tzinfo=UTC).timestamp() * 1000
    )


def _event(action: str, at: datetime, topology: str | None, **details: object) -> AuditEvent:
    return make_event(
        action, AuditSubject(topology, "2", "0123456789ab") if topology else NOBODY, user="ann", **details
    ).model_copy(update={"time": at, "host": "h1", "pid": 42})


def test_the_table_has_a_header_aligned_columns_and_the_details_last() -> None:
    at = datetime(2026, 12, 4, 7, 30, 5, tzinfo=UTC)
    events = [
        _event("worker_start", at, "fraud", nodes=["score"]),
        _event("dlq_replay", at, None, dlq="t.dlq", count=5, filter="reason == 'x'"),
    ]
    lines = render_table(events).splitlines()
    assert lines == [
        "time                 action        topology  version  hash          user@host  pid  details",
        '2026-12-04 07:30:05  worker_start  fraud     2        0123456789ab  ann@h1     42   nodes=["score"]',
        "2026-12-04 07:30:05  dlq_replay    -         -        -             ann@h1     42   dlq=t.dlq "
        "count=5 filter=reason == 'x'",
    ]
    assert render_table([]).split() == [
        "time",
        "action",
        "topology",
        "version",
        "hash",
        "user@host",
        "pid",
        "details",
    ]
    assert [AuditEvent.from_json(line.encode()) for line in render_json_lines(events).splitlines()] == events
