"""Business alerts out of Kafka: records of a topic (e.g. ``fraud.alerts``) become Alertmanager alerts.

``stream-orch alerts forward`` reads committed records with its own consumer group, turns each
JSON record into one alert and POSTs them to ``/api/v2/alerts``; it commits a batch only once
Alertmanager accepted it (at least once: after a crash the last batch is posted again, and the
stable ``alert_key`` label makes that the same alert, not a second page).

An alert's labels:

* ``alertname`` (``--alertname``, default from the topic: ``fraud.alerts`` -> ``FraudAlerts``),
  ``topic`` (the source topic) and ``--label k=v`` constants (e.g. ``topology=fraud_detection``);
* ``severity``: the record's ``--severity-field`` mapped through ``--severity-map``
  (default ``critical=critical,high=warning``: Alertmanager routes on critical/warning); a record
  without one is ``--default-severity`` (warning);
* one label per ``--labels`` field present in the record;
* ``alert_key``: the ``--key-field`` value (default: the record key; else topic/partition/offset).
  Alertmanager identifies an alert by its labels, so the same key posted twice is one alert and
  pages once; its group_by keeps every key a notification of its own.

``startsAt`` is the record's timestamp, ``endsAt`` the time of posting plus ``--resolve-after``
(a business alert is an event, not a condition that Prometheus keeps re-sending). Annotations:
``summary`` (``--summary``, a ``str.format`` template over the record's fields, ``alertname``,
``alert_key`` and ``severity``), ``description`` (the record as JSON, cut at 4000 characters) and
``kafka_record`` (topic/partition@offset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiokafka.structs import ConsumerRecord

from stream_orch.redact import redact_urls
from stream_orch.reliability.headers import is_watermark
from stream_orch.settings import Settings
from stream_orch.transport import clients
from stream_orch.transport.connect import start_client

log = logging.getLogger(__name__)

KEY_LABEL = "alert_key"
DEFAULT_SEVERITY_MAP = {"critical": "critical", "high": "warning"}
DESCRIPTION_LIMIT = 4000
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {"alertname", "severity", "topic", KEY_LABEL}


class SkipRecord(ValueError):
    """A record that cannot become an alert (not a JSON object); logged and skipped."""


def default_alertname(topic: str) -> str:
    """``fraud.alerts`` -> ``FraudAlerts``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", topic) if part)


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """``a=b,c=d`` -> {"a": "b", "c": "d"}; raises ValueError naming ``what``."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{what}: expected NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def check_label_name(name: str) -> str:
    if not _LABEL_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid Alertmanager label name ([A-Za-z_][A-Za-z0-9_]*)")
    return name


@dataclass(frozen=True)
class ForwardConfig:
    topic: str
    alertmanager: str  # base URL, e.g. http://127.0.0.1:9093
    alertname: str = ""
    group: str = ""  # consumer group; default stream-orch-alerts.<topic>
    label_fields: tuple[str, ...] = ()
    static_labels: Mapping[str, str] = field(default_factory=dict)
    severity_field: str = "severity"
    severity_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_MAP))
    default_severity: str = "warning"
    key_field: str | None = None
    summary: str | None = None
    resolve_after_s: float = 3600.0
    start: str = "latest"  # where a new group starts: latest (no paging for history) or earliest

    def __post_init__(self) -> None:
        if not self.alertname:
            object.__setattr__(self, "alertname", default_alertname(self.topic) or "KafkaAlert")
        if not self.group:
            object.__setattr__(self, "group", f"stream-orch-alerts.{self.topic}")
        for name in (*self.label_fields, *self.static_labels):
            check_label_name(name)
            if name in _RESERVED:
                raise ValueError(f"label {name!r} is set by the bridge itself")
        if self.start not in ("latest", "earliest"):
            raise ValueError(f"start must be latest or earliest, got {self.start!r}")

    @property
    def url(self) -> str:
        return self.alertmanager.rstrip("/") + "/api/v2/alerts"


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def record_to_alert(record: ConsumerRecord, cfg: ForwardConfig, now: float | None = None) -> dict[str, Any]:
    """The Alertmanager alert (API v2 ``postableAlert``) for one record of ``cfg.topic``."""
    try:
        value = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        raise SkipRecord("value is not JSON") from None
    if not isinstance(value, dict):
        raise SkipRecord("value is not a JSON object")
    now = time.time() if now is None else now

    raw_severity = value.get(cfg.severity_field)
    if raw_severity is None or raw_severity == "":
        severity = cfg.default_severity
    else:
        raw = _text(raw_severity).lower()
        severity = cfg.severity_map.get(raw, raw)

    if cfg.key_field is not None and value.get(cfg.key_field) not in (None, ""):
        key = _text(value[cfg.key_field])
    elif cfg.key_field is None and record.key:
        key = record.key.decode("utf-8", "replace")
    else:
        key = f"{record.topic}/{record.partition}/{record.offset}"

    labels = {"alertname": cfg.alertname, "topic": record.topic, **cfg.static_labels}
    for name in cfg.label_fields:
        if value.get(name) not in (None, ""):
            labels[name] = _text(value[name])
    labels["severity"] = severity
    labels[KEY_LABEL] = key

    fields = {**value, "alertname": cfg.alertname, "alert_key": key, "severity": severity}
    summary = f"{cfg.alertname} {key} ({_text(raw_severity) if raw_severity else severity})"
    if cfg.summary:
        with contextlib.suppress(KeyError, IndexError, ValueError, AttributeError):
            summary = cfg.summary.format_map(fields)
    description = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if len(description) > DESCRIPTION_LIMIT:
        description = description[: DESCRIPTION_LIMIT - 1] + "…"

    starts = record.timestamp / 1000.0 if record.timestamp and record.timestamp > 0 else now
    return {
        "labels": labels,
        "annotations": {
            "summary": summary,
            "description": description,
            "kafka_record": f"{record.topic}/{record.partition}@{record.offset}",
        },
        "startsAt": _rfc3339(min(starts, now)),
        "endsAt": _rfc3339(now + cfg.resolve_after_s),
    }


class AlertmanagerRejected(Exception):
    """Alertmanager answered 4xx: the alerts are invalid and retrying will not help."""


class Stopped(Exception):
    """Asked to stop while Alertmanager could not be reached: the batch stays uncommitted."""


async def post_alerts(
    http: aiohttp.ClientSession,
    url: str,
    alerts: Sequence[Mapping[str, Any]],
    *,
    stop: asyncio.Event | None = None,
    max_backoff_s: float = 30.0,
) -> None:
    """POST until Alertmanager accepts (2xx); retries connection errors and 5xx with backoff
    (until ``stop`` is set: :class:`Stopped`), raises :class:`AlertmanagerRejected` on 4xx."""
    body = orjson.dumps(list(alerts))
    delay = 0.5
    while True:
        if stop is not None and stop.is_set():
            raise Stopped
        try:
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                if resp.status < 300:
                    return
                text = (await resp.text())[:500]
                if 400 <= resp.status < 500:
                    raise AlertmanagerRejected(f"{resp.status}: {text}")
                log.warning("alertmanager answered %s: %s; retrying in %.1fs", resp.status, text, delay)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = redact_urls(str(exc) or type(exc).__name__)  # aiohttp's InvalidURL quotes the URL
            log.warning(
                "cannot reach alertmanager at %s: %s; retrying in %.1fs", redact_urls(url), reason, delay
            )
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, max_backoff_s)


@dataclass
class ForwardStats:
    records: int = 0
    posted: int = 0
    skipped: int = 0
    rejected: int = 0


async def forward(
    settings: Settings,
    cfg: ForwardConfig,
    stop: asyncio.Event | None = None,
    stats: ForwardStats | None = None,
) -> ForwardStats:
    """Forward records of ``cfg.topic`` until ``stop`` is set; returns what it did."""
    stop = stop or asyncio.Event()
    stats = stats or ForwardStats()
    consumer = await start_client(
        clients.consumer(
            settings.kafka_client_args(), cfg.topic, group_id=cfg.group, auto_offset_reset=cfg.start
        ),
        settings,
    )
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                if not batch:
                    continue
                alerts: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
                for records in batch.values():
                    for record in records:
                        if is_watermark(record.headers):  # engine bookkeeping, no alert
                            continue
                        stats.records += 1
                        try:
                            alert = record_to_alert(record, cfg)
                        except SkipRecord as exc:
                            stats.skipped += 1
                            log.warning(
                                "skipped %s/%s@%s: %s", record.topic, record.partition, record.offset, exc
                            )
                            continue
                        alerts[tuple(sorted(alert["labels"].items()))] = alert  # one per label set
                if alerts:
                    try:
                        await post_alerts(http, cfg.url, list(alerts.values()), stop=stop)
                        stats.posted += len(alerts)
                    except Stopped:
                        break  # not committed: posted again after a restart
                    except AlertmanagerRejected as exc:
                        stats.rejected += len(alerts)
                        log.error("alertmanager rejected %d alerts: %s", len(alerts), exc)
                await consumer.commit()  # only what was posted (or could never be)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return stats
