"""Avro compatibility (codecs/compatibility.py), each rule checked against fastavro's reader: data
written with the writer schema is read with the reader schema, and the read fails exactly when
the rule says the direction is incompatible."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_orch.codecs.compatibility import check_compatibility, incompatibilities


def record(*fields: dict[str, Any], name: str = "T", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, name: str = "E", **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": name, "symbols": list(symbols), **extra}


def fastavro_reads(writer: Any, reader: Any, datum: Any) -> bool:
    """fastavro's verdict: can ``reader`` read ``datum`` written with ``writer``?"""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(writer), datum)
    buffer.seek(0)
    parsed_writer, parsed_reader = fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    try:
        fastavro.schemaless_reader(buffer, parsed_writer, parsed_reader)
    except Exception:  # SchemaResolutionError, or a read that runs off the data
        return False
    return True


# (name, old schema, new schema, a datum of old, a datum of new, backward ok, forward ok)
CASES = [
    (
        "field added with a default",
        record(field("a", "int")),
        record(field("a", "int"), field("b", "string", default="x")),
        {"a": 1},
        {"a": 1, "b": "y"},
        True,
        True,
    ),
    (
        "field added without a default",
        record(field("a", "int")),
        record(field("a", "int"), field("b", "string")),
        {"a": 1},
        {"a": 1, "b": "y"},
        False,
        True,
    ),
    (
        "field removed that had a default",
        record(field("a", "int"), field("b", "string", default="x")),
        record(field("a", "int")),
        {"a": 1, "b": "y"},
        {"a": 1},
        True,
        True,
    ),
    (
        "field removed without a default",
        record(field("a", "int"), field("b", "string")),
        record(field("a", "int")),
        {"a": 1, "b": "y"},
        {"a": 1},
        True,
        False,
    ),
    (
        "int promoted to long",
        record(field("a", "int")),
        record(field("a", "long")),
        {"a": 1},
        {"a": 2**40},
        True,
        False,
    ),
    (
        "int promoted to double",
        record(field("a", "int")),
        record(field("a", "double")),
        {"a": 1},
        {"a": 1.5},
        True,
        False,
    ),
    (
        "long promoted to float",
        record(field("a", "long")),
        record(field("a", "float")),
        {"a": 1},
        {"a": 1.5},
        True,
        False,
    ),
    (
        "float promoted to double",
        record(field("a", "float")),
        record(field("a", "double")),
        {"a": 1.5},
        {"a": 1.5},
        True,
        False,
    ),
    (
        "double narrowed to int",
        record(field("a", "double")),
        record(field("a", "int")),
        {"a": 1.5},
        {"a": 1},
        False,
        True,
    ),
    (
        "string and bytes",
        record(field("a", "string")),
        record(field("a", "bytes")),
        {"a": "x"},
        {"a": b"x"},
        True,
        True,
    ),
    (
        "int to string",
        record(field("a", "int")),
        record(field("a", "string")),
        {"a": 1},
        {"a": "x"},
        False,
        False,
    ),
    (
        "enum symbol added, no default",
        record(field("e", enum("A", "B"))),
        record(field("e", enum("A", "B", "C"))),
        {"e": "B"},
        {"e": "C"},
        True,
        False,
    ),
    (
        "enum symbol removed, no default",
        record(field("e", enum("A", "B"))),
        record(field("e", enum("A"))),
        {"e": "B"},
        {"e": "A"},
        False,
        True,
    ),
    (
        "enum symbol removed, reader default",
        record(field("e", enum("A", "B"))),
        record(field("e", enum("A", default="A"))),
        {"e": "B"},
        {"e": "A"},
        True,
        True,
    ),
    (
        "enum renamed",
        record(field("e", enum("A"))),
        record(field("e", enum("A", name="F"))),
        {"e": "A"},
        {"e": "A"},
        False,
        False,
    ),
    (
        "made nullable",
        record(field("a", "string")),
        record(field("a", ["null", "string"], default=None)),
        {"a": "x"},
        {"a": None},
        True,
        False,
    ),
    (
        "made non-nullable",
        record(field("a", ["null", "string"], default=None)),
        record(field("a", "string")),
        {"a": None},
        {"a": "x"},
        False,
        True,
    ),
    (
        "union branch added",
        record(field("a", ["null", "int"])),
        record(field("a", ["null", "int", "string"])),
        {"a": 1},
        {"a": "x"},
        True,
        False,
    ),
    (
        "union promoted branch",
        record(field("a", ["null", "int"])),
        record(field("a", ["null", "long"])),
        {"a": 1},
        {"a": 2**40},
        True,
        False,
    ),
    (
        "nested record field added without default",
        record(field("n", record(field("x", "int"), name="N"))),
        record(field("n", record(field("x", "int"), field("y", "int"), name="N"))),
        {"n": {"x": 1}},
        {"n": {"x": 1, "y": 2}},
        False,
        True,
    ),
    (
        "array items promoted",
        record(field("a", {"type": "array", "items": "int"})),
        record(field("a", {"type": "array", "items": "long"})),
        {"a": [1]},
        {"a": [2**40]},
        True,
        False,
    ),
    (
        "map values changed",
        record(field("m", {"type": "map", "values": "int"})),
        record(field("m", {"type": "map", "values": "string"})),
        {"m": {"k": 1}},
        {"m": {"k": "v"}},
        False,
        False,
    ),
    (
        "array to map",
        record(field("a", {"type": "array", "items": "int"})),
        record(field("a", {"type": "map", "values": "int"})),
        {"a": [1]},
        {"a": {"k": 1}},
        False,
        False,
    ),
    (
        "field renamed with an alias",
        record(field("a", "int")),
        record(field("b", "int", aliases=["a"])),
        {"a": 1},
        {"b": 1},
        True,
        False,
    ),
    (
        "record renamed with an alias",
        record(field("a", "int")),
        record(field("a", "int"), name="U", aliases=["T"]),
        {"a": 1},
        {"a": 1},
        True,
        False,
    ),
    (
        "fixed size changed",
        record(field("f", {"type": "fixed", "name": "F", "size": 2})),
        record(field("f", {"type": "fixed", "name": "F", "size": 3})),
        {"f": b"ab"},
        {"f": b"abc"},
        False,
        False,
    ),
    (
        "logical type kept, underlying promoted",
        record(field("t", {"type": "int", "logicalType": "date"})),
        record(field("t", "long")),
        {"t": 1},
        {"t": 2**40},
        True,
        False,
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "old_datum", "new_datum", "backward", "forward"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_rule_agrees_with_fastavro(old, new, old_datum, new_datum, backward, forward):
    assert (not incompatibilities(old, new, "backward")) is backward
    assert (not incompatibilities(old, new, "forward")) is forward
    # the oracle: backward = the new schema reads old data; forward = the old schema reads new data
    assert fastavro_reads(old, new, old_datum) is backward
    assert fastavro_reads(new, old, new_datum) is forward
    assert (not check_compatibility(old, new, "full")) is (backward and forward)
    assert check_compatibility(old, new, "none") == []


def test_a_new_required_field_is_named_with_why():
    old = record(field("txn_id", "string"))
    new = record(field("txn_id", "string"), field("device_id", "string"))
    (issue,) = check_compatibility(old, new, "backward")
    assert issue.path == "device_id"
    assert str(issue) == (
        "backward incompatible: field device_id added without a default (old records do not have it)"
    )
    (issue,) = check_compatibility(new, old, "forward")
    assert "field device_id removed" in str(issue) and issue.direction == "forward"


def test_nested_paths_and_enum_symbols_are_named():
    old = record(
        field("items", {"type": "array", "items": record(field("tier", enum("low", "high")), name="I")})
    )
    new = record(field("items", {"type": "array", "items": record(field("tier", enum("low")), name="I")}))
    (issue,) = incompatibilities(old, new, "backward")
    assert issue.path == "items[].tier"
    assert "enum symbol high removed" in issue.message


def test_a_union_branch_that_cannot_be_read_is_named():
    old = record(field("a", ["null", "string"], default=None))
    (issue,) = check_compatibility(old, record(field("a", "string")), "full")
    assert (
        str(issue)
        == "backward incompatible: field a: the old union's branch null cannot be read as the new type string"
    )


def test_a_recursive_record_terminates():
    node = record(field("value", "int"), field("next", ["null", "T"], default=None))
    grown = record(field("value", "long"), field("next", ["null", "T"], default=None))
    assert incompatibilities(node, grown, "backward") == []
    assert [i.path for i in incompatibilities(node, grown, "forward")] == ["value"]


# --------------------------------------------------------------------------- the property

_FIELD_NAMES = ("a", "b", "c")
_PRIMS = ("int", "long", "float", "double", "string", "bytes", "boolean")


def _types(depth: int) -> st.SearchStrategy[Any]:
    simple = st.one_of(
        st.sampled_from(_PRIMS),
        st.lists(st.sampled_from(("A", "B", "C")), min_size=1, max_size=3, unique=True).map(
            lambda s: enum(*s)
        ),
        st.lists(st.sampled_from(("null", "int", "long", "string")), min_size=1, max_size=3, unique=True),
    )
    if depth == 0:
        return simple
    inner = _types(depth - 1)
    return st.one_of(
        simple,
        inner.map(lambda t: {"type": "array", "items": t}),
        inner.map(lambda t: {"type": "map", "values": t}),
        _records(depth - 1, "R"),
    )


def _records(depth: int, name: str) -> st.SearchStrategy[dict[str, Any]]:
    def build(chosen: dict[str, tuple[Any, bool]]) -> dict[str, Any]:
        fields = []
        for fname, (ftype, with_default) in chosen.items():
            default = _default_of(ftype) if with_default else _NO_DEFAULT
            extra = {} if default is _NO_DEFAULT else {"default": default}
            fields.append(field(fname, ftype, **extra))
        return _name_by_path(record(*fields, name=name), name)

    return st.dictionaries(
        st.sampled_from(_FIELD_NAMES), st.tuples(_types(depth), st.booleans()), min_size=1, max_size=3
    ).map(build)


def _name_by_path(schema: Any, path: str) -> Any:
    """Named types named after where they are (unique in a schema, equal in both versions)."""
    if isinstance(schema, list):
        return [_name_by_path(s, f"{path}_{i}") for i, s in enumerate(schema)]
    if not isinstance(schema, dict):
        return schema
    kind = schema["type"]
    if kind == "enum":
        return {**schema, "name": f"E{path}"}
    if kind == "array":
        return {**schema, "items": _name_by_path(schema["items"], f"{path}_i")}
    if kind == "map":
        return {**schema, "values": _name_by_path(schema["values"], f"{path}_v")}
    fields = [{**f, "type": _name_by_path(f["type"], f"{path}_{f['name']}")} for f in schema["fields"]]
    return {**schema, "name": path, "fields": fields}


_NO_DEFAULT = object()
_DEFAULTS = {
    "int": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "string": "",
    "bytes": "",
    "boolean": False,
    "null": None,
}


def _default_of(schema: Any) -> Any:
    if isinstance(schema, str):
        return _DEFAULTS[schema]
    if isinstance(schema, list):
        return _default_of(schema[0])  # a union's default is of its first branch
    if schema["type"] == "enum":
        return schema["symbols"][0]
    if schema["type"] == "array":
        return []
    if schema["type"] == "map":
        return {}
    return _NO_DEFAULT  # records: no default, keeps the strategy simple


@st.composite
def _datum(draw: st.DrawFn, schema: Any) -> Any:
    if isinstance(schema, list):
        return draw(_datum(draw(st.sampled_from(schema))))
    if isinstance(schema, str):
        return draw(
            {
                "null": st.none(),
                "int": st.integers(-(2**31), 2**31 - 1),
                "long": st.integers(-(2**63), 2**63 - 1),
                "float": st.floats(width=32, allow_nan=False),
                "double": st.floats(allow_nan=False),
                "string": st.text(max_size=3),
                # the specification promotes bytes to string; bytes that are not UTF-8 cannot be
                # read as a string by any reader, so the property holds for UTF-8 bytes only
                "bytes": st.text(max_size=3).map(str.encode),
                "boolean": st.booleans(),
            }[schema]
        )
    kind = schema["type"]
    if kind == "enum":
        return draw(st.sampled_from(schema["symbols"]))
    if kind == "array":
        return draw(st.lists(_datum(schema["items"]), max_size=2))
    if kind == "map":
        return draw(st.dictionaries(st.text(max_size=2), _datum(schema["values"]), max_size=2))
    return {f["name"]: draw(_datum(f["type"])) for f in schema["fields"]}


_WIDER = {
    "int": ["long", "float", "double"],
    "long": ["float", "double"],
    "float": ["double"],
    "string": ["bytes"],
    "bytes": ["string"],
}


@st.composite
def _mutated(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with one top-level field changed the way a real new version changes it."""
    fields = list(schema["fields"])
    i = draw(st.integers(0, len(fields) - 1))
    f = fields[i]
    how = draw(st.sampled_from(("drop", "add", "widen", "nullable", "retype")))
    if how == "drop" and len(fields) > 1:
        del fields[i]
    elif how == "add":
        fields.append(
            field("z", draw(st.sampled_from(_PRIMS)), **draw(st.sampled_from(({}, {"default": 0}))))
        )
        if fields[-1].get("default") == 0 and fields[-1]["type"] in ("string", "bytes", "boolean"):
            fields[-1]["default"] = _DEFAULTS[fields[-1]["type"]]
    elif how == "widen" and isinstance(f["type"], str) and f["type"] in _WIDER:
        fields[i] = {**f, "type": draw(st.sampled_from(_WIDER[f["type"]]))}
        if "default" in fields[i]:
            fields[i]["default"] = _DEFAULTS[fields[i]["type"]]
    elif how == "retype":
        fields[i] = {"name": f["name"], "type": draw(st.sampled_from(_PRIMS))}
    elif how == "nullable" and not isinstance(f["type"], list):
        fields[i] = {"name": f["name"], "type": ["null", f["type"]], "default": None}
    return {**schema, "fields": fields}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_compatible_means_fastavro_reads_every_record(data):
    """Whenever the rules say the reader reads the writer's data, fastavro does, for any record."""
    writer = data.draw(st.integers(0, 2).flatmap(lambda depth: _records(depth, "T")), label="writer")
    reader = data.draw(st.one_of(_records(2, "T"), _mutated(writer)), label="reader")
    datum = data.draw(_datum(writer), label="datum")
    if not incompatibilities(writer, reader, "backward"):  # backward: reader = new, writer = old
        assert fastavro_reads(writer, reader, datum)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_top_level_incompatibility_fails_fastavro_for_every_record(data):
    """The converse where it holds for any record: a reader field missing from the writer without a
    default, or a writer field of one fixed shape (a primitive, a record) the reader cannot read."""
    writer = data.draw(st.integers(0, 2).flatmap(lambda depth: _records(depth, "T")), label="writer")
    reader = data.draw(st.one_of(_records(2, "T"), _mutated(writer)), label="reader")
    datum = data.draw(_datum(writer), label="datum")
    written = {f["name"]: f["type"] for f in writer["fields"]}
    for issue in incompatibilities(writer, reader, "backward"):
        if issue.path not in (*_FIELD_NAMES, "z"):
            continue  # nested: an empty array or another enum symbol may not reach it
        shape = written.get(issue.path)
        fixed_shape = isinstance(shape, str) or (isinstance(shape, dict) and shape["type"] == "record")
        if shape is None or fixed_shape:
            assert not fastavro_reads(writer, reader, datum), issue
