"""Contender: Quix Streams' tumbling 1-minute count per merchant, emitted on close.

The input is keyed by merchant_id already (no ``group_by``); event time is the ``ts`` field
(``timestamp_extractor``), as the engine's ``time_field``. ``tumbling_window(1 min, grace 5 s)
.count().final(closing_strategy="partition")``: a window closes when a record of its partition
passes its end + grace, the engine's rule (a partition's watermark); Quix's default ``"key"``
would close a merchant's windows only with that merchant's next record. State in Quix's RocksDB
store with its changelog topic, as a production app has it. Each result is written as the
engine writes it: ``{merchant_id, window_start, window_end, txn_count}``, keyed by merchant_id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from benchmarks import env
from benchmarks.contenders._quix_common import application
from benchmarks.data import WINDOW_GRACE_MS, WINDOW_MS


def event_time(value: Any, _headers: Any, timestamp: int, _type: Any) -> int:
    return int(value["ts"]) if isinstance(value, dict) and "ts" in value else timestamp


def as_engine_record(value: dict[str, Any], key: Any, _ts: int, _headers: Any) -> dict[str, Any]:
    merchant = key.decode() if isinstance(key, bytes) else key
    return {
        "merchant_id": merchant,
        "window_start": value["start"],
        "window_end": value["end"],
        "txn_count": value["value"],
    }


def main() -> None:
    app = application()
    source = app.topic(
        env.get(env.INPUT),
        key_deserializer="bytes",
        value_deserializer="json",
        timestamp_extractor=event_time,
    )
    sink = app.topic(env.get(env.OUTPUT), key_serializer="bytes", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.tumbling_window(timedelta(milliseconds=WINDOW_MS), grace_ms=WINDOW_GRACE_MS).count()
    sdf = sdf.final(closing_strategy="partition")
    sdf = sdf.apply(as_engine_record, metadata=True)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
