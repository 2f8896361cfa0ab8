"""Line parsing of ``produce`` and the JSON shape of ``tail``, without a broker."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord

from stream_orch.tools.produce import LineRejected, encode_key, parse_line
from stream_orch.tools.tail import record_to_json


def test_parse_line_keeps_the_line_and_takes_the_key() -> None:
    assert parse_line(b'{"id": "a", "n": 1}', "id", None) == (b"a", b'{"id": "a", "n": 1}')
    assert parse_line(b"[1, 2]", None, None) == (None, b"[1, 2]")
    assert encode_key(42) == b"42" and encode_key("ü") == "ü".encode()


@pytest.mark.parametrize(
    ("line", "key_field", "message"),
    [
        (b"{oops", None, "not valid JSON"),
        (b'{"x": 1}', "id", "the record has no 'id'"),
        (b"[1]", "id", "not a JSON object"),
    ],
)
def test_parse_line_rejects(line: bytes, key_field: str | None, message: str) -> None:
    with pytest.raises(LineRejected, match=message):
        parse_line(line, key_field, None)


def test_parse_line_uses_the_validator() -> None:
    with pytest.raises(LineRejected, match="field 'n': too big"):
        parse_line(b'{"n": 5}', None, lambda rec: "field 'n': too big" if rec["n"] > 3 else None)


def _record(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t", partition=2, offset=7, timestamp=1700000000000, timestamp_type=0, key=key, value=value,
        checksum=None, serialized_key_size=0, serialized_value_size=0, headers=tuple(headers),
    )  # fmt: skip


def test_record_to_json_decodes_what_it_can() -> None:
    out = record_to_json(_record(b"k", b'{"a": 1}', [("h", b"v"), ("bin", b"\xff")]))
    assert out == {
        "topic": "t", "key": "k", "partition": 2, "offset": 7, "timestamp": 1700000000000,
        "headers": {"h": "v", "bin": "base64:/w=="}, "value": {"a": 1},
    }  # fmt: skip
    assert record_to_json(_record(None, b"plain text", []))["value"] == "plain text"
    binary = record_to_json(_record(b"\xfe", b"\xff\x00", []))
    assert binary["value"] == "/wA=" and binary["value_encoding"] == "base64"
    assert binary["key"] == "/g==" and binary["key_encoding"] == "base64"
    assert record_to_json(_record(b"k", None, []))["value"] is None
