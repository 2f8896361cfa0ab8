"""Schemas, validation messages and the JSON / Avro codecs (no broker)."""

from __future__ import annotations

import json

import pytest
from step_harness import REPO, SCHEMAS, txn

from stream_orch.codecs import (
    AvroCodec,
    DecodeError,
    EncodeError,
    JsonCodec,
    SchemaError,
    SchemaRegistry,
    Validator,
    codec_for,
    projection,
)
from stream_orch.topology.models import TopicSpec

FRAUD_SCHEMAS = ["account_action", "customer", "fraud_alert", "transaction", "transaction_enriched"]


def enriched(**fields):
    record = txn(
        home_country="DE",
        risk_tier="low",
        avg_amount=50.0,
        email="ab" * 32,
        amount_eur=120.0,
        velocity_60s=1,
        fraud_probability=0.01,
        score=0.0,
        reasons=[],
    )
    record.update(fields)
    return record


# --------------------------------------------------------------------------- registry


def test_registry_loads_every_schema_once():
    reg = SchemaRegistry(REPO / "schemas")
    assert set(FRAUD_SCHEMAS) <= set(reg.names())
    assert {"payment", "settlement", "payment_reconciliation"} <= set(reg.names())  # reconciliation
    assert reg.names() == sorted(reg.names())
    assert reg.field_names("transaction") == [
        "txn_id",
        "account_id",
        "customer_id",
        "amount",
        "currency",
        "merchant_id",
        "channel",
        "country",
        "ts",
    ]
    assert reg.get("transaction") is reg.get("transaction")
    assert reg.validator("transaction") is reg.validator("transaction")
    assert "transaction" in reg and "nope" not in reg


def test_every_field_of_every_schema_has_a_doc():
    for name in SCHEMAS.names():
        for f in SCHEMAS.fields(name):
            assert f.get("doc"), f"{name}.{f['name']} has no doc"


def test_enriched_schema_has_digest_email_and_no_name():
    names = SCHEMAS.field_names("transaction_enriched")
    assert "email" in names and "name" not in names
    for extra in (
        "home_country",
        "risk_tier",
        "avg_amount",
        "amount_eur",
        "velocity_60s",
        "score",
        "reasons",
    ):
        assert extra in names
    assert set(SCHEMAS.field_names("transaction")) <= set(names)


def test_unknown_schema_and_bad_files(tmp_path):
    with pytest.raises(SchemaError, match="unknown schema 'nope'"):
        SCHEMAS.get("nope")
    (tmp_path / "bad.avsc").write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        SchemaRegistry(tmp_path)
    (tmp_path / "bad.avsc").write_text(json.dumps({"type": "record", "name": "X", "fields": [{"name": "a"}]}))
    with pytest.raises(SchemaError, match="not a valid Avro schema"):
        SchemaRegistry(tmp_path)
    with pytest.raises(SchemaError, match="does not exist"):
        SchemaRegistry(tmp_path / "missing")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (txn(txn_id=...), "field 'txn_id': missing (expected string)"),
        (txn(txn_id=None), "field 'txn_id': expected string, got null"),
        (txn(amount="12x"), "field 'amount': expected double, got str '12x'"),
        (txn(amount=True), "field 'amount': expected double, got bool True"),
        (txn(currency="XYZ"), "field 'currency': expected one of EUR, USD, GBP, CHF, JPY, got str 'XYZ'"),
        (txn(channel="phone"), "field 'channel': expected one of card_present, online, atm, got str 'phone'"),
        (txn(ts="2024-01-01"), "field 'ts': expected long (epoch milliseconds), got str '2024-01-01'"),
        (txn(ts=2**64), "field 'ts': 18446744073709551616 is out of the long range"),
        (txn(country=["DE"]), "field 'country': expected string, got array ['DE']"),
    ],
)
def test_validation_names_the_field(record, message):
    assert SCHEMAS.validator("transaction")(record) == message


def test_validation_accepts_valid_records_ints_for_doubles_and_extra_fields():
    check = SCHEMAS.validator("transaction")
    assert check(txn()) is None
    assert check(txn(amount=5)) is None
    assert check(txn(extra="ignored")) is None
    assert check([1]) == "expected a record (object), got array"


def test_validation_of_unions_arrays_and_defaults():
    check = SCHEMAS.validator("transaction_enriched")
    assert check(enriched()) is None
    assert check(enriched(email=None)) is None
    record = enriched()
    del record["email"], record["reasons"]  # both have defaults
    assert check(record) is None
    assert check(enriched(reasons=["a", 5])) == "field 'reasons[1]': expected string, got int 5"
    assert check(enriched(email=5)) == "field 'email': expected null or string, got int 5"
    assert (
        check(enriched(velocity_60s=2**40)) == "field 'velocity_60s': 1099511627776 is out of the int range"
    )


def test_validator_agrees_with_fastavro_on_valid_and_invalid_records():
    from fastavro.validation import validate

    schema = SCHEMAS.get("transaction")
    check = Validator(schema)
    for record in [
        txn(),
        txn(amount="1"),
        txn(currency="xx"),
        txn(ts=1.5),
        txn(txn_id=3),
        txn(channel="atm"),
    ]:
        assert (check(record) is None) == validate(record, schema, raise_errors=False)


# --------------------------------------------------------------------------- JSON codec


def test_json_round_trip_and_errors():
    codec = codec_for(TopicSpec(schema="transaction"), SCHEMAS)
    assert isinstance(codec, JsonCodec) and codec.schema_name == "transaction"
    assert codec.decode(codec.encode(txn())) == txn()
    with pytest.raises(DecodeError) as err:
        codec.decode(b'{"txn_id": "t-1",')
    assert err.value.reason == "malformed_json"
    assert str(err.value).startswith("malformed_json: ")
    for not_utf8 in (b'{"txn_id": "\xff"}', b"\xff\xfe{}", b'{"a": "caf\xe9"}'):
        with pytest.raises(DecodeError) as err:
            codec.decode(not_utf8)
        assert err.value.reason == "invalid_utf8", not_utf8
    with pytest.raises(DecodeError, match="malformed_json: expected a JSON object, got array"):
        codec.decode(b"[1, 2]")
    with pytest.raises(DecodeError, match="malformed_json"):
        codec.decode(b"")
    with pytest.raises(DecodeError, match="malformed_json"):
        codec.decode(None)
    with pytest.raises(EncodeError):
        codec.encode({"x": object()})


def test_json_encode_gives_orjsons_bytes_in_objects_of_their_own():
    """The encoder copies orjson's output (see json_codec._dumps): same bytes, exact bytes type,
    and kept outputs do not cost a fresh memory page each."""
    import resource

    import orjson

    codec = JsonCodec()
    values = [dict(txn(), n=n, reasons=["a"] * (n % 3)) for n in range(3000)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    kept = [codec.encode(v) for v in values]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    assert kept == [orjson.dumps(v) for v in values] == codec.encode_many(values)
    assert all(type(b) is bytes for b in kept)
    assert faults < len(values) / 4, f"{faults} page faults for {len(values)} kept outputs"


def test_json_decode_many_returns_errors_in_place():
    codec = JsonCodec()
    out = codec.decode_many([b'{"a": 1}', b"{", b"\xff", b"3"])
    assert out[0] == {"a": 1}
    assert [e.reason for e in out[1:]] == ["malformed_json", "invalid_utf8", "malformed_json"]
    assert codec.encode_many([{"a": 1}, {"b": 2}]) == [b'{"a":1}', b'{"b":2}']


# --------------------------------------------------------------------------- Avro codec


def test_avro_round_trip_keeps_epoch_ms_ints():
    codec = codec_for(TopicSpec(schema="transaction_enriched", format="avro"), SCHEMAS)
    assert isinstance(codec, AvroCodec)
    record = enriched(reasons=["foreign_country"])
    data = codec.encode(record)
    back = codec.decode(data)
    assert back == record
    assert type(back["ts"]) is int


def test_avro_errors():
    codec = codec_for(TopicSpec(schema="transaction", format="avro"), SCHEMAS)
    with pytest.raises(EncodeError, match="schema_mismatch: field 'amount': expected double, got str 'x'"):
        codec.encode(txn(amount="x"))
    data = codec.encode(txn())
    with pytest.raises(DecodeError, match="malformed_avro"):
        codec.decode(data[:5])
    with pytest.raises(DecodeError, match="malformed_avro: 1 trailing bytes"):
        codec.decode(data + b"\x00")
    with pytest.raises(DecodeError) as err:
        codec.decode(b"\x04\xff\xfe" + data[3:])  # txn_id of 2 bytes that are not UTF-8
    assert err.value.reason == "invalid_utf8"


def test_codec_for_needs_a_schema_for_avro():
    with pytest.raises(SchemaError):
        codec_for(TopicSpec(format="avro"), SCHEMAS)
    with pytest.raises(SchemaError):
        codec_for(TopicSpec(schema="nope"), SCHEMAS)
    assert isinstance(codec_for(TopicSpec(), SCHEMAS), JsonCodec)


def test_projection_keeps_only_schema_fields_in_schema_order():
    project = projection(SCHEMAS.get("fraud_alert"))
    record = enriched(score=0.9, reasons=["x"], severity="high", name="Jane")
    assert list(project(record)) == [
        "txn_id",
        "account_id",
        "customer_id",
        "amount_eur",
        "score",
        "severity",
        "reasons",
        "ts",
    ]
    assert projection(["a", "b"])({"b": 1, "c": 2}) == {"b": 1}


def test_json_encode_refuses_non_finite_numbers_instead_of_writing_null():
    """orjson writes inf and nan as null (issue 19, item 4): the codec names where they are."""
    from stream_orch.codecs import NonFiniteNumber

    codec = JsonCodec()
    for value, path in [
        ({"a": float("inf")}, "a"),
        ({"a": {"b": [1.0, float("nan")]}}, "a.b[1]"),
        ({"a": None, "n": "null", "b": [{"c": -float("inf")}]}, "b[0].c"),
    ]:
        with pytest.raises(NonFiniteNumber) as err:
            codec.encode(value)
        assert err.value.path == path
        assert err.value.reason == "non_finite"
        with pytest.raises(NonFiniteNumber):
            codec.encode_many([{"ok": 1}, value])
    assert codec.encode({"a": None, "b": "null", "c": 1.5}) == b'{"a":null,"b":"null","c":1.5}'


def test_avro_decode_refuses_non_finite_numbers_as_json_decode_does():
    """Avro carries nan and inf in a double, JSON does not (orjson refuses 1e999): a non-finite
    input number would go on into tables (whose changelog is JSON: null) and outputs, so it is
    malformed_avro at the input, naming the field (issue 19, item 4)."""
    schema = {
        "type": "record",
        "name": "M",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "v", "type": "double"},
            {"name": "xs", "type": {"type": "array", "items": ["null", "float"]}, "default": []},
            {"name": "inner", "type": ["null", {"type": "record", "name": "I", "fields": [
                {"name": "w", "type": "double"}]}], "default": None},
            {"name": "again", "type": ["null", "I"], "default": None},
        ],
    }  # fmt: skip
    codec = AvroCodec(schema)
    good = {"id": "a", "v": 1.5, "xs": [None, 2.0], "inner": {"w": 0.5}, "again": None}
    assert codec.decode(codec.encode(good)) == good
    inf, nan = float("inf"), float("nan")
    for change, path in [
        ({"v": nan}, "v"),
        ({"v": -inf}, "v"),
        ({"xs": [1.0, inf]}, "xs[1]"),
        ({"inner": {"w": nan}}, "inner.w"),
        ({"again": {"w": inf}}, "again.w"),
    ]:
        data = codec.encode({**good, **change})
        with pytest.raises(DecodeError) as err:
            codec.decode(data)
        assert err.value.reason == "malformed_avro"
        assert err.value.detail.startswith(f"{path}: ") and "is not a finite number" in err.value.detail
        assert isinstance(codec.decode_many([data])[0], DecodeError)
    with pytest.raises(DecodeError, match="malformed_json"):  # what orjson does with JSON
        JsonCodec().decode(b'{"v": 1e999}')
