"""decode_records reads a JSON input with orjson itself (JsonCodec.decode's common case inline):
the same events and the same dead letters, with the codec's reasons, as through the codec."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_orch.codecs import JsonCodec
from stream_orch.runtime.batch import BatchStats, NodeContext, decode_records

VALUES = [
    b'{"a": 1, "b": [1, 2]}',
    b"[1, 2]",  # JSON, not an object
    b'"text"',
    b"null",
    b"{bad",
    b'{"a": "\xff"}',  # not UTF-8
    b"",
    None,  # no value
    bytearray(b'{"c": 3}'),
    b'{"d": ' * 1000 + b"1" + b"}" * 1000,  # nested deeper than orjson reads
]


def _decode(values: list, decode) -> tuple[list, list]:
    records = [
        SimpleNamespace(value=v, key=b"k", offset=i, headers=[], timestamp=1_700_000_000_000 + i)
        for i, v in enumerate(values)
    ]
    ctx = NodeContext("t", "n", {}, {})
    events, offsets = decode_records(
        {TopicPartition("in", 0): records}, {"in": 0}, {"in": decode}, ctx, BatchStats()
    )
    assert offsets == ({TopicPartition("in", 0): len(values)} if values else {})
    kept = [(e.offset, e.value) for e in events]
    failed = [(f.event.offset, f.reason, type(f.error).__name__, str(f.error)) for f in ctx.failures]
    return kept, failed


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(VALUES), max_size=12))
def test_json_is_read_inline_as_the_codec_reads_it(values: list) -> None:
    codec = JsonCodec()
    inline = _decode(values, codec.decode)
    through_codec = _decode(values, lambda data: codec.decode(data))  # not the codec's own method
    assert inline == through_codec
