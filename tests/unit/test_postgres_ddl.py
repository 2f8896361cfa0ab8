"""Avro schema -> PostgreSQL columns and CREATE TABLE (stream_orch/sinks/postgres_ddl.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from stream_orch.sinks.postgres_ddl import ColumnValueError, columns, create_table, quote_table, row_values

SCHEMA = {
    "type": "record", "name": "All", "namespace": "t",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "n", "type": "int"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "b", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
        {"name": "again", "type": "Kind"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "opt", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "either", "type": ["null", "long", "string"]},
    ],
}


def test_types_and_nullability() -> None:
    got = {c.name: (c.sql_type, c.nullable) for c in columns(SCHEMA)}
    assert got == {
        "id": ("bigint", False), "n": ("integer", False), "f": ("real", False),
        "d": ("double precision", False), "s": ("text", False), "b": ("boolean", False),
        "raw": ("bytea", False), "kind": ("text", False), "again": ("text", False),
        "ts": ("timestamptz", False), "day": ("date", False), "price": ("numeric(12, 2)", False),
        "opt": ("text", True), "tags": ("jsonb", False), "either": ("jsonb", True),
    }


def test_create_table_with_and_without_key() -> None:
    cols = columns(SCHEMA)
    upsert = create_table("public.all_types", cols, ["id"])
    assert upsert.startswith('CREATE TABLE IF NOT EXISTS "public"."all_types" (')
    assert '    "id" bigint NOT NULL,' in upsert and '    "opt" text,' in upsert
    assert upsert.rstrip().endswith('PRIMARY KEY ("id")\n);')
    assert "PRIMARY KEY" not in create_table("t", cols, None)


def test_row_values_convert_logical_types() -> None:
    cols = columns(SCHEMA)
    record = {"id": 1, "n": 2, "f": 1.5, "d": 2.5, "s": "x", "b": True, "raw": "\u00ff", "kind": "a",
              "again": "b", "ts": 1_700_000_000_123, "day": 3, "price": "12.30", "tags": ["p", "q"],
              "either": 5}
    values = dict(zip([c.name for c in cols], row_values(cols, record), strict=True))
    assert values["ts"] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert values["day"] == date(1970, 1, 4)
    assert values["price"] == Decimal("12.30")
    assert values["raw"] == b"\xff"
    assert values["tags"] == '["p","q"]'
    assert values["opt"] is None and values["either"] == "5"


def test_row_values_refuse_with_the_column_name() -> None:
    cols = columns(SCHEMA)
    with pytest.raises(ColumnValueError, match="column n: null"):
        row_values(cols, {"id": 1})
    good = {"id": 1, "n": 2, "f": 1.5, "d": 2.5, "s": "x", "b": True, "raw": "", "kind": "a", "again": "a",
            "ts": 0, "day": 0, "price": 1, "tags": []}
    with pytest.raises(ColumnValueError, match="column ts: not an ISO-8601 time"):
        row_values(cols, {**good, "ts": "yesterday"})
    with pytest.raises(ColumnValueError, match="column price"):
        row_values(cols, {**good, "price": "lots"})


@pytest.mark.parametrize("name", ["a;drop table x", "a b", '"q"', "a.b.c", ""])
def test_table_names_must_be_plain(name: str) -> None:
    with pytest.raises(ValueError, match="plain SQL name"):
        quote_table(name)
