"""ingest: readers (CSV, JSON lines, JSON arrays), CSV coercion per Avro type, reject reasons,
ledger records, the rejects file and the watcher's settling rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.codecs import JsonCodec
from stream_orch.tools.ingest.coerce import RowConformer, RowRejected
from stream_orch.tools.ingest.ledger import Progress, decode_progress, file_digest, transactional_id
from stream_orch.tools.ingest.publish import Target, make_row
from stream_orch.tools.ingest.readers import MAX_ROW_BYTES, BadRow, Reader
from stream_orch.tools.ingest.rejects import Rejects
from stream_orch.tools.ingest.watch import Settling, wanted

SCHEMA = {
    "type": "record",
    "name": "people",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "small", "type": ["null", "int"], "default": None},
        {"name": "score", "type": "double"},
        {"name": "ratio", "type": ["null", "float"], "default": None},
        {"name": "ok", "type": ["null", "boolean"], "default": None},
        {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["GOLD", "SILVER"]}},
        {"name": "name", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": ["null", {"type": "array", "items": "string"}], "default": None},
    ],
}
GOOD = {"id": "1", "score": "2.5", "tier": "GOLD", "name": "ann"}


def rows(tmp_path: Path, data: bytes, fmt: str) -> list[tuple[int, object]]:
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(data)
    return list(Reader(path, fmt).rows())


# ---------------------------------------------------------------------------- readers


def test_csv_reader_bom_crlf_quotes_empty_lines_and_physical_lines(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbfid,name\r\n1,"a, ""b"""\r\n\r\n2,"two\r\nlines"\r\n3,c\r\n4\r\n'
    assert rows(tmp_path, data, "csv") == [
        (2, ["1", 'a, "b"']),
        (4, ["2", "two\r\nlines"]),
        (6, ["3", "c"]),
        (7, BadRow("expected 2 fields as in the header, got 1")),
    ]


def test_csv_reader_lf_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"\n\nid , name\n1,a\n\n2,b")
    reader = Reader(path, "csv")
    assert list(reader.rows()) == [(4, ["1", "a"]), (6, ["2", "b"])]
    assert reader.header == ["id", "name"]


def test_jsonl_reader(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbf{"a": 1}\r\n\n[1]\n{bad\n  {"b": 2}  '
    got = rows(tmp_path, data, "jsonl")
    assert got[0] == (1, {"a": 1})
    assert got[1] == (3, BadRow("expected a JSON object, got an array"))
    assert got[2][0] == 4 and isinstance(got[2][1], BadRow) and got[2][1].reason.startswith("not valid JSON")
    assert got[3] == (5, {"b": 2})


def test_jsonl_reader_skips_an_over_long_line(tmp_path: Path) -> None:
    data = b'{"a": "' + b"x" * MAX_ROW_BYTES + b'"}\n{"b": 1}\n'
    got = rows(tmp_path, data, "jsonl")
    assert got == [(1, BadRow(f"line longer than {MAX_ROW_BYTES} bytes")), (2, {"b": 1})]


def test_json_array_reader_lines_and_elements(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbf [\r\n {"a": 1},\r\n {"b": [1, 2]}, 3,\n {"c": 12345}\n]\n'
    assert rows(tmp_path, data, "json") == [
        (2, {"a": 1}),
        (3, {"b": [1, 2]}),
        (3, BadRow("element 2: expected a JSON object, got a number")),
        (4, {"c": 12345}),
    ]


def test_json_array_reader_across_buffer_boundaries(tmp_path: Path) -> None:
    # numbers and strings cut by the 64 kB read buffer are read whole
    items = [{"n": 10**12 + i, "s": "é" * (i % 50)} for i in range(6000)]
    import orjson

    got = rows(tmp_path, orjson.dumps(items), "json")
    assert [r for _, r in got] == items


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a": 1}', "not a JSON array: the file must hold one top-level [ ... ]"),
        (b'[{"a": 1} {"b": 2}]', "after element 0: expected , or ] but found '{'"),
        (
            b'[{"a": 1}, {"b": ',
            "element 1: not valid JSON (Expecting value); the rest of the file is not read",
        ),
    ],
)
def test_json_array_reader_malformed(tmp_path: Path, data: bytes, reason: str) -> None:
    assert rows(tmp_path, data, "json")[-1] == (1, BadRow(reason))


def test_json_array_reader_empty(tmp_path: Path) -> None:
    assert rows(tmp_path, b" [ ] ", "json") == []


# ---------------------------------------------------------------------------- coercion


@pytest.fixture
def conformer() -> RowConformer:
    return RowConformer(SCHEMA, "people")


def test_csv_values_take_the_schema_types(conformer: RowConformer) -> None:
    row = {**GOOD, "small": "-7", "ratio": "1e3", "ok": "TRUE", "note": "", "tags": '["x"]'}
    row["extra"] = "dropped"
    assert conformer.from_text(row) == {
        "id": 1, "small": -7, "score": 2.5, "ratio": 1000.0, "ok": True, "tier": "GOLD",
        "name": "ann", "note": None, "tags": ["x"],
    }  # fmt: skip
    assert conformer.from_text({**GOOD, "name": "", "ok": "0", "small": ""})["name"] == ""
    assert conformer.from_text({**GOOD, "ok": "false"})["ok"] is False


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "1.5"}, "field 'id': expected long, got str '1.5'"),
        ({"id": ""}, "field 'id': expected long, got empty"),
        ({"id": "9223372036854775808"}, "field 'id': 9223372036854775808 is out of the long range"),
        ({"small": "2147483648"}, "field 'small': expected null or int, got int 2147483648"),
        ({"score": "nan"}, "field 'score': expected double, got str 'nan'"),
        ({"score": "1e999"}, "field 'score': expected double, got str '1e999'"),
        ({"ratio": "1e39"}, "field 'ratio': expected null or float, got float 1e+39"),
        ({"ok": "yes"}, "field 'ok': expected null or boolean, got str 'yes'"),
        ({"tier": "BRONZE"}, "field 'tier': expected one of GOLD, SILVER, got str 'BRONZE'"),
        ({"tags": "[1]"}, "field 'tags': expected null or array of string, got array [1]"),
    ],
)
def test_csv_rejects_name_the_field(conformer: RowConformer, change: dict[str, str], reason: str) -> None:
    with pytest.raises(RowRejected) as caught:
        conformer.from_text({**GOOD, **change})
    assert str(caught.value) == reason


SIMPLE = {**SCHEMA, "fields": [f for f in SCHEMA["fields"] if f["name"] != "tags"]}
FULL_ROW = {**GOOD, "small": "", "ratio": "", "ok": "", "note": ""}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"small": "-7", "ratio": "1e3", "ok": "TRUE", "note": "n"},
        {"id": "-9223372036854775808", "small": "+2147483647", "ratio": "-3.4e38", "ok": "0"},
        {"id": " 12 ", "score": "1", "ok": "False", "tier": "SILVER"},
    ],
)
def test_a_row_of_every_column_and_simple_types_skips_no_check(change: dict[str, str]) -> None:
    """Every field has a column and a type the generated converter checks in full: its dict
    is returned without the conformer; it must be what the conformer would return."""
    conformer = RowConformer(SIMPLE, "people")
    row = {**FULL_ROW, **change}
    value = conformer.from_text(row)
    assert value == conformer.conform(dict(value))
    assert list(value) == [f["name"] for f in SIMPLE["fields"]]
    assert {k: v.__class__ for k, v in value.items()} == {
        k: v.__class__ for k, v in conformer.conform(dict(value)).items()
    }
    assert value["id"] == int(row["id"]) and value["score"] == float(row["score"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "9223372036854775808"}, "field 'id': 9223372036854775808 is out of the long range"),
        ({"id": "-9223372036854775809"}, "field 'id': -9223372036854775809 is out of the long range"),
        ({"small": "2147483648"}, "field 'small': expected null or int, got int 2147483648"),
        ({"small": "-2147483649"}, "field 'small': expected null or int, got int -2147483649"),
        ({"score": "1e999"}, "field 'score': expected double, got str '1e999'"),
        ({"score": "nan"}, "field 'score': expected double, got str 'nan'"),
        ({"score": "-inf"}, "field 'score': expected double, got str '-inf'"),
        ({"score": "1_0"}, "field 'score': expected double, got str '1_0'"),
        ({"id": "1_0"}, "field 'id': expected long, got str '1_0'"),
        ({"ratio": "1e39"}, "field 'ratio': expected null or float, got float 1e+39"),
        ({"ok": "yes"}, "field 'ok': expected null or boolean, got str 'yes'"),
        ({"tier": "BRONZE"}, "field 'tier': expected one of GOLD, SILVER, got str 'BRONZE'"),
        ({"tier": ""}, "field 'tier': expected one of GOLD, SILVER, got empty"),
    ],
)
def test_a_row_of_every_column_rejects_name_the_field(change: dict[str, str], reason: str) -> None:
    """The same reasons as through the conformer, from the path that skips it."""
    with pytest.raises(RowRejected) as caught:
        RowConformer(SIMPLE, "people").from_text({**FULL_ROW, **change})
    assert str(caught.value) == reason


@pytest.mark.parametrize("schema", [SCHEMA, SIMPLE])
def test_an_integer_too_long_for_python_to_parse_is_a_reject(schema: dict[str, object]) -> None:
    """int() refuses more than 4,300 digits with a ValueError: a reject, never a crash."""
    with pytest.raises(RowRejected, match=r"^field 'id': expected long, got str '9999"):
        RowConformer(schema, "people").from_text({**FULL_ROW, "id": "9" * 5000})
    with pytest.raises(RowRejected, match=r"^field 'id': expected long, got str '-999"):
        RowConformer(schema, "people").from_text({**FULL_ROW, "id": "-" + "9" * 5000})


def test_columns_in_any_order_and_a_repeated_header(conformer: RowConformer) -> None:
    header = ["name", "tier", "score", "id", "id"]
    assert conformer.from_cells(header, ["x", "GOLD", "1", "7", "8"]) == {
        "id": 8, "score": 1.0, "tier": "GOLD", "name": "x",
    }  # fmt: skip
    with pytest.raises(RowRejected, match="field 'id': expected long, got str 'z'"):
        conformer.from_cells(header, ["x", "GOLD", "1", "7", "z"])


def test_a_missing_required_column_is_a_reject(conformer: RowConformer) -> None:
    row = dict(GOOD)
    del row["name"]
    with pytest.raises(RowRejected, match=r"field 'name': missing \(expected string\)"):
        conformer.from_text(row)


def test_json_rows_go_through_the_worker_conformer(conformer: RowConformer) -> None:
    value = conformer.conform({"id": 3.0, "score": 1, "tier": "SILVER", "name": "x"})
    assert value == {"id": 3, "score": 1.0, "tier": "SILVER", "name": "x"}
    with pytest.raises(RowRejected, match="field 'score': expected double, got str '1'"):
        conformer.conform({"id": 3, "score": "1", "tier": "SILVER", "name": "x"})


def test_make_row_keys_encodes_and_rejects(conformer: RowConformer) -> None:
    target = Target("people", "csv", conformer, JsonCodec("people"), key_field="name")
    header = list(GOOD)
    key, value = make_row(target, list(GOOD.values()), header)
    assert key == b"ann" and value == b'{"id":1,"score":2.5,"tier":"GOLD","name":"ann"}'
    with pytest.raises(RowRejected, match="not valid UTF-8"):  # an invalid byte, as the reader decodes it
        make_row(target, list({**GOOD, "name": "a\udcff"}.values()), header)
    with pytest.raises(RowRejected, match="expected 2 fields"):
        make_row(target, BadRow("expected 2 fields as in the header, got 1"))
    keyed = Target("people", "json", conformer, JsonCodec("people"), key_field="note")
    with pytest.raises(RowRejected, match="field 'note': no value for the key"):
        make_row(keyed, {"id": 1, "score": 1.0, "tier": "GOLD", "name": "x"})


# ---------------------------------------------------------------------------- ledger, rejects, watch


def test_ledger_record_round_trip_and_foreign_values() -> None:
    progress = Progress(rows=10_000, line=10_003, published=9_900, rejected=100, done=False, file="a.csv")
    key, value = progress.encode("ab" * 32)
    assert key == b"ab" * 32
    assert decode_progress(value) == progress
    for foreign in (None, b"", b"[]", b'{"rows": "x"}', b'{"rows": 1}'):
        assert decode_progress(foreign) is None


def test_digest_and_transactional_id_depend_on_content_only(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    a.write_bytes(b"id\n1\n")
    b.write_bytes(b"id\n1\n")
    c.write_bytes(b"id\n2\n")
    assert file_digest(a) == file_digest(b) != file_digest(c)
    assert transactional_id("t", file_digest(a)) == transactional_id("t", file_digest(b))
    assert transactional_id("t", file_digest(a)) != transactional_id("u", file_digest(a))


def test_rejects_file_rewritten_per_run(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    rejects = Rejects()
    rejects.start(source)
    rejects.add(source, 3, "field 'id': bad\nvalue")
    rejects.close_for(source)
    assert (tmp_path / "in.csv.rejects").read_text() == f"{source}:3: field 'id': bad\\nvalue\n"
    rejects.start(source)  # a new run that rejects nothing leaves no stale file
    assert not (tmp_path / "in.csv.rejects").exists()


def test_watch_ignores_partial_and_own_files() -> None:
    assert wanted(Path("d/a.csv"))
    assert not any(wanted(Path(n)) for n in (".a.csv", "a.csv.tmp", "a.csv.part", "a.csv.rejects", "a~"))


def test_a_file_is_ready_once_quiet_for_the_settle_time(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id\n")
    settling = Settling(1.0)
    settling.touch(path, now=100.0)
    assert settling.ready(100.5) == []
    with path.open("a") as f:
        f.write("1\n")  # still being written: the clock starts again
    assert settling.ready(101.2) == []
    assert settling.ready(102.0) == []
    assert settling.ready(102.3) == [path]
    assert settling.ready(110.0) == []  # taken once


# ---------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.csv"], "ingest: nope.csv: no such file"),
        ([], "ingest: give at least one PATH or --watch DIR"),
        (["{csv}", "--schema", "no_such_schema"], "no schema for topic t: unknown schema 'no_such_schema'"),
        (["{csv}", "--schema", "missing.avsc"], "--schema missing.avsc: no such file"),
        (
            ["{csv}", "--schema", "customer", "--key-field", "nope"],
            "--key-field nope: schema customer has no",
        ),
        (["{csv}", "--watch", "no/such/dir"], "ingest: --watch no/such/dir: no such folder"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    from stream_orch.cli.main import main

    csv_path = tmp_path / "in.csv"
    csv_path.write_text("id\n1\n")
    argv = ["ingest", *(a.replace("{csv}", str(csv_path)) for a in args), "--topic", "t", "--format", "csv"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
