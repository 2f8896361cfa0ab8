"""A PostgreSQL table derived from an Avro record schema: its columns, how each value is converted
for the driver, and the CREATE TABLE statements `stream-orch sink init` prints or applies.

Pure (no driver, no I/O), so the CLI and the writer share one mapping. Avro -> PostgreSQL:
long -> bigint, int -> integer, float -> real, double -> double precision, string and enum -> text,
boolean -> boolean, bytes and fixed -> bytea, records, arrays, maps and unions of several types ->
jsonb; logical types timestamp-millis/-micros -> timestamptz, date -> date, decimal -> numeric(p, s),
uuid -> text. A union with null makes the column NULL, any other column is NOT NULL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from stream_orch.codecs.avro_types import PRIMITIVES, AvroTypes

OFFSETS_TABLE = "stream_orch_offsets"
REJECTS_TABLE = "stream_orch_rejects"
# grp is the node's consumer group and the target's name ("<topology>.<node>/<target>"), so two
# targets of one node writing the same database keep their own offsets.
OFFSETS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (\n"
    "    grp text NOT NULL,\n    topic text NOT NULL,\n    partition integer NOT NULL,\n"
    "    next_offset bigint NOT NULL,\n    PRIMARY KEY (grp, topic, partition)\n);"
)
# The input records whose row the database refused: a batch applied again after a crash (its
# offsets already stored) must dead-letter them again rather than call them delivered.
REJECTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {REJECTS_TABLE} (\n"
    "    grp text NOT NULL,\n    topic text NOT NULL,\n    partition integer NOT NULL,\n"
    '    "offset" bigint NOT NULL,\n    reason text NOT NULL,\n'
    '    PRIMARY KEY (grp, topic, partition, "offset")\n);'
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ColumnValueError(ValueError):
    """A value the column cannot hold (the row is refused before it reaches the database)."""


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    nullable: bool
    convert: Callable[[Any], Any]  # record value -> the driver's value for sql_type

    @property
    def quoted(self) -> str:
        return quote_ident(self.name)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """A table name as SQL: ``schema.table`` or ``table``, each part quoted."""
    if not _IDENT.match(name):
        raise ValueError(f"table {name!r} is not a plain SQL name (letters, digits, _, one optional schema.)")
    return ".".join(quote_ident(part) for part in name.split("."))


def _same(value: Any) -> Any:
    return value


def _timestamp(unit_per_second: int) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ColumnValueError(f"expected epoch time, got {type(value).__name__}")
        if isinstance(value, int | float):
            return EPOCH + timedelta(microseconds=value * 1_000_000 // unit_per_second)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ColumnValueError("not an ISO-8601 time") from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        raise ColumnValueError(f"expected epoch time, got {type(value).__name__}")

    return convert


def _date(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return date(1970, 1, 1) + timedelta(days=value)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ColumnValueError("not an ISO-8601 date") from None
    raise ColumnValueError(f"expected days since epoch, got {type(value).__name__}")


def _decimal(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ColumnValueError(f"expected a number, got {type(value).__name__}")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ColumnValueError("not a decimal number") from None


def _json(value: Any) -> Any:
    return orjson.dumps(value).decode()


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):  # JSON carries Avro bytes as a string of code points 0-255
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise ColumnValueError("bytes value with characters above U+00FF") from None
    raise ColumnValueError(f"expected bytes, got {type(value).__name__}")


def _nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    if convert is _same:
        return _same
    return lambda value: None if value is None else convert(value)


_PRIMITIVE_SQL = {
    "long": "bigint", "int": "integer", "float": "real", "double": "double precision",
    "string": "text", "boolean": "boolean", "bytes": "bytea",
}


def _sql_type(types: AvroTypes, schema: Any) -> tuple[str, Callable[[Any], Any]]:
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical in ("timestamp-millis", "local-timestamp-millis"):
        return "timestamptz", _timestamp(1000)
    if logical in ("timestamp-micros", "local-timestamp-micros"):
        return "timestamptz", _timestamp(1_000_000)
    if logical == "date":
        return "date", _date
    if logical == "decimal":
        precision, scale = schema.get("precision"), schema.get("scale", 0)
        return (f"numeric({precision}, {scale})" if precision else "numeric"), _decimal
    if logical == "uuid":
        return "text", _same
    resolved = types.resolve(schema)
    if isinstance(resolved, str) and resolved in PRIMITIVES:
        if resolved == "bytes":
            return "bytea", _bytes
        return _PRIMITIVE_SQL.get(resolved, "text"), _same
    if isinstance(resolved, dict):
        kind = resolved.get("type")
        if kind == "enum":
            return "text", _same
        if kind == "fixed":
            return "bytea", _bytes
    return "jsonb", _json  # records, arrays, maps


def columns(schema: dict[str, Any]) -> list[Column]:
    """The table's columns for an Avro record schema (as in the .avsc file), in field order."""
    types = AvroTypes(schema)
    out: list[Column] = []
    for field in schema["fields"]:
        ftype = field["type"]
        nullable = False
        if isinstance(ftype, list):
            branches = [b for b in ftype if types.resolve(b) != "null"]
            nullable = len(branches) < len(ftype)
            ftype = branches[0] if len(branches) == 1 else {"type": "map", "values": "null"}
        sql_type, convert = _sql_type(types, ftype)
        out.append(Column(field["name"], sql_type, nullable, _nullable(convert) if nullable else convert))
    return out


def create_table(table: str, cols: list[Column], key: list[str] | None) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the target; ``key`` (upsert) becomes the primary key."""
    lines = [f"    {c.quoted} {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in cols]
    if key:
        lines.append(f"    PRIMARY KEY ({', '.join(quote_ident(k) for k in key)})")
    body = ",\n".join(lines)
    return f"CREATE TABLE IF NOT EXISTS {quote_table(table)} (\n{body}\n);"


def row_converter(cols: list[Column]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``row(record)``: the record as the driver's tuple in column order, one generated function
    per table (a value read once, a converter called only for the columns that have one, a null
    checked only where the column refuses it); ColumnValueError names the column."""
    lines = ["def row(r):"]
    env: dict[str, Any] = {"ColumnValueError": ColumnValueError, "_fail": _fail}
    names = []
    for i, col in enumerate(cols):
        lines.append(f"    v{i} = r.get({col.name!r})")
        if not col.nullable:
            lines.append(f"    if v{i} is None: _fail({col.name!r}, 'null in a NOT NULL column')")
        if col.convert is not _same:
            env[f"c{i}"] = col.convert
            test = "" if not col.nullable else f"if v{i} is not None: "
            lines += [
                "    try:",
                f"        {test}v{i} = c{i}(v{i})",
                "    except (ColumnValueError, OverflowError, ValueError, TypeError) as exc:",
                f"        _fail({col.name!r}, exc)",
            ]
        names.append(f"v{i}")
    lines.append(f"    return ({', '.join(names)},)")
    exec("\n".join(lines), env)  # our own code from column names quoted by repr: no input reaches it
    return env["row"]


def _fail(column: str, what: object) -> None:
    raise ColumnValueError(f"column {column}: {what}") from None


def row_values(cols: list[Column], record: dict[str, Any]) -> tuple[Any, ...]:
    """The record as the driver's tuple in column order (:func:`row_converter`, built each call)."""
    return row_converter(cols)(record)
